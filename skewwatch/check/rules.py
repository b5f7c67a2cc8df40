"""The pre-deploy rules: what a manifest leaves open to skew, and where it contradicts the intent.

Each rule is a row of :data:`RULES` (id, name, default severity, what it catches, why it
matters, how to fix it: docs/check.md is this table in prose) and a function over one
:class:`~skewwatch.check.derive.Derived` container. The intent rule (SW100) does not judge
anything itself: it runs the collector's drift engine (:func:`collector.drift.engine.evaluate`,
which calls :func:`collector.intent.evaluate.evaluate_intents`) on the container's derived facts,
exactly as the collector evaluates a live replica, and turns each drift into a finding.
"""

# ruff: noqa: E501  (a data table: one rule per row reads better than wrapped strings)

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent.engines import REVISION
from collector.domain.model import Replica
from collector.drift.engine import Evaluation, WorkloadInput, evaluate
from collector.intent.binding import ANNOTATION_KEY, bind
from collector.intent.model import Intent, ModelSpec
from skewwatch.check.derive import Derived, gpu_limit
from skewwatch.core.image import image_reference
from skewwatch.redact import Redactor


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str  # critical | high | medium | low | info
    what: str
    why: str
    fix: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("SW001", "image-mutable-tag", "high",
             "the inference image is referenced by a mutable tag (`:latest` or no tag) and no `@sha256:` digest",
             "the tag can move between two rollouts: replicas started a day apart run different engines",
             "reference the image by digest (`image: repo@sha256:…`) or at least by an immutable version tag"),
        Rule("SW002", "model-revision-unpinned", "high",
             "the model is a Hugging Face hub id and no revision is given",
             "the hub's `main` moves: weights, tokenizer or chat template change under the same name",
             "pass the commit: vLLM/TGI `--revision <sha>` (TGI also `REVISION`), or serve a downloaded copy by path"),
        Rule("SW003", "dtype-implicit", "medium",
             "the compute dtype is left to the engine (not set, or `auto`)",
             "`auto` follows the checkpoint and the engine version's rule (vLLM 0.9.1 changed float32 handling)",
             "set the dtype explicitly: `--dtype bfloat16` (TGI: `--dtype` / `DTYPE`)"),
        Rule("SW004", "max-model-len-implicit", "medium",
             "the maximum context length is left to the engine (not set, or `auto`)",
             "it then comes from the checkpoint's config and the GPU memory left: another GPU or model revision changes it",
             "set it: vLLM `--max-model-len`, SGLang `--context-length`, TGI `--max-total-tokens`"),
        Rule("SW005", "gpu-class-unconstrained", "high",
             "the container requests GPUs (or the intent names a GPU class) but no nodeSelector or required node "
             "affinity constrains the GPU product label (`nvidia.com/gpu.product`)",
             "replicas land on whatever GPU is free: a smaller class changes memory, dtype support and speed",
             "add `nodeSelector: {nvidia.com/gpu.product: <product>}` or a required node affinity on that label"),
        Rule("SW006", "gpus-cannot-fit-parallelism", "critical",
             "the GPU limit (`nvidia.com/gpu`) is smaller than tensor-parallel x pipeline-parallel size",
             "the engine cannot start its workers, or starts fewer than the intent was validated with",
             "request tensor x pipeline GPUs per replica, or lower the parallelism to what is requested"),
        Rule("SW100", "intent-contradiction", "high",
             "an arg, env or manifest field contradicts the ModelSpec / SkewPolicy (the collector's own intent check)",
             "what would run is not what was declared, validated or benchmarked",
             "change the manifest (the hint names the flag) or, if the change is intended, the intent"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    file: str
    line: int
    kind: str
    name: str
    container: str
    hint: str
    key: str = ""
    expected: Any = None
    actual: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": RULES[self.rule].name,
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "object": {"kind": self.kind, "name": self.name, "container": self.container},
            "key": self.key or None,
            "expected": self.expected,
            "actual": self.actual,
            "hint": self.hint,
        }


