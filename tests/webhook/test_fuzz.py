"""Hostile reviews: whatever JSON a review holds, the answer admits the pod (with or without a
patch, never an exception), and a patch it gives applies to the pod it was given."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.review import answer
from tests.webhook.support import pod_review, vllm_pod

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Pod-shaped keys, so the fuzzing reaches the injection rather than stopping at the first check.
KEYS = st.sampled_from(
    ["name", "image", "command", "args", "env", "value", "volumeMounts", "mountPath", "subPath", "volumes",
     "containers", "initContainers", "securityContext", "runAsUser", "annotations", "metadata", "spec",
     "hostPID", "skewwatch.io/inject", "skewwatch.io/container", "skewwatch.io/model-volumes"]
)  # fmt: skip
POD_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 70000)
    | st.sampled_from(["true", "vllm", "/models", "vllm serve /models/x"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


def _check(data: dict[str, Any], namespace_enabled: bool) -> None:
    a = answer(data, WebhookConfig(), namespace_enabled=namespace_enabled)
    assert a.review["response"]["allowed"] is True
    if a.patch:
        jsonpatch.apply_patch(copy.deepcopy(data["request"]["object"]), a.patch)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(request=st.dictionaries(st.text(max_size=12), JSON, max_size=6), namespace_enabled=st.booleans())
def test_any_request_object_is_answered(request: dict[str, Any], namespace_enabled: bool) -> None:
    _check({"apiVersion": "admission.k8s.io/v1", "request": {**request, "uid": "u"}}, namespace_enabled)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pod=st.dictionaries(KEYS, POD_JSON, max_size=4), container=st.dictionaries(KEYS, POD_JSON, max_size=6))
def test_any_pod_shape_is_answered_and_its_patch_applies(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    base = vllm_pod({"skewwatch.io/inject": "true"})
    base["spec"]["containers"].append(container)
    base["spec"].update(pod.get("spec") if isinstance(pod.get("spec"), dict) else {})
    base["metadata"].update(pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {})
    _check(pod_review(base), namespace_enabled=True)
    _check(pod_review({**pod, "spec": {"containers": [container]}}), namespace_enabled=True)
