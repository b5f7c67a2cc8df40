"""A real dtype drift, end to end: the real vLLM CPU build, a real agent and a real collector.

The engine is started the way images start it — through wrappers that stay as its parents
(``timeout`` and a launch script, ``bash -c``, a real ``dumb-init``) — and restarted twice: once
with the same arguments (another wrapper; a restart is not drift: the same fingerprint, no new
history row, no finding), once with ``--dtype float32`` instead of
``bfloat16``: one finding, ``runtime.dtype``, against the recorded baseline, with the flag that
set it and the consequences the engine itself reports — its KV-cache block count, measured by the
real engine, not programmed — and the throughput it served under the same closed-loop load.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from demo.harness import free_port, get_json, skewwatch, wait_for
from demo.realvllm import API_SERVER, Load, VllmServer, engine_env
from skewwatch.core.fingerprint import is_fingerprinted
from tests.support.realvllm import RealVllm, facts_json
from tests.support.scenario import Scenario

pytestmark = [pytest.mark.e2e, pytest.mark.real_engine, pytest.mark.timeout(1200)]
NS, POD, WL = "team-a", "tiny-llama-7d9f8b6c5-aaaaa", "team-a/tiny-llama"
ARGS = ("--max-model-len", "512", "--enforce-eager", "--served-model-name", "tiny-llama")


def launch_script(tmp: Path, python: Path) -> Path:
    """A launch script as images ship them: it prints, then runs the server as its child."""
    script = tmp / "launch.sh"
    body = f'set -u\necho "starting vLLM"\n"{python}" -m {API_SERVER} "$@"\necho done\n'
    script.write_text("#!/usr/bin/env bash\n" + body)
    script.chmod(0o755)
    return script


def start_agent(sc: Scenario, port: int) -> None:
    env = dict(sc.env, POD_NAMESPACE=NS, POD_NAME=POD, NODE_NAME="node-1",
               SKEWWATCH_WORKLOAD=f"{NS}/Deployment/tiny-llama")  # fmt: skip
    match = f"--port {port}( |$)"  # the wrappers' command lines match too: the engine is chosen
    sc.procs.start("agent", skewwatch("agent", "--collector", f"127.0.0.1:{sc.grpc_port}", "--match", match,
                                      "--interval", "1"), env)  # fmt: skip


def history(sc: Scenario) -> dict[str, Any]:
    return dict(get_json(f"{sc.api}/api/v1/pods/{NS}/{POD}/history?limit=100"))


def served(sc: Scenario, dtype: str, restarts: int) -> bool:
    p = sc.pod(NS, POD)
    return bool(
        p
        and p["facts"].get("runtime.dtype") == dtype
        and "runtime.num_gpu_blocks" in p["facts"]
        and (p.get("engine") or {}).get("state") == "running"
        and len(history(sc)["events"]) == restarts
        and "generation_tokens_per_s" in p["observations"]
    )


def test_a_real_dtype_change_is_one_finding_and_a_restart_is_none(
    sc: Scenario, real_vllm: RealVllm, tmp_path: Path
) -> None:
    sc.start_collector()
    port = free_port()
    script = launch_script(tmp_path, real_vllm.python)
    python = str(real_vllm.python)

    def server(name: str, argv: list[str]) -> VllmServer:
        return VllmServer(sc.procs, name, argv, port, engine_env())

    def engine_argv(dtype: str) -> list[str]:
        return ["--model", str(real_vllm.bf16), "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
                *ARGS]  # fmt: skip

    # 1. timeout -> bash launch.sh -> python -m vllm...: --pid of the wrapper finds the engine.
    first = server("vllm", ["timeout", "1800", "bash", str(script), *engine_argv("bfloat16")]).start()
    wrapper = sc.procs.children["vllm"].pid
    by_pid, by_match = facts_json("--pid", str(wrapper)), facts_json("--match", f"--port {port}( |$)")
    for snap in (by_pid, by_match):
        assert snap["facts"]["runtime.engine"] == "vllm" and snap["facts"]["runtime.dtype"] == "bfloat16"
        message = snap["sources"]["process"]["message"]
        engine_pid = int(re.search(r"pid (\d+)", message).group(1))  # type: ignore[union-attr]
        cmdline = Path(f"/proc/{engine_pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", API_SERVER.encode()], message
    assert "child of wrapper timeout" in by_pid["sources"]["process"]["message"]

    start_agent(sc, port)
    with Load(first, max_tokens=32):
        sc.wait("the first snapshot with throughput", lambda: served(sc, "bfloat16", 0), timeout_s=120)
        recorded: dict[str, Any] = {}

        def record() -> bool:
            out = json.loads(sc.cli("baseline", WL, "--record", "--format", "json"))["baseline"]
            recorded.update(out)
            return "generation_tokens_per_s" in out["performance"]

        sc.wait("a baseline with throughput", record, timeout_s=120)
        before = sc.pod(NS, POD)
    assert recorded["facts"]["runtime.dtype"] == "bfloat16"
    assert sc.findings() == [], json.dumps([recorded, sc.findings()], indent=1)
    one_row = [s["id"] for s in history(sc)["snapshots"]]
    assert len(one_row) == 1

    # 2. The same arguments again, through bash -c: a restart, the same fingerprint, no finding.
    sc.procs.stop("vllm")
    command = " ".join([python, "-m", API_SERVER, *engine_argv("bfloat16")]) + "; echo stopped"
    again = server("vllm", ["bash", "-c", command]).start()
    with Load(again, max_tokens=32):
        sc.wait("the restart seen", lambda: served(sc, "bfloat16", 1), timeout_s=120)
        time.sleep(3)  # a few more agent cycles on the restarted engine
    same = sc.pod(NS, POD)
    assert same["fingerprint"]["overall"] == before["fingerprint"]["overall"]
    assert [s["id"] for s in history(sc)["snapshots"]] == one_row
    assert sc.findings() == [], json.dumps(sc.findings(), indent=1)
    assert facts_json("--pid", str(sc.procs.children["vllm"].pid))["facts"]["runtime.dtype"] == "bfloat16"

    # 3. --dtype float32, under dumb-init (a real one) and timeout: one finding, runtime.dtype.
    sc.procs.stop("vllm")
    init = str(real_vllm.python.parent / "dumb-init")
    argv = [init, "--", "timeout", "1800", python, "-m", API_SERVER, *engine_argv("float32")]
    changed = server("vllm", argv).start()
    under_init = facts_json("--pid", str(sc.procs.children["vllm"].pid))
    assert under_init["facts"]["runtime.dtype"] == "float32"
    assert "child of wrapper dumb-init" in under_init["sources"]["process"]["message"]
    with Load(changed, max_tokens=32) as load:
        sc.wait("the dtype finding", lambda: sc.findings(workload=WL, status="open"), timeout_s=120)
        sc.wait("float32 served under load", lambda: served(sc, "float32", 2), timeout_s=120)
        time.sleep(4)
        after = sc.pod(NS, POD)
    snaps = history(sc)["snapshots"]
    brief_snaps = [{k: s.get(k) for k in ("id", "sequence", "collected_at", "changes")} for s in snaps]
    assert len(snaps) == 2, json.dumps(brief_snaps, indent=1)
    changes = {c["key"]: (c["before"], c["after"]) for c in snaps[0]["changes"]}
    blocks = (before["facts"]["runtime.num_gpu_blocks"], after["facts"]["runtime.num_gpu_blocks"])
    # The engine's own sizing: float32 takes twice the bytes per token in the same KV space.
    assert blocks[1] * 2 == blocks[0], blocks
    # The per-run sizes change too (stored, shown, never fingerprinted); the configuration changes are:
    assert {k for k in changes if is_fingerprinted(k)} == {
        "runtime.args.dtype", "runtime.dtype", "runtime.kv_cache_dtype", "runtime.num_gpu_blocks",
    }, changes  # fmt: skip
    assert changes["runtime.dtype"] == ("bfloat16", "float32")
    assert changes["runtime.num_gpu_blocks"] == blocks
    findings = sc.findings(workload=WL)
    brief = [(f["id"], f["key"], f["status"], f["first_seen"], f["message"]) for f in findings]
    assert [f["key"] for f in findings] == ["runtime.dtype"], json.dumps(brief, indent=1)
    (f,) = findings
    assert f["actual_by_pod"] == {POD: "float32"} and f["expected_by_reference"]["baseline"] == "bfloat16"
    related = {r["key"]: r for r in f["related"]}
    assert {"runtime.args.dtype", "runtime.kv_cache_dtype", "runtime.num_gpu_blocks"} <= set(related)
    assert related["runtime.num_gpu_blocks"]["actual_by_pod"] == {POD: blocks[1]}
    assert "--dtype" in f["hint"]
    # Throughput, measured by the engine under the same closed-loop load, before and after.
    tps = tuple(p["observations"]["generation_tokens_per_s"] for p in (before, after))
    assert all(t["value"] > 0 for t in tps), tps
    print(
        f"\nreal vLLM 0.32.0 CPU: num_gpu_blocks {blocks[0]} -> {blocks[1]}; generation tokens/s "
        f"{tps[0]['value']:.1f} (bfloat16) -> {tps[1]['value']:.1f} (float32); "
        f"{len(load.latencies)} float32 requests; "
        f"baseline {recorded['performance']['generation_tokens_per_s']}"
    )
    wait_for("no finding but the dtype", lambda: len(sc.findings(workload=WL)) == 1, sc.procs, 5)