@dataclass
class TargetResult:
    """One inference container: its findings, the intent's row checks and what could not be read."""

    derived: Derived
    findings: list[Finding] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _finding(d: Derived, rule: str, message: str, line: int, hint: str = "", **kw: Any) -> Finding:
    r = RULES[rule]
    v = d.view
    return Finding(
        rule, kw.pop("severity", r.severity), message, v.obj.file, line, v.obj.kind, v.obj.name, v.name,
        hint or r.fix, **kw,
    )  # fmt: skip


def rule_image(d: Derived) -> list[Finding]:
    image = d.view.image
    if not image:
        return []
    _, tag, digest = image_reference(image)
    if digest or (tag is not None and tag != "latest"):
        return []
    why = "the tag latest" if tag == "latest" else "no tag (Kubernetes pulls latest)"
    shown = str(d.value("orchestration.image"))
    return [
        _finding(
            d, "SW001", f"image {shown} has {why} and no digest", d.view.image_line,
            key="orchestration.image", actual=shown,
        )
    ]  # fmt: skip


def _flags_for(d: Derived, key: str) -> str:
    spellings = [f for s in d.spec.settings if s.key == key for f in (*s.flags[:1], *s.env[:1])]
    return " or ".join(f"`{f}`" for f in spellings)


def rule_revision(d: Derived) -> list[Finding]:
    model = d.value("model.id")
    if not isinstance(model, str) or d.value(REVISION) not in (None, ""):
        return []
    flags = _flags_for(d, REVISION)
    hint = (
        f"pin the commit with {flags} <sha>"
        if flags
        else f"{d.spec.name}: the agent's table has no revision flag; serve a copy downloaded at a fixed commit by path"
    )
    return [
        _finding(
            d, "SW002", f"model {model} is a hub id with no revision: it follows the hub's main branch",
            d.line_of("model.id"), hint, key="model.revision", actual=None,
        )
    ]  # fmt: skip


def _implicit(d: Derived, key: str, rule: str, what: str) -> list[Finding]:
    setting = d.settings.get(key) or d.raw(key)
    value = None if setting is None else setting.value
    if (
        setting is not None
        and setting.method != "default"
        and str(value).strip().lower() not in ("auto", "-1")
    ):
        return []
    flags = _flags_for(d, key)
    if setting is None:
        said = "not set"
    elif setting.method == "default":
        said = f"not set ({d.spec.name} default {value})"
    else:
        said = f"{value} ({setting.detail})"
    hint = f"set it with {flags}" if flags else RULES[rule].fix
    line = d.view.line if setting is None or setting.method == "default" else d.line_of_detail(setting.detail)
    return [_finding(d, rule, f"{what} is implicit: {said}", line, hint, key=key, actual=value)]


def rule_dtype(d: Derived) -> list[Finding]:
    return _implicit(d, "runtime.dtype", "SW003", "dtype")


def rule_max_len(d: Derived) -> list[Finding]:
    return _implicit(d, "runtime.max_model_len", "SW004", "max model length")


def _intent_gpu_type(bound: Sequence[Intent]) -> str | None:
    for i in bound:
        if isinstance(i, ModelSpec) and i.get("spec.runtime.accelerator.type"):
            return str(i.get("spec.runtime.accelerator.type"))
    return None


def rule_gpu_class(d: Derived, bound: Sequence[Intent]) -> list[Finding]:
    if d.view.gpu_selector is not None:
        return []
    gpus = gpu_limit(d.replica.facts)
    wanted = _intent_gpu_type(bound)
    if not gpus and wanted is None:
        return []
    asks = f"requests {gpus} GPU(s)" if gpus else "requests no GPU resource"
    intent = f"; the intent wants {wanted}" if wanted else ""
    hint = f"add nodeSelector nvidia.com/gpu.product: <the {wanted or 'intended'} product name>"
    return [
        _finding(
            d, "SW005", f"{asks} with no GPU product constraint{intent}", d.view.placement_line, hint,
            key="orchestration.node_gpu_product", expected=wanted,
        )
    ]  # fmt: skip


