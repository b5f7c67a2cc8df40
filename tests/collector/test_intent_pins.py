"""Pins mean what users mean: symbolic values (``auto``) compare with what was requested, and
``quantization: null`` means "not quantized" by the engine and the checkpoint alike.

Facts and provenance here are shaped like the agent's (``skewwatch facts`` on the stand-in vLLM:
``--kv-cache-dtype auto`` resolved by the effective-value rules to the model dtype, provenance
``effective/derived``); tests/e2e/test_fixture_pins.py checks the same against a real snapshot.
"""

# ruff: noqa: E501  (case tables read better unwrapped)

from __future__ import annotations

import json
from typing import Any

import pytest

from collector.domain.model import Replica
from collector.errors import IntentError
from collector.intent.binding import Bound
from collector.intent.evaluate import Check, IntentResult, evaluate_intents
from collector.intent.mapping import conforms
from collector.intent.model import ModelSpec, SkewPolicy, parse_documents
from skewwatch.core.facts import Provenance, SourceState, SourceStatus

Fact = tuple[Any, str, str, str]  # value, source, method, detail

DERIVED_KV: Fact = ("bfloat16", "effective", "derived",
                    "vllm rule, --kv-cache-dtype auto: the model dtype: runtime.dtype='bfloat16'; requested 'auto' "
                    "(runtime-reported: vllm:cache_config_info label cache_dtype='auto')")  # fmt: skip
DERIVED_DTYPE: Fact = ("bfloat16", "effective", "derived",
                       "vllm rule, --dtype auto: the checkpoint dtype, float32 served as float16: "
                       "model.config.torch_dtype='bfloat16'; requested 'auto' (default: vllm default)")  # fmt: skip
UNQUANTIZED_CHECKPOINT: Fact = (None, "model_files", "file", "config.json field")
VLLM: dict[str, Fact] = {
    "runtime.engine": ("vllm", "runtime_metrics", "runtime-reported", "metric prefix 'vllm:'")
}


def replica(facts: dict[str, Fact], pod: str = "a", process: SourceState = SourceState.OK) -> Replica:
    sources = {n: SourceStatus(n, SourceState.OK) for n in ("model_files", "runtime_metrics", "pod")}
    sources["process"] = SourceStatus("process", process)
    return Replica(
        pod=pod,
        facts={k: v[0] for k, v in facts.items()},
        provenance={k: Provenance(v[1], v[2], v[3]) for k, v in facts.items()},
        sources=sources,
    )


def arg(value: str, flag: str) -> Fact:
    return (value, "process", "arg", flag)


def policy(pins: dict[str, Any]) -> SkewPolicy:
    doc = {"apiVersion": "skewwatch.io/v1alpha1", "kind": "SkewPolicy", "metadata": {"name": "p"},
           "spec": {"pins": pins}}  # fmt: skip
    (out,) = parse_documents(json.dumps(doc), "policy.json")
    assert isinstance(out, SkewPolicy)
    return out


def modelspec(precision: str, **extra: Any) -> ModelSpec:
    model = {
        "id": "llama-3-8b",
        "family": "llama",
        "task": "chat",
        "framework": "vllm",
        "precision": precision,
    }
    doc = {"apiVersion": "piqc.ai/v1alpha1", "kind": "ModelSpec", "metadata": {"name": "s", **extra},
           "spec": {"identity": {"model": model},
                    "runtime": {"accelerator": {"vendor": "nvidia", "type": "h100-80gb", "count": 1}}}}  # fmt: skip
    (out,) = parse_documents(json.dumps(doc), "spec.json")
    assert isinstance(out, ModelSpec)
    return out


def run(intent: SkewPolicy | ModelSpec, *replicas: Replica) -> IntentResult:
    bound = Bound(policies=(intent,)) if isinstance(intent, SkewPolicy) else Bound(model_specs=(intent,))
    return evaluate_intents(bound, replicas)


def check(result: IntentResult, field: str, target: str | None = None) -> Check:
    (found,) = [c for c in result.checks if c.field == field and (target is None or c.target == target)]
    return found


KV = "spec.pins.runtime.kvCacheDtype"
DTYPE = "spec.pins.runtime.dtype"
QUANT = "spec.pins.runtime.quantization"


# -- symbolic values: auto is compared with the request -------------------------------------------


