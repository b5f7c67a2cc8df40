"""Which workload a pod belongs to, and how a workload id reads. Pure.

A workload id is ``namespace/Kind/name`` (``prod/Deployment/llama``), as the agent resolves it from
the pod's owner chain or labels. A pod whose agent resolved none stands alone as its own workload,
``namespace/Pod/pod``: that rule lives here and nowhere else.
"""

from __future__ import annotations

STANDALONE_KIND = "Pod"


def workload_id(namespace: str, pod: str, workload: str = "") -> str:
    """The workload a pod belongs to: the one its agent named, else the pod on its own."""
    return workload or f"{namespace}/{STANDALONE_KIND}/{pod}"


def split_workload(workload: str) -> tuple[str, str, str]:
    """``namespace/kind/name`` → parts; ``namespace/name`` has kind ''."""
    parts = workload.split("/")
    if len(parts) >= 3:
        return parts[0], parts[1], "/".join(parts[2:])
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return "", "", workload
