"""The probe's load and its numbers: a closed loop per concurrency level, and honest statistics.

**Load shape.** Each level runs a *closed loop*: N workers, each sending its next request as soon
as its previous one ended, so exactly N requests are in flight (until the plan runs out). The
offered load therefore follows the server's speed; requests/s is what the server sustained at N
in flight, not a rate the probe imposed (an *open* loop would be the other shape; the result
says which one ran).

**Numbers.** Every percentile is computed from the raw samples of the level (linear
interpolation between closest ranks, numpy's default), never as an average of per-request or
per-worker percentiles. Inter-token latencies are pooled over all requests of the level. Only
measured requests count: the level's first ``warmup`` requests (in plan order) are excluded and
reported as such. Latencies come from successful requests; errors are counted by kind. The
measurement window runs from the first measured request's start to the last one's end;
tokens/s (output tokens of successful requests) and requests/s (successful ones) are over
that window.

**Client saturation.** A probe that cannot keep up with itself reports its own delay as server
latency. Two signs are measured and reported beside the numbers: event-loop lag (a monitor task
sleeps ``interval`` and records how late it woke: a loop busy parsing or blocked shows up here)
and connection-pool waits (from the client's TraceConfig: time a request queued for a free
connection). Past :data:`LAG_P99_LIMIT_S` or :data:`POOL_WAIT_P99_LIMIT_S` the level is marked
``saturated`` with the reason; the report then refuses to blame the server for a latency it
cannot tell apart from the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from skewwatch.probe.client import ERROR_KINDS, RequestResult
from skewwatch.probe.plan import PlannedRequest

LAG_INTERVAL_S = 0.01
LAG_P99_LIMIT_S = 0.025
POOL_WAIT_P99_LIMIT_S = 0.010
MAX_LAG_SAMPLES = 100_000  # about 17 minutes of 10 ms ticks: more than any --timeout allows
MAX_ERROR_EXAMPLES = 3
LOAD_SHAPE = "closed-loop"


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of raw samples, linear between closest ranks; None if empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Distribution:
    """Percentiles of one latency over a level, in milliseconds, with the sample count."""

    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    min: float | None
    max: float | None

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Distribution:
        ms = [s * 1000 for s in samples]
        return cls(
            len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99),
            min(ms) if ms else None, max(ms) if ms else None,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {k: _round(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class ClientHealth:
    """The client's own delay during a level: loop lag and pool waits, and whether it was saturated."""

    loop_lag_ms: Distribution
    pool_wait_ms: Distribution
    connections_opened: int
    saturated: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "saturated": self.saturated,
            "reasons": list(self.reasons),
            "loop_lag_ms": self.loop_lag_ms.as_dict(),
            "pool_wait_ms": self.pool_wait_ms.as_dict(),
            "connections_opened": self.connections_opened,
        }


