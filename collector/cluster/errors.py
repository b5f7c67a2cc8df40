"""Errors of reading the Kubernetes API; aiohttp's and the API server's are translated here."""

from __future__ import annotations

from collector.errors import CollectorError


class ClusterError(CollectorError):
    """The API answered with an error, too much, too late, or something that is not a list."""


class ClusterUnavailable(ClusterError):
    """No way to reach the API here: no in-cluster service account and no KUBECONFIG."""


class ClusterForbidden(ClusterError):
    """403: the collector's service account may not do this; the message names verb and resource."""
