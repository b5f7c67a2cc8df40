"""Golden files: the canonical facts the agent derives from each real manifest and metrics capture.

Reviewed outputs under ``tests/golden/agent/``; ``pytest --update-goldens`` rewrites them. The
redaction salt is fixed here so digests are stable; nothing in these outputs depends on time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.engines import GENERIC, detect, parse_args, redact_with
from agent.observations import ObservationWindow, extract
from agent.promtext import parse_metrics_text
from agent.sources.runtime_metrics import interpret_families
from skewwatch.redact import Redactor
from tests.support.fake_processes import SECRET_FROM_REF
from tests.support.manifests import EXPECTED, SKIPPED, manifest_command
from tests.support.metrics import doubled

REDACT = redact_with(Redactor("golden-salt"))
CAPTURES = [
    "dcgm-exporter__datadog__tesla-t4.txt",
    "ray-serve-vllm__datadog__llama-3.1-70b-fp8__ray_vllm-prefix.txt",
    "sglang__datadog__v0.5.10.post1__opt-125m.txt",
    "tgi__datadog-hugging_face_tgi__payload.txt",
    "vllm-v0-plus-v1-families__datadog__opt-125m__5b8d70d.txt",
    "vllm-v0__datadog__opt-125m__e99474c.txt",
]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_manifest_facts_match_the_reviewed_golden(
    name: str, real_fixtures: Path, golden: Callable[[str, object], None]
) -> None:
    argv, env = manifest_command(real_fixtures / "manifests" / name)
    spec = detect(argv, env=env) or GENERIC
    parsed = parse_args(spec, argv, env, REDACT)
    facts = {
        s.key: {"value": s.value, "method": s.method, "detail": s.detail}
        for s in sorted(parsed.settings, key=lambda s: s.key)
    }
    out = {"engine": spec.name, "facts": facts, "problems": parsed.problems}
    assert SECRET_FROM_REF not in repr(out)
    golden(f"agent/manifests/{name}.json", out)


def test_every_manifest_has_a_golden_or_a_reason(real_fixtures: Path) -> None:
    assert {p.name for p in (real_fixtures / "manifests").iterdir()} == set(EXPECTED) | SKIPPED


@pytest.mark.parametrize("name", CAPTURES)
def test_metrics_capture_facts_and_window_match_the_reviewed_golden(
    name: str, real_fixtures: Path, golden: Callable[[str, object], None]
) -> None:
    families = parse_metrics_text((real_fixtures / "metrics" / name).read_text(encoding="utf-8"))
    result = interpret_families(families)
    facts = {
        f.key: {"value": f.value, "method": f.provenance.method, "detail": f.provenance.detail}
        for f in sorted(result.facts.facts, key=lambda f: f.key)
    }
    observations: dict[str, object] = {}
    if result.engine is not None:
        # The window from the capture to the capture with every cumulative value doubled (10 s).
        window = ObservationWindow()
        window.update(
            ("g", "g"), extract(families, result.prefix, result.engine.metrics, 0.0), result.engine.metrics
        )
        obs, _ = window.update(
            ("g", "g"),
            extract(doubled(families), result.prefix, result.engine.metrics, 10.0),
            result.engine.metrics,
        )
        observations = {o.name: {"value": round(o.value, 9), "unit": o.unit} for o in obs}
    engine = result.engine.name if result.engine else None
    out = {"engine": engine, "facts": facts, "observations": observations, "notes": result.notes}
    golden(f"agent/metrics/{name}.json", out)


def test_every_capture_has_a_golden(real_fixtures: Path) -> None:
    assert sorted(p.name for p in (real_fixtures / "metrics").glob("*.txt")) == CAPTURES
