"""The probe's plan: the shipped one loads and is reproducible; overrides are checked field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skewwatch.probe import plan
from skewwatch.probe.plan import PlanError


def test_shipped_plan_declares_its_prompt_lengths_truthfully() -> None:
    w = plan.load()
    raw = yaml.safe_load(plan.shipped_text())
    assert w.source == "shipped"
    assert len(w.prompts) == len(raw["prompts"]) >= 4
    for prompt, item in zip(w.prompts, raw["prompts"], strict=True):
        assert prompt.words == item["words"] == len(item["text"].split()) * item.get("repeat", 1)
        assert all(word.isalpha() and word.islower() for word in prompt.text.split())  # one token a word
    assert {p.words for p in w.prompts} & {26, 103, 428}  # short, medium and long prompts


def test_plan_is_the_same_every_time_and_puts_warmup_first() -> None:
    w = plan.with_overrides(plan.load(), requests=10, warmup=3)
    first, again = w.level_requests(), w.level_requests()
    assert [(r.prompt.id, r.seed) for r in first] == [(r.prompt.id, r.seed) for r in again]
    assert [r.warmup for r in first] == [True] * 3 + [False] * 10
    assert [r.seed for r in first] == [w.seed + i for i in range(13)]
    assert len({r.prompt.id for r in first}) == len(w.prompts)  # every prompt is used


def test_another_seed_sends_the_prompts_in_another_order() -> None:
    w = plan.with_overrides(plan.load(), requests=12, warmup=0)
    other = plan.with_overrides(w, seed=w.seed + 1)
    assert [r.prompt.id for r in w.level_requests()] != [r.prompt.id for r in other.level_requests()]
    assert w.digest() != other.digest()


def test_a_yaml_file_overrides_only_the_fields_it_sets(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("concurrency: [2, 16]\nmax_tokens: 32\napi: completions\n")
    w = plan.load(path)
    shipped = plan.load()
    assert (w.concurrency, w.max_tokens, w.api) == ((2, 16), 32, "completions")
    assert (w.prompts, w.seed, w.requests) == (shipped.prompts, shipped.seed, shipped.requests)
    assert w.source == str(path)


def test_a_json_file_replaces_the_prompts(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    doc = {
        "prompts": [{"id": "a", "text": "one two three", "words": 3}, {"id": "b", "text": "x y", "repeat": 3}]
    }
    path.write_text(json.dumps(doc))
    w = plan.load(path)
    assert [(p.id, p.words, p.text) for p in w.prompts] == [
        ("a", 3, "one two three"),
        ("b", 6, "x y x y x y"),
    ]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("concurrency: [1, 0]\n", "concurrency[1]", "must be an integer from 1 to 1024, got 0"),
        ("concurrency: [4, 4]\n", "concurrency", "levels repeat"),
        ("max_tokens: many\n", "max_tokens", "must be an integer"),
        ("stream: 'yes'\n", "stream", "must be true or false"),
        ("api: responses\n", "api", "must be one of chat, completions"),
        ("temperature: 3\n", "temperature", "must be a number from 0 to 2"),
        ("concurency: [1]\n", "concurency", "unknown field"),
        ("prompts: []\n", "prompts", "must be a non-empty list"),
        ("prompts:\n  - {id: a, text: one two, words: 3}\n", "prompts[0].words", "says 3 but the text has 2"),
        ("prompts:\n  - {id: a, text: x}\n  - {id: a, text: y}\n", "prompts[1].id", "repeats 'a'"),
        ("prompts:\n  - {id: a, text: x, lang: en}\n", "prompts[0].lang", "unknown field"),
    ],
)
def test_a_bad_field_is_named_with_its_file(tmp_path: Path, text: str, field: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as e:
        plan.load(path)
    assert e.value.file == str(path)
    assert e.value.field == field
    assert message in e.value.message
    assert str(e.value).startswith(f"{path}: {field}: ")


def test_a_file_that_is_not_a_mapping_or_not_yaml_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("concurrency: [1\n")
    with pytest.raises(PlanError, match="must be a mapping"):
        plan.load(listed)
    with pytest.raises(PlanError, match="not YAML or JSON"):
        plan.load(broken)
    with pytest.raises(PlanError, match="cannot read"):
        plan.load(tmp_path / "absent.yaml")


def test_command_line_overrides_are_checked_like_file_fields() -> None:
    with pytest.raises(PlanError, match=r"\(command line\): warmup: must be an integer from 0"):
        plan.with_overrides(plan.load(), warmup=-1)
