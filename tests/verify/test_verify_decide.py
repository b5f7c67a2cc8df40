"""The pure parts of ``skewwatch verify``: the answer's parser (each wrong field named), the decision
(a known "not yet" beats an unknown), the evidence file's format, name and atomic write."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from skewwatch.verify import evidence
from skewwatch.verify.answer import parse
from skewwatch.verify.decide import ProbeVerdict, decide
from skewwatch.verify.errors import AnswerError, EvidenceWriteError, VerifyUsageError
from tests.verify import finding, perf, verification_doc


def test_the_contracts_document_parses_into_its_values() -> None:
    doc = verification_doc(
        may_close=False,
        reasons=["r1"],
        open_findings=[finding(7, "runtime.dtype")],
        performance=[perf("ttft_seconds_p95", 0.2, 0.3, within=False)],
        latest_probe={"id": 4, "workload": "ml/Deployment/llm", "recorded_at": 1.0, "verdict": "pass",
                      "summary": {"verdict": "pass", "levels": [], "failed": []}},
    )  # fmt: skip
    v = parse(doc)
    assert (v.workload, v.may_close, v.reasons) == ("ml/Deployment/llm", False, ("r1",))
    assert (v.findings.open, v.findings.pending, v.findings.items[0].key) == (1, 0, "runtime.dtype")
    assert v.baseline is not None and v.baseline.origin == "manual"
    check = v.performance[0]
    assert (check.ratio, check.tolerance, check.status) == (1.5, "-10%", "not")
    assert v.latest_probe is not None and v.latest_probe.verdict == "pass" and v.latest_probe.summary == ""


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d.pop("may_close"), "may_close", "missing"),
        (lambda d: d.update(may_close="true"), "may_close", "expected true or false, got a string"),
        (lambda d: d["findings"].update(open=-1), "findings.open", "expected a count"),
        (lambda d: d["findings"]["items"].append({"id": 1}), "findings.items[0].key", "missing"),
        (lambda d: d.update(reasons=["ok", 3]), "reasons[1]", "expected a string, got a number"),
        (lambda d: d.update(baseline=[]), "baseline", "expected an object, got an array"),
        (lambda d: d["performance"][0].pop("comparable"), "performance[0].comparable", "missing"),
        (lambda d: d["performance"][0].update(current="880"), "performance[0].current", "expected a number"),
        (lambda d: d["performance"][0].update(tolerance={"max_increase": "x"}),
         "performance[0].tolerance.max_increase", "expected a number"),
        (lambda d: d.update(latest_probe={"id": 1}), "latest_probe.verdict", "missing"),
    ],
)  # fmt: skip
def test_a_wrong_field_is_named(change: Any, field: str, message: str) -> None:
    doc = verification_doc()
    change(doc)
    with pytest.raises(AnswerError) as e:
        parse(doc)
    assert e.value.field == field and message in str(e.value)


def test_performance_status_says_ok_not_incomparable_or_unknown() -> None:
    doc = verification_doc(
        performance=[
            perf("a", 1, 1, within=True),
            perf("b", 1, 2, within=False),
            perf("c", 1, 1, within=None, comparable=False, why="load"),
            perf("d", 1, 1, within=None),
        ]
    )
    assert [p.status for p in parse(doc).performance] == ["ok", "not", "incomparable", "unknown"]


def test_may_close_and_a_passing_probe_close() -> None:
    d = decide(parse(verification_doc()), ProbeVerdict("pass", ()))
    assert (d.outcome, d.exit_code, d.may_close, d.reasons) == ("closable", 0, True, ())


def test_a_failed_probe_keeps_it_open_with_each_failed_threshold() -> None:
    d = decide(parse(verification_doc()), ProbeVerdict("fail", ("FAIL a", "FAIL b")))
    assert (d.outcome, d.exit_code) == ("not_closable", 1)
    assert d.reasons == ("probe failed: FAIL a", "probe failed: FAIL b")


@pytest.mark.parametrize("verdict", ["inconclusive", "error"])
def test_an_inconclusive_or_failed_to_run_probe_is_unverified(verdict: str) -> None:
    d = decide(parse(verification_doc()), ProbeVerdict(verdict, ("why",)))
    assert (d.outcome, d.exit_code, d.reasons) == ("unverified", 2, (f"probe {verdict}: why",))


def test_a_known_refusal_wins_over_what_could_not_be_checked() -> None:
    v = parse(verification_doc(may_close=False, reasons=["1 finding open"]))
    d = decide(v, ProbeVerdict("error", ("unreachable",)), ["no bundle"])
    assert d.outcome == "not_closable"
    assert d.reasons == ("1 finding open", "no bundle", "probe error: unreachable")


def test_a_refusal_without_a_reason_still_says_why() -> None:
    d = decide(parse(verification_doc(may_close=False)), None)
    assert d.exit_code == 1 and d.reasons == (
        "the collector says the incident may not be closed yet (it gave no reason)",
    )


def test_a_problem_alone_is_unverified() -> None:
    d = decide(parse(verification_doc()), None, ["the evidence bundle could not be fetched"])
    assert (d.outcome, d.reasons) == ("unverified", ("the evidence bundle could not be fetched",))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.json", "json"), ("A.JSON", "json"), ("b.md", "markdown"), ("b.markdown", "markdown"),
     ("c.tar.gz", "tar"), ("c.tgz", "tar")],
)  # fmt: skip
def test_the_file_name_gives_the_format(name: str, fmt: str) -> None:
    assert evidence.evidence_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["bundle.gz", "bundle", ".json", "bundle.json.txt"])
def test_any_other_name_is_bad_usage(name: str) -> None:
    with pytest.raises(VerifyUsageError, match=re.escape("must end in .json, .md or .tar.gz")):
        evidence.evidence_format(Path(name))


def test_the_default_name_holds_the_workload_and_the_utc_time() -> None:
    now = datetime(2026, 12, 2, 6, 51, 19, tzinfo=UTC)
    assert evidence.default_path("ml/llm", now, Path("/x")) == Path(
        "/x/evidence-ml-llm-20261202T065119Z.json"
    )
    odd = evidence.default_path("ml/Deployment/l m:1", now, Path("."))
    assert odd.name == "evidence-ml-Deployment-l_m_1-20261202T065119Z.json"


def test_the_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "e.json"
    target.write_text("old")
    written = evidence.write_atomically(target, b'{"new": 1}\n', "json")
    assert target.read_bytes() == b'{"new": 1}\n' and written.size == 11 and written.format == "json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "e.json"
    target.write_text("old")

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(
        EvidenceWriteError, match=re.escape(f"cannot write the evidence bundle to {target}: No space")
    ):
        evidence.write_atomically(target, b"new", "json")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]
