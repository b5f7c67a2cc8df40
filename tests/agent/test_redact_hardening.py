"""Attacks on redaction through the real parsing paths: every shape must come out redacted.

Class A: runtime-reported values (metric labels, info endpoints) pass the central pass of
``collect_snapshot`` like every other fact. Class B: secrets on the command line and in env are
judged by their parsed meaning — the flag a prefix resolves to, keys inside JSON/YAML values,
header syntax, ``KEY=VALUE`` lists. Each test drives the real code (``build_result``,
``parse_args``, ``interpret_families``, ``interpret_info``, ``collect_snapshot``) and asserts
the raw secret appears nowhere in ``Snapshot.to_json()`` nor in ``ProcessInfo``.
"""

from __future__ import annotations

import base64
import json
from pathlib import PurePosixPath

import pytest

from agent.engines import SGLANG, VLLM
from agent.engines.base import InfoEndpoint
from agent.engines.parse import parse_args, redact_with
from agent.promtext import parse_metrics_text
from agent.settings import AgentSettings
from agent.snapshot import collect_snapshot
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from agent.sources.process import Found, build_result
from agent.sources.runtime_metrics import interpret_families, interpret_info
from skewwatch.core.facts import Fact, Provenance, Snapshot, SourceState, SourceStatus
from skewwatch.redact import (
    REDACTED_PREFIX,
    Redactor,
    is_redacted,
    redact_collected,
    redact_fact,
)

SALT = "hardening-salt"
# Secrets that no shape rule knows: only their meaning (name, flag, header, key) gives them away.
PLAIN = "Zq9xW2pL7mN4vB8c"
PLAIN2 = "Kd3rT6yH1jF5gS0a"
PLAIN3 = "Wm8nQ2zX4cV7bL1p"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
SK = "sk-proj-0123456789abcdefghijklmnopqrstuv"
AWS = "AKIAIOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


class FakeSource:
    def __init__(self, name: str, result: SourceResult) -> None:
        self.name = name
        self.result = result

    async def collect(self, ctx: CollectContext) -> SourceResult:
        return self.result


def settings() -> AgentSettings:
    return AgentSettings(redaction_salt=SALT)


def process_result(argv: list[str], env: dict[str, str] | None = None, **kw: object) -> SourceResult:
    return build_result(
        settings(),
        found=Found(4242, argv, "--pid"),
        env=env or {},
        cwd=PurePosixPath("/"),
        process_root=None,
        problems=[],
        **kw,  # type: ignore[arg-type]
    )


async def snapshot_of(*results: tuple[str, SourceResult]) -> Snapshot:
    sources = [FakeSource(name, result) for name, result in results]
    return await collect_snapshot(sources, CollectContext(settings()), timeout_s=5.0)


def assert_clean(secrets: tuple[str, ...], *things: object) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else json.dumps(thing, default=repr, ensure_ascii=False)
        for secret in secrets:
            assert secret not in text, f"raw secret {secret[:6]}… survived in {text[:2000]}"


async def assert_process_clean(argv: list[str], env: dict[str, str], *secrets: str) -> Snapshot:
    result = process_result(argv, env)
    assert result.process is not None
    snap = await snapshot_of(("process", result))
    assert_clean(secrets, snap.to_json(), repr(result.process), result.message)
    # Also what the process source itself hands the other sources: ProcessInfo argv and env.
    assert_clean(secrets, list(result.process.argv), dict(result.process.env))
    return snap


# --- class B: command line and env ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--api-ke", PLAIN],  # a unique prefix argparse accepts
        ["--api-k", PLAIN],
        ["--api-ke=" + PLAIN],
        ["--api_key", PLAIN],
        ["--api-key=" + PLAIN],
        ["--api_ke=" + PLAIN],
        ["--hf-token", PLAIN],
        ["--hf-tok", PLAIN],  # prefix of a secret flag the table does not list
        ["--hf_token=" + PLAIN],
        ["--admin-api", PLAIN],
        ["--api-key", PLAIN, PLAIN2],  # vLLM takes one or more keys
        ["--API-KEY", PLAIN],
    ],
)
async def test_secret_flags_by_prefix_and_spelling_are_redacted(args: list[str]) -> None:
    argv = ["vllm", "serve", "org/model", "--dtype", "float16", *args, "--port", "8001"]
    snap = await assert_process_clean(argv, {}, PLAIN, PLAIN2)
    facts = snap.to_json()["facts"]
    assert isinstance(facts, dict)
    assert facts["serving.port"] == 8001 and facts["runtime.dtype"] == "float16"
    assert facts.get("model.id") == "org/model"


