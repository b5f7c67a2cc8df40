"""The model-files source: what is actually on disk in the model directory the engine loads.

Every file is hashed (sha256, 1 MiB chunks, a few files at a time in worker threads), and digests
are derived per concern: weights, tokenizer, config and generation config, so that "the tokenizer
changed" is one fact rather than a diff of file lists. ``config.json`` is parsed by the pure
``parse_model_config`` into the ``model.config.*`` facts.

The walk stays inside the model directory: a symlink whose target lies outside it is skipped with a
note (the Hugging Face cache layout, whose snapshot files are links into ``../../blobs``, is a
later extension: ``allowed_roots``), as are FIFOs, sockets and devices, which could block a read.
Hashing is cancellable: when the runner's timeout cancels the source, the worker threads stop at
their next chunk. Re-hashing unchanged files on every collection is what a later digest cache
(keyed by path, size, mtime and inode) will avoid; ``hash_file`` is the place it plugs in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import AgentError, SourceFailed
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import FactValue, SourceState

NAME = "model_files"
METHOD = "file"

CHUNK_BYTES = 1024 * 1024
HASH_CONCURRENCY = 4
MAX_ENTRIES = 100_000  # a model repo has tens of files; this many means the wrong directory
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_NOTES_IN_MESSAGE = 10

# Which files make up each digest. Weights anywhere in the tree (sharded checkpoints may sit in
# subfolders); tokenizer and configs only at the top, where engines load them from (Llama 3 repos
# carry a second, unused tokenizer under original/).
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".gguf")
NOT_WEIGHTS: frozenset[str] = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt"})
TOKENIZER_FILES: frozenset[str] = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "special_tokens_map.json",
        "added_tokens.json",
    }
)
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# Version-control and download bookkeeping: hashing .git would hash LFS objects a second time.
SKIP_DIRS: frozenset[str] = frozenset({".git", ".cache"})

LFS_POINTER_MAGIC = b"version https://git-lfs.github.com/spec/v1"
_LFS_MAX_BYTES = 1024

# The config.json fields reported, and the names they have had (transformers 4.56 renamed
# torch_dtype to dtype). Multimodal configs keep the language model's under text_config.
CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "architectures": ("architectures",),
    "torch_dtype": ("torch_dtype", "dtype"),
    "max_position_embeddings": ("max_position_embeddings",),
    "model_type": ("model_type",),
    "vocab_size": ("vocab_size",),
    "rope_scaling": ("rope_scaling",),
}
# Absent means "none" for these, which is itself a configuration worth fingerprinting.
CONFIG_NULL_WHEN_ABSENT: frozenset[str] = frozenset({"rope_scaling"})


class ModelConfigError(SourceFailed):
    """config.json is not a valid JSON object; the message names the file, line and column."""


class HashCancelled(AgentError):
    """A worker thread noticed the collection was cancelled and stopped hashing."""


@dataclass(frozen=True)
class LfsPointer:
    oid: str
    size: int


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int
    lfs_pointer: LfsPointer | None = None


@dataclass(frozen=True)
class WalkEntry:
    rel: str  # POSIX path relative to the model dir
    path: Path  # what to open (a symlink's in-root target)


@dataclass
class Walk:
    entries: list[WalkEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # notes that make the result an error


# --- pure helpers --------------------------------------------------------------------------------


def parse_lfs_pointer(head: bytes) -> LfsPointer | None:
    """The LFS pointer a small file holds, or None when it is ordinary content."""
    if len(head) > _LFS_MAX_BYTES or not head.startswith(LFS_POINTER_MAGIC):
        return None
    fields: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines()[1:]:
        name, _, value = line.partition(" ")
        fields[name] = value.strip()
    try:
        size = int(fields.get("size", ""))
    except ValueError:
        size = -1
    return LfsPointer(fields.get("oid", ""), size)


def is_weight_file(rel: str) -> bool:
    base = rel.rsplit("/", 1)[-1]
    return base.endswith(WEIGHT_SUFFIXES) and base not in NOT_WEIGHTS


def group_digest(files: Iterable[tuple[str, str]]) -> str:
    """``sha256:`` over the sorted ``path:sha256`` lines of a group of files."""
    h = hashlib.sha256()
    for rel, sha in sorted(files):
        h.update(f"{rel}:{sha}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


_UNSAFE_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f%]")


def file_fact_key(rel: str) -> str:
    """The fact key of one file; whitespace, controls and ``%`` are percent-encoded to fit keys."""
    safe = _UNSAFE_KEY_CHARS.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), rel)
    return f"model.files.{safe}"


def _reject_constant(name: str) -> FactValue:
    raise ValueError(f"non-finite number {name} is not valid JSON")


def parse_model_config(data: bytes, name: str = CONFIG_FILE) -> dict[str, FactValue]:
    """The ``model.config.*`` facts (key suffix → value) of a config.json's bytes. Pure."""
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ModelConfigError(f"{name}: line {e.lineno} column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise ModelConfigError(f"{name}: invalid UTF-8 at byte {e.start}") from e
    except ValueError as e:
        raise ModelConfigError(f"{name}: {e}") from e
    if not isinstance(doc, dict):
        raise ModelConfigError(f"{name}: top level is a JSON {type(doc).__name__}, not an object")
    scopes: list[Mapping[str, object]] = [doc]
    if isinstance(doc.get("text_config"), dict):
        scopes.append(doc["text_config"])
    out: dict[str, FactValue] = {}
    for suffix, names in CONFIG_FIELDS.items():
        found = _first_present(scopes, names)
        if found is not None:
            out[suffix] = found[0]
        elif suffix in CONFIG_NULL_WHEN_ABSENT:
            out[suffix] = None
    qc = doc.get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    out["quantization"] = method if isinstance(method, str) else None
    return out


def _first_present(scopes: Sequence[Mapping[str, object]], names: Sequence[str]) -> tuple[FactValue] | None:
    for scope in scopes:
        for n in names:
            if n in scope:
                return (scope[n],)  # type: ignore[return-value]  # JSON values are FactValues
    return None


# --- reading ---------------------------------------------------------------------------------------


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def walk_model_dir(root: Path, allowed_roots: Sequence[Path] = ()) -> Walk:
    """Files under ``root`` in sorted order, with a note for everything skipped. Blocking."""
    real_root = os.path.realpath(root)
    roots = [real_root, *(os.path.realpath(r) for r in allowed_roots)]
    walk = Walk()
    stack = [""]
    seen = 0
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(real_root, rel_dir)) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as e:
            walk.problems.append(f"cannot list {rel_dir or '.'}: {e.strerror or e}")
            continue
        subdirs = []
        for item in items:
            seen += 1
            if seen > MAX_ENTRIES:
                walk.problems.append(f"over {MAX_ENTRIES} entries; stopped walking (is this a model dir?)")
                return walk
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            try:
                if item.is_symlink():
                    _add_symlink(walk, rel, item.path, roots)
                elif item.is_dir(follow_symlinks=False):
                    if item.name in SKIP_DIRS:
                        walk.notes.append(f"skipped {rel}/: bookkeeping directory")
                    else:
                        subdirs.append(rel)
                elif item.is_file(follow_symlinks=False):
                    walk.entries.append(WalkEntry(rel, Path(item.path)))
                else:
                    kind = _kind(item.stat(follow_symlinks=False).st_mode)
                    walk.notes.append(f"skipped {rel}: {kind}")
            except OSError as e:
                walk.problems.append(f"cannot stat {rel}: {e.strerror or e}")
        stack.extend(reversed(subdirs))
    walk.entries.sort(key=lambda e: e.rel)
    return walk


