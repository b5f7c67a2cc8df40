"""Errors of reading the Kubernetes API; aiohttp's and the API server's are translated here."""

from __future__ import annotations

from collector.errors import CollectorError


class ClusterError(CollectorError):
    """The API answered with an error, too much, too late, or something that is not a list."""


class ClusterUnavailable(ClusterError):
    """No way to reach the API here: no in-cluster service account and no KUBECONFIG."""


class ClusterForbidden(ClusterError):
    """403: the collector's service account may not do this; the message names verb and resource."""


class ClusterNotFound(ClusterError):
    """404: the server does not serve this group/version/resource (a CRD not installed)."""


class ClusterGone(ClusterError):
    """410 Gone (an HTTP answer, or a watch ERROR event whose Status has code 410): the
    resourceVersion or continue token is older than the server's history; list again."""


class ClusterTooLarge(ClusterError):
    """An answer past a size cap (a page, a watch line, a list's item count): refused unread."""