async def test_a_unique_prefix_resolves_to_the_api_key_flag() -> None:
    snap = await assert_process_clean(["vllm", "serve", "m", "--api-ke", PLAIN], {}, PLAIN)
    facts = snap.to_json()["facts"]
    assert isinstance(facts, dict)
    assert str(facts["runtime.args.api_key"]).startswith(REDACTED_PREFIX)
    assert facts["serving.api_key_required"] is True


async def test_several_api_keys_never_become_the_model() -> None:
    argv = ["vllm", "serve", "--model", "org/m", "--api-key", PLAIN, PLAIN2]
    snap = await assert_process_clean(argv, {}, PLAIN, PLAIN2)
    facts = snap.to_json()["facts"]
    assert isinstance(facts, dict)
    assert facts["model.id"] == "org/m"
    keys = facts["runtime.args.api_key"]
    assert isinstance(keys, list) and all(is_redacted(k) for k in keys)


@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"hf_token": PLAIN}),
        json.dumps({"rope_scaling": {"type": "yarn"}, "auth": {"user": "u", "password": PLAIN}}),
        json.dumps({"headers": {"Authorization": f"Bearer {PLAIN}"}}),
        json.dumps({"extra": [{"name": "x", "api_key": PLAIN}]}),
        json.dumps({"url": f"https://user:{PLAIN}@hub.example/m"}),
        json.dumps({"note": f"token {HF}"}),
        json.dumps({"env": [f"HF_TOKEN={PLAIN}", "A=1"]}),
        json.dumps({"hf_token": 1234567890123}),  # a numeric secret is still a secret
        "{hf_token: " + PLAIN + "}",  # YAML flow mapping
        "{'hf_token': '" + PLAIN + "'}",  # Python-literal style: YAML reads it
        '{"hf_token": "' + PLAIN + '", "x": ',  # unparsable: redacted whole when it holds a secret
        '{"x": "ok", "x": "' + HF + '"}',  # a duplicate key hides nothing
        "hf_token: " + PLAIN + "\nrope_theta: 10000\n",  # YAML block
    ],
)
async def test_secrets_inside_json_and_yaml_valued_args_are_redacted(value: str) -> None:
    secret = "1234567890123" if "1234567890123" in value else (HF if HF in value else PLAIN)
    for args in (["--hf-overrides", value], ["--hf-overrides=" + value], ["--speculative-config", value]):
        await assert_process_clean(["vllm", "serve", "m", *args], {}, secret)
    # and in env values
    await assert_process_clean(["vllm", "serve", "m"], {"VLLM_EXTRA_CONFIG": value}, secret)


def test_structured_values_without_secrets_are_kept_as_written() -> None:
    spec = '{"method": "ngram", "num_speculative_tokens": 5}'
    p = parse_args(
        VLLM, ["vllm", "serve", "m", "--speculative-config", spec], {}, redact_with(Redactor(SALT))
    )
    assert p.value("runtime.speculative_config") == spec
    assert p.value("runtime.args.speculative_config") == spec


