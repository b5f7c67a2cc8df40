"""Provenance inputs: each fact names what it follows from, from the engine tables."""

from __future__ import annotations

from agent.engines import GENERIC, SGLANG, VLLM
from agent.engines.links import inputs_for, link_inputs
from skewwatch.core.facts import make_fact


def test_dtype_follows_its_flag_and_the_checkpoint_dtype() -> None:
    assert inputs_for("runtime.dtype", VLLM) == ("runtime.args.dtype", "model.config.torch_dtype")


def test_kv_cache_dtype_follows_the_model_dtype_by_the_auto_rule() -> None:
    assert "runtime.dtype" in inputs_for("runtime.kv_cache_dtype", VLLM)
    assert "runtime.args.kv_cache_dtype" in inputs_for("runtime.kv_cache_dtype", VLLM)


def test_kv_cache_size_follows_what_shares_gpu_memory() -> None:
    blocks = inputs_for("runtime.num_gpu_blocks", VLLM)
    assert {"runtime.dtype", "runtime.kv_cache_dtype", "runtime.gpu_memory_utilization"} <= set(blocks)
    assert "runtime.dtype" in inputs_for("runtime.max_total_tokens", SGLANG)


def test_flag_spellings_link_to_the_one_reported_args_key() -> None:
    # SGLang spells tensor parallelism --tp-size or --tensor-parallel-size; both report as tp_size.
    tp = inputs_for("runtime.tensor_parallel_size", SGLANG)
    assert "runtime.args.tp_size" in tp


def test_model_digests_follow_their_files_for_any_engine() -> None:
    assert "model.files.config.json" in inputs_for("model.config.torch_dtype", GENERIC)
    assert "model.files.*.safetensors" in inputs_for("model.weights.digest", GENERIC)
    assert "model.revision" in inputs_for("model.files.model.safetensors", GENERIC)


def test_an_argument_itself_follows_from_nothing() -> None:
    assert inputs_for("runtime.args.dtype", VLLM) == ()


def test_link_inputs_sets_provenance_and_keeps_values() -> None:
    facts = {
        "runtime.dtype": make_fact("runtime.dtype", "float16", "process", "arg", "--dtype"),
        "runtime.args.dtype": make_fact("runtime.args.dtype", "float16", "process", "arg", "--dtype"),
    }
    linked = link_inputs(facts, VLLM)
    assert linked["runtime.dtype"].value == "float16"
    assert linked["runtime.dtype"].provenance.inputs[0] == "runtime.args.dtype"
    assert linked["runtime.args.dtype"].provenance.inputs == ()


def test_what_a_gpu_class_fixes_follows_from_the_product_for_any_engine() -> None:
    # A pod rescheduled onto another GPU class is one cause; its name, architecture and memory
    # change with it (the collector groups them under the product).
    for spec in (VLLM, SGLANG, GENERIC):
        for key in ("hardware.gpu.name", "hardware.gpu.architecture", "hardware.gpu.memory_bytes"):
            assert inputs_for(key, spec) == ("hardware.gpu.product",), (spec.name, key)
    assert inputs_for("hardware.gpu.product", VLLM) == ()
