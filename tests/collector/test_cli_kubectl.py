"""The query commands' kubectl habits against a real collector: ``-o table|wide|json|yaml``,
``-n/-A``, ``--exit-code``, the "more results" hint, the gRPC-port mistake named, flags after the
subcommand, and ``skewwatch completion``."""

from __future__ import annotations

import io
import json
import subprocess
import time

import pytest
import yaml
from rich.console import Console

from collector.cli.output import Column, Table, age, with_rfc3339
from tests.support.cli import parser, run, run_process
from tests.support.cli_state import FLOAT32, drifted, pod, settle
from tests.support.collector import BASE_FACTS, Running, make_snapshot, snapshot_msg


async def out_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_pods_wide_adds_columns_and_yaml_adds_rfc3339_times(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await pod(running, "llm-0")
    _, table, _ = await out_of(["pods", "--collector", running.http], capsys)
    _, wide, _ = await out_of(["pods", "-o", "wide", "--collector", running.http], capsys)
    assert "AGE" not in table.splitlines()[0] and "STREAMS" not in table.splitlines()[0]
    assert {"AGE", "STREAMS"} <= set(wide.splitlines()[0].split())
    # LAST SEEN is an age, like kubectl's: the snapshot just arrived.
    header, row = table.splitlines()
    assert row[header.index("LAST SEEN") :].split()[0].endswith("s")

    _, text, _ = await out_of(["pods", "-o", "yaml", "--collector", running.http], capsys)
    (p,) = yaml.safe_load(text)["pods"]
    assert isinstance(p["last_seen"], float)  # the API's number stays
    assert p["last_seen_rfc3339"].endswith("Z") and p["last_seen_rfc3339"][:4] == time.strftime("%Y")
    _, text, _ = await out_of(["pods", "--format", "json", "--collector", running.http], capsys)
    assert json.loads(text)["pods"][0]["first_seen_rfc3339"] == p["first_seen_rfc3339"]


async def test_namespace_flag_filters_pods_findings_and_status(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await drifted(running)
    await pod(running, "other-0", namespace="team-b")
    await settle(running)
    _, out, _ = await out_of(["pods", "-n", "team-b", "-o", "json", "--collector", running.http], capsys)
    assert [p["pod"] for p in json.loads(out)["pods"]] == ["other-0"]
    _, out, _ = await out_of(["pods", "-A", "-o", "json", "--collector", running.http], capsys)
    assert {p["namespace"] for p in json.loads(out)["pods"]} == {"ml", "team-b"}
    _, out, _ = await out_of(["findings", "-n", "team-b", "-o", "json", "--collector", running.http], capsys)
    assert json.loads(out)["findings"] == []
    _, out, _ = await out_of(
        ["findings", "--namespace", "ml", "-o", "json", "--collector", running.http], capsys
    )
    assert [f["key"] for f in json.loads(out)["findings"]] == ["runtime.dtype"]
    _, out, _ = await out_of(["status", "-n", "team-b", "--collector", running.http], capsys)
    assert "team-b/" in out and "ml/" not in out


async def test_findings_table_has_columns_ages_and_hints(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await drifted(running)
    code, out, _ = await out_of(["findings", "--collector", running.http], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "SEVERITY", "STATUS", "WORKLOAD", "KEY", "REFERENCE", "AGE", "MESSAGE"]
    row = lines[1]
    assert row.split()[2:5] == ["open", "ml/Deployment/llm", "runtime.dtype"]
    assert row[lines[0].index("AGE") :].split()[0].endswith("s")
    assert any(line.startswith(f"#{row.split()[0]} hint: ") for line in lines)
    _, wide, _ = await out_of(["findings", "-o", "wide", "--collector", running.http], capsys)
    assert wide.splitlines()[0].split()[-6:] == ["MESSAGE", "CATEGORY", "PODS", "LAST", "SEEN", "RESOLVED"]
    assert "CATEGORY" not in lines[0] and "llm-2" in wide.splitlines()[1]


async def test_exit_code_is_1_with_findings_or_drift_and_0_without(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(2):
        await pod(running, f"llm-{i}")
    await settle(running)
    base = ["--collector", running.http, "--exit-code"]
    assert (await out_of(["findings", *base], capsys))[0] == 0
    assert (await out_of(["diff", "ml/llm", "--pods", "llm-0", "llm-1", *base], capsys))[0] == 0
    await pod(running, "llm-2", facts=FLOAT32)
    await settle(running)
    code, out, _ = await out_of(["findings", *base], capsys)
    assert code == 1 and "runtime.dtype" in out
    code, out, _ = await out_of(["diff", "ml/llm", "--pods", "llm-0", "llm-2", *base], capsys)
    assert code == 1 and 'runtime.dtype: "float16" -> "float32"' in out
    # Without --exit-code, drift is not a failure.
    assert (await out_of(["findings", "--collector", running.http], capsys))[0] == 0


async def test_a_limit_that_cuts_the_list_says_so_on_stderr(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await drifted(running)
    await pod(running, "llm-3", facts={"runtime.max_model_len": 1024})
    await settle(running)
    code, out, err = await out_of(
        ["findings", "--limit", "1", "-o", "json", "--collector", running.http], capsys
    )
    assert code == 0 and len(json.loads(out)["findings"]) == 1
    assert err.startswith("skewwatch findings: 1 shown, more exist; see the next ones with --before ")
    cursor = err.split("--before ")[1].strip()
    code, out, err = await out_of(
        ["findings", "--limit", "1", "--before", cursor, "-o", "json", "--collector", running.http], capsys
    )
    assert code == 0 and len(json.loads(out)["findings"]) == 1 and err == ""


async def test_the_grpc_port_given_as_the_api_url_is_named_in_one_line(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await out_of(["pods", "--collector", f"http://127.0.0.1:{running.grpc_port}"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(
        f"skewwatch pods: error: http://127.0.0.1:{running.grpc_port} looks like the collector's gRPC"
    )
    assert "--collector http://127.0.0.1:8080 or SKEWWATCH_COLLECTOR_URL" in err


async def test_http_errors_name_no_api_route(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await out_of(["status", "ml/ghost", "--collector", running.http], capsys)
    assert code == 1 and "HTTP 404" in err and "/api/v1" not in err and err.count("\n") == 1


def test_log_level_and_output_are_taken_after_the_subcommand() -> None:
    args = parser().parse_args(["pods", "delete", "ml/p", "--log-level", "DEBUG", "-o", "json"])
    assert (args.log_level, args.format) == ("DEBUG", "json")
    args = parser().parse_args(["--log-level", "ERROR", "findings"])
    assert (args.log_level, args.format) == ("ERROR", "table")


def test_facts_exits_1_when_the_target_process_is_not_found() -> None:
    done = run_process("facts", "--pid", "999999999")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["sources"]["process"]["status"] == "unavailable"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_is_valid_and_names_the_subcommands(shell: str) -> None:
    done = run_process("completion", shell)
    assert done.returncode == 0, done.stderr
    for command in ("pods", "findings", "diff", "baseline", "intent", "status", "facts", "agent"):
        assert command in done.stdout
    if shell == "bash":
        check = subprocess.run(["bash", "-n"], input=done.stdout, text=True, capture_output=True, check=False)
        assert check.returncode == 0, check.stderr


def test_plain_tables_align_and_skip_wide_columns() -> None:
    t = Table([Column("A"), Column("LONGER"), Column("W", wide=True)], [["xxxx", "1", "w"], ["y", "22", "v"]])
    assert t.plain() == "A     LONGER\nxxxx  1\ny     22\n"
    assert t.plain(wide=True).splitlines()[0] == "A     LONGER  W"
    assert Table([Column("A")], [], empty="none").plain() == "none\n"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (300, "5m"), (7200, "120m"), (3 * 3600, "3h"), (3 * 86400, "3d")],
)
def test_age_reads_like_kubectl(seconds: int, shown: str) -> None:
    assert age(1000.0, now=1000.0 + seconds) == shown


def test_rfc3339_is_added_beside_time_fields_only() -> None:
    data = with_rfc3339({"last_seen": 0, "limit": 5, "history": [{"at": 1.5, "event": "opened"}], "ok": True})
    assert data == {
        "last_seen": 0,
        "last_seen_rfc3339": "1970-01-01T00:00:00.000Z",
        "limit": 5,
        "history": [{"at": 1.5, "at_rfc3339": "1970-01-01T00:00:01.500Z", "event": "opened"}],
        "ok": True,
    }
    # A number no calendar holds is kept, with no time beside it, never a crash of the command.
    odd = with_rfc3339({"until": 1e300, "since": float("nan")})
    assert odd["until"] == 1e300 and odd["until_rfc3339"] is None and odd["since_rfc3339"] is None


async def test_history_cut_by_limit_says_so_on_stderr(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await pod(running, "llm-0")
    await s.exchange(snapshot_msg(3, make_snapshot({**BASE_FACTS, **FLOAT32})))
    code, out, err = await out_of(
        ["history", "ml/llm-0", "--limit", "1", "--collector", running.http], capsys
    )
    assert code == 0 and "1 stored snapshot(s)" in out
    assert err == "skewwatch history: 1 shown, older snapshots exist; raise --limit above 1\n"
    code, _, err = await out_of(["history", "ml/llm-0", "--limit", "2", "--collector", running.http], capsys)
    assert code == 0 and err == ""


def test_a_terminal_gets_the_same_cells_drawn_by_rich() -> None:
    t = Table(
        [Column("NAME"), Column("AGE"), Column("X", wide=True)], [["llm-0", "5m", "x"]], notes=["a note"]
    )
    console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=60)
    t.draw(console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "NAME" in text and "llm-0" in text and "5m" in text and "a note" in text and " X" not in text
