"""Effective values: what an engine actually runs with where a setting was left unset or ``auto``.

Pure. Given the merged facts of one snapshot (every source's, so the command line's
``--dtype auto`` meets the model files' ``model.config.torch_dtype``), apply the engine's
:class:`~agent.engines.base.Derivation` rules in table order and return the facts they resolve,
with provenance ``derived`` naming the rule, the fact it read and what had been requested. A rule
never overrides a concrete value, whoever reported it: only absence or ``auto`` (also when the
runtime itself reports ``cache_dtype="auto"``, which means "the model dtype", not a dtype).
A rule whose source fact is missing leaves the requested value standing: "auto" honestly says
the agent could not resolve it.

Rules and defaults that changed between releases carry the range they hold for
(``since``/``until``) and apply only where the engine's reported ``runtime.version`` lies in it;
with no version known, a rule of the newest releases (no ``until``) applies and a versioned
default does not (the runtime's own report, when there is one, already says the value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.engines.base import Derivation, EngineSpec, VersionedDefault
from agent.engines.parse import ValueProblem, convert_typed
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Fact, FactValue, make_fact

SOURCE = "effective"


def _engine(facts: Mapping[str, Fact], engines: tuple[EngineSpec, ...]) -> EngineSpec | None:
    fact = facts.get("runtime.engine")
    if fact is None:
        return None
    return next((e for e in engines if e.name == fact.value), None)


_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def release(version: object) -> tuple[int, int, int] | None:
    """``"0.32.0"`` -> (0, 32, 0); ``"0.6.3.post1"``, ``"0.11.0rc2"`` -> their release; else None."""
    m = _RELEASE.match(version) if isinstance(version, str) else None
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def in_range(version: tuple[int, int, int] | None, since: str | None, until: str | None) -> bool:
    """Whether ``version`` lies in [since, until); unknown: only a range open towards new releases."""
    if version is None:
        return until is None
    low, high = release(since), release(until)
    return (low is None or version >= low) and (high is None or version < high)


def _holds(condition: tuple[str, str, float] | None, facts: Mapping[str, Fact]) -> bool:
    if condition is None:
        return True
    key, op, number = condition
    fact = facts.get(key)
    raw = fact.value if fact is not None else None
    try:
        value = float(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else None
    except ValueError:
        value = None
    if value is None:
        return False  # unknown: the condition is not known to hold
    return value < number if op == "<" else value >= number


def _applies(rule: Derivation, current: Fact | None) -> bool:
    if current is None:
        return None in rule.when
    return current.value in rule.when and current.value is not None


def versioned_defaults(
    spec: EngineSpec, facts: Mapping[str, Fact], version: tuple[int, int, int] | None
) -> list[Fact]:
    """The defaults of ``spec`` known for ``version``, for keys no source reported."""
    out: list[Fact] = []
    rules: tuple[VersionedDefault, ...] = spec.versioned_defaults
    for rule in rules:
        if rule.key in facts or version is None or not in_range(version, rule.since, rule.until):
            continue
        if any(f.key == rule.key for f in out):
            continue
        detail = f"{spec.name} {'.'.join(map(str, version))} default"
        if rule.source:
            detail += f" ({rule.source})"
        try:
            out.append(make_fact(rule.key, rule.value, SOURCE, "default", detail))
        except FactError:
            continue
    return out


def derive_effective(facts: Mapping[str, Fact], engines: tuple[EngineSpec, ...] | None = None) -> list[Fact]:
    """The facts the engine's rules resolve from ``facts``; empty when nothing applies."""
    if engines is None:
        from agent.engines import ENGINES  # the registry imports this package's modules

        engines = ENGINES
    spec = _engine(facts, engines)
    if spec is None:
        return []
    view: dict[str, Fact] = dict(facts)
    version_fact = view.get("runtime.version")
    version = release(version_fact.value) if version_fact is not None else None
    out: list[Fact] = versioned_defaults(spec, view, version)
    view.update((f.key, f) for f in out)
    for rule in spec.derivations:
        current = view.get(rule.key)
        source = view.get(rule.source)
        if not _applies(rule, current) or source is None or source.value in (None, "auto"):
            continue
        if not in_range(version, rule.since, rule.until) or not _holds(rule.only_if, view):
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
