"""docs/agent-facts.md's per-engine table against the engine tables it describes.

Every flag, variable, info-endpoint field, metric label, gauge and default the table names for an
engine and a fact must be one that engine's table (``agent/engines/``) reads for that fact, so
the page cannot say a flag sets a fact that the code does not read from it. Prose words a cell
may hold (backend names, the checkpoint file) are listed in ``PROSE``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.engines import SGLANG, TGI, TRTLLM, VLLM, EngineSpec
from agent.engines.base import MODEL, normalise_flag

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-facts.md"
HEADING = "## Per engine: where each fact comes from"
COLUMNS = (VLLM, SGLANG, TGI, TRTLLM)
# Words in backticks that are explanation, not a source the code reads.
PROSE = frozenset({"pytorch", "tensorrt", "_autodeploy", "hf_quant_config.json", "kv_cache_quant_algo"})
# Facts whose cells describe a computation, not a table's row.
COMPUTED = frozenset({"runtime.metrics.missing"})


def table_rows() -> list[tuple[str, list[str]]]:
    text = DOC.read_text()
    assert HEADING in text, f"{DOC} lost its section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1:]))
    return rows


def keys_of(first: str) -> list[str]:
    keys = re.findall(r"`([^`]+)`", first)
    return [MODEL] if keys == ["model.id", "model.path"] else keys


def check_token(spec: EngineSpec, key: str, token: str) -> str | None:
    """None when ``spec`` reads ``key`` from ``token``, else why not."""
    settings = [s for s in spec.settings if s.key == key]
    if token.startswith("-"):
        flags = {normalise_flag(f) for s in settings for f in s.flags}
        return None if normalise_flag(token) in flags else f"{token} is no flag of {key}"
    if token.startswith("$"):
        env = {e for s in settings for e in s.env}
        return None if token[1:] in env else f"{token} is no variable of {key}"
    if token.startswith("/"):
        route, _, path = token.partition(" ")
        for ep in spec.metrics.info_endpoints:
            if route in (ep.path.split("?", 1)[0], *ep.fallbacks) and ep.fields.get(path, ("",))[0] == key:
                return None
        return f"{token}: no field of {key} on that endpoint"
    if m := re.fullmatch(r"(\w+)\{(\w+)\}", token):
        for info in spec.metrics.info_metrics:
            if info.metric == m[1] and info.labels.get(m[2], ("",))[0] == key:
                return None
        return f"{token}: no label of {key}"
    if token == "model_name":
        return None if spec.metrics.model_name_label == token else f"{spec.name} has no model_name label"
    if token == "MODEL":
        return None if any(e.positional == MODEL for e in spec.entrypoints) else "no positional model"
    if token in spec.metrics.value_facts:
        return None if spec.metrics.value_facts[token][0] == key else f"gauge {token} is not {key}"
    if token in PROSE:
        return None
    return f"{token!r}: not a flag, variable, field, label or gauge of {spec.name}"


@pytest.mark.parametrize("spec", COLUMNS, ids=lambda s: s.name)
def test_every_source_the_table_names_is_one_the_engine_reads(spec: EngineSpec) -> None:
    rows = table_rows()
    assert len(rows) >= 20
    problems = []
    for first, cells in rows:
        [key] = keys_of(first)
        if key in COMPUTED:
            continue
        cell = cells[COLUMNS.index(spec)]
        defaults = re.findall(r"default `([^`]+)`", cell)
        for value in defaults:
            if str(spec.defaults.get(key)) != value:
                problems.append(f"{key}: default {value} is not {spec.name}'s ({spec.defaults.get(key)!r})")
        if "versioned default" in cell and not any(d.key == key for d in spec.versioned_defaults):
            problems.append(f"{key}: {spec.name} has no versioned default")
        for token in re.findall(r"`([^`]+)`", re.sub(r"default `[^`]+`", "", cell)):
            why = check_token(spec, key, token)
            if why:
                problems.append(f"{key}: {why}")
    assert problems == [], "\n".join(problems)


def test_a_wrong_flag_in_the_table_is_caught() -> None:
    """The check can fail: a flag of another fact, or one the engine never had."""
    assert check_token(VLLM, "runtime.max_model_len", "--max-num-seqs") is not None
    assert check_token(TRTLLM, "runtime.max_num_seqs", "--max-batch-size") is None  # _ and - alike
    assert check_token(SGLANG, "runtime.max_model_len", "/server_info page_size") is not None
    assert check_token(SGLANG, "runtime.block_size", "/get_server_info page_size") is None
    assert check_token(TGI, "runtime.dtype", "$NOT_A_VARIABLE") is not None
