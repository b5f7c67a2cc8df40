"""The model-files source: what is actually on disk where the engine loads its model.

**Where.** ``agent.hfcache.locate_model`` finds the directory: configured (``--model-dir``), the
engine's local ``--model`` path, or its hub id in a Hugging Face cache (``--download-dir``,
``HF_HUB_CACHE``, ``HF_HOME`` …), from the model request the process source built out of the
engine parser's settings (``ProcessInfo.model``). In the hub layout the snapshot's files are links into
``../../blobs``, which the walk follows (and nothing else outside the root); the revision comes
from the snapshot folder and the refs that name it.

**What.** Every file is hashed (sha256 = ``sha256sum``; see ``agent.hashing``) into a manifest
(``model.files.<path>`` = size and digest), and digests are derived per role: weights,
tokenizer, config, generation config and chat template, so that "the tokenizer changed" is one
fact. ``config.json`` (pure ``parse_model_config``) gives the ``model.config.*`` facts;
safetensors headers (read bounded, ``agent.safetensors``) give tensor count, dtypes and parameter
count without reading weights. ``model.integrity`` is ``"ok"``, ``"pending"`` or a map of
path → problem: a blob whose content does not match its content-address name, a Git LFS pointer
where weights should be, a shard the index names but the directory lacks, a corrupt or truncated
safetensors file, a file that changed while it was read.

**When.** Hashing runs on the hasher's own threads in the background and its results persist
across cycles (and restarts, through the digest cache). A collection never waits for it longer
than ``hash_wait_s`` (0.25 s in the agent loop): until every digest is known the source reports state
``pending`` with the facts known so far, the missing digests as ``"pending"``, and its progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.bounds import JsonProblem, check_fact_value, load_json
from agent.errors import SourceFailed
from agent.hashing import (
    OK,
    DigestCache,
    HashBudget,
    Hasher,
    HashOutcome,
    StatKey,
    default_cache_dir,
    git_blob_sha1,
)
from agent.hfcache import ModelLocation, ModelRequest, blob_address, locate_model, process_root_of
from agent.safetensors import SafetensorsError, SafetensorsHeader, parse_header, parse_index, read_header
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import FactValue, SourceState

NAME = "model_files"
METHOD = "file"

MAX_ENTRIES = 100_000  # a model repo has tens of files; this many means the wrong directory
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_GIT_BLOB_BYTES = 16 * 1024 * 1024  # small files only: the hub names large ones by sha256
MAX_NOTES_IN_MESSAGE = 10
PENDING = "pending"

# Which files make up each digest. Weights anywhere in the tree (sharded checkpoints may sit in
# subfolders); tokenizer and configs only at the top, where engines load them from (Llama 3 repos
# carry a second, unused tokenizer under original/).
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
NOT_WEIGHTS: frozenset[str] = frozenset(
    {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"}
)
TOKENIZER_FILES: frozenset[str] = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",  # sentencepiece
        "spiece.model",
        "sentencepiece.bpe.model",
        "tiktoken.model",
        "qwen.tiktoken",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "special_tokens_map.json",
        "added_tokens.json",
    }
)
CONFIG_FILE = "config.json"
# ModelOpt / TensorRT-LLM's quantized checkpoints say how they are quantized beside config.json:
# {"producer": {"name": "modelopt", "version": …}, "quantization": {"quant_algo": "FP8",
# "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"], …}} (TensorRT-LLM reads it in
# tensorrt_llm/_torch/model_config.py; the shape as ModelOpt's convert_hf_config docstring and the
# nvidia/*-FP8 and *-NVFP4 hub repositories have it).
HF_QUANT_CONFIG_FILE = "hf_quant_config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# Where transformers finds a chat template, in the order it prefers them.
CHAT_TEMPLATE_FILES: tuple[str, ...] = ("chat_template.jinja", "chat_template.json")
INDEX_SUFFIX = ".safetensors.index.json"
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


@dataclass(frozen=True)
class LfsPointer:
    oid: str
    size: int


@dataclass(frozen=True)
class WalkEntry:
    rel: str  # POSIX path relative to the model dir
    path: Path  # what to open (a symlink's in-root target)
    blob: str | None = None  # the hub blob's name, when the entry is a link into blobs/


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


def group_digest(files: Iterable[tuple[str, str]], mode: str = "sha256") -> str:
    """sha256 over the sorted ``path:digest`` lines of a group of files, labelled by ``mode``.

    ``mode`` names the per-file digests (``sha256`` or ``blake3``): groups of different modes
    never compare equal.
    """
    h = hashlib.sha256()
    for rel, sha in sorted(files):
        h.update(f"{rel}:{sha}\n".encode("utf-8", "surrogateescape"))
    return ("sha256:" if mode == "sha256" else f"{mode}-set:") + h.hexdigest()


_UNSAFE_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f%\ud800-\udfff]")


def _percent(char: str) -> str:
    try:
        raw = char.encode("utf-8", "surrogateescape")  # a non-UTF-8 byte of the file name
    except UnicodeEncodeError:
        raw = char.encode("utf-8", "surrogatepass")
    return "".join(f"%{b:02X}" for b in raw)


def file_fact_key(rel: str) -> str:
    """The fact key of one file; whitespace, controls, ``%`` and non-UTF-8 bytes are percent-encoded."""
    safe = _UNSAFE_KEY_CHARS.sub(lambda m: _percent(m.group()), rel)
    return f"model.files.{safe}"


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    """A JSON file's top-level object; ModelConfigError naming the file when it is none."""
    try:
        doc = load_json(data, constants=False)
    except JsonProblem as e:
        raise ModelConfigError(f"{name}: {e}") from e
    if not isinstance(doc, dict):
        raise ModelConfigError(f"{name}: top level is a JSON {type(doc).__name__}, not an object")
    return doc


