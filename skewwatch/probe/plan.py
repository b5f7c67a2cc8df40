"""The probe's plan: what ``skewwatch probe`` sends, fixed and reproducible, and its error family.

("Plan", not "workload": in skewwatch a workload is the Kubernetes object that owns the replicas,
the thing a result is stored with and a baseline belongs to.) The shipped plan is
``prompts.yaml`` beside this module (package data): prompts with known lengths, the API (chat or
completions), streaming, ``max_tokens``, greedy decoding, the concurrency levels, the measured and
warm-up requests per level, and the seed that fixes the order prompts are sent in and each
request's sampling seed. A ``--plan FILE`` (YAML or JSON) overrides any of those fields
(``prompts`` replaces the whole list); the command's flags override
the file. Every field is checked here: a bad one is a :class:`PlanError` naming the file and
the field (``my.yaml: concurrency[1]: must be an integer from 1 to 1024, got 0``).

:func:`Plan.level_requests` turns the plan into the requests of one level, the same for every run.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from skewwatch.core.errors import SkewwatchError

Api = Literal["chat", "completions"]
APIS: tuple[Api, ...] = ("chat", "completions")
MAX_FILE_BYTES = 1024 * 1024
MAX_PROMPTS = 1000
MAX_PROMPT_CHARS = 200_000
MAX_CONCURRENCY = 1024
MAX_REQUESTS = 100_000
MAX_TOKENS = 131_072
SHIPPED = "prompts.yaml"


class ProbeError(SkewwatchError):
    """Base of every error ``skewwatch probe`` raises on purpose."""


class ProbeUsageError(ProbeError, ValueError):
    """The probe cannot run as asked (a flag, a file, a key): exit code 2."""


class PlanError(ProbeUsageError):
    """A plan file or field is invalid; ``str()`` is ``FILE: FIELD: message``."""

    def __init__(self, file: str, field_name: str, message: str) -> None:
        self.file = file
        self.field = field_name
        self.message = message
        super().__init__(f"{file}: {field_name}: {message}" if field_name else f"{file}: {message}")


@dataclass(frozen=True)
class Prompt:
    """One prompt: its id, its text (``repeat`` already applied) and its length in words."""

    id: str
    text: str
    words: int


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a level: its index, whether it is warm-up, the prompt and its seed."""

    index: int
    warmup: bool
    prompt: Prompt
    seed: int


@dataclass(frozen=True)
class Plan:
    """The whole plan, every field checked (see ``prompts.yaml`` for what each means)."""

    name: str
    version: int
    seed: int
    api: Api
    stream: bool
    max_tokens: int
    temperature: float
    ignore_eos: bool
    concurrency: tuple[int, ...]
    requests: int
    warmup: int
    prompts: tuple[Prompt, ...]
    source: str = field(default="shipped", compare=False)

    def level_requests(self) -> list[PlannedRequest]:
        """The level's requests in send order: ``warmup`` first, then ``requests`` measured ones.

        The prompt order is a shuffle seeded by ``seed`` (the same at every level and every run),
        and request ``i`` carries sampling seed ``seed + i``. Every level gets the same plan, so
        levels differ only by how many requests are in flight.
        """
        order = list(self.prompts)
        random.Random(self.seed).shuffle(order)  # noqa: S311 (reproducible order, not a secret)
        total = self.warmup + self.requests
        return [
            PlannedRequest(i, i < self.warmup, order[i % len(order)], self.seed + i) for i in range(total)
        ]

    def digest(self) -> str:
        """sha256 over the canonical plan (not its source): equal digests, equal work asked."""
        doc = self.as_dict()
        doc.pop("source", None)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["concurrency"] = list(self.concurrency)
        doc["prompts"] = [{"id": p.id, "words": p.words} for p in self.prompts]
        return doc

    def summary(self) -> dict[str, Any]:
        """What the result document says about the plan: settings, digest, prompt lengths."""
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "digest": "sha256:" + self.digest(),
            "seed": self.seed,
            "api": self.api,
            "stream": self.stream,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "ignore_eos": self.ignore_eos,
            "prompts": [{"id": p.id, "words": p.words} for p in self.prompts],
        }


def shipped_text() -> str:
    return resources.files("skewwatch.probe").joinpath(SHIPPED).read_text(encoding="utf-8")


