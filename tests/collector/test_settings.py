"""Collector settings: environment variables, validation errors naming the flag."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from collector.errors import SettingsError
from collector.settings import CollectorSettings, split_hostport


def test_defaults_are_valid() -> None:
    s = CollectorSettings().validate()
    assert (s.grpc, s.http, s.store, s.max_message_bytes) == (
        "127.0.0.1:50051",
        "127.0.0.1:8080",
        "sqlite:///./skewwatch.db",
        4 * 1024 * 1024,
    )
    assert s.grpc_receive_limit > s.max_message_bytes


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    s = CollectorSettings.from_env(
        {
            "SKEWWATCH_GRPC": "0.0.0.0:6000",
            "SKEWWATCH_INSECURE": "true",
            "SKEWWATCH_HTTP": "[::1]:8081",
            "SKEWWATCH_STORE": f"sqlite:///{tmp_path}/c.db",
            "SKEWWATCH_INTENTS": str(tmp_path),
            "SKEWWATCH_MAX_MESSAGE_BYTES": "2048",
            "SKEWWATCH_OBSERVATION_HISTORY_DAYS": "1.5",
            "SKEWWATCH_HTTP_UNRELATED": "ignored",
        }
    ).validate()
    assert s.grpc == "0.0.0.0:6000" and s.http == "[::1]:8081" and s.intents == tmp_path
    assert s.max_message_bytes == 2048 and s.observation_history_days == 1.5


def test_unparsable_variable_is_named() -> None:
    with pytest.raises(SettingsError, match="SKEWWATCH_MAX_MESSAGE_BYTES: cannot parse 'lots'"):
        CollectorSettings.from_env({"SKEWWATCH_MAX_MESSAGE_BYTES": "lots"})


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"grpc": "localhost"}, "--grpc"),
        ({"http": "h:99999"}, "--http"),
        ({"store": "redis://x"}, "--store"),
        ({"intents": Path("/nonexistent/intents")}, "--intents"),
        ({"max_message_bytes": 10}, "--max-message-bytes"),
        ({"max_streams": 0}, "--max-streams"),
    ],
)
def test_invalid_setting_names_its_flag(change: dict[str, object], flag: str) -> None:
    with pytest.raises(SettingsError) as e:
        replace(CollectorSettings(), **change).validate()  # type: ignore[arg-type]
    assert e.value.flag == flag and str(e.value).startswith(flag + ":")


def test_hostport_split_handles_ipv6_and_empty_host() -> None:
    assert split_hostport("[::1]:50051", "--grpc") == ("::1", 50051)
    assert split_hostport(":8080", "--http") == ("", 8080)