def parse_model_config(data: bytes, name: str = CONFIG_FILE) -> dict[str, FactValue]:
    """The ``model.config.*`` facts (key suffix → value) of a config.json's bytes. Pure.

    A number out of range (a hundred-digit ``vocab_size``, ``1e999``) stays in place as an
    ``agent.bounds.Unrepresentable``, so only its field's fact is lost when the facts are built;
    a document that does not parse at all (syntax, encoding, ``NaN``, nesting past the parser)
    is a ModelConfigError.
    """
    doc = _json_object(data, name)
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
    if not isinstance(qc, dict) and isinstance(doc.get("text_config"), dict):
        qc = doc["text_config"].get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    out["quantization"] = method if isinstance(method, str) else None
    # The whole block: bits, group size and skipped modules differ between "the same" method.
    out["quantization_config"] = qc if isinstance(qc, dict) else None
    kv = qc.get("kv_cache_quant_algo") if isinstance(qc, dict) else None  # ModelOpt's HF export
    tllm = doc.get("quantization")
    if qc is None and isinstance(tllm, dict):
        # A TensorRT-LLM checkpoint's config.json (convert_checkpoint.py): {"architecture": …,
        # "dtype": …, "quantization": {"quant_algo": "W8A16", "kv_cache_quant_algo": "INT8"}}.
        out.update(quant_algo_facts(tllm))
        return out
    if kv is not None:  # reported only where a checkpoint says it: null for every other model adds nothing
        out["kv_cache_quantization"] = _lower(kv)
    return out


def _lower(value: object) -> FactValue:
    return value.lower() if isinstance(value, str) else None


def quant_algo_facts(block: Mapping[str, FactValue]) -> dict[str, FactValue]:
    """The ``model.config.*`` facts of a ModelOpt / TensorRT-LLM ``quantization`` block. Pure.

    ``quant_algo`` (``FP8``, ``NVFP4``, ``W4A16_AWQ``; null: the weights are not quantized) is
    the quantization, lower-cased as the engines' flags spell it; ``kv_cache_quant_algo`` the KV
    cache's (``FP8``: the checkpoint carries KV scales and the engine's ``auto`` follows it).
    """
    out: dict[str, FactValue] = {
        "quantization": _lower(block.get("quant_algo")),
        "quantization_config": dict(block),
    }
    if block.get("kv_cache_quant_algo") is not None:
        out["kv_cache_quantization"] = _lower(block.get("kv_cache_quant_algo"))
    return out


