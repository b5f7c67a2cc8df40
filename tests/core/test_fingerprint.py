"""Canonical fingerprints: order independence, type stability, identity keys left out."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from skewwatch.core.errors import FactError
from skewwatch.core.facts import FactValue, make_fact
from skewwatch.core.fingerprint import canonical, fingerprint_facts, fingerprint_values, is_identity_key

BASE: dict[str, object] = {
    "runtime.dtype": "bfloat16",
    "runtime.max_model_len": 8192,
    "runtime.gpu_memory_utilization": 0.9,
    "runtime.enforce_eager": False,
    "model.config.rope_scaling": {"type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192},
    "model.config.architectures": ["LlamaForCausalLM"],
    "hardware.gpu.product": "h100-80gb",
    "serving.port": 8000,
    "orchestration.image": "vllm/vllm-openai:v0.6.3",
    "runtime.quantization": None,
}


def _fp(values: dict[str, object]) -> str:
    return fingerprint_values(values).overall  # type: ignore[arg-type]


def test_fingerprint_is_independent_of_fact_order() -> None:
    items = list(BASE.items())
    expected = _fp(dict(items))
    rng = random.Random(1)
    for _ in range(20):
        rng.shuffle(items)
        assert _fp(dict(items)) == expected


def test_fingerprint_is_independent_of_map_entry_order() -> None:
    a = dict(BASE)
    b = dict(BASE)
    b["model.config.rope_scaling"] = {
        "original_max_position_embeddings": 8192,
        "factor": 8.0,
        "type": "llama3",
    }
    assert _fp(a) == _fp(b)


def test_list_order_is_significant() -> None:
    a = dict(BASE, **{"hardware.gpu.mig_profiles": ["1g.10gb", "3g.40gb"]})
    b = dict(BASE, **{"hardware.gpu.mig_profiles": ["3g.40gb", "1g.10gb"]})
    assert _fp(a) != _fp(b)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (1, 1.0),
        (1, True),
        (0, False),
        ("1", 1),
        (None, "None"),
        (None, False),
        ([], {}),
        ("", None),
        (1.5, "1.5"),
    ],
)
def test_values_of_different_types_never_collide(left: object, right: object) -> None:
    assert canonical(left) != canonical(right)  # type: ignore[arg-type]
    assert _fp(dict(BASE, **{"runtime.x": left})) != _fp(dict(BASE, **{"runtime.x": right}))


def test_negative_zero_equals_zero() -> None:
    assert canonical(-0.0) == canonical(0.0)


def test_each_category_has_its_own_digest_and_only_it_changes() -> None:
    a = fingerprint_values(BASE)  # type: ignore[arg-type]
    b = fingerprint_values(dict(BASE, **{"runtime.dtype": "float32"}))  # type: ignore[arg-type]
    assert set(a.categories) == {"model", "runtime", "hardware", "serving", "orchestration"}
    changed = {c for c in a.categories if a.categories[c] != b.categories[c]}
    assert changed == {"runtime"}
    assert a.overall != b.overall


def test_identity_facts_do_not_change_the_fingerprint() -> None:
    a = dict(BASE, **{"orchestration.pod": "vllm-7d9f8b6c5-x2x9z", "orchestration.node": "gpu-node-1"})
    b = dict(BASE, **{"orchestration.pod": "vllm-7d9f8b6c5-abcde", "orchestration.node": "gpu-node-7"})
    assert _fp(a) == _fp(b)
    assert is_identity_key("hardware.gpu.0.uuid")
    assert not is_identity_key("hardware.gpu.product")


def test_provenance_does_not_change_the_fingerprint() -> None:
    f1 = [make_fact("runtime.dtype", "bfloat16", "process", "arg", "--dtype")]
    f2 = [make_fact("runtime.dtype", "bfloat16", "runtime_metrics", "runtime-reported", "x")]
    assert fingerprint_facts(f1) == fingerprint_facts(f2)


def test_fingerprint_is_stable_across_processes() -> None:
    """Hash randomisation (PYTHONHASHSEED) must not leak into fingerprints."""
    code = (
        "from skewwatch.core.fingerprint import fingerprint_values;"
        "print(fingerprint_values({'runtime.a': {'x': 1, 'y': [1.5, None]}, 'model.b': 'c',"
        " 'serving.s': True}).overall)"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1


def test_non_finite_floats_are_rejected() -> None:
    with pytest.raises(FactError, match=r"not finite|non-finite"):
        make_fact("runtime.x", float("nan"), "s", "arg")


def test_bad_keys_are_rejected_with_the_key_named() -> None:
    for bad in ("dtype", "Runtime.dtype", "runtime", "runtime.has space", "gpu.product", "runtime.\nx"):
        with pytest.raises(FactError, match="fact key"):
            make_fact(bad, 1, "s", "arg")


def test_empty_maps_and_lists_cross_the_wire() -> None:
    from skewwatch.wire import value_from_proto, value_to_proto

    values: list[FactValue] = [{}, [], {"a": {}}, [[]]]
    for value in values:
        assert value_from_proto(value_to_proto(value), "v") == value


def test_per_run_sizes_are_stored_but_never_fingerprinted() -> None:
    from skewwatch.core.fingerprint import is_fingerprinted

    config: dict[str, FactValue] = {"runtime.dtype": "bfloat16", "runtime.num_gpu_blocks": 8192,
                                    "runtime.block_size": 128}  # fmt: skip
    user = "runtime.cache_config.user_specified_block_size"
    mem, tokens, conc = (
        "runtime.kv_cache_memory_bytes",
        "runtime.kv_cache_tokens",
        "runtime.kv_cache_max_concurrency",
    )
    sizes_a: dict[str, FactValue] = {mem: 1073741824, tokens: 1048576, conc: 2048.0, user: False}
    sizes_b: dict[str, FactValue] = {mem: 1071644672, tokens: 1046528, conc: 2044.0, user: True}
    assert fingerprint_values({**config, **sizes_a}) == fingerprint_values({**config, **sizes_b})
    assert fingerprint_values(config) == fingerprint_values({**config, **sizes_a})
    # The coarse summary (blocks) and the configuration still count.
    assert fingerprint_values({**config, "runtime.num_gpu_blocks": 4096}) != fingerprint_values(config)
    assert not is_fingerprinted("runtime.kv_cache_tokens")
    assert not is_fingerprinted("orchestration.pod")
    assert is_fingerprinted("runtime.num_gpu_blocks")
    assert is_fingerprinted("runtime.cache_config.kv_offloading_backend")
