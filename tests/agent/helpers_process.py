"""Test helpers for the process source: command lines from real manifests, fake /proc trees."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# What a secretKeyRef would inject: shaped like a real token so the redactor has to catch it.
SECRET_FROM_REF = "hf_FromSecretKeyRef0123456789abcdef"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def container_command(
    manifest: Path, image_entrypoint: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The first container's command line and env as the kubelet would start it.

    ``command`` replaces the image entrypoint, ``args`` follow it; ``envFrom`` ConfigMaps in the
    same file are expanded, ``secretKeyRef`` values become a token-shaped stand-in.
    """
    docs = _documents(manifest)
    configmaps = {
        d["metadata"]["name"]: {k: str(v) for k, v in (d.get("data") or {}).items()}
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    container = _first_container(docs)
    argv = [str(a) for a in (container.get("command") or image_entrypoint)]
    argv += [str(a) for a in container.get("args") or []]
    env: dict[str, str] = {}
    for ref in container.get("envFrom") or []:
        env.update(configmaps.get(ref.get("configMapRef", {}).get("name", ""), {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = SECRET_FROM_REF
    return argv, env


def _first_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    for d in docs:
        spec = d.get("spec") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or spec
        containers = pod_spec.get("containers")
        if containers:
            return dict(containers[0])
    raise AssertionError("no container in manifest")


def fake_process(
    procfs: Path,
    pid: int,
    argv: Sequence[str],
    *,
    ppid: int = 1,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Write /proc/<pid>/{cmdline,environ,stat,cwd} as the kernel lays them out."""
    d = procfs / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in (env or {}).items()))
    comm = os.path.basename(argv[0])[:15] if argv else "kworker/0:1"
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0\n")
    if cwd is not None:
        (d / "cwd").symlink_to(cwd)
