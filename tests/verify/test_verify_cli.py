"""``skewwatch verify`` through the real entry point against the stand-in collector (tests/verify):
the verdict and exit code for each case, the reasons printed, the evidence bundle written, the
probe run against the probe's stand-in engine and stored, the JSON/YAML shape, the token unseen."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from skewwatch import cli
from tests.probe.standin_server import MODEL, Behaviour
from tests.probe.standin_server import serve as serve_engine
from tests.support.cli import run_process
from tests.verify import StandinCollector, baseline_detail, finding, perf, serve, verification_doc

TOKEN = "s3cr3t-verify-token-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SKEWWATCH_COLLECTOR_URL", "SKEWWATCH_TOKEN", "SKEWWATCH_TOKEN_FILE", "SKEWWATCH_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default evidence file lands here


def verify(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def bundles(directory: Path) -> list[Path]:
    return sorted(directory.glob("evidence-*"))


def test_may_close_exits_0_and_writes_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standin = StandinCollector(verification_doc())
    with serve(standin) as url:
        code, out, err = verify(["ml/llm", "--collector", url], capsys)
    assert code == 0, (out, err)
    assert err == ""
    files = bundles(tmp_path)
    assert len(files) == 1 and files[0].name.startswith("evidence-ml-llm-") and files[0].suffix == ".json"
    assert json.loads(files[0].read_text())["schema"] == "skewwatch.evidence/v1"
    assert "verdict: MAY CLOSE" in out and "(exit 0)" in out and f"evidence: {files[0]}" in out
    # One line per check: findings, baseline, each metric with baseline -> current, the latest probe.
    assert any(line.split()[:2] == ["findings", "ok"] for line in out.splitlines())
    assert "generation_tokens_per_s  ok" in out and "900 -> 880, ratio 0.9778, tolerance -10%" in out
    assert "latest probe" in out
    assert standin.seen.paths() == [
        "/api/v1/workloads/ml/llm/verification",
        "/api/v1/workloads/ml/llm/evidence?format=json",
    ]
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write leaves no temporary file


def test_open_findings_exit_1_with_every_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reasons = [
        "2 findings are still open: runtime.dtype (high), hardware.gpu.product (medium)",
        "generation_tokens_per_s is 0.62 of the baseline (tolerance 0.1)",
    ]
    doc = verification_doc(
        may_close=False,
        reasons=reasons,
        open_findings=[finding(12, "runtime.dtype"), finding(13, "hardware.gpu.product", "medium")],
        performance=[
            perf("generation_tokens_per_s", 900.0, 560.0, within=False),
            perf("ttft_p95_s", 0.2, 0.2, within=None, comparable=False, why="load not comparable"),
        ],
    )
    with serve(StandinCollector(doc)) as url:
        code, out, _ = verify(["ml/llm", "--collector", url], capsys)
    assert code == 1
    assert "verdict: NOT YET" in out and "(exit 1)" in out
    for reason in reasons:
        assert f"  - {reason}" in out
    assert "finding #12" in out and "runtime.dtype (baseline)" in out
    assert "generation_tokens_per_s  not" in out and "ttft_p95_s               incomparable" in out
    assert "load not comparable" in out
    assert len(bundles(tmp_path)) == 1  # written whatever the verdict: the record of the check


def test_unreachable_collector_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_process("verify", "ml/llm", "--collector", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skewwatch verify: error: cannot reach collector at ")
    assert result.stdout == ""


def test_unknown_workload_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(StandinCollector(verification_doc())) as url:
        code, out, err = verify(["ml/nope", "--collector", url], capsys)
    assert code == 2 and out == ""
    assert err == "skewwatch verify: error: workload ml/nope is not known (HTTP 404)\n"
    assert bundles(tmp_path) == []


def test_an_answer_of_another_shape_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    doc = verification_doc()
    doc["performance"][1]["within"] = "yes"
    with serve(StandinCollector(doc)) as url:
        code, _, err = verify(["ml/llm", "--collector", url], capsys)
    assert code == 2
    assert "verification answer: performance[1].within: expected true, false or null, got a string" in err


def engine_args(url: str, *extra: str) -> list[str]:
    return ["--probe", "--endpoint", url, "--model", MODEL, "--concurrency", "1", "--requests", "3",
            "--warmup", "0", *extra]  # fmt: skip


def test_probe_fail_exits_1_and_is_stored(capsys: pytest.CaptureFixture[str]) -> None:
    # No baseline: the probe judges its thresholds only, and stores the result (--record).
    standin = StandinCollector(verification_doc(baseline=False))
    engine = Behaviour(first_token_delay=0.15, token_delay=0.005, tokens=4)
    with serve(standin) as url, serve_engine(engine) as (endpoint, _):
        code, out, err = verify(
            ["ml/llm", "--collector", url, *engine_args(endpoint, "--max-ttft-ms", "50")], capsys
        )
    assert code == 1, (out, err)
    assert "verdict: NOT YET" in out
    assert "probe failed: FAIL --max-ttft-ms 50: ttft_ms.p95 at concurrency 1" in out
    assert [p["verdict"] for p in standin.seen.probes] == ["fail"]
    stored = standin.seen.probes[0]["document"]
    assert stored["schema"] == "skewwatch.probe/v1" and stored["thresholds"][0]["flag"] == "--max-ttft-ms"
    # Asked again after the probe was stored: the latest probe shown is this run's.
    assert standin.seen.paths("GET")[:2] == ["/api/v1/workloads/ml/llm/verification"] * 2
    rows = {line[:25].strip(): line[25:].split(None, 1) for line in out.splitlines()[1:] if line[:1] != " "}
    assert rows["probe (this run)"] == ["fail", "stored as #1"]
    assert rows["latest probe"][0] == "fail" and rows["latest probe"][1].startswith(
        "#1 at 2026-12-01T10:01:00Z"
    )


def test_probe_pass_and_collector_may_close_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    standin = StandinCollector(verification_doc(baseline=False))
    engine = Behaviour(first_token_delay=0.01, token_delay=0.002, tokens=4)
    with serve(standin) as url, serve_engine(engine) as (endpoint, _):
        code, out, err = verify(
            ["ml/llm", "--collector", url, "-o", "json", *engine_args(endpoint, "--max-ttft-ms", "1000")],
            capsys,
        )
    assert code == 0, (out, err)
    doc = json.loads(out)
    assert doc["verdict"] == "closable" and doc["probe"]["verdict"] == "pass"
    assert doc["probe"]["stored"]["id"] == 1 and doc["probe"]["result"]["schema"] == "skewwatch.probe/v1"


def test_probe_compares_with_the_workloads_baseline_when_it_has_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # About 0.13 s a request at concurrency 1: ~7 requests/s, comparable with the baseline's 7;
    # the baseline's TTFT p95 of 10 ms is far below the stand-in's 100 ms first token.
    baseline = baseline_detail(7.0, ttft_seconds_p95=0.01, generation_tokens_per_s=30.0)
    standin = StandinCollector(verification_doc(), baseline=baseline)
    engine = Behaviour(first_token_delay=0.1, token_delay=0.01, tokens=4)
    with serve(standin) as url, serve_engine(engine) as (endpoint, _):
        code, out, err = verify(["ml/llm", "--collector", url, "-o", "json", *engine_args(endpoint)], capsys)
    doc = json.loads(out)
    result = doc["probe"]["result"]
    assert result["baseline"] is not None, err
    assert "/api/v1/baselines/ml/llm" in standin.seen.paths()
    assert code == 1 and doc["probe"]["verdict"] == "fail", (doc["reasons"], err)
    assert any(r.startswith("probe failed: ") and "ttft" in r for r in doc["reasons"]), doc["reasons"]
    assert [p["verdict"] for p in standin.seen.probes] == ["fail"]


def test_probe_that_cannot_reach_its_endpoint_is_could_not_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with serve(StandinCollector(verification_doc(baseline=False))) as url:
        argv = ["ml/llm", "--collector", url, *engine_args(endpoint, "--connect-timeout", "2")]
        code, out, _ = verify(argv, capsys)
    assert code == 2
    assert "verdict: COULD NOT VERIFY" in out and "probe error: endpoint unreachable" in out
    assert len(bundles(tmp_path)) == 1


def test_refusal_wins_over_a_probe_that_could_not_run(capsys: pytest.CaptureFixture[str]) -> None:
    doc = verification_doc(
        may_close=False, reasons=["1 finding is still open: runtime.dtype (high)"], baseline=False
    )
    # The stand-in engine answers 503 to everything: every request failed, the probe errs.
    with serve(StandinCollector(doc)) as url, serve_engine(Behaviour(status=503)) as (endpoint, _):
        code, out, _ = verify(["ml/llm", "--collector", url, *engine_args(endpoint)], capsys)
    assert code == 1
    assert "  - 1 finding is still open: runtime.dtype (high)" in out
    assert "  - probe error: every request failed" in out


def test_a_probe_result_the_collector_refuses_to_store_is_could_not_verify(
    capsys: pytest.CaptureFixture[str],
) -> None:
    standin = StandinCollector(verification_doc(baseline=False), probes_status=403)
    with serve(standin) as url, serve_engine(Behaviour(first_token_delay=0.01, tokens=2)) as (endpoint, _):
        code, out, err = verify(["ml/llm", "--collector", url, *engine_args(endpoint)], capsys)
    assert code == 2
    # The probe stores its result and says why it could not; verify counts it as not verified.
    assert "skewwatch probe: error: result not stored with ml/llm: " in err
    assert "needs a token of role admin (HTTP 403)" in err
    assert "  - the probe's result is not stored with the collector (its error is above)" in out


def test_json_output_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answer = verification_doc(may_close=False, reasons=["no baseline"], baseline=False)
    with serve(StandinCollector(answer)) as url:
        code, out, _ = verify(["ml/llm", "--collector", url, "-o", "json"], capsys)
    assert code == 1
    doc: dict[str, Any] = json.loads(out)
    assert set(doc) == {"schema", "workload", "verdict", "may_close", "exit_code", "reasons", "verification",
                        "probe", "evidence", "checked_at"}  # fmt: skip
    assert doc["schema"] == "skewwatch.verify/v1" and doc["workload"] == "ml/llm"
    assert (doc["verdict"], doc["may_close"], doc["exit_code"]) == ("not_closable", False, 1)
    assert doc["reasons"] == ["no baseline"] and doc["probe"] is None
    assert doc["verification"]["findings"] == answer["findings"]  # the collector's answer, unchanged
    assert doc["verification"]["baseline"] is None
    path = Path(doc["evidence"]["path"])
    assert path.parent == tmp_path and doc["evidence"]["format"] == "json"
    assert doc["evidence"]["bytes"] == path.stat().st_size
    assert doc["checked_at"].endswith("Z")


def test_yaml_output_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(StandinCollector(verification_doc())) as url:
        code, out, _ = verify(["ml/llm", "--collector", url, "-o", "yaml"], capsys)
    doc = yaml.safe_load(out)
    assert code == 0 and doc["verdict"] == "closable" and doc["verification"]["baseline"]["id"] == 3
    # Beside a Unix time, its RFC 3339 form (as every client command's json/yaml shows it).
    assert doc["verification"]["baseline"]["recorded_at_rfc3339"] == "2026-12-01T10:00:00.000Z"


@pytest.mark.parametrize(
    ("name", "fmt"), [("post-fix.md", "markdown"), ("post-fix.tar.gz", "tar"), ("post-fix.json", "json")]
)
def test_the_evidence_files_name_says_its_format(
    name: str, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = StandinCollector(verification_doc())
    target = tmp_path / "out" / name
    target.parent.mkdir()
    with serve(standin) as url:
        code, out, _ = verify(["ml/llm", "--collector", url, "--evidence-file", str(target)], capsys)
    assert code == 0
    assert standin.seen.paths()[-1] == f"/api/v1/workloads/ml/llm/evidence?format={fmt}"
    assert f"evidence: {target}" in out
    if fmt == "tar":
        with tarfile.open(target, mode="r:gz") as tar:
            assert tar.getnames() == ["evidence.json"]
    elif fmt == "markdown":
        assert target.read_text().startswith("# Evidence:")
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_bad_evidence_name_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    standin = StandinCollector(verification_doc())
    with serve(standin) as url:
        code, out, err = verify(["ml/llm", "--collector", url, "--evidence-file", "bundle.zip"], capsys)
    assert code == 2 and out == "" and standin.seen.requests == []
    assert err.startswith("skewwatch verify: error: --evidence-file bundle.zip: the name must end in .json")


def test_an_unwritable_evidence_file_is_could_not_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "bundle.json"
    with serve(StandinCollector(verification_doc())) as url:
        code, out, err = verify(["ml/llm", "--collector", url, "--evidence-file", str(target)], capsys)
    assert code == 2
    assert f"skewwatch verify: error: cannot write the evidence bundle to {target}: " in err
    assert "verdict: COULD NOT VERIFY" in out and not target.parent.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-ttft-ms", "100"], "--max-ttft-ms: probe flags need --probe"),
        (["--probe", "--model", "m"], "--probe needs --endpoint"),
        (["--probe"], "--probe needs --endpoint and --model"),
    ],
)
def test_probe_flags_without_a_whole_probe_are_bad_usage(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = StandinCollector(verification_doc())
    with serve(standin) as url:
        code, _, err = verify(["ml/llm", "--collector", url, *argv], capsys)
    assert code == 2 and standin.seen.requests == []
    assert err == f"skewwatch verify: error: {message}\n"


def test_the_token_is_sent_and_never_printed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    standin = StandinCollector(verification_doc(may_close=False, reasons=["a reason"]), token=TOKEN)
    with serve(standin) as url:
        # Processes run in the repository root: the bundle goes to tmp_path, named.
        common = ["verify", "ml/llm", "--collector", url, "--evidence-file", str(tmp_path / "e.json")]
        ok = run_process(*common, "--token-file", str(token_file), "-o", "json")
        table = run_process(*common, "--token-file", str(token_file))
        refused = run_process(*common)
    assert ok.returncode == 1 and table.returncode == 1, (ok, table)
    assert {auth for _, _, auth in standin.seen.requests[:4]} == {f"Bearer {TOKEN}"}
    assert refused.returncode == 2 and "(give one: --token-file FILE" in refused.stderr
    for result in (ok, table, refused):
        assert TOKEN not in result.stdout + result.stderr
    assert TOKEN not in (tmp_path / "e.json").read_text()


def test_a_probe_that_refuses_its_flags_is_could_not_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = StandinCollector(verification_doc(baseline=False))
    with serve(standin) as url:
        argv = ["ml/llm", "--collector", url, "--probe", "--endpoint", "http://127.0.0.1:9", "--model", MODEL,
                "--no-stream", "--max-ttft-ms", "100"]  # fmt: skip
        code, out, err = verify(argv, capsys)
    assert code == 2
    assert "skewwatch probe: error: --max-ttft-ms need a stream to measure" in err
    assert "  - the probe could not run (exit 2; its error is above)" in out
    assert standin.seen.probes == [] and len(bundles(tmp_path)) == 1


def test_a_workload_with_its_kind_asks_each_route_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    standin = StandinCollector(verification_doc())
    with serve(standin) as url:
        code, _, _ = verify(["ml/Deployment/llm", "--collector", url], capsys)
    assert code == 0
    assert standin.seen.paths() == [
        "/api/v1/workloads/ml/llm/verification?kind=Deployment",
        "/api/v1/workloads/ml/llm/evidence?format=json&kind=Deployment",
    ]