def load(path: Path | None = None) -> Plan:
    """The shipped plan, with the fields of ``path`` (YAML or JSON) laid over it."""
    base = parse(yaml.safe_load(shipped_text()), "skewwatch/probe/" + SHIPPED)
    if path is None:
        return base
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise PlanError(name, "", f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PlanError(name, "", f"over {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))  # JSON is YAML: one loader for both
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise PlanError(name, "", f"not YAML or JSON: {e}") from None
    if data is None:
        data = {}
    return overlay(base, data, name)


def overlay(base: Plan, data: object, file: str) -> Plan:
    """``base`` with the fields ``data`` sets; PlanError naming ``file`` and the field."""
    if not isinstance(data, Mapping):
        raise PlanError(file, "", f"must be a mapping of plan fields, got {type(data).__name__}")
    merged = base.as_dict()
    for key, value in data.items():
        if key not in _FIELDS:
            raise PlanError(file, str(key), f"unknown field (known: {', '.join(sorted(_FIELDS))})")
        merged[key] = value
    prompts = base.prompts if "prompts" not in data else _prompts(data["prompts"], file)
    merged.pop("prompts")
    merged.pop("source", None)
    checked = _fields(merged, file)
    return Plan(**checked, prompts=prompts, source=file)


def parse(data: object, file: str) -> Plan:
    """A complete plan document (every field present)."""
    if not isinstance(data, Mapping):
        raise PlanError(file, "", "must be a mapping of plan fields")
    missing = sorted(set(_FIELDS) - set(data))
    if missing:
        raise PlanError(file, missing[0], "missing")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise PlanError(file, unknown[0], "unknown field")
    fields = {k: v for k, v in data.items() if k != "prompts"}
    return Plan(**_fields(fields, file), prompts=_prompts(data["prompts"], file), source="shipped")


def with_overrides(w: Plan, **changes: Any) -> Plan:
    """``w`` with the command's flags applied (None: not given), checked like a file's fields."""
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        return w
    doc = w.as_dict()
    doc.pop("prompts")
    doc.pop("source")
    doc.update(given)
    return replace(w, **_fields(doc, "(command line)"))


# --- field checks ---------------------------------------------------------------------------------


def _int(value: object, file: str, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PlanError(file, name, f"must be an integer from {lo} to {hi}, got {value!r}")
    return value


def _bool(value: object, file: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise PlanError(file, name, f"must be true or false, got {value!r}")
    return value


def _text(value: object, file: str, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise PlanError(file, name, f"must be a non-empty string of at most {limit} characters")
    return value


def _fields(d: Mapping[str, Any], file: str) -> dict[str, Any]:
    api = d["api"]
    if api not in APIS:
        raise PlanError(file, "api", f"must be one of {', '.join(APIS)}, got {api!r}")
    temperature = d["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise PlanError(file, "temperature", f"must be a number from 0 to 2, got {temperature!r}")
    levels = d["concurrency"]
    if isinstance(levels, int) and not isinstance(levels, bool):
        levels = [levels]
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not levels:
        raise PlanError(file, "concurrency", "must be a non-empty list of integers")
    checked_levels = tuple(
        _int(v, file, f"concurrency[{i}]", 1, MAX_CONCURRENCY) for i, v in enumerate(levels)
    )
    if len(set(checked_levels)) != len(checked_levels):
        raise PlanError(file, "concurrency", f"levels repeat: {list(checked_levels)}")
    return {
        "name": _text(d["name"], file, "name", 200),
        "version": _int(d["version"], file, "version", 0, 1_000_000),
        "seed": _int(d["seed"], file, "seed", 0, 2**31 - 1),
        "api": api,
        "stream": _bool(d["stream"], file, "stream"),
        "max_tokens": _int(d["max_tokens"], file, "max_tokens", 1, MAX_TOKENS),
        "temperature": float(temperature),
        "ignore_eos": _bool(d["ignore_eos"], file, "ignore_eos"),
        "concurrency": checked_levels,
        "requests": _int(d["requests"], file, "requests", 1, MAX_REQUESTS),
        "warmup": _int(d["warmup"], file, "warmup", 0, MAX_REQUESTS),
    }


def _prompts(value: object, file: str) -> tuple[Prompt, ...]:
    if not isinstance(value, list) or not value:
        raise PlanError(file, "prompts", "must be a non-empty list")
    if len(value) > MAX_PROMPTS:
        raise PlanError(file, "prompts", f"more than {MAX_PROMPTS} prompts")
    out: list[Prompt] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"prompts[{i}]"
        if not isinstance(item, Mapping):
            raise PlanError(file, where, "must be a mapping with id, text and words")
        unknown = sorted(str(k) for k in item if k not in ("id", "text", "words", "repeat"))
        if unknown:
            raise PlanError(file, f"{where}.{unknown[0]}", "unknown field (known: id, repeat, text, words)")
        pid = _text(item.get("id"), file, f"{where}.id", 100)
        if pid in seen:
            raise PlanError(file, f"{where}.id", f"repeats {pid!r}")
        seen.add(pid)
        text = _text(item.get("text"), file, f"{where}.text", MAX_PROMPT_CHARS)
        repeat = _int(item.get("repeat", 1), file, f"{where}.repeat", 1, 1000)
        full = " ".join([text.strip()] * repeat)
        if len(full) > MAX_PROMPT_CHARS:
            raise PlanError(
                file, f"{where}.repeat", f"the text repeated is over {MAX_PROMPT_CHARS} characters"
            )
        counted = len(full.split())
        declared = item.get("words", counted)
        if declared != counted:
            raise PlanError(
                file, f"{where}.words", f"says {declared!r} but the text has {counted} words (times repeat)"
            )
        out.append(Prompt(pid, full, counted))
    return tuple(out)


_FIELDS = (
    "name", "version", "seed", "api", "stream", "max_tokens", "temperature", "ignore_eos",
    "concurrency", "requests", "warmup", "prompts",
)  # fmt: skip
