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


def _auto_dtype(engine: str, checkpoint: str, **more: tuple[FactValue, str]) -> FactValue:
    f = facts(
        runtime__engine=(engine, "arg"),
        runtime__dtype=("auto", "arg"),
        model__config__torch_dtype=(checkpoint, "file"),
        **more,
    )
    return {d.key: d.value for d in derive_effective(f)}.get("runtime.dtype")


def test_float32_checkpoint_follows_the_vllm_release_it_runs_on() -> None:
    # vLLM before 0.9.1 served float32 checkpoints in float16; since, in the platform's first dtype.
    assert _auto_dtype("vllm", "float32", runtime__version=("0.6.3.post1", "runtime-reported")) == "float16"
    assert _auto_dtype("vllm", "float32", runtime__version=("0.9.0", "runtime-reported")) == "float16"
    # The real 0.32.0 CPU build serves a float32 checkpoint as torch.bfloat16 (tests/e2e/test_real_vllm.py).
    assert _auto_dtype("vllm", "float32", runtime__version=("0.32.0", "runtime-reported")) == "bfloat16"
    assert _auto_dtype("vllm", "float32", runtime__version=("0.9.1", "runtime-reported")) == "bfloat16"
    # No version known: the rule of the newest releases.
    assert _auto_dtype("vllm", "float32") == "bfloat16"
    # SGLang keeps the float16 downcast.
    assert _auto_dtype("sglang", "float32") == "float16"


def test_a_gpu_without_bfloat16_gets_float16_from_vllm_0_9_1_on() -> None:
    v032 = ("0.32.0", "runtime-reported")
    turing = {"hardware__gpu__compute_capability": ("7.5", "nvml")}
    hopper = {"hardware__gpu__compute_capability": ("9.0", "nvml")}
    assert _auto_dtype("vllm", "float32", runtime__version=v032, **turing) == "float16"
    assert _auto_dtype("vllm", "bfloat16", runtime__version=v032, **turing) == "float16"
    assert _auto_dtype("vllm", "float32", runtime__version=v032, **hopper) == "bfloat16"
    assert _auto_dtype("vllm", "bfloat16", runtime__version=v032, **hopper) == "bfloat16"
    # An older release on that GPU: the old rule (bfloat16 is the checkpoint's, not resolved away).
    old = ("0.6.3", "runtime-reported")
    assert _auto_dtype("vllm", "float32", runtime__version=old, **turing) == "float16"


def test_versioned_defaults_apply_only_where_the_release_is_known() -> None:
    def defaults(version: str | None) -> dict[str, FactValue]:
        items: dict[str, tuple[FactValue, str]] = {"runtime__engine": ("vllm", "arg")}
        if version is not None:
            items["runtime__version"] = (version, "runtime-reported")
        return {d.key: d.value for d in derive_effective(facts(**items)) if d.provenance.method == "default"}

    assert defaults("0.32.0") == {
        "runtime.gpu_memory_utilization": 0.92,
        "runtime.enable_prefix_caching": True,
        "runtime.enable_chunked_prefill": True,
    }
    assert defaults("0.6.3") == {"runtime.gpu_memory_utilization": 0.9}
    assert defaults("0.20.0") == {}  # releases between were not checked: no guess
    assert defaults(None) == {}
    # What a source reported is never replaced by a default.
    f = facts(
        runtime__engine=("vllm", "arg"),
        runtime__version=("0.32.0", "runtime-reported"),
        runtime__gpu_memory_utilization=(0.5, "arg"),
    )
    assert "runtime.gpu_memory_utilization" not in {d.key for d in derive_effective(f)}


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
