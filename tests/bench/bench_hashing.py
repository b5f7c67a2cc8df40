"""Model hashing: throughput against the CPU limit and model-signing, memory, re-check, budget.

Set-up: ``FILES`` files of ``FILE_MIB`` MiB of random bytes in a temp dir (3 GiB by default;
``SKEWWATCH_BENCH_HASH_GIB`` changes it). Every timed run hashes in a fresh subprocess (so its
peak RSS, ``VmHWM``, is its own) right after the parent has read every file once: this machine
evicts page cache after ~30 s idle, so each figure is "warm page cache, read just before".

Figures (reference measured in the same run):

- ``hashing.sha256_throughput_warm``: bytes/s of ``agent.hashing`` (sha256, one thread per usable
  core, no nice/ionice); reference: usable cores x single-thread ``hashlib.sha256`` bytes/s over
  an in-memory buffer — the CPU limit for sha256. Target ratio ≥ 0.85.
- ``hashing.sha256_vs_model_signing_warm``: the same throughput; reference: ``model_signing.hashing``
  (file serialization, sha256, ``max_workers`` = usable cores) over the same directory. Target ≥ 1.
- ``hashing.peak_rss``: VmHWM of the hashing subprocess; reference: 64 MiB. Target ratio < 1.
- ``hashing.peak_rss_vs_model_signing``: the same; reference: model-signing's subprocess VmHWM.
- ``hashing.recheck_speedup``: seconds to hash the tree / seconds for a restarted hasher (cache
  loaded from disk) to re-check it unchanged; reference: 100. Target ratio ≥ 1.
- ``hashing.rate_limit``: bytes/s with ``bytes_per_s`` = ``LIMIT``; reference: the limit. Target ≤ 1.05.
- ``hashing.one_thread_budget``: bytes/s with ``threads=1``; reference: single-thread hashlib. ≈ 1.
- ``hashing.blake3_throughput_warm``: bytes/s in blake3 mode; reference: the CPU limit for sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import Figure, proc_status_bytes
from tests.support.paths import REPO

MIB = 1024 * 1024
TOTAL_GIB = float(os.environ.get("SKEWWATCH_BENCH_HASH_GIB", "3"))
FILES = 6
FILE_MIB = int(TOTAL_GIB * 1024 / FILES)
LIMIT = 200_000_000  # bytes/s for the rate-limit figure
LIMIT_FILES = 2  # hashed under the limit: ~1 GiB, about 5 s


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def single_thread_sha256() -> float:
    """hashlib.sha256 bytes/s on one thread over an in-memory buffer (best of 3)."""
    buf = os.urandom(MIB)
    view = memoryview(buf)
    best = 0.0
    for _ in range(3):
        h = hashlib.sha256()
        start = time.perf_counter()
        for _ in range(512):
            h.update(view)
        best = max(best, 512 * MIB / (time.perf_counter() - start))
    return best


def make_tree(root: Path) -> list[Path]:
    paths = []
    block = os.urandom(MIB)
    for i in range(FILES):
        p = root / f"model-{i:05d}-of-{FILES:05d}.safetensors"
        with p.open("wb") as f:
            for j in range(FILE_MIB):
                # Distinct content per MiB so no file is a copy of another.
                f.write(block[:-8] + (i * FILE_MIB + j).to_bytes(8, "little"))
        paths.append(p)
    # Freshly written pages are dirty: their writeback would compete with whichever timed run
    # comes first. Flush them now so every run starts from the same clean, cached state.
    os.sync()
    return paths


def warm(paths: list[Path]) -> None:
    """Read every file once so the timed run finds it in page cache."""
    buf = bytearray(8 * MIB)
    for p in paths:
        with p.open("rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def worker(kind: str, root: Path, cache: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Run one timed hash in a subprocess; returns its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_hashing", kind, str(root), str(cache), json.dumps(extra)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {kind} failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _files(root: Path, count: int | None = None) -> list[Path]:
    files = sorted(root.glob("*.safetensors"))
    return files[:count] if count else files


def _run_worker(kind: str, root: Path, cache: Path, extra: dict[str, Any]) -> dict[str, Any]:
    if kind == "model-signing":
        from model_signing import hashing as ms

        start = time.perf_counter()
        config = ms.Config()
        config.use_file_serialization(hashing_algorithm="sha256", max_workers=extra["threads"])
        config.hash(root)
        seconds = time.perf_counter() - start
        return {
            "bytes": sum(p.stat().st_size for p in _files(root)),
            "seconds": seconds,
            "hwm": proc_status_bytes("self", "VmHWM"),
        }

    from agent.hashing import DigestCache, HashBudget, Hasher

    budget = HashBudget(
        threads=extra["threads"], nice=0, ionice="none", bytes_per_s=extra.get("bytes_per_s", 0)
    )
    files = _files(root, extra.get("count"))
    start = time.perf_counter()
    hasher = Hasher(budget, extra.get("mode", "sha256"), DigestCache(cache if kind == "cached" else None))
    outcomes = hasher.hash_now(files)
    seconds = time.perf_counter() - start
    hasher.close()
    bad = [str(p) for p, o in outcomes.items() if o.status != "ok"]
    if bad:
        raise RuntimeError(f"not hashed: {bad}")
    hwm = proc_status_bytes("self", "VmHWM")
    return {"bytes": sum(o.size for o in outcomes.values()), "seconds": seconds, "hwm": hwm,
            "hashed": hasher.bytes_hashed}  # fmt: skip


def run() -> list[Figure]:
    cores = usable_cores()
    tmp = Path(tempfile.mkdtemp(prefix="skewwatch-bench-hash-"))
    try:
        root = tmp / "model"
        root.mkdir()
        paths = make_tree(root)
        total = sum(p.stat().st_size for p in paths)
        one = single_thread_sha256()
        limit_sha = cores * one
        gib = f"{total / 1024**3:.1f} GiB in {FILES} files, page cache warmed just before"

        warm(paths)
        ours = worker("sha256", root, tmp / "unused.json", {"threads": cores})
        ours_bps = ours["bytes"] / ours["seconds"]
        warm(paths)
        ms = worker("model-signing", root, tmp / "unused.json", {"threads": cores})
        ms_bps = ms["bytes"] / ms["seconds"]

        # The restart path: a first hasher fills the on-disk cache, a fresh process re-checks.
        cache = tmp / "cache" / "digests-v1.json"
        warm(paths)
        first = worker("cached", root, cache, {"threads": cores})
        recheck = worker("cached", root, cache, {"threads": cores})
        assert recheck["hashed"] == 0, "the re-check read file content"

        warm(paths[:LIMIT_FILES])
        limited = worker(
            "sha256",
            root,
            tmp / "unused.json",
            {"threads": cores, "bytes_per_s": LIMIT, "count": LIMIT_FILES},
        )
        warm(paths[:LIMIT_FILES])
        single = worker("sha256", root, tmp / "unused.json", {"threads": 1, "count": LIMIT_FILES})
        figures = [
            Figure("hashing.sha256_throughput_warm", ours_bps, "By/s",
                   f"{cores} usable cores x single-thread hashlib.sha256 ({gib})", limit_sha),
            Figure("hashing.sha256_vs_model_signing_warm", ours_bps, "By/s",
                   f"model_signing.hashing file serialization, sha256, max_workers={cores} ({gib})", ms_bps),
            Figure("hashing.peak_rss", ours["hwm"], "By", "64 MiB budget (VmHWM of the hasher)", 64 * MIB),
            Figure("hashing.peak_rss_vs_model_signing", ours["hwm"], "By",
                   "model-signing's VmHWM hashing the same tree (its imports included)", ms["hwm"]),
            Figure("hashing.recheck_speedup", first["seconds"] / recheck["seconds"], "x",
                   f"100x; fresh process, cache from disk, re-check {recheck['seconds'] * 1000:.1f} ms",
                   100.0),
            Figure("hashing.rate_limit", limited["bytes"] / limited["seconds"], "By/s",
                   f"bytes_per_s={LIMIT} over {LIMIT_FILES} files, {cores} threads", LIMIT),
            Figure("hashing.one_thread_budget", single["bytes"] / single["seconds"], "By/s",
                   "single-thread hashlib.sha256 (threads=1 budget, warm)", one),
        ]  # fmt: skip
        try:
            import blake3  # noqa: F401

            warm(paths)
            b3 = worker("sha256", root, tmp / "unused.json", {"threads": cores, "mode": "blake3"})
            figures.append(
                Figure("hashing.blake3_throughput_warm", b3["bytes"] / b3["seconds"], "By/s",
                       f"sha256 CPU limit ({cores} cores x 1-thread hashlib); blake3 mode, {gib}", limit_sha)
            )  # fmt: skip
        except ImportError:
            print("blake3 not installed: no blake3 figure (pip install '.[bench]')", file=sys.stderr)
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    kind, root_arg, cache_arg, extra_arg = sys.argv[1:5]
    print(json.dumps(_run_worker(kind, Path(root_arg), Path(cache_arg), json.loads(extra_arg))))
