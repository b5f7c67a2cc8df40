"""The hasher: digests equal to sha256sum, the persisted digest cache, politeness and unsafe files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import agent.hashing as hashing
from agent.errors import SettingsError
from agent.hashing import (
    CANCELLED,
    CHANGED,
    CHUNK_BYTES,
    NOT_REGULAR,
    OK,
    UNREADABLE,
    DigestCache,
    HashBudget,
    Hasher,
    RateLimiter,
    StatKey,
    git_blob_sha1,
    hash_file,
    ioprio_get,
    ioprio_value,
    parse_bytes_per_s,
    parse_cache,
)


def _file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_sha256_equals_hashlib_and_sha256sum(tmp_path: Path) -> None:
    data = _file(tmp_path / "f", 3 * CHUNK_BYTES + 5)
    out = hash_file(tmp_path / "f")
    assert (out.status, out.digest, out.size) == (OK, hashlib.sha256(data).hexdigest(), len(data))
    tool = shutil.which("sha256sum")
    if tool is not None:
        printed = subprocess.run([tool, str(tmp_path / "f")], capture_output=True, text=True, check=True)
        assert printed.stdout.split()[0] == out.digest


def test_empty_file_has_the_empty_digest(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    assert hash_file(tmp_path / "e").digest == hashlib.sha256(b"").hexdigest()


def test_blake3_mode_equals_the_blake3_package(tmp_path: Path) -> None:
    blake3 = pytest.importorskip("blake3")
    data = _file(tmp_path / "f", 9 * 1024 * 1024 + 3)  # more than one window
    out = hash_file(tmp_path / "f", "blake3", blake3_threads=2)
    assert out.digest == blake3.blake3(data).hexdigest()


def test_restarted_hasher_rechecks_from_the_persisted_cache(tmp_path: Path) -> None:
    files = [tmp_path / f"shard{i}" for i in range(3)]
    for f in files:
        _file(f, CHUNK_BYTES + 1)
    cache_path = tmp_path / "cache" / "digests-v1.json"
    first = Hasher(HashBudget(threads=2, nice=0, ionice="none"), cache=DigestCache(cache_path))
    digests = {p: o.digest for p, o in first.hash_now(files).items()}
    first.close()
    assert first.bytes_hashed == 3 * (CHUNK_BYTES + 1)
    assert cache_path.is_file()

    again = Hasher(HashBudget(threads=2, nice=0, ionice="none"), cache=DigestCache(cache_path))
    assert {p: o.digest for p, o in again.hash_now(files).items()} == digests
    assert again.bytes_hashed == 0  # nothing read: every digest came from the cache
    again.close()


def test_every_digest_is_on_disk_once_the_last_result_is_known(tmp_path: Path) -> None:
    """An agent killed right after its last digest (no close, no save) must still find them all.

    Two threads finishing together once each saw the other still busy, and neither saved; or
    both saved and the older text was renamed into place last.
    """
    files = [tmp_path / f"f{i}" for i in range(4)]
    for f in files:
        _file(f, 2000)
    for attempt in range(200):
        cache_path = tmp_path / f"cache{attempt}" / "digests-v1.json"
        hasher = Hasher(HashBudget(threads=2, nice=0, ionice="none"), cache=DigestCache(cache_path))
        futures = [hasher.submit(p, StatKey.of(p.stat())) for p in files]
        for fut in futures:
            fut.result(timeout=60)
        on_disk = parse_cache(cache_path.read_bytes())
        hasher._stop.set()  # as if killed: close() would save again and hide the bug
        assert len(on_disk) == len(files), f"attempt {attempt}: {len(on_disk)} of {len(files)} on disk"


def test_a_rewritten_file_is_hashed_again(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _file(f, 1000)
    hasher = Hasher(HashBudget(threads=1, nice=0, ionice="none"))
    before = hasher.hash_now([f])[f]
    data = _file(f, 1000)  # same size, new content, new mtime/ctime
    after = hasher.hash_now([f])[f]
    hasher.close()
    assert after.digest == hashlib.sha256(data).hexdigest() != before.digest


def test_corrupt_cache_file_starts_empty_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "digests-v1.json").write_text("{not json")
    cache = DigestCache(tmp_path / "digests-v1.json")
    assert len(cache) == 0
    assert cache.load_problem is not None and "not JSON" in cache.load_problem


def test_cache_parser_drops_malformed_entries() -> None:
    good = [1, 2, 3, "ab"]
    doc = b'{"version": 1, "entries": {"sha256:1:2": [1, 2, 3, "ab"], "x": [1, "2"], "y": 5}}'
    assert parse_cache(doc) == {"sha256:1:2": good}
    with pytest.raises(ValueError, match="version 1"):
        parse_cache(b'{"version": 2, "entries": {}}')


def test_cache_entry_does_not_match_a_file_with_other_times(tmp_path: Path) -> None:
    cache = DigestCache(None)
    key = StatKey(1, 2, 3, 4, 5)
    cache.put(key, "sha256", "ab")
    assert cache.get(key, "sha256") == "ab"
    assert cache.get(StatKey(1, 2, 3, 4, 6), "sha256") is None  # ctime moved: content may differ
    assert cache.get(key, "blake3") is None


def test_fifo_is_not_regular_and_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    out = hash_file(tmp_path / "pipe")
    assert out.status == NOT_REGULAR and out.digest is None


def test_unreadable_file_is_reported_not_raised() -> None:
    out = hash_file(Path("/proc/self/mem"))  # opens, but reading offset 0 fails (EIO) even for root
    assert out.status == UNREADABLE and out.message


def test_symlink_swapped_in_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    out = hash_file(tmp_path / "link")
    assert out.status == UNREADABLE


class _Hook(RateLimiter):
    """Calls ``action`` when the n-th chunk is about to be read."""

    def __init__(self, n: int, action: object) -> None:
        super().__init__(0)
        self.n, self.action, self.calls = n, action, 0

    def acquire(self, n: int, stop: threading.Event) -> None:
        self.calls += 1
        if self.calls == self.n and callable(self.action):
            self.action()


def test_file_changed_while_hashed_is_reported_and_not_cached(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _file(f, 3 * CHUNK_BYTES)

    def append() -> None:
        with f.open("ab") as fh:
            fh.write(b"more")

    out = hash_file(f, limiter=_Hook(2, append))
    assert out.status == CHANGED and out.digest is None


def test_stop_ends_hashing_at_the_next_chunk(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _file(f, 4 * CHUNK_BYTES)
    stop = threading.Event()
    hook = _Hook(2, stop.set)
    out = hash_file(f, limiter=hook, stop=stop)
    assert out.status == CANCELLED
    assert hook.calls == 2


def test_rate_limiter_returns_at_once_when_stopped() -> None:
    limiter = RateLimiter(1)  # one byte per second: the second MiB would wait twelve days
    stop = threading.Event()
    limiter.acquire(CHUNK_BYTES, stop)
    stop.set()
    limiter.acquire(CHUNK_BYTES, stop)  # returns: the test would time out otherwise


def test_hash_threads_run_with_lowered_cpu_and_io_priority(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _file(f, 10)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hasher = Hasher(HashBudget(threads=1, nice=5, ionice="idle"))
    hasher.hash_now([f])
    tid = hasher._threads[0].native_id
    assert tid is not None
    assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller is untouched
    io = ioprio_get(tid)
    if io is None:
        pytest.skip("ioprio_get is not known on this architecture")
    assert io == ioprio_value("idle")
    assert hasher.budget_notes == []
    hasher.close()


def test_same_file_submitted_twice_shares_one_hash(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _file(f, 10)
    hasher = Hasher(HashBudget(threads=1, nice=0, ionice="none"))
    key = StatKey.of(f.stat())
    a, b = hasher.submit(f, key), hasher.submit(f, key)
    assert a.result(timeout=30).digest == b.result(timeout=30).digest
    hasher.close()


def test_budget_and_size_settings_are_validated() -> None:
    assert parse_bytes_per_s("200M") == 200_000_000
    assert parse_bytes_per_s("1GiB/s") == 1024**3
    assert parse_bytes_per_s("0") == 0
    with pytest.raises(SettingsError, match="SKEWWATCH_HASH_BYTES_PER_S"):
        parse_bytes_per_s("fast")
    assert ioprio_value("best-effort:7") == (2 << 13) | 7
    assert ioprio_value("none") is None
    with pytest.raises(SettingsError, match="--hash-ionice"):
        HashBudget(ionice="whenever").validate()
    with pytest.raises(SettingsError, match="--hash-threads"):
        HashBudget(threads=0).validate()


def test_git_blob_id_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_freed_chunks_go_back_to_the_os_once_a_batch_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(hashing, "release_free_memory", lambda: calls.append(1))
    files = []
    for i in range(3):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(3 * CHUNK_BYTES + i))
        files.append(p)
    hasher = Hasher(HashBudget(threads=2, nice=0, ionice="none"))
    try:
        hasher.hash_now(files)
    finally:
        hasher.close()
    assert calls, "the finished batch was not trimmed"
    assert hashing._malloc_trim() is not None  # glibc here: the trim is real, not a no-op