def test_kv_cache_dtype_auto_pin_holds_when_auto_was_resolved_to_the_model_dtype() -> None:
    facts = {**VLLM, "runtime.kv_cache_dtype": DERIVED_KV}
    # The literal comparison (what the pin used to do) calls this a drift: "auto" != "bfloat16".
    assert conforms("kv_dtype", "auto", "bfloat16") is False
    result = run(policy({"runtime": {"kvCacheDtype": "auto"}}), replica(facts))
    c = check(result, KV)
    assert (c.status, c.pods) == ("ok", {})
    assert "auto requested" in c.detail and "bfloat16" in c.detail
    assert not result.drifts


def test_kv_cache_dtype_auto_pin_drifts_when_another_dtype_was_requested() -> None:
    facts = {**VLLM, "runtime.args.kv_cache_dtype": arg("fp8", "--kv-cache-dtype"),
             "runtime.kv_cache_dtype": ("fp8", "runtime_metrics", "runtime-reported", "cache_dtype='fp8'")}  # fmt: skip
    result = run(policy({"runtime": {"kvCacheDtype": "auto"}}), replica(facts))
    c = check(result, KV)
    assert (c.status, c.pods) == ("drift", {"a": "fp8"})
    (d,) = result.drifts
    assert d.key == "runtime.kv_cache_dtype" and d.expected == "auto" and d.pods == {"a": "fp8"}
    assert "requested by runtime.args.kv_cache_dtype (process/arg: --kv-cache-dtype)" in d.message
    assert d.evidence == {"a": {"source": "process", "method": "arg", "detail": "--kv-cache-dtype"}}


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        # --kv-cache-dtype auto given: the flag is the request, whatever the runtime resolved.
        (
            {
                "runtime.args.kv_cache_dtype": arg("auto", "--kv-cache-dtype"),
                "runtime.kv_cache_dtype": DERIVED_KV,
            },
            "ok",
        ),
        ({"runtime.args.kv_cache_dtype": arg("AUTO", "--kv-cache-dtype")}, "ok"),
        # Nothing resolved it (no model dtype known): the agent reports vLLM's default as such.
        ({"runtime.kv_cache_dtype": ("auto", "process", "default", "vllm default")}, "ok"),
        # The runtime itself reports "auto" (vllm:cache_config_info cache_dtype="auto").
        (
            {"runtime.kv_cache_dtype": ("auto", "runtime_metrics", "runtime-reported", "cache_dtype='auto'")},
            "ok",
        ),
        # A concrete reported value, no flag on the command line read: vLLM's default, auto.
        (
            {"runtime.kv_cache_dtype": ("fp8_e4m3", "runtime_metrics", "runtime-reported", "cache_dtype")},
            "ok",
        ),
        ({"runtime.args.kv_cache_dtype": arg("fp8_e5m2", "--kv-cache-dtype")}, "drift"),
        (
            {"runtime.args.kv_cache_dtype": ("redacted:sha256:abc", "process", "arg", "--kv-cache-dtype")},
            "unverifiable",
        ),
    ],
)
def test_kv_cache_dtype_auto_pin_reads_the_request(facts: dict[str, Fact], status: str) -> None:
    result = run(policy({"runtime": {"kvCacheDtype": "auto"}}), replica({**VLLM, **facts}))
    assert check(result, KV).status == status


def test_without_the_command_line_a_resolved_value_does_not_say_what_was_requested() -> None:
    facts = {
        **VLLM,
        "runtime.kv_cache_dtype": ("fp8_e4m3", "runtime_metrics", "runtime-reported", "cache_dtype"),
    }
    result = run(
        policy({"runtime": {"kvCacheDtype": "auto"}}), replica(facts, process=SourceState.UNAVAILABLE)
    )
    c = check(result, KV)
    assert c.status == "unverifiable" and "runtime.args.kv_cache_dtype" in c.detail
    assert ("intent", "runtime.kv_cache_dtype") in result.indeterminate


def test_engine_defaults_are_per_engine() -> None:
    # TGI has no "--dtype auto": unset, the dtype is TGI's choice, not a request that can be checked.
    tgi = {"runtime.engine": ("tgi", "runtime_metrics", "runtime-reported", "tgi_")}
    result = run(policy({"runtime": {"dtype": "auto", "kvCacheDtype": "auto"}}), replica(tgi))
    assert check(result, DTYPE).status == "unverifiable"
    # Without --kv-cache-dtype TGI keeps the KV cache in the model dtype: auto.
    assert check(result, KV).status == "ok"
    # TGI's KV_CACHE_DTYPE variable is a request too.
    env = {**tgi, "runtime.env.KV_CACHE_DTYPE": ("fp8_e5m2", "process", "env", "KV_CACHE_DTYPE")}
    assert check(run(policy({"runtime": {"kvCacheDtype": "auto"}}), replica(env)), KV).status == "drift"