def _pinned(bound: Sequence[Intent], name: str) -> int | None:
    for i in bound:
        if i.kind == "SkewPolicy":
            value = ((i.data.get("spec") or {}).get("pins") or {}).get("runtime", {}).get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _int(value: Any, default: int = 1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def rule_gpu_fit(d: Derived, bound: Sequence[Intent]) -> list[Finding]:
    tp = _pinned(bound, "tensorParallelSize") or _int(d.value("runtime.tensor_parallel_size"))
    pp = _pinned(bound, "pipelineParallelSize") or _int(d.value("runtime.pipeline_parallel_size"))
    need = tp * pp
    gpus = gpu_limit(d.replica.facts)
    if (gpus is None and need <= 1) or (gpus is not None and gpus >= need):
        return []
    have = "no GPU limit" if gpus is None else f"nvidia.com/gpu limit {gpus}"
    return [
        _finding(
            d, "SW006", f"{have} cannot fit tensor-parallel {tp} x pipeline-parallel {pp} = {need} GPUs",
            d.view.resources_line, f"set resources.limits nvidia.com/gpu: {need}",
            key="orchestration.resources.limits.nvidia.com/gpu", expected=need, actual=gpus,
        )
    ]  # fmt: skip


def evaluate_replica(replica: Replica, workload: str, intents: Sequence[Intent]) -> tuple[Evaluation, str]:
    """The drift engine on one replica, as the collector runs it on a live one.

    Bound by the collector's own rules (annotation, SkewPolicy bindings, served model name);
    when none binds and ``--intent`` holds exactly one ModelSpec, that one is bound (the user
    named it for this target), through the same pod annotation a pod would carry.
    """
    note = ""
    specs = [i for i in intents if isinstance(i, ModelSpec)]
    if not bind(intents, workload, [replica]).model_specs and len(specs) == 1:
        replica = replace(replica, facts={**replica.facts, ANNOTATION_KEY: specs[0].name})
        note = f"ModelSpec {specs[0].name} bound because --intent names only it"
    return evaluate(WorkloadInput(workload, [replica], intents)), note


def intent_evaluation(d: Derived, intents: Sequence[Intent]) -> tuple[Evaluation, str]:
    return evaluate_replica(d.replica, d.view.obj.workload, intents)


def rule_intent(d: Derived, evaluation: Evaluation) -> list[Finding]:
    out = []
    for drift in evaluation.drifts:
        out.append(
            _finding(
                d, "SW100", drift.message, d.line_of(drift.key), drift.hint or RULES["SW100"].fix,
                severity=drift.severity or RULES["SW100"].severity, key=drift.key,
                expected=drift.expected, actual=drift.actual,
            )
        )  # fmt: skip
    return out


SIMPLE_RULES: tuple[Callable[[Derived], list[Finding]], ...] = (
    rule_image,
    rule_revision,
    rule_dtype,
    rule_max_len,
)


def check_target(d: Derived, intents: Sequence[Intent], redactor: Redactor) -> TargetResult:
    """Every rule on one inference container. An intent's own values pass the agent's redaction
    too before they are shown: a token written into a ModelSpec is no more printable than one in
    the manifest."""
    evaluation, note = intent_evaluation(d, intents)
    bound = evaluation.bound.intents
    result = TargetResult(d, bound=dict(evaluation.bound.reasons))
    if note:
        result.notes.append(note)
    result.notes.extend(d.view.notes)
    result.notes.extend(d.problems)
    if d.view.implied:
        result.notes.append(f"command implied: {d.view.implied}")
    for simple in SIMPLE_RULES:
        result.findings.extend(simple(d))
    result.findings.extend(rule_gpu_class(d, bound))
    result.findings.extend(rule_gpu_fit(d, bound))
    result.findings.extend(
        replace(f, expected=_shown(redactor, f.key, f.expected)) for f in rule_intent(d, evaluation)
    )
    result.checks = [
        shown_check(c.as_dict(), redactor) for c in evaluation.checks if c.status != "documentary"
    ]
    return result


def _shown(redactor: Redactor, key: str, value: Any) -> Any:
    return redactor.tree(key.rsplit(".", 1)[-1], value)


def shown_check(check: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """An intent row check as it may be printed: the intent's expected value redacted."""
    return {**check, "expected": _shown(redactor, str(check["field"]), check["expected"])}
