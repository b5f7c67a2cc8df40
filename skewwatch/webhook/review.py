"""One ``admission.k8s.io/v1`` AdmissionReview in, its answer out: pure, no server.

:func:`read_review` turns the request body into a JSON object or raises
:class:`~skewwatch.webhook.errors.ReviewError` (answered 400: the API server sent something that
is no review at all). :func:`answer` always admits: a Pod CREATE that opted in gets a base64
JSONPatch; anything else — another kind or operation, a v1beta1 review, a review with fields
missing, a pod whose annotations the webhook cannot take — is admitted unchanged, with a
``warnings`` entry where something is wrong rather than merely not ours. The webhook never
blocks a pod: a broken injector must not take the inference fleet down with it.

Opt-in: the pod annotation ``skewwatch.io/inject: "true"``, or a namespace labelled
``skewwatch.io/inject=enabled``. A review carries no namespace labels, so the namespace opt-in
comes from the MutatingWebhookConfiguration: the webhook entry whose ``namespaceSelector``
selects that label calls ``/mutate/namespace-enabled`` (``namespace_enabled=True`` here), the
other entry ``/mutate``. A pod's ``"false"`` opts out of either.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.errors import ReviewError
from skewwatch.webhook.inject import (
    INJECT,
    InjectionProblem,
    agent_container,
    annotations_of,
    find_inference_container,
    has_agent,
    injection_patch,
    pod_problem,
)

API_VERSION = "admission.k8s.io/v1"
MAX_UID_CHARS = 128
MAX_JSON_DEPTH = 100

Outcome = Literal["injected", "skipped", "warned"]


class Status(TypedDict, total=False):
    code: int
    message: str


class AdmissionResponse(TypedDict, total=False):
    """``admission.k8s.io/v1`` AdmissionResponse, the fields this webhook sets."""

    uid: str
    allowed: bool
    patchType: Literal["JSONPatch"]
    patch: str  # base64 of the JSON patch
    warnings: list[str]
    status: Status


class AdmissionReviewOut(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


@dataclass
class Answer:
    """The review to send back and what it did (for logs and counters, never for the reply)."""

    review: AdmissionReviewOut
    outcome: Outcome
    reason: str
    patch: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, d + 1) for x in v]
    return True


def read_review(body: bytes) -> dict[str, Any]:
    """The review object in ``body``; ReviewError naming what is wrong with it otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReviewError(f"request body: not UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ReviewError(
            f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels", limit="max_review_depth"
        ) from None
    except json.JSONDecodeError as e:
        raise ReviewError(f"request body: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, dict):
        raise ReviewError("request body: expected a JSON object (an AdmissionReview)")
    if not _depth_ok(data, MAX_JSON_DEPTH):
        raise ReviewError(
            f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels", limit="max_review_depth"
        )
    request = data.get("request")
    if not isinstance(request, dict):
        raise ReviewError("AdmissionReview: no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID_CHARS:
        raise ReviewError(
            f"AdmissionReview: request.uid must be a string of 1 … {MAX_UID_CHARS} characters",
            limit="max_review_uid" if isinstance(uid, str) and len(uid) > MAX_UID_CHARS else None,
        )
    return data


def _reply(
    data: Mapping[str, Any], outcome: Outcome, reason: str, warnings: list[str] | None = None
) -> Answer:
    request = data["request"]
    version = data.get("apiVersion")
    response: AdmissionResponse = {"uid": request["uid"], "allowed": True}
    if warnings:
        response["warnings"] = warnings
    # Answered in the version asked (a v1beta1 caller reads a v1beta1 reply), v1 when none is given.
    review: AdmissionReviewOut = {
        "apiVersion": version if version in (API_VERSION, "admission.k8s.io/v1beta1") else API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }
    return Answer(review, outcome, reason, dry_run=request.get("dryRun") is True)


def _pod_kind(request: Mapping[str, Any], pod: Any) -> str | None:
    """Why this is not a Pod review we handle, else None."""
    kind = request.get("kind")
    if isinstance(kind, dict):
        if (kind.get("group"), kind.get("kind")) != ("", "Pod"):
            return f"request.kind is {kind.get('group') or 'core'}/{kind.get('kind')}: only Pods are mutated"
        if request.get("subResource"):
            return f"request.subResource is {str(request['subResource'])[:40]}: only Pods are mutated"
    elif kind is not None:
        return "request.kind: expected a GroupVersionKind object"
    if not isinstance(pod, dict):
        return "request.object: missing or not an object"
    if kind is None and pod.get("kind") not in (None, "Pod"):
        return f"request.object.kind is {str(pod.get('kind'))[:40]}: only Pods are mutated"
    return None


def _unusable(data: Mapping[str, Any]) -> str | None:
    """Why this review is none we act on (a warning), else None."""
    version = data.get("apiVersion")
    if version != API_VERSION:
        return f"apiVersion {str(version)[:40]!r}: only {API_VERSION} AdmissionReviews are mutated"
    request = data["request"]
    operation = request.get("operation")
    if operation is None:
        return "request.operation: missing; only CREATE is mutated"
    if operation != "CREATE":
        return f"request.operation is {str(operation)[:20]}: only CREATE is mutated"
    return _pod_kind(request, request.get("object"))


def _namespace(request: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return str(request.get("namespace") or meta.get("namespace") or "")


def answer(data: Mapping[str, Any], config: WebhookConfig, namespace_enabled: bool = False) -> Answer:
    """The reply to one review read by :func:`read_review`; never raises for what it holds."""
    problem = _unusable(data)
    if problem is not None:
        return _reply(data, "warned", problem, [f"skewwatch: {problem}; admitted unchanged"])
    request = data["request"]
    pod: dict[str, Any] = request["object"]
    namespace = _namespace(request, pod)
    if namespace and config.excluded(namespace):
        return _reply(data, "skipped", f"namespace {namespace} is excluded")
    opt = annotations_of(pod).get(INJECT)
    if opt == "false":
        return _reply(data, "skipped", f"{INJECT}: false")
    if opt != "true" and not namespace_enabled:
        return _reply(data, "skipped", "not opted in")
    shape = pod_problem(pod)
    if shape is not None:
        return _reply(data, "warned", shape, [f"skewwatch: {shape}; admitted without the agent"])
    if has_agent(pod):
        return _reply(data, "skipped", "the agent is already there")
    try:
        target = find_inference_container(pod)
        plan = agent_container(pod, target, config)
    except InjectionProblem as e:
        return _reply(data, "warned", str(e), [f"skewwatch: {e}; admitted without the agent"])
    patch = injection_patch(pod, plan)
    out = _reply(data, "injected", f"container {target.name} ({target.how}), {plan.mode} sidecar")
    out.patch = patch
    out.review["response"]["patchType"] = "JSONPatch"
    out.review["response"]["patch"] = base64.b64encode(json.dumps(patch).encode()).decode("ascii")
    return out