def test_dtype_auto_pin_compares_with_the_request() -> None:
    p = policy({"runtime": {"dtype": "auto"}})
    assert conforms("precision_dtype", "auto", "bfloat16") is False  # the literal comparison
    assert check(run(p, replica({**VLLM, "runtime.dtype": DERIVED_DTYPE})), DTYPE).status == "ok"
    forced = {
        **VLLM,
        "runtime.args.dtype": arg("float16", "--dtype"),
        "runtime.dtype": arg("float16", "--dtype"),
    }
    c = check(run(p, replica(forced)), DTYPE)
    assert (c.status, c.pods) == ("drift", {"a": "float16"})


def test_a_concrete_pin_still_compares_with_the_resolved_value() -> None:
    p = policy({"runtime": {"kvCacheDtype": "fp8", "dtype": "bf16"}})
    ok = replica({**VLLM, "runtime.kv_cache_dtype": ("fp8_e4m3", "runtime_metrics", "runtime-reported", "x"),
                  "runtime.dtype": DERIVED_DTYPE})  # fmt: skip
    result = run(p, ok)
    assert check(result, KV).status == "ok" and check(result, DTYPE).status == "ok"
    c = check(run(p, replica({**VLLM, "runtime.kv_cache_dtype": DERIVED_KV})), KV)
    assert (c.status, c.pods) == ("drift", {"a": "bfloat16"})


def test_a_facts_pin_of_a_symbolic_value_compares_with_the_request_too() -> None:
    p = policy({"facts": {"runtime.kv_cache_dtype": "auto"}})
    assert check(run(p, replica({**VLLM, "runtime.kv_cache_dtype": DERIVED_KV})),
                 "spec.pins.facts.runtime.kv_cache_dtype").status == "ok"  # fmt: skip
    fp8 = {**VLLM, "runtime.args.kv_cache_dtype": arg("fp8", "--kv-cache-dtype")}
    assert check(run(p, replica(fp8)), "spec.pins.facts.runtime.kv_cache_dtype").status == "drift"


def test_modelspec_precision_auto_checks_the_dtype_request_and_not_quantization() -> None:
    s = modelspec("auto")
    result = run(s, replica({**VLLM, "runtime.dtype": DERIVED_DTYPE}))
    assert check(result, "spec.identity.model.precision", "runtime.dtype").status == "ok"
    q = check(result, "spec.identity.model.precision", "runtime.quantization")
    assert q.status == "documentary" and "quantization" in q.detail
    forced = {
        **VLLM,
        "runtime.args.dtype": arg("float32", "--dtype"),
        "runtime.dtype": arg("float32", "--dtype"),
    }
    assert check(run(s, replica(forced)), "spec.identity.model.precision", "runtime.dtype").status == "drift"


# -- quantization: null means not quantized --------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "status", "actual"),
    [
        ({"model.config.quantization": UNQUANTIZED_CHECKPOINT}, "ok", None),
        ({"runtime.quantization": (None, "process", "arg", "--quantization")}, "ok", None),
        (
            {
                "runtime.quantization": ("none", "process", "env", "QUANTIZE"),
                "model.config.quantization": UNQUANTIZED_CHECKPOINT,
            },
            "ok",
            None,
        ),
        # Either one naming a method is a drift.
        (
            {
                "runtime.quantization": arg("fp8", "--quantization"),
                "model.config.quantization": UNQUANTIZED_CHECKPOINT,
            },
            "drift",
            "fp8",
        ),
        ({"model.config.quantization": ("awq", "model_files", "file", "config.json field")}, "drift", "awq"),
        (
            {
                "runtime.quantization": (None, "process", "arg", "x"),
                "model.config.quantization": ("gptq", "model_files", "file", "config.json field"),
            },
            "drift",
            "gptq",
        ),
        # Neither the process nor the model files said anything.
        ({}, "unverifiable", None),
    ],
)
def test_quantization_null_means_not_quantized(facts: dict[str, Fact], status: str, actual: Any) -> None:
    for pin in (None, "none"):
        result = run(policy({"runtime": {"quantization": pin}}), replica({**VLLM, **facts}))
        c = check(result, QUANT)
        assert c.status == status, (pin, c)
        assert c.pods == ({"a": actual} if status == "drift" else {})
    if status == "unverifiable":
        assert ("intent", "runtime.quantization") in result.indeterminate