def test_redacted_json_is_reserialised_deterministically_and_keeps_the_rest() -> None:
    r = Redactor(SALT)
    a = r.value("x", '{"b": 1, "hf_token": "' + PLAIN + '", "a": {"c": "d"}}')
    b = r.value("x", '{"a": {"c": "d"}, "hf_token": "' + PLAIN + '",   "b": 1}')
    assert a == b and PLAIN not in a
    doc = json.loads(a)
    assert doc["a"] == {"c": "d"} and doc["b"] == 1 and is_redacted(doc["hf_token"])
    assert r.value("x", a) == a  # idempotent


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VLLM_HTTP_HEADERS", f"Authorization: Bearer {PLAIN}"),
        ("VLLM_HTTP_HEADERS", f"authorization:Bearer {PLAIN}"),
        ("VLLM_HTTP_HEADERS", f"Authorization: {PLAIN}"),
        ("VLLM_HTTP_HEADERS", f"X-Api-Key: {PLAIN}"),
        (
            "VLLM_HTTP_HEADERS",
            f"Proxy-Authorization: Basic {base64.b64encode(b'u:' + PLAIN.encode()).decode()}",
        ),
        ("VLLM_NOTE", f"curl -H 'Authorization: Bearer {PLAIN}' http://x"),
        ("VLLM_NOTE", f"Bearer {PLAIN}"),
        ("VLLM_NOTE", f"Basic {base64.b64encode(b'user:' + PLAIN.encode()).decode()}"),
        ("VLLM_EXTRA_ENV", f"A=1,HF_TOKEN={PLAIN},B=2"),
        ("VLLM_EXTRA_ENV", f"A=1;HF_TOKEN={PLAIN};B=2"),
        ("VLLM_EXTRA_ENV", f"A=1 API_KEY={PLAIN} B=2"),
        ("VLLM_EXTRA_ENV", f'HF_TOKEN="{PLAIN}"'),
        ("VLLM_DSN", f"postgresql://app:{PLAIN}@db:5432/x"),
        ("VLLM_ENDPOINT", f"redis://default:{PLAIN}@cache:6379?x=1"),
        ("VLLM_ADDITIONAL_ARGS", f"--api-ke {PLAIN} --max-model-len 4096"),
        ("VLLM_ADDITIONAL_ARGS", f'--hf-overrides \'{{"hf_token": "{PLAIN}"}}\''),
        ("VLLM_ADDITIONAL_ARGS", f"--api-key={PLAIN}"),
        ("VLLM_ADDITIONAL_ARGS", f"--api-key {PLAIN2} {PLAIN} --port 8000"),
        ("VLLM_ADDITIONAL_ARGS", f'--api-key "{PLAIN2}" "{PLAIN}"'),
        ("HF_TOKEN", PLAIN),
        ("VLLM_API_KEY", PLAIN),
        ("CUDA_SOMETHING", f"x {AWS} y"),
        ("NCCL_X", JWT),
    ],
)
async def test_secrets_in_env_values_by_shape_and_syntax_are_redacted(name: str, value: str) -> None:
    await assert_process_clean(["vllm", "serve", "m"], {name: value}, PLAIN, AWS, JWT)


async def test_header_redaction_keeps_the_scheme_and_stays_stable() -> None:
    r = Redactor(SALT)
    out = r.value("VLLM_HTTP_HEADERS", f"Authorization: Bearer {PLAIN}")
    assert out.startswith("Authorization: Bearer " + REDACTED_PREFIX) and PLAIN not in out
    assert r.value("VLLM_HTTP_HEADERS", out) == out


async def test_vllm_additional_args_spliced_or_not_are_redacted_with_their_origin() -> None:
    extra = f'--api-ke {PLAIN} --hf-overrides {{"hf_token":"{PLAIN2}"}}'
    for argv in (
        ["vllm", "serve", "m"],
        ["vllm", "serve", "m", "--api-ke", PLAIN, "--hf-overrides", f'{{"hf_token":"{PLAIN2}"}}'],
    ):
        snap = await assert_process_clean(argv, {"VLLM_ADDITIONAL_ARGS": extra}, PLAIN, PLAIN2)
        facts = snap.to_json()["facts"]
        assert isinstance(facts, dict)
        assert facts["serving.api_key_required"] is True


async def test_secrets_in_a_shell_script_are_redacted() -> None:
    script = (
        f"export HF_TOKEN={PLAIN}; exec vllm serve m --api-ke {PLAIN2} "
        f'--hf-overrides \'{{"hf_token": "{PLAIN3}"}}\' --port 8000'
    )
    await assert_process_clean(["/bin/sh", "-c", script], {}, PLAIN, PLAIN2, PLAIN3)


async def test_shell_script_line_continuations_do_not_hide_a_flag_value() -> None:
    script = f"vllm serve m \\\n  --api-key \\\n  {PLAIN} \\\n  --port 8000"
    await assert_process_clean(["/bin/bash", "-c", script], {}, PLAIN)


