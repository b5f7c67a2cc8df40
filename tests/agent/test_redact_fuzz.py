"""Property-based attacks on redaction (hypothesis): a planted secret never survives.

Random command lines and environments carry a secret of a known shape (or a plain one where its
meaning — flag, prefix, header, JSON key, ``KEY=VALUE`` — gives it away) at a random position,
among random engine flags; random fact maps carry secrets under secret names or in secret shapes.
Through the real path (``build_result`` → ``collect_snapshot`` → ``Snapshot.to_json()``, and
``ProcessInfo``) the raw secret must appear nowhere. Parsing random argv only ever raises the
parser's typed errors; every case runs under a deadline; each test asserts (and prints, with
``-s``) how many cases it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.engines import ENGINES, VLLM
from agent.engines.parse import ValueProblem, parse_args, redact_with
from agent.settings import AgentSettings
from agent.snapshot import collect_snapshot
from agent.sources.base import CollectContext, SourceResult
from agent.sources.process import Found, build_result
from skewwatch.core.facts import Fact, Provenance, SourceState, SourceStatus
from skewwatch.redact import Redactor, redact_collected

SALT = "fuzz-salt"
DEADLINE = timedelta(milliseconds=400)
FUZZ = settings(
    deadline=DEADLINE,
    derandomize=True,  # the same cases every run: a failure reproduces, CI time is stable
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _chars(alphabet: str, n: int, m: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=m)


# Secrets no shape rule knows: only where they stand gives them away. Long enough and with a
# digit and a capital so a random collision with the rest of the snapshot is impossible.
plain_secrets = st.builds(lambda a, b: "Q7" + a + "x" + b, _chars(_ALNUM, 10, 20), _chars(_ALNUM, 0, 8))
shaped_secrets = st.one_of(
    st.builds(lambda s: "hf_" + s, _chars(_ALNUM, 30, 40)),
    st.builds(lambda s: "sk-" + s, _chars(_ALNUM + "_-", 20, 40)),
    st.builds(lambda s: "AKIA" + s, _chars(_UPPER, 16, 16)),
    st.builds(lambda s: "ghp_" + s, _chars(_ALNUM, 36, 36)),
    st.builds(lambda s: "nvapi-" + s, _chars(_ALNUM, 30, 40)),
    st.builds(lambda s: "glpat-" + s, _chars(_ALNUM, 20, 26)),
    st.builds(
        lambda a, b, c: f"eyJ{a}.{b}.{c}",
        _chars(_ALNUM, 12, 30),
        _chars(_ALNUM, 12, 30),
        _chars(_ALNUM, 12, 30),
    ),
)
secret_names = st.sampled_from(
    [
        "hf_token",
        "api_key",
        "apiKey",
        "password",
        "client_secret",
        "auth_token",
        "access_key",
        "Authorization",
    ]
)
secret_env_names = st.sampled_from(
    ["HF_TOKEN", "VLLM_API_KEY", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY"]
)
# Names the vLLM table reports (VLLM_*, NCCL_*, CUDA_*), none of them secret by name.
innocuous_env = st.sampled_from(["VLLM_EXTRA", "VLLM_HTTP_HEADERS", "NCCL_NOTE", "CUDA_X"])


def _nest(key: str, value: object) -> st.SearchStrategy[object]:
    """``{key: value}`` at a random depth among random sibling entries, in maps and lists."""
    leaf = st.one_of(st.integers(-5, 5000), st.booleans(), _chars("abcdefgh", 0, 6), st.none())

    def wrap(inner: object, path: list[tuple[str, str, object]]) -> object:
        for kind, name, sibling in path:
            inner = [sibling, inner] if kind == "list" else {name: inner, "k" + name: sibling}
        return inner

    step = st.tuples(st.sampled_from(["map", "list"]), _chars("mnopqrs", 1, 5), leaf)
    return st.builds(lambda path, extra: wrap({key: value, **extra}, path), st.lists(step, max_size=4),
                     st.dictionaries(_chars("tuvw", 1, 4), leaf, max_size=3))  # fmt: skip


@st.composite
def json_doc(draw: st.DrawFn, secret: str, shaped: bool) -> str:
    """A JSON (or YAML flow) document holding ``secret`` under a secret name, or anywhere if shaped."""
    key = draw(_chars("abcxyz", 1, 6)) if shaped else draw(secret_names)
    value: object = secret if draw(st.booleans()) or not shaped else f"pre {secret} post"
    if not shaped and key == "Authorization" and draw(st.booleans()):
        value = f"Bearer {secret}"
    # Under a secret name, the secret may sit in a list or a map of innocuous keys.
    shape = draw(st.sampled_from(["scalar", "list", "map"]))
    if shape == "list":
        value = ["x", value]
    elif shape == "map":
        value = {"value": value, "n": 1}
    doc = draw(_nest(key, value))
    style = draw(st.sampled_from(["json", "json-spaced", "yaml-flow"]))
    if style == "yaml-flow" and isinstance(doc, dict) and all(isinstance(v, str) for v in doc.values()):
        return "{" + ", ".join(f"{k}: {v}" for k, v in doc.items()) + "}"
    return json.dumps(doc, indent=2 if style == "json-spaced" else None)


def _prefix_of(flag: str) -> st.SearchStrategy[str]:
    """``--api-key`` as argparse accepts it: a unique prefix, ``_`` for ``-``."""
    name = flag.lstrip("-")
    return st.builds(
        lambda n, under: "--" + (name[:n].replace("-", "_") if under else name[:n]),
        st.integers(min_value=len(name) - 2, max_value=len(name)),
        st.booleans(),
    )


@st.composite
def placements(draw: st.DrawFn, kind: str, secret: str, shaped: bool) -> tuple[list[str], dict[str, str]]:
    """Command-line arguments and env variables that carry ``secret`` the way ``kind`` says."""
    flag = draw(_prefix_of(draw(st.sampled_from(["--api-key", "--hf-token"]))))
    if kind == "flag":
        return [flag, secret], {}
    if kind == "second-key":  # vLLM: --api-key k1 k2
        return [draw(_prefix_of("--api-key")), "Q7decoy0key", secret], {}
    if kind == "flag=":
        return [f"{flag}={secret}"], {}
    if kind == "json-arg":
        doc = draw(json_doc(secret, shaped))
        arg = draw(st.sampled_from(["--hf-overrides", "--speculative-config", "--kv-transfer-config"]))
        return ([f"{arg}={doc}"] if draw(st.booleans()) else [arg, doc]), {}
    if kind == "secret-env":
        return [], {draw(secret_env_names): secret}
    if kind.startswith("header-env-"):
        header = HEADERS[int(kind.rsplit("-", 1)[1])]
        return [], {draw(innocuous_env): header.format(secret)}
    if kind == "list-env":
        sep = draw(st.sampled_from([",", ";", " "]))
        items = [f"A{i}={i}" for i in range(draw(st.integers(0, 3)))]
        items.insert(draw(st.integers(0, len(items))), f"{draw(secret_env_names)}={secret}")
        return [], {draw(innocuous_env): sep.join(items)}
    if kind == "additional-args":
        carried = draw(
            st.sampled_from(
                [
                    f"{flag} {secret}",
                    f"{flag}={secret}",
                    f"--api-key Q7decoy0key {secret}",
                    "--hf-overrides " + shlex.quote(draw(json_doc(secret, shaped))),
                ]
            )
        )
        return [], {"VLLM_ADDITIONAL_ARGS": f"--max-model-len 4096 {carried} --dtype half"}
    if kind == "url":
        url = (
            f"{draw(st.sampled_from(['s3', 'https', 'redis', 'postgresql']))}://user:{secret}@host.example/x"
        )
        return (["--model", url] if draw(st.booleans()) else []), (
            {} if draw(st.booleans()) else {"VLLM_URL": url}
        )
    if kind == "config-json-env":
        return [], {draw(innocuous_env): draw(json_doc(secret, shaped))}
    if kind == "positional-text":
        return [f"x {secret} y"], {}
    if kind == "served-name":
        return ["--served-model-name", "a", secret], {}
    return [], {draw(innocuous_env): f"free text {secret}!"}


# Where a secret may stand; each is fuzzed on its own, so none is left to chance. The last three
# hold only shaped secrets (a plain word there is no secret by any rule).
PLACEMENTS = (
    "flag",
    "flag=",
    "second-key",
    "json-arg",
    "secret-env",
    "header-env-0",
    "header-env-1",
    "header-env-2",
    "header-env-3",
    "header-env-4",
    "list-env",
    "additional-args",
    "url",
    "config-json-env",
    "positional-text",
    "served-name",
    "plain-env",
)
SHAPED_ONLY = frozenset({"positional-text", "served-name", "plain-env"})
HEADERS = [
    "Authorization: Bearer {}",
    "X-Api-Key: {}",
    "authorization:{}",
    "Proxy-Authorization: Token {}",
    "-H 'Authorization: Bearer {}'",
]
noise_flags = st.sampled_from(
    [
        ["--dtype", "bfloat16"],
        ["--port", "8001"],
        ["--max-model-len", "4k"],
        ["-tp", "2"],
        ["--enable-prefix-caching"],
        ["--no-enable-prefix-caching"],
        ["--gpu-memory-utilization=0.85"],
        ["--served-model-name", "m1", "m2"],
        ["--unknown-switch"],
        ["--trust-remote-code"],
    ]
)


@st.composite
def attack(draw: st.DrawFn, kind: str) -> tuple[str, list[str], dict[str, str]]:
    shaped = kind in SHAPED_ONLY or draw(st.booleans())
    secret = draw(shaped_secrets if shaped else plain_secrets)
    args, env = draw(placements(kind, secret, shaped))
    noise = [a for group in draw(st.lists(noise_flags, max_size=5)) for a in group]
    at = draw(st.integers(0, len(noise)))
    head = draw(
        st.sampled_from(
            [["vllm", "serve", "org/model"], ["python3", "-m", "vllm.entrypoints.openai.api_server"]]
        )
    )
    argv = [*head, *noise[:at], *args, *noise[at:]]
    if draw(st.integers(0, 4)) == 0:  # the same command inside a shell script
        argv = ["/bin/sh", "-c", "exec " + shlex.join(argv)]
    return secret, argv, env


class _Fake:
    def __init__(self, name: str, result: SourceResult) -> None:
        self.name, self.result = name, result

    async def collect(self, ctx: CollectContext) -> SourceResult:
        return self.result


def _report(counted: list[int], label: str, minimum: int) -> None:
    """Assert (and print, with ``-s``) how many hypothesis cases ran."""
    print(f"{label}: {len(counted)} hypothesis cases")
    assert len(counted) >= minimum, f"{label}: only {len(counted)} cases ran"


@pytest.mark.parametrize("kind", PLACEMENTS)
def test_planted_secret_in_argv_and_env_never_survives(kind: str) -> None:
    agent_settings = AgentSettings(redaction_salt=SALT)

    counted: list[int] = []

    @settings(FUZZ, max_examples=25)
    @given(attack(kind))
    def check(case: tuple[str, list[str], dict[str, str]]) -> None:
        counted.append(1)
        secret, argv, env = case
        result = build_result(
            agent_settings, found=Found(7, argv, "--pid"), env=env, cwd=PurePosixPath("/"), process_root=None,
            problems=[],
        )  # fmt: skip
        assert result.process is not None
        snap = asyncio.run(
            collect_snapshot([_Fake("process", result)], CollectContext(agent_settings), timeout_s=5.0)
        )
        out = json.dumps(snap.to_json(), ensure_ascii=False)
        info = repr(result.process) + json.dumps([list(result.process.argv), dict(result.process.env)])
        where = f"argv={argv!r} env={env!r}"
        assert secret not in out, f"in the snapshot: {where}"
        assert secret not in info, f"in ProcessInfo: {where}"
        assert secret not in result.message, f"in the message: {where}"

    check()
    _report(counted, f"argv/env attacks, {kind}", 20)


fact_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10_000), _chars("abcdefghijk .-_:/", 0, 12)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_chars("abcdefgh_", 1, 8), inner, max_size=4)
    ),
    max_leaves=12,
)
key_tails = st.sampled_from(
    [
        "runtime.cache_config",
        "runtime.server_args",
        "runtime.lora_config",
        "runtime.env",
        "runtime.args",
        "model.config",
    ]
)


@st.composite
def fact_map(draw: st.DrawFn, how: str) -> tuple[str, dict[str, Fact], str]:
    """Random facts, one of which carries a planted secret by name, by shape, in a map or in a
    detail; returns (secret, facts, status message)."""
    shaped = how == "shape" or draw(st.booleans())
    secret = draw(shaped_secrets if shaped else plain_secrets)
    facts: dict[str, Fact] = {}
    for i, other in enumerate(draw(st.lists(fact_values, max_size=6))):
        key = f"{draw(key_tails)}.k{i}"
        facts[key] = Fact(key, other, Provenance("s", "runtime-reported", f"field k{i}"))
    name = draw(secret_names)
    key = f"{draw(key_tails)}.{name}"
    value: object
    detail = f"label {name}={secret!r}" if draw(st.booleans()) else ""
    if how == "name":
        value = secret
    elif how == "nested":
        value = draw(_nest(name, secret))
        key = f"{draw(key_tails)}.settings"
    elif how == "list":
        value = ["a", secret]
    elif how == "header":
        value, key = f"Authorization: Bearer {secret}", f"{draw(key_tails)}.headers"
    elif how == "url":
        value, key = f"https://u:{secret}@h/x", f"{draw(key_tails)}.url"
    elif how == "json":
        value, key = draw(json_doc(secret, shaped)), f"{draw(key_tails)}.blob"
    elif how == "detail":
        value, detail = secret, f"label {name}={secret!r}"
    else:
        value, key = draw(_nest(draw(_chars("xyz", 1, 3)), f"pre {secret}")), f"{draw(key_tails)}.any"
    facts[key] = Fact(key, value, Provenance("s", "runtime-reported", detail, ("runtime.dtype",)))  # type: ignore[arg-type]
    message = draw(
        st.sampled_from(["", f'line 3: bad {name}="{secret}"', f"header Authorization: Bearer {secret}"])
    )
    return secret, facts, message


FACT_PLACEMENTS = ("name", "nested", "list", "header", "url", "json", "detail", "shape")


@pytest.mark.parametrize("how", FACT_PLACEMENTS)
def test_planted_secret_in_fact_maps_never_survives_and_the_pass_is_idempotent(how: str) -> None:
    counted: list[int] = []

    @settings(FUZZ, max_examples=50)
    @given(fact_map(how))
    def check(case: tuple[str, dict[str, Fact], str]) -> None:
        counted.append(1)
        secret, facts, message = case
        statuses = {"s": SourceStatus("s", SourceState.OK, message)}
        once, st1 = redact_collected(facts, statuses, SALT)
        dumped = json.dumps(
            {k: [f.value, f.provenance.as_dict()] for k, f in once.items()} | {"m": st1["s"].message},
            ensure_ascii=False,
        )
        assert secret not in dumped
        assert secret not in "".join(once)
        twice, st2 = redact_collected(once, st1, SALT)
        assert twice == once and st2 == st1, "redaction is not idempotent"
        for k, f in once.items():
            assert f.provenance.source == "s" and f.provenance.method == "runtime-reported", k

    check()
    _report(counted, f"fact-map attacks, {how}", 40)


def test_random_text_redaction_is_total_and_idempotent() -> None:
    r = Redactor(SALT)
    pieces = [*"aAzZ09_-=:;,.'\" \t\n{}[]/@\\$", "hf_", "Bearer ", "--api-key", "HF_TOKEN="]
    pieces.append("redacted:sha256:")
    text = st.lists(st.sampled_from(pieces), max_size=30).map("".join)

    counted: list[int] = []

    @settings(FUZZ, max_examples=400)
    @given(st.text(max_size=12), text)
    def check(name: str, value: str) -> None:
        counted.append(1)
        once = r.value(name, value)
        assert r.value(name, once) == once
        assert r.text(r.text(value)) == r.text(value)
        argv = r.argv(value.split())
        assert r.argv(argv) == argv

    check()
    _report(counted, "random text", 300)


def test_parsing_random_argv_raises_only_typed_errors() -> None:
    redact = redact_with(Redactor(SALT))
    token = st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [
                "--api-key",
                "--api-ke",
                "--hf-token",
                "--config",
                "--",
                "-tp",
                "--dtype",
                "sh",
                "-c",
                "vllm",
                "serve",
                "--served-model-name",
                "$((1/0))",
                "${X:-y}",
                "'",
                '"',
                "{",
                "[",
                ";",
            ]
        ),
    )

    counted: list[int] = []

    envs = st.dictionaries(st.sampled_from(["VLLM_ADDITIONAL_ARGS", "HF_TOKEN", "X"]), st.text(max_size=20))

    @settings(FUZZ, max_examples=300)
    @given(st.lists(token, max_size=12), envs, st.sampled_from(ENGINES))
    def check(argv: list[str], env: dict[str, str], spec: Any) -> None:
        counted.append(1)
        with contextlib.suppress(ValueProblem):  # the parser's one typed error; anything else fails
            parse_args(spec, argv, env, redact, {})

    check()
    _report(counted, "random argv parsing", 250)


def test_prefix_resolution_agrees_with_argparse() -> None:
    """Every prefix argparse (vLLM's allow_abbrev) would resolve to --api-key is redacted."""
    import argparse

    parser = argparse.ArgumentParser(exit_on_error=False)
    for flag in sorted(
        {f for s in VLLM.settings for f in s.flags if f.startswith("--")} | {"--api-key", "--host"}
    ):
        parser.add_argument(flag)
    redact = redact_with(Redactor(SALT))

    counted: list[int] = []

    @settings(FUZZ, max_examples=60)
    @given(st.integers(3, len("--api-key")), plain_secrets)
    def check(n: int, secret: str) -> None:
        counted.append(1)
        flag = "--api-key"[:n]
        try:
            ns, _ = parser.parse_known_args([flag, secret])
        except (argparse.ArgumentError, SystemExit):
            return  # ambiguous for argparse: the engine would not start
        if getattr(ns, "api_key", None) != secret:
            return
        parsed = parse_args(VLLM, ["vllm", "serve", "m", flag, secret], {}, redact)
        assert secret not in json.dumps([s.value for s in parsed.settings])

    check()
    _report(counted, "argparse prefixes", 5)
