"""Parallel, polite, cached file hashing for the model-files source.

**Digests.** ``sha256`` (the default) is the digest Hugging Face and Git LFS name blobs by, so it
must equal ``sha256sum``: a plain sha256 is a sequential chain, so one file is hashed by one
thread, and parallelism is across files (largest first, so a shard-heavy model keeps every thread
busy). ``hashlib`` releases the GIL for updates of over 2 KiB, so threads scale with cores. The
optional ``blake3`` mode hashes within a file too (the ``blake3`` package's own threads over
8 MiB windows of the file); its digests compare only with other blake3 digests.

**Cache.** A digest is cached under the file's identity ``(st_dev, st_ino, size, mtime_ns,
ctime_ns)``: any write changes mtime and ctime, a replaced file changes the inode. The cache is a
small JSON file (``digests-v1.json`` in the cache dir), rewritten atomically when the hasher goes
idle, so a restarted agent re-checks an unchanged multi-GB model with one ``stat`` per file.

**Politeness.** The hashing threads are the hasher's own (never asyncio's default executor), so
their budget touches nothing else: each thread lowers its own CPU priority (``setpriority`` on
its thread id: on Linux niceness is per thread) and its own I/O priority (the ``ioprio_set``
system call through ctypes), and all threads share one bytes-per-second reservation clock.

**Safety.** Files are opened ``O_NONBLOCK | O_NOFOLLOW`` and must be regular once open (a FIFO
swapped in after the walk cannot hang a thread); the file's identity is taken before and after
reading, and a file that changed meanwhile is reported ``changed``, not cached. Memory is one
chunk in flight per thread, trimmed back to the OS after each batch. Work stops at the next chunk
when the hasher is closed.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import functools
import hashlib
import json
import logging
import os
import platform
import queue
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import SettingsError

log = logging.getLogger(__name__)

HashMode = Literal["sha256", "blake3"]
MODES: tuple[HashMode, ...] = ("sha256", "blake3")
CHUNK_BYTES = 1024 * 1024
BLAKE3_WINDOW_BYTES = 8 * 1024 * 1024  # big enough for blake3's threads to split, small for RSS
CACHE_FILE = "digests-v1.json"
CACHE_MAX_ENTRIES = 200_000
DEFAULT_MAX_THREADS = 4

# Outcome statuses, as reported per file.
OK = "ok"
CHANGED = "changed while hashing"
UNREADABLE = "unreadable"
NOT_REGULAR = "not a regular file"
CANCELLED = "cancelled"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers' cpusets narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    return max(1, min(DEFAULT_MAX_THREADS, usable_cores()))


# --- the budget ------------------------------------------------------------------------------------

_IONICE = re.compile(r"^(none|idle|best-effort(?::([0-7]))?|realtime(?::([0-7]))?)$")
IOPRIO_CLASS = {"realtime": 1, "best-effort": 2, "idle": 3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?(?:/s)?\s*$", re.IGNORECASE)


def parse_bytes_per_s(text: str) -> int:
    """``"200M"`` → 200000000, ``"1GiB/s"`` → 1073741824, ``"0"`` → 0 (unlimited). Pure."""
    m = _SIZE.match(text)
    if m is None:
        raise SettingsError(f"SKEWWATCH_HASH_BYTES_PER_S: expected a size like 200M or 1GiB, got {text!r}")
    power = " kmgt".index(m.group(2).lower() or " ")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base**power)


@dataclass(frozen=True)
class HashBudget:
    """How much of the machine hashing may take; the defaults leave the inference server first.

    threads: hashing threads (default: min(4, usable cores)); nice: added CPU niceness of those
    threads (0: unchanged); ionice: ``none``, ``idle``, ``best-effort[:0-7]`` or
    ``realtime[:0-7]``; bytes_per_s: read rate over all threads together (0: unlimited).
    """

    threads: int = field(default_factory=default_threads)
    nice: int = 10
    ionice: str = "best-effort:7"
    bytes_per_s: int = 0

    def validate(self) -> HashBudget:
        if not 1 <= self.threads <= 256:
            raise SettingsError(f"--hash-threads: must be between 1 and 256, got {self.threads}")
        if not 0 <= self.nice <= 19:
            raise SettingsError(f"--hash-nice: must be between 0 and 19, got {self.nice}")
        if not _IONICE.match(self.ionice):
            raise SettingsError(
                "--hash-ionice: expected none, idle, best-effort[:0-7] or realtime[:0-7],"
                f" got {self.ionice!r}"
            )
        if self.bytes_per_s < 0:
            raise SettingsError(f"--hash-bytes-per-s: must be 0 (unlimited) or more, got {self.bytes_per_s}")
        return self


def ioprio_value(ionice: str) -> int | None:
    """The ``ioprio`` word for an ionice setting (class << 13 | level); None for ``none``. Pure."""
    m = _IONICE.match(ionice)
    if m is None:
        raise SettingsError(f"--hash-ionice: invalid value {ionice!r}")
    if m.group(1) == "none":
        return None
    cls = m.group(1).split(":")[0]
    level = int(m.group(2) or m.group(3) or (7 if cls == "idle" else 4))
    return (IOPRIO_CLASS[cls] << 13) | (0 if cls == "idle" else level)


# System call numbers of ioprio_set / ioprio_get; not exposed by the os module.
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "arm64": (30, 31)}
IOPRIO_WHO_PROCESS = 1  # with a thread id: that thread only


def _syscall() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn: Callable[..., int] | None = getattr(libc, "syscall", None)
    return fn


def ioprio_get(tid: int) -> int | None:
    """The I/O priority word of a thread, or None where the call is unknown here."""
    numbers = _IOPRIO_SYSCALLS.get(platform.machine())
    call = _syscall()
    if numbers is None or call is None:
        return None
    value = call(numbers[1], IOPRIO_WHO_PROCESS, tid)
    return None if value < 0 else value


def apply_thread_budget(budget: HashBudget) -> list[str]:
    """Lower the calling thread's CPU and I/O priority; notes for what could not be applied."""
    notes: list[str] = []
    tid = threading.get_native_id()
    if budget.nice:
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + budget.nice))
        except OSError as e:
            notes.append(f"nice {budget.nice}: {e.strerror or e}")
    prio = ioprio_value(budget.ionice)
    if prio is not None:
        numbers = _IOPRIO_SYSCALLS.get(platform.machine())
        call = _syscall()
        if numbers is None or call is None:
            notes.append(f"ionice {budget.ionice}: ioprio_set unknown on {platform.machine()}")
        elif call(numbers[0], IOPRIO_WHO_PROCESS, tid, prio) != 0:
            err = ctypes.get_errno()
            notes.append(f"ionice {budget.ionice}: {os.strerror(err)}")
    return notes


