"""The Hugging Face hub cache layout, and where an engine's model lives on disk.

``<hub>/models--<org>--<name>/{blobs/<id>, refs/<ref>, snapshots/<commit>/<file> -> ../../blobs/<id>}``.
A snapshot's folder name is the revision (a 40-hex commit); ``refs/main`` (or another ref) holds
the commit a ref resolved to. A blob's name is its content address: the sha256 of the file for
LFS files (weights), the Git blob id (sha1 of ``"blob <size>\\0" + content``) for small files,
so both can be verified. Other caches in the same shape (NVIDIA NIM) name blobs otherwise; those
are reported as not verifiable rather than as mismatches.

The engine's model is found from what the engine parser (``agent.engines``) read off its command
line, ``--config`` file and environment, as a :class:`ModelRequest`: the model (a local path or
a hub id), its revision, and the hub caches to try: the engine's download-dir flag, its hub cache
variables (``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``TRANSFORMERS_CACHE``), ``HF_HOME``/hub,
else the default ``~/.cache/huggingface/hub``; each candidate is tried as the agent sees it and
through ``/proc/<pid>/root`` (the engine container's filesystem). No flag is known here: the
engine tables are the one place that knows them. The candidates are computed by pure functions;
``locate_model`` does the stat calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.engines.base import HUB_CACHE_ENV

REPO_PREFIX = "models--"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
SHA1_NAME = re.compile(r"^[0-9a-f]{40}$")
MAX_REF_BYTES = 4096


@dataclass(frozen=True)
class HfSnapshot:
    """A model inside a hub cache: which repo, which commit, and the refs that point at it."""

    repo_dir: Path
    repo_id: str
    commit: str
    snapshot_dir: Path
    refs: tuple[str, ...] = ()

    @property
    def blobs_dir(self) -> Path:
        return self.repo_dir / "blobs"


@dataclass(frozen=True)
class ModelRequest:
    """The model an engine was asked to load, from its parsed settings (redacted like them)."""

    model: str | None = None  # as given: a local path or a hub id
    hub_id: str | None = None  # the model, when it is a hub repository id
    revision: str | None = None  # a ref or commit; None: main
    hub_caches: tuple[str, ...] = ()  # hub cache roots to try, most specific first


@dataclass(frozen=True)
class ModelLocation:
    root: Path  # the directory whose files are the model
    how: str  # where it was found, for provenance
    hf: HfSnapshot | None = None


# --- pure ------------------------------------------------------------------------------------------


def repo_folder(repo_id: str) -> str:
    """``meta-llama/Llama-3.1-8B`` → ``models--meta-llama--Llama-3.1-8B``."""
    return REPO_PREFIX + repo_id.replace("/", "--")


def repo_id_of(folder: str) -> str | None:
    if not folder.startswith(REPO_PREFIX) or len(folder) == len(REPO_PREFIX):
        return None
    return folder[len(REPO_PREFIX) :].replace("--", "/")


def parse_ref(text: str) -> str | None:
    """The commit a ``refs/<name>`` file holds, or None when it is not a commit. Pure."""
    value = text.strip()
    return value if COMMIT.match(value) else None


def blob_address(name: str) -> tuple[str, str] | None:
    """How a blob's name addresses its content: ``("sha256", hex)``, ``("git-sha1", hex)`` or None."""
    if SHA256_NAME.match(name):
        return "sha256", name
    if SHA1_NAME.match(name):
        return "git-sha1", name
    return None


def hub_cache_candidates(
    download_dir: str | None, env: Mapping[str, str], names: Sequence[str] = HUB_CACHE_ENV
) -> list[str]:
    """Hub cache roots to try for a hub id, most specific first: the engine's download dir, then
    the hub cache variables ``names`` in huggingface_hub's order, ``HF_HOME``/hub, ``~``. Pure."""
    out: list[str] = []
    if download_dir:
        out.append(download_dir)
    out.extend(env[n] for n in names if env.get(n))
    if env.get("HF_HOME"):
        out.append(str(PurePosixPath(env["HF_HOME"]) / "hub"))
    home = env.get("HOME") or "/root"
    out.append(str(PurePosixPath(home) / ".cache" / "huggingface" / "hub"))
    if home != "/root":
        out.append("/root/.cache/huggingface/hub")
    return list(dict.fromkeys(out))


# --- reading ---------------------------------------------------------------------------------------