def parse_hf_quant_config(data: bytes, name: str = HF_QUANT_CONFIG_FILE) -> dict[str, FactValue]:
    """The ``model.config.*`` facts of an ``hf_quant_config.json``'s bytes. Pure.

    A file that is no JSON object, or whose ``quantization`` is no object, is a ModelConfigError
    naming the file.
    """
    doc = _json_object(data, name)
    block = doc.get("quantization")
    if not isinstance(block, dict):
        raise ModelConfigError(f"{name}: 'quantization' is a JSON {type(block).__name__}, not an object")
    return quant_algo_facts(block)


def _first_present(scopes: Sequence[Mapping[str, object]], names: Sequence[str]) -> tuple[FactValue] | None:
    for scope in scopes:
        for n in names:
            if n in scope:
                return (scope[n],)  # type: ignore[return-value]  # JSON values are FactValues
    return None


# --- reading ---------------------------------------------------------------------------------------


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def walk_model_dir(root: Path, allowed_roots: Sequence[Path] = (), blobs_dir: Path | None = None) -> Walk:
    """Files under ``root`` in sorted order, with a note for everything skipped. Blocking."""
    real_root = os.path.realpath(root)
    roots = [real_root, *(os.path.realpath(r) for r in allowed_roots)]
    blobs = os.path.realpath(blobs_dir) if blobs_dir is not None else None
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
                    _add_symlink(walk, rel, item.path, roots, blobs)
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


def _add_symlink(walk: Walk, rel: str, path: str, roots: Sequence[str], blobs: str | None) -> None:
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
        in_blobs = blobs is not None and os.path.dirname(target) == blobs
        walk.entries.append(WalkEntry(rel, Path(target), os.path.basename(target) if in_blobs else None))
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


def read_small_file(path: Path, limit: int) -> bytes:
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelConfigError(f"{path.name}: over {limit} bytes")
    return data


def chat_template_digest(name: str, data: bytes) -> tuple[str, str] | None:
    """``("sha256:<hex>", where)`` of the chat template a file holds, or None. Pure.

    A ``.jinja`` file is the template itself; ``chat_template.json`` and
    ``tokenizer_config.json`` carry it under ``chat_template`` (a string, or a list of named
    templates, digested as canonical JSON).
    """
    if name.endswith(".jinja"):
        return "sha256:" + hashlib.sha256(data).hexdigest(), name
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # also integers past Python's digit limit
        return None
    value = doc.get("chat_template") if isinstance(doc, dict) else None
    if isinstance(value, str):
        text = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, list):
        try:
            canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            text = canonical.encode("utf-8", "surrogatepass")
        except (ValueError, TypeError, RecursionError):
            return None
    else:
        return None
    return "sha256:" + hashlib.sha256(text).hexdigest(), f"{name} chat_template"


# --- scanning: everything but the hashes (blocking, cheap, bounded) ---------------------------------


@dataclass
class ScannedFile:
    rel: str
    path: Path
    key: StatKey | None
    blob: str | None = None
    lfs: LfsPointer | None = None
    git_sha1: str | None = None  # computed when the hub names the blob by its Git id
    status: str = OK  # why there is no digest to expect (unreadable at stat time)


