"""What the webhook tests share: reviews built around pods, pods from the real manifests,
certificates made by the openssl CLI, and the patched pod an answer yields."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import yaml

from skewwatch.check.manifests import POD_SPECS
from skewwatch.webhook.review import Answer
from tests.support.tls import self_signed

# PodSpec fields a KServe ServingRuntime spec shares with the pod KServe makes from it.
POD_SPEC_FIELDS = frozenset(
    {
        "containers", "initContainers", "volumes", "nodeSelector", "tolerations", "affinity",
        "imagePullSecrets", "serviceAccountName", "securityContext", "hostIPC", "schedulerName",
        "priorityClassName",
    }
)  # fmt: skip
# kubernetes-validate 1.37.0 ships schemas 1.25 … 1.37; native sidecars are in all of 1.31 …
# 1.37 (beta from 1.29, stable in 1.33).
K8S_VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0")


def pod_review(
    pod: dict[str, Any],
    namespace: str = "inference",
    operation: str = "CREATE",
    uid: str = "0f3c7a52-5e2b-4c1e-9a53-2d8e4c1b7a10",
    dry_run: bool = False,
) -> dict[str, Any]:
    """A v1 Pod AdmissionReview as the API server sends it (the fields of the real captures)."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta.get("name", "") if isinstance(meta := pod.get("metadata"), dict) else "",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def vllm_pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A small vLLM pod with its model on a PVC under /models."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama", "namespace": "inference", "annotations": dict(annotations or {})},
        "spec": {
            "containers": [
                {"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"},
                {
                    "name": "vllm",
                    "image": "vllm/vllm-openai:v0.8.5",
                    "command": ["vllm", "serve", "/models/llama-3.1-8b"],
                    "args": ["--dtype", "bfloat16"],
                    "volumeMounts": [
                        {"name": "models", "mountPath": "/models"},
                        {"name": "shm", "mountPath": "/dev/shm"},
                    ],
                },
            ],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                {"name": "shm", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }
    pod["spec"].update(spec)
    return pod


def patched(pod: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """``pod`` with the answer's base64 patch applied by the jsonpatch library (a copy)."""
    response = answer.review["response"]
    assert response.get("patchType") == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert ops == answer.patch
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    return result


def validate_k8s(obj: dict[str, Any]) -> None:
    """kubernetes-validate --strict against every version in K8S_VERSIONS (raises on the first)."""
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


validate_pod = validate_k8s


def manifest_pods(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template of a manifest file as a Pod, named ``<kind>-<name>[-<role>]``."""
    out: list[tuple[str, dict[str, Any]]] = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(doc, dict):
            continue
        kind = str(doc.get("kind") or "")
        name = str((doc.get("metadata") or {}).get("name") or "unnamed")
        for spec_path, meta_path, role in POD_SPECS.get(kind, ()):
            spec = _get(doc, spec_path)
            if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
                continue
            meta = _get(doc, meta_path) if meta_path != ("spec",) else {}
            meta = copy.deepcopy(meta) if isinstance(meta, dict) else {}
            meta = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
            meta["name"] = name[:63]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {k: copy.deepcopy(v) for k, v in spec.items() if k in POD_SPEC_FIELDS},
            }
            out.append((f"{kind}-{name}" + (f"-{role}" if role else ""), pod))
    return out


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def make_cert(directory: Path, name: str, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 made by the openssl CLI: (cert, key)."""
    return self_signed(directory, name, cn)