class RateLimiter:
    """A shared reservation clock: each chunk of n bytes occupies n / rate seconds of it."""

    def __init__(self, bytes_per_s: int) -> None:
        self.rate = bytes_per_s
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self, n: int, stop: threading.Event) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now)
            self._next = start + n / self.rate
        if start > now:
            stop.wait(start - now)  # returns at once when the hasher is closed


# --- identity and cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatKey:
    """What identifies a file's content without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """Digests by file identity, persisted as JSON; a missing or corrupt file starts empty."""

    def __init__(self, path: Path | None, max_entries: int = CACHE_MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        self.load_problem: str | None = None
        if path is not None:
            self._load(path)

    @staticmethod
    def _slot(key: StatKey, mode: str) -> str:
        return f"{mode}:{key.dev}:{key.ino}"

    def _load(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            self.load_problem = f"digest cache {path}: {e.strerror or e}"
            log.warning("%s; starting empty", self.load_problem)
            return
        try:
            self._entries = parse_cache(data)
        except ValueError as e:
            self.load_problem = f"digest cache {path}: {e}"
            log.warning("%s; starting empty", self.load_problem)

    def get(self, key: StatKey, mode: str) -> str | None:
        with self._lock:
            entry = self._entries.get(self._slot(key, mode))
        if entry is None or entry[:3] != [key.size, key.mtime_ns, key.ctime_ns]:
            return None
        digest = entry[3]
        return digest if isinstance(digest, str) else None

    def put(self, key: StatKey, mode: str, digest: str) -> None:
        with self._lock:
            slot = self._slot(key, mode)
            self._entries.pop(slot, None)  # re-insert: dict order is the eviction order
            self._entries[slot] = [key.size, key.mtime_ns, key.ctime_ns, digest]
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._dirty = True

    def __len__(self) -> int:
        return len(self._entries)

    def save(self) -> None:
        """Write the cache atomically (temp file + rename) when it changed. Blocking."""
        if self.path is None:
            return
        # One save at a time: two threads saving together could rename the older text last.
        with self._save_lock:
            with self._lock:
                if not self._dirty:
                    return
                text = json.dumps({"version": 1, "entries": self._entries}, separators=(",", ":"))
                self._dirty = False
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".digests-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, self.path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                with self._lock:
                    self._dirty = True
                raise


def parse_cache(data: bytes) -> dict[str, list[Any]]:
    """The entries of a cache file's bytes; ValueError naming what is wrong. Pure."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("entries"), dict):
        raise ValueError("not a version 1 digest cache")
    out: dict[str, list[Any]] = {}
    for slot, entry in doc["entries"].items():
        if (
            isinstance(entry, list)
            and len(entry) == 4
            and all(isinstance(v, int) for v in entry[:3])
            and isinstance(entry[3], str)
        ):
            out[slot] = entry
    return out


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"skewwatch-{os.getuid()}"


