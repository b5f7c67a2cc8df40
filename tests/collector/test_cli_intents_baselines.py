"""``skewwatch intent`` (validate offline with the collector's loader; list, show, apply, delete
against a real collector), ``skewwatch baseline record|list|show|delete`` with its older form, and
``findings show ID`` with its history table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run, run_process
from tests.support.collector import BASE_FACTS, Running, hello_msg, make_snapshot, snapshot_msg
from tests.support.paths import REPO

MINIMAL = REPO / "tests" / "fixtures" / "intents" / "00-minimal.modelspec.yaml"
BROKEN = """\
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata:
  name: llama
spec:
  identity:
    model: {id: llama-3-8b, family: llama-3, task: chat, framework: vllm}
  runtime:
    accelerator:
      vendor: nvidia
      type: h100-80gb
      count: two
"""


async def replicas(running: Running, *dtypes: str) -> None:
    for i, dtype in enumerate(dtypes):
        s = running.stream()
        await s.exchange(hello_msg(1, pod=f"llm-{i}"))
        facts = {
            **BASE_FACTS,
            "orchestration.pod": f"llm-{i}",
            "runtime.dtype": dtype,
            "runtime.args.dtype": dtype,
        }
        await s.exchange(snapshot_msg(2, make_snapshot(facts)))
    assert running.collector.drift is not None
    await running.collector.drift.settled()


def test_validate_prints_each_problem_with_file_and_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    done = run_process("intent", "validate", str(MINIMAL), str(bad))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"{MINIMAL}: valid (ModelSpec/llama-3-8b-minimal)",
        f"{bad}:12: spec.runtime.accelerator.count: must be integer, got string 'two'",
    ]


def test_validate_exits_0_when_valid_and_2_on_an_unreadable_file(tmp_path: Path) -> None:
    assert run_process("intent", "validate", str(MINIMAL)).returncode == 0
    done = run_process("intent", "validate", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and done.stdout == ""
    missing = tmp_path / "missing.yaml"
    assert (
        done.stderr
        == f"skewwatch intent validate: error: {missing}: cannot read: No such file or directory\n"
    )


def test_validate_json_lists_the_issues(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    done = run_process("intent", "validate", str(bad), "-o", "json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["valid"] is False
    assert report["files"][0]["issues"][0] == {
        "file": str(bad),
        "line": 12,
        "path": "spec.runtime.accelerator.count",
        "message": "must be integer, got string 'two'",
    }


async def test_apply_list_show_delete_an_intent(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ["--collector", running.http]
    assert await run(["intent", "apply", str(MINIMAL), *api]) == 0
    assert capsys.readouterr().out == "ModelSpec/llama-3-8b-minimal created\n"
    assert await run(["intent", "apply", str(MINIMAL), *api]) == 0
    assert capsys.readouterr().out == "ModelSpec/llama-3-8b-minimal configured\n"

    assert await run(["intent", "list", *api]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["KIND", "NAME", "ORIGIN", "STATE"]
    assert row.split() == ["ModelSpec", "llama-3-8b-minimal", "api", "active"]

    assert await run(["intent", "show", "modelspec/llama-3-8b-minimal", *api]) == 0
    shown = capsys.readouterr().out
    assert yaml.safe_load(shown) == yaml.safe_load(MINIMAL.read_text())

    assert await run(["intent", "delete", "ModelSpec/llama-3-8b-minimal", *api]) == 0
    assert capsys.readouterr().out == "ModelSpec/llama-3-8b-minimal deleted\n"
    assert await run(["intent", "show", "ModelSpec/llama-3-8b-minimal", *api]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewwatch intent show: error: ") and "HTTP 404" in err


async def test_apply_of_an_invalid_file_applies_nothing(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    assert await run(["intent", "apply", str(MINIMAL), str(bad), "--collector", running.http]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}:12: spec.runtime.accelerator.count:")
    assert err[-1] == "skewwatch intent apply: error: 1 problem(s); nothing applied"
    assert await run(["intent", "list", "-o", "json", "--collector", running.http]) == 0
    assert json.loads(capsys.readouterr().out)["intents"] == []


async def test_baseline_record_list_show_delete_and_the_older_form(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await replicas(running, "float16")
    api = ["--collector", running.http]
    # The older form, a contract: NAMESPACE/NAME --record, then NAMESPACE/NAME.
    assert await run(["baseline", "ml/llm", "--record", *api]) == 0
    assert capsys.readouterr().out.startswith("ml/Deployment/llm: baseline 1 (manual) recorded ")
    assert await run(["baseline", "record", "ml/llm", "--note", "after the fix", *api]) == 0
    assert "note: after the fix" in capsys.readouterr().out
    assert await run(["baseline", "ml/llm", *api]) == 0
    shown = capsys.readouterr().out
    assert "baseline 2 (manual)" in shown and "older baselines:" in shown

    assert await run(["baseline", "list", "-n", "ml", *api]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["WORKLOAD", "ID", "ORIGIN", "AGE", "FINGERPRINT", "PODS"]
    assert row.split()[:3] == ["ml/Deployment/llm", "2", "manual"]
    assert await run(["baseline", "list", "-n", "elsewhere", *api]) == 0
    assert capsys.readouterr().out == "no baselines\n"

    assert await run(["baseline", "delete", "ml/llm", *api]) == 0
    assert capsys.readouterr().out == "deleted the baselines of ml/llm\n"
    assert await run(["baseline", "show", "ml/llm", *api]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewwatch baseline show: error: ") and "HTTP 404" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["baseline", "show"], "skewwatch baseline show: error: give one NAMESPACE/NAME\n"),
        (
            ["baseline", "no-slash"],
            "skewwatch baseline: error: must be NAMESPACE/NAME or NAMESPACE/KIND/NAME, got 'no-slash'\n",
        ),
    ],
)
async def test_baseline_bad_usage_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(argv) == 2
    assert capsys.readouterr().err == message


async def test_findings_show_prints_the_history_table(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await replicas(running, "float16", "float16", "float32")
    assert await run(["findings", "-o", "json", "--collector", running.http]) == 0
    (f,) = json.loads(capsys.readouterr().out)["findings"]
    assert await run(["findings", "show", str(f["id"]), "--collector", running.http]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"finding #{f['id']} [") and "ml/Deployment/llm" in out[0]
    at = out.index("history:")
    assert out[at + 1].split() == ["TIME", "AGE", "EVENT", "MESSAGE"]
    assert out[at + 2].split()[2] == "opened"