def _add_symlink(walk: Walk, rel: str, path: str, roots: Sequence[str]) -> None:
    target = os.path.realpath(path)
    if not _within(target, roots):
        walk.notes.append(f"skipped {rel}: symlink to {target}, outside the model dir")
        return
    try:
        st = os.stat(target)
    except OSError as e:
        walk.notes.append(f"skipped {rel}: dangling symlink ({e.strerror or e})")
        return
    if stat.S_ISREG(st.st_mode):
        walk.entries.append(WalkEntry(rel, Path(target)))
    elif stat.S_ISDIR(st.st_mode):
        # Its files are reached under their own path; following it could only double-count or loop.
        walk.notes.append(f"skipped {rel}: symlink to a directory")
    else:
        walk.notes.append(f"skipped {rel}: symlink to a {_kind(st.st_mode)}")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


def _open_regular(path: Path) -> int:
    # O_NONBLOCK: a file swapped for a FIFO after the walk must not hang the worker thread.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is no longer a regular file")
    return fd


def hash_file(path: Path, cancel: threading.Event | None = None) -> FileDigest:
    """sha256 and size of a regular file, read in 1 MiB chunks. Blocking; stops when cancelled."""
    h = hashlib.sha256()
    size = 0
    head = b""
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    fd = _open_regular(path)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            if cancel is not None and cancel.is_set():
                raise HashCancelled(str(path))
            n = f.readinto(buf)
            if not n:
                break
            if size == 0:
                head = bytes(view[: min(n, _LFS_MAX_BYTES + 1)])
            h.update(view[:n])
            size += n
    return FileDigest(h.hexdigest(), size, parse_lfs_pointer(head) if size <= _LFS_MAX_BYTES else None)


def read_small_file(path: Path, limit: int) -> bytes:
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelConfigError(f"{path.name}: over {limit} bytes")
    return data


# --- the source ------------------------------------------------------------------------------------


def model_dir(ctx: CollectContext) -> Path | None:
    if ctx.settings.model_dir is not None:
        return ctx.settings.model_dir
    if ctx.process is not None and ctx.process.model_dir is not None:
        return ctx.process.model_dir
    return None