# --- hashing one file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HashOutcome:
    """One file's hash: ``status`` is ``ok`` or says why there is no digest."""

    status: str
    digest: str | None = None  # hex
    size: int = 0
    key: StatKey | None = None  # the identity the digest belongs to
    message: str = ""


class _Stop(Exception):
    """The hasher was closed while this file was being read."""


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EINVAL, "not a regular file")
    return fd, st


def hash_file(
    path: Path,
    mode: HashMode = "sha256",
    *,
    limiter: RateLimiter | None = None,
    stop: threading.Event | None = None,
    blake3_threads: int = 1,
) -> HashOutcome:
    """Hash one regular file; never raises for the file's own faults. Blocking."""
    stop = stop or threading.Event()
    try:
        fd, before = _open_regular(path)
    except IsADirectoryError:
        return HashOutcome(NOT_REGULAR, message="not a regular file (a FIFO, device or directory)")
    except OSError as e:
        return HashOutcome(UNREADABLE, message=e.strerror or str(e))
    key = StatKey.of(before)
    try:
        if mode == "blake3":
            digest, size = _blake3_fd(fd, limiter, stop, blake3_threads, bytearray(BLAKE3_WINDOW_BYTES))
        else:
            digest, size = _sha256_fd(fd, limiter, stop, CHUNK_BYTES)
        after_fd = StatKey.of(os.fstat(fd))
        after_path = StatKey.of(os.stat(path, follow_symlinks=False))
    except _Stop:
        return HashOutcome(CANCELLED, size=key.size, key=key, message="hashing stopped")
    except OSError as e:
        return HashOutcome(UNREADABLE, size=key.size, key=key, message=e.strerror or str(e))
    finally:
        os.close(fd)
    if after_fd != key or after_path != key or size != key.size:
        return HashOutcome(
            CHANGED, size=size, key=key, message="the file changed while it was read; hashed again later"
        )
    return HashOutcome(OK, digest, size, key)


