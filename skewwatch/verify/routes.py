"""The collector routes verify calls, under one workload: ``/api/v1/workloads/{ns}/{name}/…``."""

from __future__ import annotations

from collector.cli.common import workload_path


def workload_route(workload: str, leaf: str, query: str = "") -> str:
    """``/api/v1/workloads/{ns}/{name}/{leaf}[?query]``; a ``NAMESPACE/KIND/NAME`` adds ``kind=``
    to the query (``workload_path`` appends it to the name: it must come after the leaf)."""
    path, _, kind = f"/api/v1/workloads/{workload_path(workload)}".partition("?")
    params = "&".join(p for p in (query, kind) if p)
    return f"{path}/{leaf}" + (f"?{params}" if params else "")
