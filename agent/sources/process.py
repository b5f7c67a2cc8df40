"""The ``process`` source: finds the inference process and reports its command line and env.

The process is the one ``--pid`` names, else the first whose command line ``--match`` matches,
else the first a vLLM, SGLang or TGI table recognises; when that is a shell (``bash -c "…
vllm serve …"``) its engine child is preferred. Reading goes through :class:`ProcFS` (an
injectable ``/proc`` root, as node_exporter's ``--path.procfs``); parsing is pure
(:func:`parse_cmdline`, :func:`parse_environ`, :func:`parse_stat_ppid` and
:mod:`agent.engines`). Every value is redacted before it becomes a fact or leaves in
:class:`~agent.sources.base.ProcessInfo`: no raw secret survives this module.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from agent.engines import (
    GENERIC,
    MAX_CONFIG_FILE_CHARS,
    Invocation,
    ParsedCommand,
    Setting,
    config_paths,
    is_shell,
    locate,
    parse_args,
    redact_with,
)
from agent.errors import SourceUnavailable
from agent.redact import Redactor
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, FactBuilder, ProcessInfo, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import SourceState

# /proc/<pid>/cmdline and environ are bounded by the kernel's ARG_MAX-ish limits, but a hostile
# or broken /proc root must not make the agent read without end.
MAX_PROC_FILE_BYTES = 4 * 1024 * 1024
MAX_PROBLEMS_IN_MESSAGE = 5
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "localhost"})


class ProcessGone(SourceUnavailable):
    """The process does not exist (or exited while being read)."""


class AccessDenied(PermissionError):
    """The agent may not read part of the process; the message names the pid and the file."""


# --- pure parsers -----------------------------------------------------------------------------


def parse_cmdline(data: bytes) -> list[str]:
    """``/proc/<pid>/cmdline``: NUL-separated arguments (a trailing NUL is not an argument)."""
    if not data:
        return []
    if data.endswith(b"\0"):
        data = data[:-1]
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\0")]


def parse_environ(data: bytes) -> dict[str, str]:
    """``/proc/<pid>/environ``: NUL-separated ``NAME=value``; entries without ``=`` are dropped."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def parse_stat_ppid(text: str) -> int:
    """The parent pid from ``/proc/<pid>/stat``; the command name may hold spaces and parens."""
    rest = text[text.rfind(")") + 1 :].split()
    if len(rest) < 2 or not rest[1].isdigit():
        raise ValueError(f"unexpected /proc stat line {text[:80]!r}")
    return int(rest[1])


# --- reading ----------------------------------------------------------------------------------