def _sha256_fd(fd: int, limiter: RateLimiter | None, stop: threading.Event, chunk: int) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while True:
        if stop.is_set():
            raise _Stop
        if limiter is not None:
            limiter.acquire(chunk, stop)
        # A fresh bytes object per read measured 8-12% faster here than readv into one reused
        # buffer with two threads hashing from page cache (tests/bench/bench_hashing.py); memory
        # stays one chunk per thread, freed as soon as it is hashed.
        data = os.read(fd, chunk)
        if not data:
            return h.hexdigest(), size
        h.update(data)
        size += len(data)


def _blake3_fd(
    fd: int, limiter: RateLimiter | None, stop: threading.Event, threads: int, buf: bytearray
) -> tuple[str, int]:
    import blake3  # optional: only this mode needs it

    # Read into a buffer rather than mmap: a model file truncated under a mapping raises SIGBUS,
    # which would kill the agent; a read just comes up short and the file is reported changed.
    h = blake3.blake3(max_threads=max(1, threads))
    view = memoryview(buf)
    size = 0
    while True:
        if stop.is_set():
            raise _Stop
        if limiter is not None:
            limiter.acquire(len(buf), stop)
        n = os.readv(fd, [buf])
        if not n:
            return h.hexdigest(), size
        h.update(view[:n])
        size += n


# --- the hasher: a pool of polite threads ----------------------------------------------------------


@dataclass
class _Job:
    path: Path
    key: StatKey | None
    future: concurrent.futures.Future[HashOutcome]
    size_hint: int


