"""The collector's CLI subcommands: API clients against a real collector, argument errors, and
``skewwatch collector`` as a real process stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collector.cli import collector_settings, format_history_table
from demo.harness import free_port
from tests.support.cli import parser, run
from tests.support.collector import BASE_FACTS, Running, hello_msg, make_snapshot, snapshot_msg
from tests.support.paths import REPO

# The shared `skewwatch` entry point lives elsewhere; this is the same wiring it uses.
RUNNER = (
    "import argparse, sys\n"
    "from collector.cli import register\n"
    "p = argparse.ArgumentParser(prog='skewwatch')\n"
    "register(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


async def feed(running: Running) -> None:
    s = running.stream()
    await s.exchange(hello_msg(1))
    await s.exchange(snapshot_msg(2, make_snapshot()))
    float32 = {**BASE_FACTS, "runtime.args.dtype": "float32", "runtime.dtype": "float32"}  # --dtype float32
    await s.exchange(snapshot_msg(3, make_snapshot(float32)))


async def test_pods_prints_a_table_and_json(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    await feed(running)
    assert await run(["pods", "--collector", running.http]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()
    assert header.split()[:4] == ["NAMESPACE", "POD", "NODE", "WORKLOAD"]
    assert row.split()[:4] == ["ml", "llm-0", "gpu-node-1", "ml/Deployment/llm"]
    assert "4 ok, 1 unavailable" in row  # the recording: NVML only is missing
    assert await run(["pods", "--collector", running.http, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["pods"][0]["pod"] == "llm-0"


async def test_history_table_shows_exactly_which_facts_changed(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await feed(running)
    assert await run(["history", "ml/llm-0", "--collector", running.http + "/"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ml/llm-0: 2 stored snapshot(s), newest first"
    assert "seq 3" in lines[1] and "2 change(s)" in lines[1]
    assert lines[2] == '    runtime.args.dtype: "float16" -> "float32"'
    assert lines[3] == '    runtime.dtype: "float16" -> "float32"'
    assert "seq 2" in lines[4] and f"first stored snapshot ({len(BASE_FACTS)} facts)" in lines[4]
    assert len(lines) == 5


async def test_collector_url_defaults_from_the_environment(
    running: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKEWWATCH_COLLECTOR_URL", running.http)
    assert await run(["pods", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"pods": []}


async def test_unknown_pod_history_is_a_one_line_error(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(["history", "ml/ghost", "--collector", running.http]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "ml/ghost" in err


async def test_unreachable_collector_is_a_one_line_error_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await run(["pods", "--collector", url, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewwatch pods: error: cannot reach collector at") and err.count("\n") == 1
    assert "Traceback" not in err


def test_history_table_marks_added_and_removed_keys() -> None:
    text = format_history_table(
        {
            "namespace": "ml",
            "pod": "p",
            "limit": 1,
            "next_before": 7,
            "snapshots": [
                {
                    "sequence": 9,
                    "collected_at": 0,
                    "fingerprint": {"overall": "ab" * 32},
                    "previous_id": 7,
                    "changes": [
                        {"key": "runtime.quantization", "change": "added", "before": None, "after": "fp8"},
                        {"key": "runtime.enforce_eager", "change": "removed", "before": True, "after": None},
                    ],
                },
            ],
        }
    )
    assert '    runtime.quantization: (absent) -> "fp8"' in text
    assert "    runtime.enforce_eager: true -> (absent)" in text
    assert "1970-01-01T00:00:00Z  seq 9  fingerprint abababababab" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "no-slash"],
        ["history", "ml/p", "--limit", "0"],
        ["pods", "--collector", "ftp://host"],
        ["pods", "--format", "xml"],
        ["pods", "-o", "csv"],
        ["pods", "-n", "ml", "-A"],
        ["findings", "--before", "0"],
        ["intent", "show", "Deployment/x"],
        ["completion", "fish"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parser().parse_args(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_collector_flags_default_from_environment_and_flags_win(tmp_path: Path) -> None:
    args = parser().parse_args(["collector", "--http", "127.0.0.1:9999"])
    env = {
        "SKEWWATCH_GRPC": "127.0.0.1:7777",
        "SKEWWATCH_HTTP": "127.0.0.1:1",
        "SKEWWATCH_STORE": f"sqlite:///{tmp_path}/x.db",
        "SKEWWATCH_INTENTS": str(tmp_path),
    }
    s = collector_settings(args, env)
    assert (s.grpc, s.http, s.store, s.intents) == (
        "127.0.0.1:7777",
        "127.0.0.1:9999",
        f"sqlite:///{tmp_path}/x.db",
        tmp_path,
    )


def test_collector_with_bad_settings_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["collector", "--grpc", "no-port"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "skewwatch collector: error: --grpc: must be HOST:PORT (or [IPv6]:PORT), got 'no-port'"
    )


def _start(tmp_path: Path, grpc_port: int, http_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER,
            "collector",
            "--grpc",
            f"127.0.0.1:{grpc_port}",
            "--http",
            f"127.0.0.1:{http_port}",
            "--store",
            f"sqlite:///{tmp_path}/c.db",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as r:
        status: int = r.status
        return status


def test_collector_process_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = _start(tmp_path, grpc_port, http_port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"http://127.0.0.1:{http_port}/readyz") == 200:
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate(timeout=5)
                assert time.monotonic() < deadline, "collector never became ready"
                time.sleep(0.1)  # poll interval: readiness of a subprocess, bounded by the deadline
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert f"(port {grpc_port})" in err and f"(port {http_port})" in err
    assert "collector stopped" in err
    # The store was closed: SQLite checkpoints and removes the WAL when its last connection closes.
    assert (tmp_path / "c.db").exists() and not (tmp_path / "c.db-wal").exists()


def test_collector_process_with_busy_port_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _start(tmp_path, free_port(), busy.getsockname()[1])
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("skewwatch collector: error: --http: cannot listen on")
    assert "Traceback" not in err
