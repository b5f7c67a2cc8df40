"""A source that is not ready is not a change; a restart is an event, then one snapshot. Pure."""

from __future__ import annotations

from agent.lifecycle import Carry, EngineState, Lifecycle
from agent.sources.base import ProcessInfo, SourceResult
from skewwatch.core.facts import Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts


def result(state: SourceState, **facts: object) -> SourceResult:
    return SourceResult(state, "", [make_fact(k.replace("__", "."), v, "runtime_metrics", "runtime-reported")
                                   for k, v in facts.items()])  # fmt: skip


def snap(states: dict[str, SourceState], **facts: object) -> Snapshot:
    fs = {
        k.replace("__", "."): make_fact(k.replace("__", "."), v, "process", "arg") for k, v in facts.items()
    }
    return Snapshot(
        fs, {n: SourceStatus(n, s) for n, s in states.items()}, fingerprint_facts(fs.values()), 0.0
    )


def proc(pid: int, start: float) -> ProcessInfo:
    return ProcessInfo(pid, "vllm", ("vllm", "serve"), {}, metrics_url="http://127.0.0.1:8000/metrics",
                       start_time=start)  # fmt: skip


def test_a_source_that_fails_keeps_its_facts_as_unknown_since_last_seen() -> None:
    carry = Carry()
    ok = carry.apply("runtime_metrics", result(SourceState.OK, runtime__num_gpu_blocks=7281), at=10.0)
    assert ok.facts[0].provenance.last_seen is None
    down = carry.apply("runtime_metrics", result(SourceState.UNAVAILABLE), at=20.0)
    (fact,) = down.facts
    assert fact.key == "runtime.num_gpu_blocks" and fact.value == 7281 and fact.provenance.last_seen == 10.0
    assert down.state is SourceState.UNAVAILABLE  # the status stays the truth
    still = carry.apply("runtime_metrics", result(SourceState.ERROR), at=30.0)
    assert still.facts[0].provenance.last_seen == 10.0  # last seen is when it was last read


def test_a_partial_failure_keeps_what_it_read_now() -> None:
    carry = Carry()
    carry.apply("m", result(SourceState.OK, runtime__a=1, runtime__b=2), at=1.0)
    partial = carry.apply("m", result(SourceState.ERROR, runtime__a=5), at=2.0)
    assert {f.key: (f.value, f.provenance.last_seen) for f in partial.facts} == {
        "runtime.a": (5, None),
        "runtime.b": (2, 1.0),
    }


def test_engine_gone_is_a_state_not_a_snapshot() -> None:
    life = Lifecycle(settle_s=60)
    ok = {"process": SourceState.OK, "runtime_metrics": SourceState.OK}
    first = life.step(snap(ok, runtime__dtype="float16"), proc(1, 100.0), now=0.0)
    assert first.snapshot is not None and first.status.state is EngineState.RUNNING
    gone = life.step(snap({"process": SourceState.UNAVAILABLE}), None, now=5.0)
    assert gone.snapshot is None and gone.status.state is EngineState.NOT_RUNNING and gone.status.since == 5.0
    later = life.step(snap({"process": SourceState.UNAVAILABLE}), None, now=9.0)
    assert later.status.since == 5.0  # since when, not since the last cycle


def test_a_restart_is_an_event_then_one_snapshot_once_sources_are_back() -> None:
    life = Lifecycle(settle_s=60)
    ok = {"process": SourceState.OK, "runtime_metrics": SourceState.OK}
    loading = {"process": SourceState.OK, "runtime_metrics": SourceState.UNAVAILABLE}
    life.step(snap(ok, runtime__dtype="float16"), proc(1, 100.0), now=0.0)
    restarted = life.step(snap(loading, runtime__dtype="float32"), proc(2, 110.0), now=10.0)
    assert restarted.snapshot is None and restarted.status.state is EngineState.STARTING
    (event,) = restarted.events
    assert (event.kind, event.old_pid, event.new_pid, event.old_start_time, event.new_start_time) == (
        "restart",
        1,
        2,
        100.0,
        110.0,
    )
    assert life.step(snap(loading), proc(2, 110.0), now=20.0).snapshot is None
    back = life.step(snap(ok, runtime__dtype="float32"), proc(2, 110.0), now=30.0)
    assert back.snapshot is not None and back.status.state is EngineState.RUNNING and not back.events


def test_a_restart_whose_sources_never_come_back_is_sent_after_settle_s() -> None:
    life = Lifecycle(settle_s=60)
    ok = {"process": SourceState.OK, "runtime_metrics": SourceState.OK}
    loading = {"process": SourceState.OK, "runtime_metrics": SourceState.UNAVAILABLE}
    life.step(snap(ok), proc(1, 100.0), now=0.0)
    assert life.step(snap(loading), proc(2, 110.0), now=10.0).snapshot is None
    assert life.step(snap(loading), proc(2, 110.0), now=69.0).snapshot is None
    assert life.step(snap(loading), proc(2, 110.0), now=70.0).snapshot is not None


def test_a_shutdown_that_closes_the_port_first_still_waits_for_it_after_the_restart() -> None:
    life = Lifecycle(settle_s=60)
    ok = {"process": SourceState.OK, "runtime_metrics": SourceState.OK}
    closing = {"process": SourceState.OK, "runtime_metrics": SourceState.UNAVAILABLE}
    life.step(snap(ok), proc(1, 100.0), now=0.0)
    life.step(snap(closing), proc(1, 100.0), now=5.0)  # same process, port already closed
    assert life.step(snap(closing), proc(2, 110.0), now=10.0).snapshot is None


def test_pid_reuse_with_a_new_start_time_is_a_restart() -> None:
    life = Lifecycle()
    ok = {"process": SourceState.OK}
    life.step(snap(ok), ProcessInfo(7, "vllm", (), {}, start_time=100.0), now=0.0)
    step = life.step(snap(ok), ProcessInfo(7, "vllm", (), {}, start_time=200.0), now=1.0)
    assert [e.kind for e in step.events] == ["restart"]


def test_a_first_attach_waits_for_the_runtime_it_serves_then_sends_anyway() -> None:
    life = Lifecycle(settle_s=30)
    loading = {"process": SourceState.OK, "runtime_metrics": SourceState.UNAVAILABLE}
    first = life.step(snap(loading), proc(1, 100.0), now=0.0)
    assert first.snapshot is None and first.status.state is EngineState.STARTING and not first.events
    assert "runtime_metrics" in first.status.message
    assert life.step(snap(loading), proc(1, 100.0), now=30.0).snapshot is not None


def test_a_process_without_a_metrics_url_is_sent_at_once() -> None:
    life = Lifecycle(settle_s=30)
    step = life.step(snap({"process": SourceState.OK}), ProcessInfo(1, "unknown", (), {}), now=0.0)
    assert step.snapshot is not None


def test_a_partial_failure_with_facts_of_its_own_is_ready() -> None:
    life = Lifecycle(settle_s=60)
    fs = {"runtime.block_size": make_fact("runtime.block_size", 16, "runtime_metrics", "runtime-reported")}
    partial = Snapshot(
        fs,
        {"process": SourceStatus("process", SourceState.OK),
         "runtime_metrics": SourceStatus("runtime_metrics", SourceState.ERROR, "/version: bad field")},
        fingerprint_facts(fs.values()),
        0.0,
    )  # fmt: skip
    assert life.step(partial, proc(1, 100.0), now=0.0).snapshot is not None