@dataclass(frozen=True)
class LevelStats:
    """One concurrency level's result."""

    concurrency: int
    planned: int
    warmup: int
    warmup_failed: int
    measured: int
    ok: int
    errors: dict[str, int]
    error_examples: dict[str, list[str]]
    retry_after: list[str]
    not_sent: int
    window_s: float
    requests_per_s: float | None
    output_tokens_per_s: float | None
    output_tokens: int
    token_source: dict[str, int]
    prompt_tokens: Distribution
    ttft_ms: Distribution
    itl_ms: Distribution
    e2e_ms: Distribution
    client: ClientHealth

    @property
    def error_rate(self) -> float | None:
        return (self.measured - self.ok) / self.measured if self.measured else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": {
                "planned": self.planned,
                "measured": self.measured,
                "ok": self.ok,
                "failed": self.measured - self.ok,
                "not_sent": self.not_sent,
                "warmup": {"sent": self.warmup, "failed": self.warmup_failed, "excluded": True},
            },
            "window_s": _round(self.window_s),
            "requests_per_s": _round(self.requests_per_s),
            "output_tokens_per_s": _round(self.output_tokens_per_s),
            "output_tokens": self.output_tokens,
            "token_source": dict(self.token_source),
            "prompt_tokens": self.prompt_tokens.as_dict(),
            "ttft_ms": self.ttft_ms.as_dict(),
            "itl_ms": self.itl_ms.as_dict(),
            "e2e_ms": self.e2e_ms.as_dict(),
            "errors": dict(self.errors),
            "error_rate": _round(self.error_rate, 4),
            "error_examples": {k: list(v) for k, v in self.error_examples.items()},
            "retry_after": list(self.retry_after),
            "client": self.client.as_dict(),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def level_stats(
    concurrency: int, planned: int, results: Sequence[RequestResult], lag_s: Sequence[float]
) -> LevelStats:
    """The statistics of one level from its raw request results and loop-lag samples (pure)."""
    warm = [r for r in results if r.warmup]
    measured = [r for r in results if not r.warmup]
    ok = [r for r in measured if r.ok]
    errors = Counter(r.error for r in measured if r.error is not None)
    examples: dict[str, list[str]] = {}
    for r in measured:
        if r.error is not None and len(examples.setdefault(r.error, [])) < MAX_ERROR_EXAMPLES:
            examples[r.error].append(r.detail)
    window = (max(r.end for r in measured) - min(r.start for r in measured)) if measured else 0.0
    tokens = sum(r.completion_tokens for r in ok)
    known = [r for r in ok if r.token_source != "none"]  # noqa: S105 (a token-count source)
    pool = [r.pool_wait for r in measured]
    health = client_health(lag_s, pool, sum(1 for r in results if r.connect is not None))
    return LevelStats(
        concurrency=concurrency,
        planned=planned,
        warmup=len(warm),
        warmup_failed=sum(1 for r in warm if not r.ok),
        measured=len(measured),
        ok=len(ok),
        errors={k: errors[k] for k in ERROR_KINDS if errors[k]},
        error_examples=examples,
        retry_after=sorted({r.retry_after for r in measured if r.retry_after is not None}),
        not_sent=planned - len(results),
        window_s=window,
        requests_per_s=len(ok) / window if window > 0 else None,
        output_tokens_per_s=(sum(r.completion_tokens for r in known) / window)
        if window > 0 and known
        else None,
        output_tokens=tokens,
        token_source=dict(Counter(r.token_source for r in ok)),
        prompt_tokens=_counts([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
        ttft_ms=Distribution.of_seconds([r.ttft for r in ok if r.ttft is not None]),
        itl_ms=Distribution.of_seconds([gap for r in ok for gap in r.itl]),
        e2e_ms=Distribution.of_seconds([r.e2e for r in ok]),
        client=health,
    )


def _counts(values: Sequence[int]) -> Distribution:
    """A distribution of counts (prompt tokens): the same percentiles, not scaled to ms."""
    floats = [float(v) for v in values]
    return Distribution(
        len(floats), percentile(floats, 50), percentile(floats, 95), percentile(floats, 99),
        min(floats) if floats else None, max(floats) if floats else None,
    )  # fmt: skip


def client_health(lag_s: Sequence[float], pool_wait_s: Sequence[float], opened: int) -> ClientHealth:
    """Whether the client delayed its own requests: loop lag or pool waits past their limits."""
    lag = Distribution.of_seconds(lag_s)
    pool = Distribution.of_seconds(pool_wait_s)
    reasons: list[str] = []
    if lag.p99 is not None and lag.p99 > LAG_P99_LIMIT_S * 1000:
        reasons.append(f"event-loop lag p99 {lag.p99:.1f} ms > {LAG_P99_LIMIT_S * 1000:g} ms")
    if pool.p99 is not None and pool.p99 > POOL_WAIT_P99_LIMIT_S * 1000:
        reasons.append(
            f"connection-pool wait p99 {pool.p99:.1f} ms > {POOL_WAIT_P99_LIMIT_S * 1000:g} ms "
            "(more requests in flight than --max-connections)"
        )
    return ClientHealth(lag, pool, opened, bool(reasons), tuple(reasons))


class LoopLagMonitor:
    """How late the event loop wakes a task that sleeps ``interval``: its lag samples, bounded."""

    def __init__(self, interval_s: float = LAG_INTERVAL_S) -> None:
        self.interval = interval_s
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while len(self.samples) < MAX_LAG_SAMPLES:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - before - self.interval))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="probe-loop-lag")

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.samples


class Sender(Protocol):
    async def send(self, req: PlannedRequest) -> RequestResult: ...


Progress = Callable[[int, int, int, int], None]  # level, done, planned, failed
Hook = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _Queue:
    plan: list[PlannedRequest]
    next: int = 0

    def take(self) -> PlannedRequest | None:
        if self.next >= len(self.plan):
            return None
        self.next += 1
        return self.plan[self.next - 1]


async def run_level(
    sender: Sender,
    plan: list[PlannedRequest],
    concurrency: int,
    deadline: float,
    *,
    progress: Progress | None = None,
    hook: Hook | None = None,
) -> tuple[list[RequestResult], list[float], bool]:
    """Run one level as a closed loop of ``concurrency`` workers over ``plan`` until it is done or
    ``deadline`` (perf_counter) passes; returns (results, loop-lag samples of the measured phase,
    stopped by the deadline).

    The warm-up requests run first, as their own closed loop, and all end before the first
    measured request starts: measured requests never share the server with a cold one. At the
    deadline the requests in flight are cancelled and not counted (their end is unknown) and no
    more are sent. ``hook`` runs inside the loop while the level runs (tests use it to load the
    event loop as a saturated client would).
    """
    results: list[RequestResult] = []
    monitor = LoopLagMonitor()
    monitor.start()
    extra = asyncio.create_task(hook()) if hook is not None else None
    warm = [r for r in plan if r.warmup]
    measured = [r for r in plan if not r.warmup]
    cut = False
    common: dict[str, Any] = {
        "concurrency": concurrency, "deadline": deadline, "results": results, "progress": progress,
        "planned": len(plan),
    }  # fmt: skip
    try:
        if warm:
            cut = await _closed_loop(sender, warm, **common)
        lag_from = len(monitor.samples)
        if measured and not cut:
            cut = await _closed_loop(sender, measured, **common)
    finally:
        if extra is not None:
            extra.cancel()
            await asyncio.gather(extra, return_exceptions=True)
        lag = await monitor.stop()
    return results, lag[lag_from:], cut


async def _closed_loop(
    sender: Sender,
    phase: list[PlannedRequest],
    *,
    concurrency: int,
    deadline: float,
    results: list[RequestResult],
    progress: Progress | None,
    planned: int,
) -> bool:
    """``concurrency`` workers over ``phase``, results appended; True when the deadline cut it."""
    queue = _Queue(phase)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            req = queue.take()
            if req is None:
                return
            results.append(await sender.send(req))
            if progress is not None:
                progress(concurrency, len(results), planned, sum(1 for r in results if not r.ok))

    tasks = [asyncio.create_task(worker(), name=f"probe-worker-{i}") for i in range(concurrency)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        return bool(pending) or queue.next < len(phase)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
