"""Dynamo's Model Deployment Card checksum, explained field by field from the agent's facts.

Two Dynamo vLLM workers of one deployment (ai-dynamo/dynamo examples/backends/vllm/deploy/disagg.yaml
@ 0044eb903566e0632bdf7bb7388c967d946643af, ``python3 -m dynamo.vllm --model Qwen/Qwen3-0.6B …``)
are parsed as the agent reads them, differing in one flag; the facts that differ must be exactly
that flag's, and :data:`agent.engines.launchers.MDC_CHECKSUM_FIELDS` (from lib/llm/src/model_card.rs
``mdcsum()`` @ 01159fcc8a491d274fbd7db20f068478fa4a4809) must name the card field they change and
whether the checksum covers it: a changed ``kv_cache_block_size`` or context length splits the
model's WorkerSet, a changed ``max_num_seqs`` (runtime_config, not summed) does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.engines.launchers import MDC_CHECKSUM_FIELDS, MDC_SOURCE, mdc_fields_for, mdc_table
from agent.settings import AgentSettings
from agent.sources.process import Found, build_result
from skewwatch.core.facts import FactValue

WORKER = ["python3", "-m", "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B"]
ENV = {"DYN_SYSTEM_ENABLED": "true", "DYN_SYSTEM_PORT": "9090"}


def worker_facts(extra: list[str], env: Mapping[str, str] = ENV) -> dict[str, FactValue]:
    result = build_result(
        AgentSettings(),
        found=Found(7, [*WORKER, *extra], "--pid"),
        env=dict(env),
        cwd=None,
        process_root=None,
        problems=[],
    )
    return {f.key: f.value for f in result.facts}


def differing(a: dict[str, FactValue], b: dict[str, FactValue]) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_two_workers_differing_in_block_size_differ_in_the_checksummed_kv_block_size_only() -> None:
    a = worker_facts(["--block-size", "16", "--max-num-seqs", "64"])
    b = worker_facts(["--block-size", "32", "--max-num-seqs", "64"])
    changed = differing(a, b)
    assert changed == {"runtime.args.block_size", "runtime.block_size"}
    fields = mdc_fields_for(changed)
    assert [(f.name, f.checksummed) for f in fields] == [("kv_cache_block_size", True)]


@pytest.mark.parametrize(
    ("flag", "one", "other", "field", "summed"),
    [
        ("--max-model-len", "4096", "8192", "context_length", True),
        ("--max-num-seqs", "64", "128", "runtime_config.max_num_seqs", False),
        ("--max-num-batched-tokens", "4096", "8192", "runtime_config.max_num_batched_tokens", False),
    ],
)
def test_each_runtime_flag_names_its_card_field_and_whether_the_checksum_covers_it(
    flag: str, one: str, other: str, field: str, summed: bool
) -> None:
    changed = differing(worker_facts([flag, one]), worker_facts([flag, other]))
    canonical = {k for k in changed if not k.startswith("runtime.args.")}
    assert len(canonical) == 1, changed
    assert [(f.name, f.checksummed) for f in mdc_fields_for(changed)] == [(field, summed)]


def test_served_model_name_changes_the_display_name_and_aliases() -> None:
    changed = differing(
        worker_facts(["--served-model-name", "qwen"]), worker_facts(["--served-model-name", "qwen3"])
    )
    assert changed == {"runtime.args.served_model_name", "runtime.served_model_name"}
    assert {f.name for f in mdc_fields_for(changed)} == {"display_name", "aliases"}


def test_prefill_and_decode_workers_differ_in_worker_type() -> None:
    changed = differing(worker_facts(["--is-prefill-worker"]), worker_facts(["--is-decode-worker"]))
    assert changed == {"runtime.args.is_prefill_worker", "runtime.args.is_decode_worker"}
    assert [f.name for f in mdc_fields_for(changed)] == ["worker_type"]


def test_workers_with_the_same_card_inputs_have_no_field_to_explain() -> None:
    same = ["--block-size", "16", "--max-model-len", "4096"]
    # The system port is where metrics are served, not part of the card.
    changed = differing(worker_facts(same), worker_facts(same, {**ENV, "DYN_SYSTEM_PORT": "9091"}))
    assert mdc_fields_for(changed) == []


def test_the_card_fields_a_worker_command_line_can_set_are_facts_of_a_dynamo_worker() -> None:
    facts = worker_facts(
        [
            "--served-model-name", "qwen", "--block-size", "16", "--max-model-len", "4096",
            "--max-num-seqs", "64", "--max-num-batched-tokens", "4096", "--is-prefill-worker",
        ]
    )  # fmt: skip
    from_command_line = {
        key
        for f in MDC_CHECKSUM_FIELDS
        for key in f.facts
        if key.startswith(("runtime.max", "runtime.block", "runtime.served", "runtime.args.is_prefill"))
    }
    assert from_command_line == {
        "runtime.served_model_name",
        "runtime.block_size",
        "runtime.max_model_len",
        "runtime.max_num_seqs",
        "runtime.max_num_batched_tokens",
        "runtime.args.is_prefill_worker",
    }
    assert from_command_line <= facts.keys()


def test_the_table_exports_for_docs_with_its_source() -> None:
    rows = mdc_table()
    assert [r["field"] for r in rows] == [f.name for f in MDC_CHECKSUM_FIELDS]
    assert {r["checksummed"] for r in rows} == {"yes", "no"}
    block = next(r for r in rows if r["field"] == "kv_cache_block_size")
    assert block == {
        "field": "kv_cache_block_size",
        "facts": "runtime.block_size",
        "checksummed": "yes",
        "note": "--block-size / --page-size / --kv-block-size",
    }
    assert "lib/llm/src/model_card.rs @ 01159fcc8a491d274fbd7db20f068478fa4a4809" in MDC_SOURCE
    # runtime_config is published with the card but not summed (mdcsum's own TODO).
    unsummed = {r["field"] for r in rows if r["checksummed"] == "no"}
    assert unsummed == {
        "runtime_config.total_kv_blocks",
        "runtime_config.max_num_seqs",
        "runtime_config.max_num_batched_tokens",
    }
