"""deploy/jobs/probe-job.yaml, the probe as a rollout gate: a Job that validates strictly (as
every rendered object of tests/deploy/test_kustomize.py), runs once and locked down, whose command
line the real probe parser takes as deploy/jobs/README.md describes it, with its secrets read from
mounted files, and that no kustomization under deploy/ includes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skewwatch.probe import build_parser
from skewwatch.probe.remote import workload_ref
from tests.deploy.kustomize import DEPLOY, Obj, render, validation_errors

JOB = DEPLOY / "jobs" / "probe-job.yaml"


@pytest.fixture(scope="module")
def job() -> Obj:
    docs = [d for d in yaml.safe_load_all(JOB.read_text()) if d]
    assert len(docs) == 1
    doc: Obj = docs[0]
    return doc


def pod(job: Obj) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_the_job_validates_strictly(job: Obj) -> None:
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert validation_errors([job]) == []
    typo = {**job, "spec": {**job["spec"], "backofLimit": 0}}
    assert any("backofLimit" in e for e in validation_errors([typo]))  # strict: an unknown field fails


def test_the_job_runs_once_bounded_and_is_cleaned_up(job: Obj) -> None:
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and pod(job)["restartPolicy"] == "Never"
    assert spec["ttlSecondsAfterFinished"] > 0
    args = build_parser().parse_args(pod(job)["containers"][0]["args"])
    # The deadline leaves the probe's own --timeout and the collector calls time to finish.
    assert spec["activeDeadlineSeconds"] > args.timeout + 2 * args.collector_timeout
    assert (
        job["metadata"]["namespace"] == "skewwatch"
    )  # the collector's NetworkPolicy admits its API from there


def test_the_command_line_is_the_probes_with_a_baseline_on_the_collector(job: Obj) -> None:
    (c,) = pod(job)["containers"]
    assert c["image"] == "skewwatch-collector"  # the collector image (deploy/base/collector.yaml) has the CLI
    assert c["command"] == ["skewwatch"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "probe"
    assert args.endpoint.startswith("http://") and args.model
    assert args.max_ttft_ms and args.min_tokens_per_s
    assert args.collector == "http://skewwatch-collector.skewwatch:8080"
    assert str(workload_ref(args.baseline, "--baseline")) == args.baseline and not args.no_store
    assert args.api_key_file is None and args.token_file is None  # from mounted files, named by env


def test_secrets_are_files_of_whole_secret_mounts(job: Obj) -> None:
    spec = pod(job)
    (c,) = spec["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert set(env) == {"SKEWWATCH_PROBE_API_KEY_FILE", "SKEWWATCH_TOKEN_FILE"}
    assert all("valueFrom" not in e for e in env.values())  # a path, never the secret itself
    volumes = {v["name"]: v["secret"] for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    secrets = set()
    for variable in env.values():
        path = Path(variable["value"])
        mount = mounts[str(path.parent)]
        assert mount["readOnly"] is True and "subPath" not in mount
        secrets.add(volumes[mount["name"]]["secretName"])
        assert volumes[mount["name"]]["defaultMode"] == 0o440
    assert secrets == {"skewwatch-probe-api-key", "skewwatch-probe-collector-token"}


def test_the_job_runs_locked_down(job: Obj) -> None:
    spec = pod(job)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc.get("privileged") is not True
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]


def test_no_kustomization_includes_the_job() -> None:
    kustomizations = sorted(DEPLOY.rglob("kustomization.yaml"))
    assert kustomizations
    for path in kustomizations:
        text = path.read_text()
        assert "probe-job" not in text and "jobs/" not in text, path
    for directory in (
        DEPLOY / "base",
        DEPLOY / "overlays" / "cert-manager",
        DEPLOY / "overlays" / "postgresql",
    ):
        assert [o for o in render(directory) if o["kind"] == "Job"] == [], directory