def test_quantization_drift_names_what_was_found_and_where() -> None:
    awq = {"model.config.quantization": ("awq", "model_files", "file", "config.json field")}
    result = run(policy({"runtime": {"quantization": None}}), replica({**VLLM, **awq}))
    c = check(result, QUANT)
    assert "awq from model.config.quantization (model_files/file: config.json field)" in c.detail
    (d,) = result.drifts
    assert d.actual == "awq" and d.evidence == {
        "a": {"source": "model_files", "method": "file", "detail": "config.json field"}
    }
    assert d.message.startswith("1 of 1 replicas: runtime.quantization = awq from model.config.quantization")
    assert "expected not quantized" in d.message


def test_quantization_method_pin_reads_the_checkpoint_when_the_engine_says_nothing() -> None:
    p = policy({"runtime": {"quantization": "awq"}})
    awq = {"model.config.quantization": ("awq", "model_files", "file", "config.json field")}
    assert check(run(p, replica({**VLLM, **awq})), QUANT).status == "ok"
    c = check(run(p, replica({**VLLM, "model.config.quantization": UNQUANTIZED_CHECKPOINT})), QUANT)
    assert (c.status, c.pods) == ("drift", {"a": None})


@pytest.mark.parametrize(
    ("precision", "facts", "status"),
    [
        ("bf16", {"model.config.quantization": UNQUANTIZED_CHECKPOINT}, "ok"),  # was unverifiable
        ("bf16", {"model.config.quantization": ("awq", "model_files", "file", "config.json field")}, "drift"),
        ("fp16", {"runtime.quantization": arg("fp8", "--quantization")}, "drift"),
        ("int4", {"model.config.quantization": ("awq", "model_files", "file", "config.json field")}, "ok"),
        ("int4", {"model.config.quantization": UNQUANTIZED_CHECKPOINT}, "drift"),
        ("bf16", {}, "unverifiable"),
    ],
)
def test_modelspec_precision_reads_engine_and_checkpoint_quantization(
    precision: str, facts: dict[str, Fact], status: str
) -> None:
    result = run(modelspec(precision), replica({**VLLM, **facts}))
    assert check(result, "spec.identity.model.precision", "runtime.quantization").status == status


# -- what cannot be checked is rejected at load ----------------------------------------------------

BAD_PINS = """\
apiVersion: skewwatch.io/v1alpha1
kind: SkewPolicy
metadata: {name: p}
spec:
  pins:
    runtime:
      quantization: auto
      kvCacheDtype: auto
      dtype: AUTO
    hardware:
      migProfile: Auto
    facts:
      runtime.quantization: auto
      runtime.kv_cache_dtype: auto
"""


def test_uncheckable_symbolic_pins_are_rejected_with_file_line_and_field() -> None:
    with pytest.raises(IntentError) as info:
        parse_documents(BAD_PINS, "pins.yaml")
    found = {(i.file, i.line, i.path) for i in info.value.issues}
    assert found == {
        ("pins.yaml", 7, "spec.pins.runtime.quantization"),
        ("pins.yaml", 11, "spec.pins.hardware.migProfile"),
        ("pins.yaml", 13, "spec.pins.facts.runtime.quantization"),
    }
    text = [str(i) for i in info.value.issues]
    assert text[0].startswith("pins.yaml:7: spec.pins.runtime.quantization: 'auto' cannot be checked:")
    assert "null for an unquantized model" in text[0]


def test_checkable_symbolic_pins_load() -> None:
    ok = "\n".join(
        line for line in BAD_PINS.splitlines() if "quantization" not in line and "mig" not in line.lower()
    )
    ok = ok.replace("    hardware:\n", "")
    (p,) = parse_documents(ok, "pins.yaml")
    assert isinstance(p, SkewPolicy) and p.pins["runtime"] == {"kvCacheDtype": "auto", "dtype": "AUTO"}


# -- documentary maps stay documentary --------------------------------------------------------------


def test_documentary_map_entries_are_not_checked_against_a_fact() -> None:
    result = run(modelspec("bf16", labels={"team": "ml"}, annotations={"owner": "x"}), replica(VLLM))
    for field in ("metadata.labels.team", "metadata.annotations.owner"):
        c = check(result, field)
        assert (c.status, c.target) == ("documentary", None)


def test_mig_pins_compare_through_the_mig_normaliser() -> None:
    from collector.intent.mapping import conforms

    assert conforms("mig", "MIG 3g.40gb", ["3g.40gb"]) is True
    assert conforms("mig", "3c.3g.40gb", ["3g.40gb"]) is True
    assert conforms("mig", "1g.18gb+me", ["1g.18gb"]) is False