@dataclass
class ModelScan:
    location: ModelLocation
    files: list[ScannedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    config: dict[str, FactValue] | None = None
    # The file each config fact was read from, where it is not config.json (hf_quant_config.json).
    config_files: dict[str, str] = field(default_factory=dict)
    chat_template: tuple[str, str] | None = None
    headers: dict[str, SafetensorsHeader | str] = field(default_factory=dict)  # rel → header or error
    missing_shards: dict[str, str] = field(default_factory=dict)  # shard → the index naming it


Memo = dict[tuple[str, StatKey], object]


def _memo(memo: Memo, kind: str, key: StatKey | None, compute: object) -> object:
    if key is None or not callable(compute):
        return compute() if callable(compute) else compute
    slot = (kind, key)
    if slot not in memo:
        if len(memo) > 10_000:
            memo.clear()
        memo[slot] = compute()
    return memo[slot]


def _safetensors(path: Path, name: str) -> SafetensorsHeader | str:
    try:
        data, size = read_header(path, name=name)
        return parse_header(data, size, name)
    except SafetensorsError as e:
        return str(e)
    except OSError as e:
        return f"{name}: cannot read header: {e.strerror or e}"


def _git_sha1(path: Path) -> str | None:
    try:
        return git_blob_sha1(read_small_file(path, MAX_GIT_BLOB_BYTES))
    except (OSError, ModelConfigError):
        return None


def _lfs(path: Path) -> LfsPointer | None:
    try:
        return parse_lfs_pointer(read_small_file(path, _LFS_MAX_BYTES))
    except (OSError, ModelConfigError):
        return None


def scan_model(location: ModelLocation, memo: Memo | None = None) -> ModelScan:
    """Walk, stat and read the small files; header parses are memoised by file identity. Blocking."""
    memo = memo if memo is not None else {}
    hf = location.hf
    walk = walk_model_dir(
        location.root,
        (hf.blobs_dir,) if hf is not None else (),
        hf.blobs_dir if hf is not None else None,
    )
    scan = ModelScan(location, notes=list(walk.notes), problems=list(walk.problems))
    for entry in walk.entries:
        scan.files.append(_scan_file(entry, memo, scan.headers))
    present = {f.rel for f in scan.files}
    _read_config(scan, present)
    _read_quant_config(scan, present)
    _read_chat_template(scan, present)
    _check_indexes(scan, present)
    return scan


def _scan_file(entry: WalkEntry, memo: Memo, headers: dict[str, SafetensorsHeader | str]) -> ScannedFile:
    """One file: its identity, and (memoised by it) LFS pointer, Git blob id, safetensors header."""
    try:
        key: StatKey | None = StatKey.of(os.stat(entry.path))
        status = OK
    except OSError as e:
        key, status = None, f"cannot stat: {e.strerror or e}"
    f = ScannedFile(entry.rel, entry.path, key, entry.blob, status=status)
    if key is None:
        return f
    if key.size <= _LFS_MAX_BYTES:
        f.lfs = _memo(memo, "lfs", key, lambda p=entry.path: _lfs(p))  # type: ignore[assignment]
    address = blob_address(entry.blob) if entry.blob else None
    if address is not None and address[0] == "git-sha1" and key.size <= MAX_GIT_BLOB_BYTES:
        f.git_sha1 = _memo(memo, "git", key, lambda p=entry.path: _git_sha1(p))  # type: ignore[assignment]
    if entry.rel.endswith(".safetensors") and f.lfs is None:
        headers[entry.rel] = _memo(  # type: ignore[assignment]
            memo, "st", key, lambda p=entry.path, r=entry.rel: _safetensors(p, r)
        )
    return f


def _read_config(scan: ModelScan, present: set[str]) -> None:
    if CONFIG_FILE not in present:
        return
    root = scan.location.root
    try:
        data = read_small_file(root / CONFIG_FILE, MAX_CONFIG_BYTES)
        scan.config = parse_model_config(data, str(root / CONFIG_FILE))
    except ModelConfigError as e:
        scan.problems.insert(0, str(e))
    except OSError as e:
        scan.problems.insert(0, f"cannot read {CONFIG_FILE}: {e.strerror or e}")


def _read_quant_config(scan: ModelScan, present: set[str]) -> None:
    """hf_quant_config.json's quantization, where config.json names none (it says more there:
    the HF-format ModelOpt export writes both, config.json's quant_method ``modelopt``)."""
    if HF_QUANT_CONFIG_FILE not in present:
        return
    if scan.config is not None and scan.config.get("quantization") is not None:
        return
    path = scan.location.root / HF_QUANT_CONFIG_FILE
    try:
        facts = parse_hf_quant_config(read_small_file(path, MAX_CONFIG_BYTES), str(path))
    except ModelConfigError as e:
        scan.problems.append(str(e))
        return
    except OSError as e:
        scan.problems.append(f"cannot read {HF_QUANT_CONFIG_FILE}: {e.strerror or e}")
        return
    scan.config = {**(scan.config or {}), **facts}
    scan.config_files.update(dict.fromkeys(facts, HF_QUANT_CONFIG_FILE))


def _read_chat_template(scan: ModelScan, present: set[str]) -> None:
    root = scan.location.root
    for name in (*CHAT_TEMPLATE_FILES, TOKENIZER_CONFIG_FILE):
        if name in present and scan.chat_template is None:
            try:
                scan.chat_template = chat_template_digest(
                    name, read_small_file(root / name, MAX_CONFIG_BYTES)
                )
            except (OSError, ModelConfigError) as e:
                scan.notes.append(f"cannot read {name} for its chat template: {e}")


def _check_indexes(scan: ModelScan, present: set[str]) -> None:
    """Shards a safetensors index names that the directory lacks."""
    root = scan.location.root
    for rel in sorted(r for r in present if r.endswith(INDEX_SUFFIX)):
        try:
            shards, _total = parse_index(read_small_file(root / rel, MAX_CONFIG_BYTES), rel)
        except (OSError, SafetensorsError, ModelConfigError) as e:
            scan.notes.append(f"cannot use {rel}: {e}")
            continue
        base = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        for shard in shards:
            if base + shard not in present:
                scan.missing_shards[base + shard] = rel


# --- building the result (pure) ---------------------------------------------------------------------


def _digest_of(outcome: HashOutcome | None) -> str | None:
    return outcome.digest if outcome is not None and outcome.status == OK else None


@dataclass
class _Tally:
    """What building a result gathers: notes and problems, integrity findings, digests so far."""

    notes: list[str]
    problems: list[str]
    integrity: dict[str, FactValue] = field(default_factory=dict)
    pending: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def build_result(
    scan: ModelScan,
    outcomes: Mapping[str, HashOutcome | None],
    mode: str = "sha256",
    progress: str = "",
) -> SourceResult:
    """Facts from a scan and the hash outcomes so far (None: still pending). Pure."""
    b = FactBuilder(NAME)
    t = _Tally(list(scan.notes), list(scan.problems))
    for f in scan.files:
        _add_file(b, f, outcomes.get(f.rel), mode, t)
    _scan_integrity(scan, t)
    _add_location(b, scan.location)
    _add_role_digests(b, scan, t.digests, t.sizes, mode)
    _add_headers(b, scan, t.problems)
    _add_config(b, scan, t.problems)
    verdict: FactValue = t.integrity if t.integrity else (PENDING if t.pending else "ok")
    b.add("model.integrity", verdict, METHOD, _integrity_detail(scan, mode))
    if t.integrity:
        t.notes.insert(0, f"integrity: {len(t.integrity)} problem(s)")
    if t.pending:
        t.notes.insert(
            0, f"hashing in the background: {progress}" if progress else "hashing in the background"
        )
    if t.problems:
        state = SourceState.ERROR
    elif t.pending:
        state = SourceState.PENDING
    else:
        state = SourceState.OK
    return SourceResult(state, _message(t.problems + t.notes), b.facts)


def _add_file(b: FactBuilder, f: ScannedFile, outcome: HashOutcome | None, mode: str, t: _Tally) -> None:
    """``model.files.<path>``: its digest, ``pending`` or why it has none; LFS pointers and blobs
    whose content does not match their name are integrity findings."""
    value: dict[str, FactValue]
    if f.key is not None:
        t.sizes[f.rel] = f.key.size
    if f.status != OK:
        t.problems.append(f"{f.rel}: {f.status}")
        value = {"status": f.status}
    elif outcome is None:
        t.pending = True
        value = {mode: PENDING, "bytes": t.sizes.get(f.rel, 0)}
    elif outcome.status == OK and outcome.digest is not None:
        t.digests[f.rel] = outcome.digest
        value = {mode: outcome.digest, "bytes": outcome.size}
    else:
        status = f"{outcome.status}: {outcome.message}" if outcome.message else outcome.status
        value = {"status": status, "bytes": outcome.size}
        t.problems.append(f"cannot read {f.rel}: {outcome.message or outcome.status}")
    if f.lfs is not None:
        pointer = f"a Git LFS pointer (oid {f.lfs.oid}, {f.lfs.size} bytes), not the file's content"
        t.integrity[f.rel] = pointer
        t.notes.append(f"{f.rel} is {pointer}")
    _check_blob(f, outcome, mode, t.integrity)
    try:
        b.add(file_fact_key(f.rel), value, METHOD, f"{mode} of {f.rel}")
    except FactError as e:
        t.notes.append(f"skipped {f.rel}: {e}")


def _scan_integrity(scan: ModelScan, t: _Tally) -> None:
    """Unreadable safetensors headers and shards the index names but the directory lacks."""
    for rel, problem in scan.headers.items():
        if isinstance(problem, str):
            t.integrity[rel] = problem
            t.notes.append(problem)
    for shard, index in scan.missing_shards.items():
        t.integrity[shard] = f"missing: named by {index}"
    if len(scan.missing_shards) > 0:
        t.notes.append(f"{len(scan.missing_shards)} shard(s) named by the index are missing")


def _add_config(b: FactBuilder, scan: ModelScan, problems: list[str]) -> None:
    """``model.config.*`` from config.json, and the chat template's digest."""
    if scan.config is not None:
        for suffix, v in scan.config.items():
            where = scan.config_files.get(suffix, CONFIG_FILE)
            try:
                key = f"model.config.{suffix}"
                b.add(key, check_fact_value(key, v), METHOD, f"{where} field")
            except FactError as e:
                problems.append(f"{where} field {suffix}: {e}")
    if scan.chat_template is not None:
        b.add(
            "model.chat_template.digest", scan.chat_template[0], METHOD, f"sha256 of {scan.chat_template[1]}"
        )


def _check_blob(
    f: ScannedFile, outcome: HashOutcome | None, mode: str, integrity: dict[str, FactValue]
) -> None:
    address = blob_address(f.blob) if f.blob else None
    if address is None:
        return
    kind, expected = address
    if kind == "git-sha1" and f.git_sha1 is not None and f.git_sha1 != expected:
        integrity[f.rel] = f"blob {expected} holds content with Git id {f.git_sha1}"
    digest = _digest_of(outcome)
    if kind == "sha256" and mode == "sha256" and digest is not None and digest != expected:
        integrity[f.rel] = f"blob {expected} holds content with sha256 {digest}"


def _integrity_detail(scan: ModelScan, mode: str) -> str:
    addressed = [blob_address(f.blob) for f in scan.files if f.blob]
    sha = sum(1 for a in addressed if a is not None and a[0] == "sha256")
    git = sum(1 for a in addressed if a is not None and a[0] == "git-sha1")
    other = sum(1 for a in addressed if a is None)
    parts = []
    if scan.location.hf is not None:
        checked = (
            f"{sha} blob(s) by sha256 name"
            if mode == "sha256"
            else f"{sha} sha256-named blob(s) unchecked ({mode} mode)"
        )
        parts.append(f"{checked}, {git} by Git blob id")
        if other:
            parts.append(f"{other} blob name(s) not content addresses")
    parts.append("LFS pointers, safetensors headers and index shards checked")
    return "; ".join(parts)


def _add_location(b: FactBuilder, loc: ModelLocation) -> None:
    if loc.hf is None:
        return
    refs = ", ".join(f"refs/{r}" for r in loc.hf.refs) or "no ref"
    b.add("model.revision", loc.hf.commit, METHOD, f"hub cache snapshots/{loc.hf.commit} ({refs})")
    b.add("model.id", loc.hf.repo_id, METHOD, f"hub cache folder {loc.hf.repo_dir.name}")


def _group(
    b: FactBuilder,
    key: str,
    *,
    members: Sequence[str],
    digests: Mapping[str, str],
    mode: str,
    what: str,
) -> None:
    if not members:
        return
    if any(m not in digests for m in members):
        b.add(key, PENDING, METHOD, f"{what}: {len(members)} file(s), digests pending")
        return
    members_digests = ((m, digests[m]) for m in members)
    b.add(key, group_digest(members_digests, mode), METHOD, f"sha256 over path:{mode} of {what}")


def _add_role_digests(
    b: FactBuilder,
    scan: ModelScan,
    digests: Mapping[str, str],
    sizes: Mapping[str, int],
    mode: str,
) -> None:
    rels = [f.rel for f in scan.files if f.status == OK]
    weights = [r for r in rels if is_weight_file(r)]
    _group(
        b,
        "model.weights.digest",
        members=weights,
        digests=digests,
        mode=mode,
        what=f"{len(weights)} weight files",
    )
    if weights:
        b.add(
            "model.weights.bytes",
            sum(sizes.get(r, 0) for r in weights),
            METHOD,
            f"{len(weights)} weight files",
        )
    tokenizer = sorted(r for r in rels if r in TOKENIZER_FILES)
    _group(
        b, "model.tokenizer.digest", members=tokenizer, digests=digests, mode=mode, what=", ".join(tokenizer)
    )
    _group(
        b, "model.manifest.digest", members=rels, digests=digests, mode=mode, what=f"all {len(rels)} files"
    )
    # Single files: the digest is the file's own, so `sha256sum config.json` can be compared.
    for key, rel in (
        ("model.config.digest", CONFIG_FILE),
        ("model.generation_config.digest", GENERATION_CONFIG_FILE),
    ):
        if rel in rels:
            value = f"{mode}:{digests[rel]}" if rel in digests else PENDING
            b.add(key, value, METHOD, f"{mode} of {rel}")


def _add_headers(b: FactBuilder, scan: ModelScan, problems: list[str]) -> None:
    headers = [h for h in scan.headers.values() if isinstance(h, SafetensorsHeader)]
    if not headers:
        return
    detail = f"safetensors headers of {len(headers)} file(s)"
    dtypes: dict[str, int] = {}
    for h in headers:
        for d, n in h.dtypes.items():
            dtypes[d] = dtypes.get(d, 0) + n
    names: list[FactValue] = [d.lower() for d in sorted(dtypes)]
    for key, value, how in (
        ("model.weights.dtypes", names, detail),
        ("model.weights.tensors", sum(h.tensors for h in headers), detail),
        ("model.params", sum(h.params for h in headers), detail + " (elements as stored)"),
    ):
        try:
            b.add(key, check_fact_value(key, value), METHOD, how)
        except FactError as e:
            problems.append(f"{how}: {e}")


def _message(notes: Sequence[str]) -> str:
    if len(notes) <= MAX_NOTES_IN_MESSAGE:
        return "; ".join(notes)
    return "; ".join(notes[:MAX_NOTES_IN_MESSAGE]) + f"; and {len(notes) - MAX_NOTES_IN_MESSAGE} more"


# --- the source ------------------------------------------------------------------------------------


def hasher_for(settings: object) -> Hasher:
    """A hasher built from the agent settings' ``hash_*`` fields (defaults where absent)."""
    budget = HashBudget(
        threads=getattr(settings, "hash_threads", None) or HashBudget().threads,
        nice=getattr(settings, "hash_nice", HashBudget.nice),
        ionice=getattr(settings, "hash_ionice", HashBudget.ionice),
        bytes_per_s=getattr(settings, "hash_bytes_per_s", HashBudget.bytes_per_s),
    )
    cache_dir = getattr(settings, "hash_cache_dir", None) or default_cache_dir()
    cache = DigestCache(Path(cache_dir) / "digests-v1.json")
    return Hasher(budget, getattr(settings, "hash_mode", "sha256"), cache)


class ModelFilesSource:
    """Finds, scans and (in the background) hashes the model; returns within ``wait_s``."""

    name = NAME
    needs: tuple[str, ...] = ("process",)  # where the engine loads its model from

    def __init__(self, hasher: Hasher | None = None, wait_s: float | None = None) -> None:
        self.hasher = hasher
        self.wait_s = wait_s
        self._memo: Memo = {}

    def close(self) -> None:
        if self.hasher is not None:
            self.hasher.close()

    async def collect(self, ctx: CollectContext) -> SourceResult:
        location = await asyncio.to_thread(self._locate, ctx)
        if isinstance(location, SourceResult):
            return location
        if self.hasher is None:
            self.hasher = hasher_for(ctx.settings)
        hasher = self.hasher
        scan = await asyncio.to_thread(scan_model, location, self._memo)
        outcomes: dict[str, HashOutcome | None] = {}
        futures: dict[str, concurrent.futures.Future[HashOutcome]] = {}
        for f in scan.files:
            if f.key is None:
                continue
            cached = hasher.cached(f.key)
            if cached is not None:
                outcomes[f.rel] = HashOutcome(OK, cached, f.key.size, f.key)
            else:
                futures[f.rel] = hasher.submit(f.path, f.key)
        wait_s = self.wait_s if self.wait_s is not None else ctx.settings.hash_wait_s
        # Leave the runner's timeout room: a cycle that waited too long would lose every fact.
        wait_s = min(wait_s, ctx.settings.source_timeout_s * 0.8)
        if futures and wait_s > 0:
            # asyncio.wait never cancels what it waits on: the hashing outlives a cancelled cycle.
            await asyncio.wait([asyncio.wrap_future(f) for f in futures.values()], timeout=wait_s)
        done_bytes = total_bytes = 0
        for rel, fut in futures.items():
            outcome = fut.result() if fut.done() and not fut.cancelled() else None
            outcomes[rel] = outcome
            size = next((f.key.size for f in scan.files if f.rel == rel and f.key), 0)
            total_bytes += size
            done_bytes += size if outcome is not None else 0
        progress = ""
        if any(o is None for o in outcomes.values()):
            left = sum(1 for o in outcomes.values() if o is None)
            progress = (
                f"{left} of {len(scan.files)} files left,"
                f" {done_bytes / 1e9:.2f} of {total_bytes / 1e9:.2f} GB done"
            )
        result = build_result(scan, outcomes, hasher.mode, progress)
        if hasher.budget_notes and result.message:
            result.message += "; hashing budget: " + "; ".join(hasher.budget_notes)
        return result

    def _locate(self, ctx: CollectContext) -> ModelLocation | SourceResult:
        process = ctx.process
        root = process_root_of(ctx.paths.procfs, process.pid) if process is not None else None
        configured = ctx.settings.model_dir
        if configured is not None:
            if not configured.exists():
                return SourceResult.unavailable(
                    f"model dir {configured} not found here (not mounted into the agent?)"
                )
            if not configured.is_dir():
                return SourceResult.error(f"model dir {configured} is not a directory")
        location = locate_model(
            configured,
            process.model_dir if process is not None else None,
            process.model if process is not None else ModelRequest(),
            root,
        )
        if location is None:
            if process is not None and process.model_dir is not None and not process.model_dir.exists():
                return SourceResult.unavailable(f"model dir {process.model_dir} not found here")
            return SourceResult.unavailable(
                "no model dir: pass --model-dir, or run the engine with a local --model or a hub id"
                " whose cache (--download-dir, HF_HUB_CACHE, HF_HOME) the agent can read"
            )
        return location