class ModelFilesSource:
    """Hashes and reads the model directory."""

    name = NAME

    def __init__(self, concurrency: int = HASH_CONCURRENCY, allowed_roots: Sequence[Path] = ()) -> None:
        self.concurrency = concurrency
        self.allowed_roots = tuple(allowed_roots)

    async def collect(self, ctx: CollectContext) -> SourceResult:
        root = model_dir(ctx)
        if root is None:
            return SourceResult.unavailable(
                "no model dir: pass --model-dir, or run the engine with a local --model"
            )
        if not root.exists():
            return SourceResult.unavailable(f"model dir {root} not found here (not mounted into the agent?)")
        if not root.is_dir():
            return SourceResult.error(f"model dir {root} is not a directory")
        walk = await asyncio.to_thread(walk_model_dir, root, self.allowed_roots)
        digests = await self._hash_all(walk)
        builder = FactBuilder(self.name)
        notes = list(walk.notes)
        problems = list(walk.problems)
        for entry in walk.entries:
            d = digests.get(entry.rel)
            if isinstance(d, OSError):
                problems.append(f"cannot read {entry.rel}: {d.strerror or d}")
                continue
            if d is None:
                continue
            if d.lfs_pointer is not None:
                notes.append(
                    f"{entry.rel} is a Git LFS pointer (oid {d.lfs_pointer.oid}, {d.lfs_pointer.size} bytes),"
                    " not the file's content"
                )
            try:
                builder.add(
                    file_fact_key(entry.rel),
                    {"sha256": d.sha256, "bytes": d.size},
                    METHOD,
                    f"sha256 of {entry.rel}",
                )
            except FactError as e:
                notes.append(f"skipped {entry.rel}: {e}")
        ok = {rel: d for rel, d in digests.items() if isinstance(d, FileDigest)}
        _add_digests(builder, ok)
        if CONFIG_FILE in ok:
            try:
                data = await asyncio.to_thread(read_small_file, root / CONFIG_FILE, MAX_CONFIG_BYTES)
                for suffix, value in parse_model_config(data, str(root / CONFIG_FILE)).items():
                    builder.add(f"model.config.{suffix}", value, METHOD, f"{CONFIG_FILE} field")
            except (ModelConfigError, FactError) as e:
                problems.insert(0, str(e))
            except OSError as e:
                problems.insert(0, f"cannot read {CONFIG_FILE}: {e.strerror or e}")
        message = _message(problems + notes)
        state = SourceState.ERROR if problems else SourceState.OK
        return SourceResult(state, message, builder.facts)

    async def _hash_all(self, walk: Walk) -> dict[str, FileDigest | OSError]:
        cancel = threading.Event()
        limit = asyncio.Semaphore(self.concurrency)

        async def one(entry: WalkEntry) -> tuple[str, FileDigest | OSError]:
            async with limit:
                try:
                    return entry.rel, await asyncio.to_thread(hash_file, entry.path, cancel)
                except OSError as e:
                    return entry.rel, e

        try:
            return dict(await asyncio.gather(*(one(e) for e in walk.entries)))
        except asyncio.CancelledError:
            cancel.set()  # threads cannot be interrupted; make them stop at their next chunk
            raise


def _add_digests(builder: FactBuilder, digests: Mapping[str, FileDigest]) -> None:
    weights = {rel: d for rel, d in digests.items() if is_weight_file(rel)}
    if weights:
        builder.add(
            "model.weights.digest",
            group_digest((rel, d.sha256) for rel, d in weights.items()),
            METHOD,
            f"sha256 over path:sha256 of {len(weights)} weight files",
        )
        builder.add(
            "model.weights.bytes",
            sum(d.size for d in weights.values()),
            METHOD,
            f"{len(weights)} weight files",
        )
    tokenizer = {rel: d for rel, d in digests.items() if rel in TOKENIZER_FILES}
    if tokenizer:
        builder.add(
            "model.tokenizer.digest",
            group_digest((rel, d.sha256) for rel, d in tokenizer.items()),
            METHOD,
            "sha256 over path:sha256 of " + ", ".join(sorted(tokenizer)),
        )
    # Single files: the digest is the file's own sha256, so `sha256sum config.json` can be compared.
    for key, rel in (
        ("model.config.digest", CONFIG_FILE),
        ("model.generation_config.digest", GENERATION_CONFIG_FILE),
    ):
        if rel in digests:
            builder.add(key, "sha256:" + digests[rel].sha256, METHOD, f"sha256 of {rel}")


def _message(notes: Sequence[str]) -> str:
    if len(notes) <= MAX_NOTES_IN_MESSAGE:
        return "; ".join(notes)
    return "; ".join(notes[:MAX_NOTES_IN_MESSAGE]) + f"; and {len(notes) - MAX_NOTES_IN_MESSAGE} more"