class Hasher:
    """Hashes files on its own threads under a budget, through a digest cache.

    ``submit`` returns a ``concurrent.futures.Future``; the same file identity submitted twice
    while in flight shares one future. Threads start on first use and are daemons, so a process
    that exits does not wait for a multi-GB hash. ``close`` stops them at their next chunk.
    """

    def __init__(
        self,
        budget: HashBudget | None = None,
        mode: HashMode = "sha256",
        cache: DigestCache | None = None,
    ) -> None:
        self.budget = (budget or HashBudget()).validate()
        if mode not in MODES:
            raise SettingsError(f"--hash-mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if mode == "blake3":
            try:
                import blake3  # noqa: F401
            except ImportError as e:
                raise SettingsError("--hash-mode blake3: the blake3 package is not installed") from e
        self.mode: HashMode = mode
        self.cache = cache if cache is not None else DigestCache(None)
        self.limiter = RateLimiter(self.budget.bytes_per_s)
        self.budget_notes: list[str] = []
        self.bytes_hashed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._seq = 0
        self._inflight: dict[StatKey, concurrent.futures.Future[HashOutcome]] = {}
        self._threads: list[threading.Thread] = []
        self._busy = 0

    def cached(self, key: StatKey) -> str | None:
        return self.cache.get(key, self.mode)

    def submit(self, path: Path, key: StatKey | None = None) -> concurrent.futures.Future[HashOutcome]:
        """Queue one file (largest first); ``key`` is the identity the caller saw, if any."""
        if self._stop.is_set():
            raise RuntimeError("hasher is closed")
        with self._lock:
            if key is not None and key in self._inflight:
                return self._inflight[key]
            future: concurrent.futures.Future[HashOutcome] = concurrent.futures.Future()
            size = key.size if key is not None else 0
            job = _Job(path, key, future, size)
            if key is not None:
                self._inflight[key] = future
            self._seq += 1
            self._queue.put((-size, self._seq, job))
            self._start_threads()
        return future

    def hash_now(self, paths: Iterable[Path]) -> dict[Path, HashOutcome]:
        """Hash these files (cache first) and wait for all of them. Blocking."""
        futures: dict[Path, concurrent.futures.Future[HashOutcome]] = {}
        done: dict[Path, HashOutcome] = {}
        for p in paths:
            try:
                key = StatKey.of(os.stat(p))
            except OSError as e:
                done[p] = HashOutcome(UNREADABLE, message=e.strerror or str(e))
                continue
            digest = self.cached(key)
            if digest is not None:
                done[p] = HashOutcome(OK, digest, key.size, key)
            else:
                futures[p] = self.submit(p, key)
        for p, f in futures.items():
            done[p] = f.result()
        self.cache.save()
        return done

    def idle(self) -> bool:
        with self._lock:
            return not self._inflight and self._busy == 0 and self._queue.empty()

    def close(self, wait: bool = True) -> None:
        """Stop the threads at their next chunk, cancel what is queued, and save the cache."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put((-(2**62), 0, None))
        if wait:
            for t in self._threads:
                t.join(timeout=10)
        with self._lock:
            pending = list(self._inflight.values())
            self._inflight.clear()
        for f in pending:
            if not f.done():
                f.cancel()
        self._save_cache()

    def _start_threads(self) -> None:
        while len(self._threads) < self.budget.threads:
            t = threading.Thread(target=self._work, name=f"skewwatch-hash-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _work(self) -> None:
        notes = apply_thread_budget(self.budget)
        if notes:
            with self._lock:
                if not self.budget_notes:
                    self.budget_notes.extend(notes)
                    log.warning("hashing budget only partly applied: %s", "; ".join(notes))
        while True:
            _, _, job = self._queue.get()
            if job is None or self._stop.is_set():
                if job is not None and not job.future.done():
                    job.future.cancel()
                return
            if not job.future.set_running_or_notify_cancel():
                with self._lock:
                    last = self._busy == 0 and self._queue.empty()
                if last:  # a finished job may have left the save to this cancelled one
                    self._save_cache()
                continue
            with self._lock:
                self._busy += 1
            busy = True
            try:
                outcome = self._hash(job)
                # This job stops counting as busy in the same step that asks whether it was the
                # last: two threads finishing together must not each see the other still busy,
                # or neither saves the cache.
                with self._lock:
                    self._busy -= 1
                    busy = False
                    last = self._busy == 0 and self._queue.empty()
                if last:
                    # Persist before anyone learns the result: a restart right after must find it.
                    self._save_cache()
                    release_free_memory()
                job.future.set_result(outcome)
            except BaseException as e:  # a bug here must reach the waiter, not kill the pool silently
                log.exception("hashing %s failed", job.path)
                job.future.set_exception(e)
            finally:
                with self._lock:
                    if busy:
                        self._busy -= 1
                    if job.key is not None:
                        self._inflight.pop(job.key, None)

    def _hash(self, job: _Job) -> HashOutcome:
        if job.key is not None:
            digest = self.cached(job.key)
            if digest is not None:
                return HashOutcome(OK, digest, job.key.size, job.key)
        outcome = hash_file(
            job.path,
            self.mode,
            limiter=self.limiter,
            stop=self._stop,
            blake3_threads=self.budget.threads,
        )
        if outcome.status == OK and outcome.key is not None and outcome.digest is not None:
            self.cache.put(outcome.key, self.mode, outcome.digest)
            with self._lock:
                self.bytes_hashed += outcome.size
        return outcome

    def _save_cache(self) -> None:
        try:
            self.cache.save()
        except OSError as e:
            # The digests are still right; only the next restart will hash again.
            log.warning("cannot write digest cache %s: %s", self.cache.path, e.strerror or e)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


def release_free_memory() -> None:
    """Give the chunks freed by a finished batch back to the OS (glibc ``malloc_trim``).

    Each hashing thread reads into fresh chunks, which glibc serves from that thread's arena and
    keeps there once freed: a few MiB of resident memory held for nothing between batches, in an
    agent whose steady state must stay small. A no-op where the C library has no malloc_trim.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob (what the HF cache names small, non-LFS files by). Pure."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def summarise(outcomes: Mapping[str, HashOutcome]) -> dict[str, int]:
    """Counts of outcomes by status, for messages."""
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts
