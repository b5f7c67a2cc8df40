"""Effective values: what an engine actually runs with where a setting was left unset or ``auto``.

Pure. Given the merged facts of one snapshot (every source's, so the command line's
``--dtype auto`` meets the model files' ``model.config.torch_dtype``), apply the engine's
:class:`~agent.engines.base.Derivation` rules in table order and return the facts they resolve,
with provenance ``derived`` naming the rule, the fact it read and what had been requested. A rule
never overrides a concrete value, whoever reported it: only absence or ``auto`` (also when the
runtime itself reports ``cache_dtype="auto"``, which means "the model dtype", not a dtype).
A rule whose source fact is missing leaves the requested value standing: "auto" honestly says
the agent could not resolve it.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.engines.base import Derivation, EngineSpec
from agent.engines.parse import ValueProblem, convert_typed
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Fact, FactValue, make_fact

SOURCE = "effective"


def _engine(facts: Mapping[str, Fact], engines: tuple[EngineSpec, ...]) -> EngineSpec | None:
    fact = facts.get("runtime.engine")
    if fact is None:
        return None
    return next((e for e in engines if e.name == fact.value), None)


def _applies(rule: Derivation, current: Fact | None) -> bool:
    if current is None:
        return None in rule.when
    return current.value in rule.when and current.value is not None


def derive_effective(facts: Mapping[str, Fact], engines: tuple[EngineSpec, ...] | None = None) -> list[Fact]:
    """The facts the engine's rules resolve from ``facts``; empty when nothing applies."""
    if engines is None:
        from agent.engines import ENGINES  # the registry imports this package's modules

        engines = ENGINES
    spec = _engine(facts, engines)
    if spec is None:
        return []
    view: dict[str, Fact] = dict(facts)
    out: list[Fact] = []
    for rule in spec.derivations:
        current = view.get(rule.key)
        source = view.get(rule.source)
        if not _applies(rule, current) or source is None or source.value in (None, "auto"):
            continue
        raw: FactValue = source.value
        mapped = rule.mapping.get(str(raw).lower(), raw) if isinstance(raw, str) else raw
        try:
            value = convert_typed(rule.type, mapped)
            if rule.type == "dtype" and isinstance(value, str):
                value = rule.mapping.get(value, value)
        except ValueProblem:
            continue  # a source value of the wrong shape (a list for a dtype) resolves nothing
        requested = (
            f"; requested {current.value!r} ({current.provenance.method}: {current.provenance.detail})"
            if current is not None
            else ""
        )
        detail = f"{spec.name} rule, {rule.rule}: {rule.source}={raw!r}{requested}"
        try:
            fact = make_fact(rule.key, value, SOURCE, "derived", detail)
        except FactError:
            continue
        view[rule.key] = fact
        out.append(fact)
    return out