class ProcFS:
    """Reads processes under a /proc root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        return self.root.is_dir()

    def pids(self) -> list[int]:
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def _read(self, pid: int, name: str) -> bytes:
        path = self.root / str(pid) / name
        try:
            with path.open("rb") as f:
                return f.read(MAX_PROC_FILE_BYTES)
        except (FileNotFoundError, ProcessLookupError) as e:
            raise ProcessGone(f"no process with pid {pid} (no {path})") from e
        except PermissionError as e:
            raise AccessDenied(f"cannot read {path}: permission denied for pid {pid}") from e

    def cmdline(self, pid: int) -> list[str]:
        return parse_cmdline(self._read(pid, "cmdline"))

    def environ(self, pid: int) -> dict[str, str]:
        return parse_environ(self._read(pid, "environ"))

    def ppid(self, pid: int) -> int:
        return parse_stat_ppid(self._read(pid, "stat").decode("utf-8", "replace"))

    def cwd(self, pid: int) -> PurePosixPath | None:
        try:
            return PurePosixPath(os.readlink(self.root / str(pid) / "cwd"))
        except OSError:
            return None  # the cwd only helps resolve a relative model path

    def root_of(self, pid: int) -> Path:
        """The process's own filesystem root (another container's, under a shared pid namespace)."""
        return self.root / str(pid) / "root"


# --- finding the process ----------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    pid: int
    argv: list[str]
    how: str  # "--pid", "--match", "engine detection"


class NotFound(SourceUnavailable):
    pass


def _own_lineage(proc: ProcFS) -> set[int]:
    """The agent and its ancestors: ``skewwatch agent --match vllm`` must not match itself."""
    pids = {0}
    pid = os.getpid()
    while pid not in pids:
        pids.add(pid)
        try:
            pid = proc.ppid(pid)
        except (SourceUnavailable, PermissionError, ValueError):
            break
    return pids


def _processes(proc: ProcFS, exclude: set[int]) -> Iterator[tuple[int, list[str]]]:
    for pid in proc.pids():
        if pid in exclude:
            continue
        try:
            argv = proc.cmdline(pid)
        except (SourceUnavailable, PermissionError):
            continue  # processes come and go during a scan; ones we may not read are not ours
        if argv:  # kernel threads and zombies have no command line
            yield pid, argv


def _engine_child(proc: ProcFS, pid: int, pattern: re.Pattern[str] | None) -> tuple[int, list[str]] | None:
    """The first descendant of ``pid`` that is the engine itself (or matches, and is no shell)."""
    children: dict[int, list[int]] = {}
    for child in proc.pids():
        try:
            children.setdefault(proc.ppid(child), []).append(child)
        except (SourceUnavailable, PermissionError, ValueError):
            continue
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        try:
            argv = proc.cmdline(child)
        except (SourceUnavailable, PermissionError):
            continue
        if argv and not is_shell(argv):
            inv = locate(argv)
            if (inv is not None and not inv.via_shell) or (pattern and pattern.search(" ".join(argv))):
                return child, argv
        queue.extend(children.get(child, []))
    return None


def find_process(proc: ProcFS, settings: AgentSettings) -> Found:
    """The inference process per the settings; NotFound (unavailable) when there is none."""
    exclude = _own_lineage(proc)
    pattern = re.compile(settings.match) if settings.match else None
    found: Found | None = None
    if settings.pid is not None:
        argv = proc.cmdline(settings.pid)
        if not argv:
            raise NotFound(f"pid {settings.pid} has no command line (a kernel thread or a zombie)")
        found = Found(settings.pid, argv, "--pid")
    elif pattern is not None:
        for pid, argv in _processes(proc, exclude):
            if pattern.search(" ".join(argv)):
                found = Found(pid, argv, "--match")
                break
        if found is None:
            raise NotFound(f"no process matched --match {settings.match!r}")
    else:
        via_shell: Found | None = None
        for pid, argv in _processes(proc, exclude):
            inv = locate(argv)
            if inv is not None and not inv.via_shell:
                found = Found(pid, argv, "engine detection")
                break
            if inv is not None and via_shell is None:
                via_shell = Found(pid, argv, "engine detection")
        found = found or via_shell
        if found is None:
            raise NotFound("no process matched a vLLM, SGLang or TGI command line (give --pid or --match)")
    if is_shell(found.argv):
        child = _engine_child(proc, found.pid, pattern)
        if child is not None:
            found = Found(child[0], child[1], f"{found.how}, child of shell {found.pid}")
    return found


# --- model dir and metrics URL ----------------------------------------------------------------


def engine_paths(path: str, cwd: PurePosixPath | None, process_root: Path | None) -> list[Path]:
    """Where a path the engine names can be reached from the agent, in the order to try.

    As the agent sees it (a volume mounted at the same place in the sidecar), then through
    ``/proc/<pid>/root`` (the engine container's filesystem); a relative path is the engine's,
    resolved against its cwd, and unreachable when that is unknown.
    """
    p = PurePosixPath(path)
    if not p.is_absolute():
        if cwd is None:
            return []
        p = cwd / p
    candidates = [Path(p)]
    if process_root is not None:
        candidates.append(process_root / p.relative_to("/"))
    return candidates


def resolve_model_dir(model: str, cwd: PurePosixPath | None, process_root: Path | None) -> Path | None:
    """The local directory the engine loads ``model`` from, as the agent can reach it, else None.

    Tried as the agent sees the path (the model volume mounted at the same place in the
    sidecar), then through ``/proc/<pid>/root`` (the engine container's filesystem).
    """
    for candidate in engine_paths(model, cwd, process_root):
        try:
            if candidate.is_dir():
                return candidate
        except OSError:
            continue  # unreadable through /proc/<pid>/root: try the next way in
    return None


def process_view(model: str, cwd: PurePosixPath | None) -> str:
    """The model path as the engine process sees it: absolute and without ``..``."""
    path = PurePosixPath(model)
    if not path.is_absolute() and cwd is not None:
        path = cwd / path
    return os.path.normpath(str(path))


def metrics_url_for(parsed: ParsedCommand, metrics_path: str) -> str | None:
    """``http://HOST:PORT/metrics`` from the engine's port (flag, env or default) and host."""
    port = parsed.value("serving.port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    host = parsed.host or ""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"  # a shared pod network namespace: the engine's port is ours too
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{metrics_path}"


def _describe(inv: Invocation | None) -> str:
    if inv is None:
        return "command line matches no known engine"
    ep = inv.entrypoint
    start = ep.name if ep.kind == "executable" else f"python -m {ep.name}"
    text = f"{start} {ep.subcommand}" if ep.subcommand else start
    return f"{text} (inside a shell script)" if inv.via_shell else text


# --- the source -------------------------------------------------------------------------------


class ProcessSource:
    """Finds the inference process and reports its engine, flags and environment."""

    name = "process"

    async def collect(self, ctx: CollectContext) -> SourceResult:
        # /proc reads are cheap but blocking, and a scan touches every process: off the loop.
        return await asyncio.to_thread(collect_process, ctx)


def collect_process(ctx: CollectContext) -> SourceResult:
    """The synchronous body of the process source."""
    proc = ProcFS(ctx.paths.procfs)
    if not proc.exists():
        return SourceResult.unavailable(f"no /proc at {ctx.paths.procfs}")
    try:
        found = find_process(proc, ctx.settings)
    except SourceUnavailable as e:
        return SourceResult.unavailable(str(e))
    except AccessDenied as e:
        return SourceResult.error(str(e))

    problems: list[str] = []
    env: dict[str, str] = {}
    try:
        env = proc.environ(found.pid)
    except AccessDenied as e:
        problems.append(f"{e} (run the agent as the engine's user or with CAP_SYS_PTRACE)")
    except SourceUnavailable as e:
        return SourceResult.unavailable(f"pid {found.pid} exited while being read: {e}")
    cwd = proc.cwd(found.pid)
    process_root = proc.root_of(found.pid)
    inv = locate(found.argv, env=env)
    spec = inv.spec if inv is not None else GENERIC
    config_files: dict[str, str] = {}
    for path in config_paths(spec, found.argv, env):
        text = read_process_file(path, cwd, process_root)
        if text is not None:
            config_files[path] = text
    return build_result(
        ctx.settings,
        found=found,
        env=env,
        cwd=cwd,
        process_root=process_root,
        problems=problems,
        config_files=config_files,
    )


def read_process_file(path: str, cwd: PurePosixPath | None, process_root: Path | None) -> str | None:
    """A small text file the engine reads (``--config FILE``), as the agent can reach it, else None.

    Tried as the agent sees the path, then through ``/proc/<pid>/root``; relative paths are the
    process's, resolved against its cwd. Bounded: the parser refuses anything near the cap.
    """
    for candidate in engine_paths(path, cwd, process_root):
        try:
            with candidate.open("rb") as f:
                return f.read(MAX_CONFIG_FILE_CHARS + 1).decode("utf-8", "replace")
        except OSError:
            continue  # not mounted in the agent's container: try the engine's filesystem
    return None


def build_result(
    settings: AgentSettings,
    *,
    found: Found,
    env: Mapping[str, str],
    cwd: PurePosixPath | None,
    process_root: Path | None,
    problems: list[str],
    config_files: Mapping[str, str] | None = None,
) -> SourceResult:
    """Facts and ProcessInfo from what was read; everything redacted on the way out."""
    redactor = Redactor(settings.redaction_salt)
    redact = redact_with(redactor)
    inv = locate(found.argv, env=env)
    spec = inv.spec if inv is not None else GENERIC
    parsed = parse_args(spec, found.argv, env, redact, config_files)
    problems.extend(parsed.problems)

    model_dir = settings.model_dir
    local_model: Path | None = None
    if parsed.model_arg is not None:
        local_model = resolve_model_dir(parsed.model_arg, cwd, process_root)
        model_dir = model_dir or local_model

    fb = FactBuilder("process")
    if inv is None:
        fb.add("runtime.engine", "unknown", "derived", _describe(inv))
    else:
        fb.add("runtime.engine", spec.name, "arg", _describe(inv))
    for setting in parsed.settings:
        if setting.key in ("model.id", "model.path") and local_model is not None and parsed.model_arg:
            # The engine loads a local directory before it asks the hub: a path, whatever its shape.
            path = redact("model", process_view(parsed.model_arg, cwd))
            _add(fb, replace(setting, key="model.path", value=path), problems)
        else:
            _add(fb, setting, problems)

    metrics_url = settings.metrics_url or metrics_url_for(parsed, spec.metrics_path)
    info = ProcessInfo(
        pid=found.pid,
        engine=spec.name,
        argv=tuple(redactor.argv(found.argv)),
        # Only the variables the engine reports: the rest of an environment is not ours to ship.
        env={k: redact(k, v) for k, v in env.items() if spec.reports_env(k)},
        model_dir=model_dir,
        metrics_url=metrics_url,
    )
    summary = f"pid {found.pid} ({spec.name}) found by {found.how}"
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_IN_MESSAGE])
        more = len(problems) - MAX_PROBLEMS_IN_MESSAGE
        message = f"{summary}; {shown}" + (f"; and {more} more" if more > 0 else "")
        return SourceResult(SourceState.ERROR, message, fb.facts, process=info)
    return SourceResult(SourceState.OK, summary, fb.facts, process=info)


def _add(fb: FactBuilder, setting: Setting, problems: list[str]) -> None:
    try:
        fb.add(setting.key, setting.value, setting.method, setting.detail)
    except FactError as e:
        problems.append(f"{setting.detail or setting.key}: {e}")