async def test_secrets_in_a_config_file_are_redacted() -> None:
    text = (
        f"hf_token: {PLAIN}\napi-ke: {PLAIN2}\nhf_overrides: {{auth_token: {PLAIN3}}}\nmax-model-len: 2048\n"
    )
    result = process_result(["vllm", "serve", "m", "--config", "/c.yaml"], {}, config_files={"/c.yaml": text})
    snap = await snapshot_of(("process", result))
    assert_clean((PLAIN, PLAIN2, PLAIN3), snap.to_json(), repr(result.process), result.message)


async def test_url_credentials_in_the_model_argument_are_redacted() -> None:
    await assert_process_clean(["vllm", "serve", f"s3://key:{PLAIN}@bucket/model"], {}, PLAIN)


@pytest.mark.parametrize("secret", [HF, SK, AWS, JWT, "ghp_" + "a" * 36, "nvapi-" + "x" * 30])
async def test_secret_shapes_as_plain_values_are_redacted(secret: str) -> None:
    argv = ["vllm", "serve", "m", "--served-model-name", secret, "--tokenizer-mode", f"x{'-'}{secret}"]
    await assert_process_clean(argv, {"VLLM_X": f"prefix {secret} suffix"}, secret)


async def test_sglang_prefix_and_tgi_spelling_are_redacted() -> None:
    await assert_process_clean(
        ["python3", "-m", "sglang.launch_server", "--model-path", "m", "--api-ke", PLAIN], {}, PLAIN
    )
    await assert_process_clean(["text-generation-launcher", "--model-id", "m", "--api-key", PLAIN], {}, PLAIN)


async def test_a_secret_shaped_flag_name_does_not_become_a_fact_key_in_clear() -> None:
    await assert_process_clean(
        ["vllm", "serve", "m", f"--{HF}", "1", f"--x{JWT}", "--x-" + SK], {}, HF, JWT, SK
    )


async def test_unreadable_values_of_secret_flags_do_not_leak_through_problems() -> None:
    # A value a secret flag's table setting cannot convert: the problem message is redacted too.
    p = parse_args(VLLM, ["vllm", "serve", "m", "--max-model-len", HF], {}, redact_with(Redactor(SALT)))
    assert p.problems and all(HF not in m for m in p.problems)


def test_argv_redaction_of_process_info_by_meaning() -> None:
    r = Redactor(SALT)
    argv = [
        "vllm", "serve", "m", "--api-ke", PLAIN, "--hf-overrides", f'{{"hf_token": "{PLAIN2}"}}',
        f"--api_key={PLAIN3}", "--hf-token", "--port", "8000", "-tp", "2",
    ]  # fmt: skip
    out = r.argv(argv)
    assert_clean((PLAIN, PLAIN2, PLAIN3), out)
    assert out[:3] == ["vllm", "serve", "m"] and out[-4:] == ["--port", "8000", "-tp", "2"]
    assert r.argv(out) == out  # idempotent


def test_non_secrets_stay_as_they_are() -> None:
    r = Redactor(SALT)
    for name, value in [
        ("VLLM_ATTENTION_BACKEND", "FLASH_ATTN"),
        ("NCCL_IB_HCA", "mlx5_0,mlx5_1"),
        ("VLLM_LOGGING_CONFIG", '{"version": 1, "handlers": {}}'),
        ("VLLM_NOTE", "basic setup for a bearer of news"),
        ("VLLM_HOSTS", "[::1]"),
        ("VLLM_URL", "http://host:8000/v1"),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("VLLM_X", "max_num_batched_tokens=8192"),
    ]:
        assert r.value(name, value) == value, name


# --- class A: runtime-reported values ---------------------------------------------------------