def read_refs(repo_dir: Path) -> dict[str, str]:
    """Ref name → commit for every readable, well-formed file under ``refs/``."""
    refs: dict[str, str] = {}
    base = repo_dir / "refs"
    if not base.is_dir():
        return refs
    for path in sorted(base.rglob("*")):
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_REF_BYTES:
                continue
            commit = parse_ref(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue  # an unreadable ref only loses its name in the provenance
        if commit is not None:
            refs[path.relative_to(base).as_posix()] = commit
    return refs


def snapshot_of(path: Path) -> HfSnapshot | None:
    """The hub snapshot ``path`` is (or is inside), else None."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and repo_id_of(parts[i - 1]) is not None:
            repo_dir = Path(*parts[:i])
            commit = parts[i + 1]
            refs = read_refs(repo_dir)
            return HfSnapshot(
                repo_dir=repo_dir,
                repo_id=repo_id_of(parts[i - 1]) or "",
                commit=commit,
                snapshot_dir=Path(*parts[: i + 2]),
                refs=tuple(sorted(r for r, c in refs.items() if c == commit)),
            )
    return None


def resolve_repo(repo_dir: Path, revision: str | None = None) -> HfSnapshot | None:
    """The snapshot a repo folder serves for ``revision`` (a ref or commit; default ``main``)."""
    snapshots = repo_dir / "snapshots"
    repo_id = repo_id_of(repo_dir.name)
    if repo_id is None or not snapshots.is_dir():
        return None
    refs = read_refs(repo_dir)
    wanted = revision or "main"
    commit = wanted if (snapshots / wanted).is_dir() and wanted not in refs else refs.get(wanted)
    if commit is None:
        present = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
        if len(present) != 1 or revision is not None:
            return None
        commit = present[0]  # one snapshot and no ref: the only thing the engine could load
    snap = snapshots / commit
    if not snap.is_dir():
        return None
    return HfSnapshot(
        repo_dir, repo_id, commit, snap, tuple(sorted(r for r, c in refs.items() if c == commit))
    )


def classify_dir(path: Path, repo_id: str | None, revision: str | None, how: str) -> ModelLocation | None:
    """A directory as a model: a snapshot, a repo folder, a hub cache root (with an id), or plain."""
    try:
        if not path.is_dir():
            return None
    except OSError:
        return None
    snap = snapshot_of(path)
    if snap is not None:
        return ModelLocation(path, how, snap)
    if repo_id_of(path.name) is not None and (path / "snapshots").is_dir():
        snap = resolve_repo(path, revision)
        return ModelLocation(snap.snapshot_dir, f"{how}, revision {snap.commit}", snap) if snap else None
    if repo_id is not None and (path / repo_folder(repo_id)).is_dir():
        snap = resolve_repo(path / repo_folder(repo_id), revision)
        if snap is not None:
            return ModelLocation(snap.snapshot_dir, f"{how}, hub cache for {repo_id}", snap)
    return ModelLocation(path, how)


def locate_model(
    configured: Path | None,
    process_dir: Path | None,
    request: ModelRequest,
    process_root: Path | None = None,
) -> ModelLocation | None:
    """Where the model is: the configured dir, the process's local dir, else its hub cache entry."""
    repo_id, revision = request.hub_id, request.revision
    if configured is not None:
        return classify_dir(configured, repo_id, revision, "configured (--model-dir)")
    if process_dir is not None:
        found = classify_dir(process_dir, repo_id, revision, "the engine's model path")
        if found is not None:
            return found
    if repo_id is None:
        return None
    for cache in request.hub_caches:
        found = _in_hub_cache(cache, repo_id, revision, process_root)
        if found is not None:
            return found
    return None


def _in_hub_cache(
    cache: str, repo_id: str, revision: str | None, process_root: Path | None
) -> ModelLocation | None:
    """``repo_id`` in the hub cache ``cache``, as the agent sees it, then through the engine's root."""
    views = [Path(cache)]
    if process_root is not None and cache.startswith("/"):
        views.append(process_root / cache.lstrip("/"))
    for view in views:
        repo_dir = view / repo_folder(repo_id)
        try:
            present = repo_dir.is_dir()
        except OSError:
            continue
        snap = resolve_repo(repo_dir, revision) if present else None
        if snap is not None:
            how = f"hub cache {cache} for {repo_id}" + (
                " (through the engine's root)" if view != Path(cache) else ""
            )
            return ModelLocation(snap.snapshot_dir, how, snap)
    return None


def process_root_of(procfs: Path, pid: int) -> Path | None:
    root = procfs / str(pid) / "root"
    return root if os.access(root, os.R_OK | os.X_OK) else None
