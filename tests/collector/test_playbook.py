"""Mitigation hints name the flag of the engine that produced the fact, never vLLM's everywhere."""

from __future__ import annotations

import pytest

from agent.engines import engine_named
from agent.engines.links import inputs_for
from collector.drift.playbook import PLAYBOOK, flag_for, hint_for, play_for
from skewwatch.core.facts import Provenance


@pytest.mark.parametrize(
    ("engine", "key", "flag", "not_flag"),
    [
        ("sglang", "runtime.max_model_len", "--context-length", "--max-model-len"),
        ("tgi", "runtime.max_model_len", "--max-total-tokens", "--max-model-len"),
        ("tgi", "runtime.quantization", "--quantize", "--quantization"),
        ("vllm", "runtime.max_model_len", "--max-model-len", "--context-length"),
        ("sglang", "runtime.dtype", "--dtype", "--max-model-len"),
    ],
)
def test_a_reported_or_default_value_names_the_engines_own_flag(
    engine: str, key: str, flag: str, not_flag: str
) -> None:
    # The provenance the agent sends for a value it did not read from a flag: the engine's links
    # name the runtime.args.* facts that would set it.
    prov = Provenance(
        "runtime_metrics", "runtime-reported", "/v1/models", inputs_for(key, engine_named(engine))
    )
    hint = hint_for(play_for(key), key, flag_for(key, [prov]))
    assert flag in hint and not_flag not in hint, hint


def test_a_value_read_from_a_flag_names_that_flag_as_given() -> None:
    prov = Provenance("process", "arg", "--context-length")
    assert flag_for("runtime.max_model_len", [prov]) == "--context-length"
    assert flag_for("runtime.args.context_length", []) == "--context-length"


def test_without_provenance_the_hint_names_the_fact_not_a_guessed_flag() -> None:
    hint = hint_for(play_for("runtime.max_num_seqs"), "runtime.max_num_seqs", None)
    assert "--" not in hint and "runtime.max_num_seqs" in hint


def test_no_hint_spells_an_engine_flag_itself() -> None:
    # A literal "--flag" in the table would be one engine's spelling shown for every engine
    # (skewwatch's own commands are the exception).
    own = "skewwatch diff --last-good"
    assert [p.pattern for p in PLAYBOOK if "--" in p.hint.replace(own, "")] == []


@pytest.mark.parametrize(
    ("key", "severity", "says"),
    [
        ("runtime.metrics.missing", "medium", "no longer exports metric families"),
        ("runtime.launcher", "high", "another launcher"),
        ("runtime.backend", "high", "backend changed"),
    ],
)
def test_the_engine_facts_of_issue_19_have_their_own_play(key: str, severity: str, says: str) -> None:
    """Not the generic runtime.* play ("a runtime setting changed"): a missing metric family is a
    dashboard reading zero, not a slower engine."""
    play = play_for(key)
    assert play.pattern == key and play.severity == severity and says in play.hint
