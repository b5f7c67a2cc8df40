"""Every real AdmissionReview capture and every real manifest's pod template, answered by the
webhook and compared with reviewed goldens under ``tests/golden/webhook/``
(``pytest --update-goldens`` rewrites them). Each patch is applied with the jsonpatch library and
the patched pod validated with ``kubernetes-validate --strict`` (support.K8S_VERSIONS); sending
the patched pod again yields no patch (``reinvocationPolicy: IfNeeded`` is safe)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.review import answer, read_review
from tests.support.paths import REAL_FIXTURES
from tests.webhook.support import manifest_pods, patched, pod_review, validate_pod

SKIPPED_MANIFESTS = {
    # Not YAML until Helm renders it; the rendered production-stack manifests cover its shape.
    "production-stack__helm-template__deployment-vllm-multi.yaml.tpl",
}
ADMISSION = sorted(p.name for p in (REAL_FIXTURES / "admission").glob("*.json"))
MANIFESTS = sorted(
    p.name for p in (REAL_FIXTURES / "manifests").glob("*") if p.is_file() and p.name not in SKIPPED_MANIFESTS
)
CONFIG = WebhookConfig()


def _result(data: dict[str, Any], namespace_enabled: bool) -> dict[str, Any]:
    """The answer, its patch decoded (a golden shows the operations, not base64) and the outcome."""
    a = answer(data, CONFIG, namespace_enabled=namespace_enabled)
    review = json.loads(json.dumps(a.review))
    patch = review["response"].pop("patch", None)
    if patch is not None:
        assert a.patch, "a base64 patch with no operations"
    return {"outcome": a.outcome, "reason": a.reason, "review": review, "patch": a.patch}


def _injects_once(data: dict[str, Any], namespace_enabled: bool) -> dict[str, Any] | None:
    """The patched pod when the review injects, validated and checked to be left alone next time."""
    a = answer(data, CONFIG, namespace_enabled=namespace_enabled)
    if a.outcome != "injected":
        return None
    pod = patched(data["request"]["object"], a)
    validate_pod({"apiVersion": "v1", "kind": "Pod", **pod})
    data = json.loads(json.dumps(data))
    data["request"]["object"] = pod
    again = answer(data, CONFIG, namespace_enabled=namespace_enabled)
    assert again.outcome == "skipped" and "patch" not in again.review["response"], again.reason
    return pod


@pytest.mark.parametrize("name", ADMISSION)
@pytest.mark.parametrize("namespace_enabled", [False, True], ids=["mutate", "namespace-enabled"])
def test_real_admission_review_answer_matches_the_reviewed_golden(
    name: str, namespace_enabled: bool, real_fixtures: Path, golden: Callable[[str, object], None]
) -> None:
    data = read_review((real_fixtures / "admission" / name).read_bytes())
    out = _result(data, namespace_enabled)
    assert out["review"]["response"]["uid"] == data["request"]["uid"]
    assert out["review"]["response"]["allowed"] is True
    out["patched_pod"] = _injects_once(data, namespace_enabled)
    suffix = "namespace-enabled" if namespace_enabled else "mutate"
    golden(f"webhook/admission/{name.removesuffix('.json')}.{suffix}.json", out)


def test_the_real_v1_pod_create_is_injected_when_its_namespace_opted_in(real_fixtures: Path) -> None:
    name = "salesforce-generic-sidecar-injector__admissionreview-v1-pod-create.json"
    data = read_review((real_fixtures / "admission" / name).read_bytes())
    assert answer(data, CONFIG).outcome == "skipped"  # no skewwatch annotation: not opted in
    pod = _injects_once(data, namespace_enabled=True)
    assert pod is not None and pod["spec"]["shareProcessNamespace"] is True


@pytest.mark.parametrize("name", MANIFESTS)
def test_real_manifest_pod_injection_matches_the_reviewed_golden(
    name: str, real_fixtures: Path, golden: Callable[[str, object], None]
) -> None:
    pods = manifest_pods(real_fixtures / "manifests" / name)
    assert pods, f"{name}: no pod template found"
    out: dict[str, Any] = {}
    for label, pod in pods:
        pod["metadata"].setdefault("annotations", {})["skewwatch.io/inject"] = "true"
        data = pod_review(pod)
        result = _result(data, namespace_enabled=False)
        assert result["outcome"] == "injected", result["reason"]
        result["patched_pod"] = _injects_once(data, namespace_enabled=False)
        out[label] = result
    golden(f"webhook/manifests/{name}.json", out)


def test_every_real_capture_has_a_golden_or_a_reason(real_fixtures: Path) -> None:
    assert ADMISSION and MANIFESTS, "no real captures listed"
    for p in (real_fixtures / "manifests").iterdir():
        assert p.name in MANIFESTS or p.name in SKIPPED_MANIFESTS or not p.is_file(), p.name
