"""The engines' rules for settings left to auto, applied over every source's facts."""

from __future__ import annotations

from agent.engines.effective import derive_effective
from skewwatch.core.facts import Fact, FactValue, make_fact


def facts(**items: tuple[FactValue, str]) -> dict[str, Fact]:
    out = {}
    for key, (value, method) in items.items():
        k = key.replace("__", ".")
        out[k] = make_fact(k, value, "test", method, "given")
    return out


def test_dtype_auto_resolves_to_checkpoint_dtype() -> None:
    f = facts(
        runtime__engine=("vllm", "arg"),
        runtime__dtype=("auto", "default"),
        model__config__torch_dtype=("bfloat16", "file"),
    )
    (dtype, kv) = derive_effective(f)
    assert (dtype.key, dtype.value, dtype.provenance.method) == ("runtime.dtype", "bfloat16", "derived")
    assert "model.config.torch_dtype='bfloat16'" in dtype.provenance.detail
    assert "requested 'auto'" in dtype.provenance.detail
    assert (kv.key, kv.value) == ("runtime.kv_cache_dtype", "bfloat16")  # absent kv dtype = model dtype


def test_float32_checkpoint_is_served_as_float16_by_vllm_and_sglang() -> None:
    for engine in ("vllm", "sglang"):
        f = facts(
            runtime__engine=(engine, "arg"),
            runtime__dtype=("auto", "arg"),
            model__config__torch_dtype=("float32", "file"),
        )
        assert {d.key: d.value for d in derive_effective(f)}["runtime.dtype"] == "float16"


def test_explicit_dtype_is_never_overridden() -> None:
    f = facts(
        runtime__engine=("vllm", "arg"),
        runtime__dtype=("float32", "arg"),
        model__config__torch_dtype=("bfloat16", "file"),
    )
    assert "runtime.dtype" not in {d.key for d in derive_effective(f)}


def test_runtime_reported_auto_kv_cache_dtype_resolves_to_the_model_dtype() -> None:
    f = facts(
        runtime__engine=("vllm", "runtime-reported"),
        runtime__dtype=("float16", "arg"),
        runtime__kv_cache_dtype=("auto", "runtime-reported"),
    )
    (kv,) = derive_effective(f)
    assert kv.value == "float16" and "requested 'auto' (runtime-reported" in kv.provenance.detail


def test_missing_context_length_comes_from_the_model_and_a_given_one_stays() -> None:
    base: dict[str, tuple[FactValue, str]] = {
        "runtime__engine": ("vllm", "arg"),
        "model__config__max_position_embeddings": (32768, "file"),
    }
    derived = {d.key: d for d in derive_effective(facts(**base))}
    assert derived["runtime.max_model_len"].value == 32768
    given = facts(**base, runtime__max_model_len=(8192, "arg"))
    assert "runtime.max_model_len" not in {d.key for d in derive_effective(given)}


def test_checkpoint_quantization_becomes_the_effective_quantization() -> None:
    f = facts(runtime__engine=("vllm", "arg"), model__config__quantization=("awq", "file"))
    assert {d.key: d.value for d in derive_effective(f)}["runtime.quantization"] == "awq"


def test_without_the_checkpoint_dtype_auto_stays_auto() -> None:
    f = facts(runtime__engine=("vllm", "arg"), runtime__dtype=("auto", "default"))
    assert derive_effective(f) == []


def test_unknown_engine_has_no_rules() -> None:
    f = facts(runtime__engine=("unknown", "derived"), model__config__torch_dtype=("bfloat16", "file"))
    assert derive_effective(f) == []
