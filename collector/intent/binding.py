"""Which intents apply to a workload, and why. Pure.

In order of precedence, a ModelSpec binds to a workload when:

1. a replica carries the pod annotation ``skewwatch.io/modelspec: <metadata.name>``;
2. a SkewPolicy whose bindings select the workload (namespace, workload glob, label selector)
   names it in ``spec.modelSpec``;
3. with neither, its ``identity.model.id`` equals the served model name (``runtime.served_model_name``,
   else ``model.id``; a trailing path segment counts, so ``meta-llama/Llama-3.1-8B`` serves id
   ``Llama-3.1-8B``).

A SkewPolicy applies when its bindings select the workload, or — without bindings — wherever its
``spec.modelSpec`` is bound. Labels are the majority replica's ``orchestration.labels.*`` facts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from collector.domain.identity import split_workload
from collector.domain.model import Replica
from collector.intent.mapping import conforms
from collector.intent.model import MODELSPEC_ANNOTATION, Intent, ModelSpec, SkewPolicy

LABEL_PREFIX = "orchestration.labels."
ANNOTATION_KEY = f"orchestration.annotations.{MODELSPEC_ANNOTATION}"


@dataclass(frozen=True)
class Bound:
    model_specs: tuple[ModelSpec, ...] = ()
    policies: tuple[SkewPolicy, ...] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)  # "Kind/name" -> why it binds

    @property
    def intents(self) -> tuple[Intent, ...]:
        return (*self.policies, *self.model_specs)


def labels_of(replicas: Sequence[Replica]) -> dict[str, str]:
    """Labels every replica agrees on (a label only some carry does not select the workload)."""
    if not replicas:
        return {}
    common: dict[str, str] | None = None
    for r in replicas:
        mine = {k[len(LABEL_PREFIX) :]: str(v) for k, v in r.facts.items() if k.startswith(LABEL_PREFIX)}
        common = mine if common is None else {k: v for k, v in common.items() if mine.get(k) == v}
    return common or {}


def served_names(replicas: Sequence[Replica]) -> list[str]:
    names: Counter[str] = Counter()
    for r in replicas:
        for key in ("runtime.served_model_name", "model.id"):
            value = r.facts.get(key)
            if isinstance(value, str) and value:
                names[value] += 1
                break
    return [n for n, _ in names.most_common()]


def bind(intents: Sequence[Intent], workload: str, replicas: Sequence[Replica]) -> Bound:
    namespace, kind, name = split_workload(workload)
    labels = labels_of(replicas)
    specs = {i.name: i for i in intents if isinstance(i, ModelSpec)}
    policies = [i for i in intents if isinstance(i, SkewPolicy)]
    reasons: dict[str, str] = {}
    chosen: dict[str, ModelSpec] = {}

    annotated = sorted({str(r.facts[ANNOTATION_KEY]) for r in replicas if r.facts.get(ANNOTATION_KEY)})
    for spec_name in annotated:
        if spec_name in specs:
            chosen[spec_name] = specs[spec_name]
            reasons[f"ModelSpec/{spec_name}"] = f"pod annotation {MODELSPEC_ANNOTATION}={spec_name}"
        else:
            reasons[f"ModelSpec/{spec_name}"] = (
                f"pod annotation {MODELSPEC_ANNOTATION} names an unknown ModelSpec"
            )
    selected = [p for p in policies if p.bindings and p.binds(namespace, kind, name, labels)]
    if not chosen:
        for p in selected:
            if p.model_spec and p.model_spec in specs:
                chosen[p.model_spec] = specs[p.model_spec]
                reasons[f"ModelSpec/{p.model_spec}"] = f"SkewPolicy {p.name} bindings"
    if not chosen:
        served = served_names(replicas)
        for spec in specs.values():
            if spec.model_id and any(conforms("model_id", spec.model_id, s) for s in served):
                chosen[spec.name] = spec
                reasons[f"ModelSpec/{spec.name}"] = (
                    f"identity.model.id {spec.model_id} is the served model name"
                )
    applied: list[SkewPolicy] = []
    for p in policies:
        if p in selected:
            applied.append(p)
            reasons[f"SkewPolicy/{p.name}"] = "bindings select the workload"
        elif not p.bindings and p.model_spec and p.model_spec in chosen:
            applied.append(p)
            reasons[f"SkewPolicy/{p.name}"] = f"accompanies ModelSpec {p.model_spec}"
    return Bound(
        model_specs=tuple(sorted(chosen.values(), key=lambda s: s.name)),
        policies=tuple(sorted(applied, key=lambda p: p.name)),
        reasons=reasons,
    )