CACHE_LABELS = ",".join(
    [
        'block_size="16"',
        'cache_dtype="auto"',
        'engine="0"',
        'gpu_memory_utilization="0.9"',
        f'hf_token="{PLAIN}"',
        f'api_key="{PLAIN2}"',
        'num_gpu_blocks="2048"',
        f'remote_url="s3://user:{PLAIN3}@bucket/m"',
        f'headers="Authorization: Bearer {PLAIN}"',
        f'note="{HF}"',
        'password="123456789"',
    ]
)
LORA_LABELS = f'engine="0",max_loras="4",auth_token="{PLAIN2}",adapter_source="https://u:{PLAIN3}@hub/x"'
METRICS = f"""\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{{CACHE_LABELS}}} 1.0
# HELP vllm:lora_config_info LoRA config
# TYPE vllm:lora_config_info gauge
vllm:lora_config_info{{{LORA_LABELS}}} 1.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{SK}"}} 0.0
"""


async def test_metric_labels_with_secret_names_and_shapes_are_redacted() -> None:
    interpretation = interpret_families(parse_metrics_text(METRICS, "test"))
    raw = interpretation.facts.facts
    keys = {f.key for f in raw}
    assert "runtime.cache_config.hf_token" in keys and "runtime.lora_config.auth_token" in keys
    # The source stores them as read: the central pass is what redacts them.
    assert any(PLAIN in json.dumps(f.value) or PLAIN in f.provenance.detail for f in raw)
    result = SourceResult(SourceState.OK, "; ".join(interpretation.notes), raw)
    snap = await snapshot_of(("runtime_metrics", result))
    assert_clean((PLAIN, PLAIN2, PLAIN3, HF, SK, "123456789"), snap.to_json())
    facts = snap.facts
    assert facts["runtime.num_gpu_blocks"].value == 2048 if "runtime.num_gpu_blocks" in facts else True
    assert facts["runtime.block_size"].value == 16
    hf = facts["runtime.cache_config.hf_token"]
    assert is_redacted(str(hf.value))
    assert hf.provenance.source == "runtime_metrics" and hf.provenance.method == "runtime-reported"
    assert "hf_token=" in hf.provenance.detail and PLAIN not in hf.provenance.detail
    assert str(facts["runtime.cache_config.remote_url"].value).startswith("s3://user:" + REDACTED_PREFIX)
    assert is_redacted(str(facts["runtime.cache_config.password"].value))


@pytest.mark.parametrize(
    ("endpoint", "doc", "secrets"),
    [
        (
            InfoEndpoint("/get_server_info", {"server_args.api_key": ("runtime.server_args.api_key", "str")}),
            {"server_args": {"api_key": PLAIN}},
            (PLAIN,),
        ),
        (
            InfoEndpoint(
                "/get_server_info", {"server_args.hf_token": ("runtime.server_args.hf_token", "str")}
            ),
            {"server_args": {"hf_token": PLAIN}},
            (PLAIN,),
        ),
        (SGLANG.metrics.info_endpoints[0], {"version": f"0.4.1 {HF}", "dtype": "bfloat16"}, (HF,)),
        (VLLM.metrics.info_endpoints[0], {"version": f"https://ci:{PLAIN}@build.example/0.9"}, (PLAIN,)),
        (
            InfoEndpoint("/v1/models", {"data.0.root": ("runtime.model_root", "str")}),
            {"data": [{"root": f"s3://AK:{PLAIN}@bucket/llama", "max_model_len": 4096}]},
            (PLAIN,),
        ),
        (
            InfoEndpoint("/get_server_info", {"server_args.headers": ("runtime.server_args.headers", "str")}),
            {"server_args": {"headers": f"Authorization: Bearer {PLAIN}"}},
            (PLAIN,),
        ),
    ],
)
async def test_info_endpoint_values_are_redacted(
    endpoint: InfoEndpoint, doc: dict[str, object], secrets: tuple[str, ...]
) -> None:
    builder = FactBuilder("runtime_metrics")
    problems = interpret_info(endpoint, doc, builder, endpoint.path)
    assert builder.facts, problems
    snap = await snapshot_of(
        ("runtime_metrics", SourceResult(SourceState.OK, "; ".join(problems), builder.facts))
    )
    assert_clean(secrets, snap.to_json())


