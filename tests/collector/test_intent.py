"""ModelSpec (published v0.1 schema) and SkewPolicy documents: loading, validation errors, binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.domain.model import Replica
from collector.errors import IntentError
from collector.intent import modelspec_schema
from collector.intent.binding import bind
from collector.intent.directory import IntentRegistry
from collector.intent.mapping import MODELSPEC_ROWS
from collector.intent.model import ModelSpec, SkewPolicy, parse_documents
from collector.intent.versions import in_range

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "intents"
SHAPES = sorted(p.name for p in FIXTURES.glob("0*.modelspec.yaml"))


def load(name: str) -> list[ModelSpec | SkewPolicy]:
    path = FIXTURES / name
    return parse_documents(path.read_bytes(), str(path.relative_to(FIXTURES)))


def errors(name: str) -> IntentError:
    with pytest.raises(IntentError) as info:
        load(f"bad/{name}")
    return info.value


def test_every_example_shape_is_there() -> None:
    wanted = ["minimal", "artifacts", "serving", "batching", "scaling", "observability", "dependencies",
              "governance", "full-production"]  # fmt: skip
    assert [s.split("-", 1)[1].removesuffix(".modelspec.yaml") for s in SHAPES] == wanted


@pytest.mark.parametrize("name", SHAPES)
def test_each_modelspec_shape_loads_unmodified(name: str) -> None:
    (spec,) = load(name)
    assert isinstance(spec, ModelSpec)
    assert spec.data["apiVersion"] == "piqc.ai/v1alpha1"
    raw = (FIXTURES / name).read_text()
    assert spec.name in raw and spec.model_id in raw


def test_full_production_keeps_every_section_and_field_as_written() -> None:
    (spec,) = load("08-full-production.modelspec.yaml")
    assert isinstance(spec, ModelSpec)
    assert set(spec.data["spec"]) == {"identity", "runtime", "operations", "pipeline", "governance"}
    assert spec.get("spec.runtime.accelerator.count") == 4
    assert spec.get("spec.operations.scaling.targetLatencyMsP95") == 800
    assert spec.get("spec.pipeline.dependencies")[0]["interface"]["maxLatencyMs"] == 50
    assert spec.line("spec.runtime.batch.maxBatchSize") == 22  # flow mappings: the key's own line


def test_unknown_field_is_rejected_with_file_line_and_path() -> None:
    (issue,) = errors("unknown-field.yaml").issues
    assert (issue.file, issue.line, issue.path) == (
        "bad/unknown-field.yaml",
        12,
        "spec.runtime.batch.maxBatchSise",
    )
    assert "unknown field 'maxBatchSise'" in issue.message and "maxBatchSize" in issue.message


def test_upstream_example_layout_is_rejected_and_points_to_pipeline_dependencies() -> None:
    (issue,) = errors("upstream-example-layout.yaml").issues
    assert issue.path == "spec.dependencies" and issue.line == 10
    assert "spec.pipeline.dependencies" in issue.message


def test_every_schema_violation_in_a_document_is_reported() -> None:
    found = {(i.path, i.line) for i in errors("wrong-types.yaml").issues}
    assert found == {
        ("spec.identity.model", 7),  # framework missing
        ("spec.runtime.accelerator.count", 9),
        ("spec.operations.serving.protocol", 11),
        ("spec.operations.serving.port", 11),
    }


def test_bad_policy_names_each_field() -> None:
    paths = {i.path for i in errors("bad-policy.yaml").issues}
    assert paths == {"spec.severity.runtime.*"}  # schema errors first; semantic checks need a valid shape


def test_policy_semantic_errors_name_the_field() -> None:
    text = (FIXTURES / "bad" / "bad-policy.yaml").read_text().replace("urgent", "high")
    with pytest.raises(IntentError) as info:
        parse_documents(text, "p.yaml")
    assert {i.path for i in info.value.issues} == {"spec.pins.runtime.version", "spec.pins.facts.not a key"}


def test_yaml_syntax_error_names_the_line() -> None:
    (issue,) = errors("not-yaml.yaml").issues
    assert issue.line is not None and issue.line >= 4 and "not valid YAML" in issue.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [1]\nb: *x\nkind: Foo\n", "unknown document"),
        ("kind: ModelSpec\nkind: ModelSpec\n", "duplicate key"),
        ("- 1\n- 2\n", "must be a mapping"),
    ],
)
def test_malformed_documents_are_typed_errors(text: str, message: str) -> None:
    with pytest.raises(IntentError, match=message):
        parse_documents(text, "x.yaml")


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
        for i in range(1, 12)
    ]
    with pytest.raises(IntentError, match="more than"):
        parse_documents("\n".join(lines), "bomb.yaml")


def test_policy_reads_pins_tolerances_and_bindings() -> None:
    (policy,) = load("10-policy.skewpolicy.yaml")
    assert isinstance(policy, SkewPolicy)
    assert policy.model_spec == "llama-3-70b-prod"
    assert policy.tolerances["generation_tokens_per_s"].max_decrease == pytest.approx(0.15)
    assert policy.binds("prod", "Deployment", "llama-70b", {"app": "llama", "tier": "serving"})
    assert not policy.binds("staging", "Deployment", "llama-70b", {"app": "llama", "tier": "serving"})
    assert not policy.binds("prod", "Deployment", "llama-70b", {"app": "llama", "tier": "batch"})


def test_mapping_table_accounts_for_every_schema_field_exactly_once() -> None:
    fields = modelspec_schema.leaf_paths()
    rows = {r.field for r in MODELSPEC_ROWS}
    assert set(fields) == rows
    assert len(fields) == len(set(fields))


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("550.54.15", ">=550.54", True),
        ("535.104.05", ">=550.54", False),
        ("12.4", "12.4", True),
        ("12.4.1", "12.4", True),
        ("12.40", "12.4", False),
        ("0.6.3.post1", ">=0.6.3,<0.7", True),
        ("0.7.0", ">=0.6.3,<0.7", False),
        ("0.6.4", "~=0.6.3", True),
        ("nonsense", ">=1", False),
    ],
)
def test_version_ranges_compare_numerically(version: str, spec: str, ok: bool) -> None:
    assert in_range(version, spec) is ok


def _replica(pod: str, **facts: object) -> Replica:
    return Replica(pod=pod, facts=dict(facts))  # type: ignore[arg-type]


def test_modelspec_binds_by_served_model_name_by_default() -> None:
    (spec,) = load("00-minimal.modelspec.yaml")
    bound = bind(
        [spec], "ml/Deployment/llama", [_replica("p", **{"runtime.served_model_name": "llama-3-8b"})]
    )
    assert bound.model_specs == (spec,)
    other = bind([spec], "ml/Deployment/q", [_replica("p", **{"runtime.served_model_name": "qwen"})])
    assert other.model_specs == ()


def test_pod_annotation_binds_a_modelspec_by_name() -> None:
    specs = [load("00-minimal.modelspec.yaml")[0], load("03-batching.modelspec.yaml")[0]]
    r = _replica("p", **{"runtime.served_model_name": "llama-3-8b",
                         "orchestration.annotations.skewwatch.io/modelspec": "llama-batching"})  # fmt: skip
    bound = bind(specs, "ml/Deployment/llama", [r])
    assert [s.name for s in bound.model_specs] == ["llama-batching"]
    assert "annotation" in bound.reasons["ModelSpec/llama-batching"]


def test_policy_binding_selects_its_modelspec_and_itself() -> None:
    spec = load("08-full-production.modelspec.yaml")[0]
    policy = load("10-policy.skewpolicy.yaml")[0]
    r = _replica("p", **{"orchestration.labels.app": "llama", "orchestration.labels.tier": "serving",
                         "runtime.served_model_name": "something-else"})  # fmt: skip
    bound = bind([spec, policy], "prod/Deployment/llama-70b", [r])
    assert [i.name for i in bound.intents] == ["llama-prod-pins", "llama-3-70b-prod"]


def test_directory_reload_keeps_last_good_version_of_a_broken_file(tmp_path: Path) -> None:
    f = tmp_path / "spec.yaml"
    f.write_text((FIXTURES / "00-minimal.modelspec.yaml").read_text())
    reg = IntentRegistry(tmp_path)
    assert reg.poll() and [i.name for i in reg.intents()] == ["llama-3-8b-minimal"]
    assert not reg.poll()
    f.write_text(f.read_text() + "  bogus: 1\n")
    reg.poll()
    assert [i.name for i in reg.intents()] == ["llama-3-8b-minimal"]
    (issue,) = reg.errors()
    assert issue.file == "spec.yaml" and issue.path == "spec.bogus" and issue.line == 18
    f.write_text((FIXTURES / "03-batching.modelspec.yaml").read_text())
    assert reg.poll() and [i.name for i in reg.intents()] == ["llama-batching"] and not reg.errors()
    f.unlink()
    assert reg.poll() and reg.intents() == []
