"""Redaction: secret names and secret-shaped values are replaced by salted digests."""

from __future__ import annotations

import pytest

from agent.promtext import parse_metrics_text
from agent.sources.runtime_metrics import interpret_families
from skewwatch.redact import REDACTED_PREFIX, Redactor, is_secret_name, is_secret_value, redact_fact

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
SK = "sk-proj-0123456789abcdefghijklmnopqrstuv"


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "api-key",
        "--api-key",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "VLLM_API_KEY",
        "hf-token",
        "client_secret",
        "NGC_API_KEY",
        "AUTHORIZATION",
    ],
)
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "max_num_batched_tokens",
        "MAX_TOTAL_TOKENS",
        "MAX_BATCH_PREFILL_TOKENS",
        "max-input-tokens",
        "tokenizer",
        "tokenizer-mode",
        "TOKENIZERS_PARALLELISM",
        "dtype",
        "NCCL_IB_HCA",
        "HF_HOME",
        "max-tokens",
    ],
)
def test_configuration_names_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


# Names where tokens are counted or sized (vLLM 0.32's cache_config_info labels among them).
TOKEN_MEASURES = [
    "kv_cache_size_tokens",
    "runtime.cache_config.kv_cache_size_tokens",
    "runtime.kv_cache_tokens",
    "cache_hit_alignment_tokens",
    "size_tokens",
    "alignment_tokens",
    "capacity_tokens",
    "cached_tokens",
    "prompt_tokens",
    "generation_tokens",
    "output_tokens",
    "input_tokens",
    "computed_tokens",
    "batched_tokens",
    "total_tokens",
    "tokens_total",
    "vllm:prompt_tokens_total",
    "NUM_COMPUTED_TOKENS",
    "prefill-tokens",
]
# Names of real secrets: whose token it is, not how many.
TOKEN_SECRETS = [
    "hf_token",
    "HF_TOKEN",
    "access_token",
    "auth_token",
    "api_tokens",
    "github_token",
    "token",
    "refresh_token",
    "id_token",
    "bearer_token",
    "session_token",
    "runtime.cache_config.hf_token",
    "output_tokens_api_key",  # a measured part does not hide a secret word elsewhere in the name
    "prompt_tokens_auth_token",
    "hf_tokenizer_token",
]


@pytest.mark.parametrize("name", TOKEN_MEASURES)
def test_names_measuring_tokens_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)
    assert Redactor("s").value(name, "1048576") == "1048576"
    assert Redactor("s").value(name, "None") == "None"


@pytest.mark.parametrize("name", TOKEN_SECRETS)
def test_names_of_tokens_held_are_secret(name: str) -> None:
    assert is_secret_name(name)
    assert Redactor("s").value(name, "1048576").startswith(REDACTED_PREFIX)


@pytest.mark.parametrize("name", ["kv_cache_size_tokens", "prompt_tokens", "tokens_total"])
def test_a_secret_shaped_value_is_redacted_under_a_token_measuring_name(name: str) -> None:
    for value in (HF, SK):
        out = Redactor("s").value(name, value)
        assert out.startswith(REDACTED_PREFIX) and value not in out


def test_vllm_cache_config_token_sizes_survive_the_central_pass() -> None:
    # vLLM 0.32 (CPU build) labels, as its /metrics serves them.
    text = (
        "# TYPE vllm:cache_config_info gauge\n"
        'vllm:cache_config_info{block_size="16",cache_hit_alignment_tokens="None",'
        f'engine="0",kv_cache_size_tokens="1048576",hf_token="{HF}"}} 1.0\n'
    )
    facts = interpret_families(parse_metrics_text(text, "test")).facts.facts
    raw = {f.key: f.value for f in facts}
    out = {f.key: redact_fact(f, Redactor("s")).value for f in facts}
    # Under runtime.cache_config, or under a canonical key where the vLLM table names the label.
    sizes = [k for k in raw if k.endswith(("kv_cache_size_tokens", "kv_cache_tokens"))]
    assert len(sizes) == 1 and str(raw[sizes[0]]) == "1048576"
    for key in (*sizes, "runtime.cache_config.cache_hit_alignment_tokens"):
        assert out[key] == raw[key], key
    assert str(out["runtime.cache_config.hf_token"]).startswith(REDACTED_PREFIX)


@pytest.mark.parametrize("value", [HF, SK, "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a" * 36, "nvapi-" + "x" * 30])
def test_secret_shaped_values_are_recognised(value: str) -> None:
    assert is_secret_value(value)


def test_redacted_value_is_a_stable_salted_digest() -> None:
    r = Redactor("salt-a")
    d = r.value("HF_TOKEN", HF)
    assert d.startswith(REDACTED_PREFIX) and HF not in d
    assert r.value("HF_TOKEN", HF) == d  # stable, so replicas compare
    assert r.value("HF_TOKEN", HF + "x") != d  # a change is visible
    assert Redactor("salt-b").value("HF_TOKEN", HF) != d  # salted per installation


def test_secret_shaped_value_is_redacted_under_any_name() -> None:
    assert Redactor("s").value("SOME_VAR", SK).startswith(REDACTED_PREFIX)


def test_secret_key_ref_names_are_always_redacted() -> None:
    env = Redactor("s").env({"MY_SETTING": "plain", "OTHER": "x"}, secret_names=frozenset({"MY_SETTING"}))
    assert env["MY_SETTING"].startswith(REDACTED_PREFIX)
    assert env["OTHER"] == "x"


def test_argv_redacts_flag_values_in_both_forms() -> None:
    argv = ["vllm", "serve", "m", "--api-key", SK, "--hf-token=" + HF, "--max-num-batched-tokens", "8192"]
    out = Redactor("s").argv(argv)
    text = " ".join(out)
    assert SK not in text and HF not in text
    assert out[3] == "--api-key" and out[4].startswith(REDACTED_PREFIX)
    assert out[5].startswith("--hf-token=" + REDACTED_PREFIX)
    assert out[6:] == ["--max-num-batched-tokens", "8192"]


def test_shell_script_text_is_redacted() -> None:
    script = f"export HF_TOKEN={HF}; vllm serve m --api-key {SK} --max-model-len 4096"
    out = Redactor("s").text(script)
    assert HF not in out and SK not in out
    assert "--max-model-len 4096" in out


def test_url_credentials_are_redacted() -> None:
    out = Redactor("s").value("DATABASE_URL", "postgresql://user:hunter2@db:5432/x")
    assert "hunter2" not in out and out.startswith("postgresql://user:")