async def test_runtime_reported_maps_and_lists_are_walked() -> None:
    fb = FactBuilder("runtime_metrics")
    fb.add(
        "runtime.server_args",
        {
            "api_key": PLAIN,
            "model_path": "org/m",
            "tp_size": 2,
            "nested": {"hf_token": [PLAIN2, PLAIN3], "enable": True},
            "urls": [f"https://u:{PLAIN}@x/y", "http://plain/"],
            "env": {"HF_TOKEN": 12345678},
        },
        "runtime-reported",
        "/get_server_info field server_args",
    )
    fb.add("runtime.env.HF_TOKEN", PLAIN, "runtime-reported", "env")
    fb.add("runtime.args.api_ke", PLAIN2, "runtime-reported", "prefix")
    snap = await snapshot_of(("runtime_metrics", SourceResult(SourceState.OK, "", fb.facts)))
    assert_clean((PLAIN, PLAIN2, PLAIN3, "12345678"), snap.to_json())
    args = snap.facts["runtime.server_args"].value
    assert isinstance(args, dict)
    assert args["model_path"] == "org/m" and args["tp_size"] == 2
    nested = args["nested"]
    assert isinstance(nested, dict) and nested["enable"] is True
    assert args["urls"] == [args["urls"][0], "http://plain/"]  # type: ignore[index]


async def test_source_messages_quoting_secrets_are_redacted() -> None:
    message = f'test: line 3: invalid exposition format: \'x{{hf_token="{PLAIN}",k="{HF}"}} 1\''
    snap = await snapshot_of(("runtime_metrics", SourceResult(SourceState.ERROR, message, [])))
    assert_clean((PLAIN, HF), snap.to_json())


# --- the central pass -------------------------------------------------------------------------


def _fact(key: str, value: object, detail: str = "", inputs: tuple[str, ...] = ()) -> Fact:
    return Fact(key, value, Provenance("s", "runtime-reported", detail, inputs))  # type: ignore[arg-type]


def test_central_pass_is_idempotent_and_keeps_provenance() -> None:
    facts = {
        f.key: f
        for f in [
            _fact("runtime.cache_config.hf_token", PLAIN, f"label hf_token={PLAIN!r}", ("runtime.dtype",)),
            _fact("runtime.args.api_key", ["a" * 8, "b" * 8]),
            _fact("runtime.env.VLLM_X", f"Authorization: Bearer {PLAIN2}"),
            _fact("serving.api_key_required", True),
            _fact("runtime.max_num_batched_tokens", 8192),
            _fact("runtime.max_total_tokens", 100),
            _fact("runtime.dtype", "bfloat16"),
            _fact("runtime.config", '{"a": {"client_secret": "' + PLAIN3 + '"}}'),
        ]
    }
    statuses = {"s": SourceStatus("s", SourceState.OK, f"saw api_key={PLAIN}")}
    once, st1 = redact_collected(facts, statuses, SALT)
    twice, st2 = redact_collected(once, st1, SALT)
    assert once == twice and st1 == st2
    assert_clean(
        (PLAIN, PLAIN2, PLAIN3, "a" * 8), {k: (f.value, f.provenance.as_dict()) for k, f in once.items()}
    )
    assert PLAIN not in st1["s"].message
    hf = once["runtime.cache_config.hf_token"]
    assert hf.provenance.inputs == ("runtime.dtype",) and hf.provenance.source == "s"
    assert once["serving.api_key_required"].value is True
    assert once["runtime.max_num_batched_tokens"].value == 8192
    assert once["runtime.max_total_tokens"].value == 100
    assert once["runtime.dtype"] is facts["runtime.dtype"]  # untouched facts are the same objects


def test_already_redacted_values_are_stable_under_any_salt() -> None:
    d = Redactor("other-salt").digest(PLAIN)
    f = _fact("runtime.env.HF_TOKEN", d)
    assert redact_fact(f, Redactor(SALT)) is f
    forged = f"{REDACTED_PREFIX}0123456789abcdef {PLAIN}"  # looks redacted, is not
    assert PLAIN not in str(redact_fact(_fact("runtime.env.HF_TOKEN", forged), Redactor(SALT)).value)


def test_secret_shaped_key_segments_are_redacted() -> None:
    f = redact_fact(_fact(f"runtime.cache_config.{HF.lower()}", 1, f"label {HF.lower()}='1'"), Redactor(SALT))
    assert HF.lower() not in f.key and HF.lower() not in f.provenance.detail
