"""The ``process`` source: finds the inference process and reports its command line and env.

The process is the one ``--pid`` names, else, among those ``--match`` matches (or those a vLLM,
SGLang or TGI table recognises), the engine itself before a shell or wrapper that starts one,
lowest pid first; a shell (``bash -c "… vllm serve …"``, ``bash launch.sh``) or a wrapper that
stays as its parent (``timeout 600 vllm serve …``, ``tini --``) yields to its engine child.
skewwatch's own processes never count. The source keeps its target across cycles
(:class:`TargetTracker`): while the process attached to runs it stays, and when it ends a
process with the same engine and port takes its place, never another replica's engine.
Reading goes through :class:`ProcFS` (an injectable ``/proc`` root, as node_exporter's
``--path.procfs``); parsing is pure (:func:`parse_cmdline`, :func:`parse_environ`,
:func:`parse_stat_ppid`, :func:`parse_stat_start_ticks`, :func:`parse_boot_time` and
:mod:`agent.engines`). Every value is redacted before it becomes a fact or leaves in
:class:`~agent.sources.base.ProcessInfo`: no raw secret survives this module.

**psutil** reads the engine's resident memory and CPU use (:class:`EngineUsage`, observations
``process_rss_bytes`` and ``process_cpu_cores``): counters it parses right on every platform,
and a CPU rate it keeps per process. Discovery, parent pids, start times, cmdline and environ stay
hand-read through :class:`ProcFS`, for reasons psutil cannot meet: the ``/proc`` root is
injectable (``AgentPaths.procfs``: a host's ``/proc`` mounted elsewhere, another pid namespace,
the tests' fake trees), while psutil reads one global ``PROCFS_PATH``; every read is bounded
(``MAX_PROC_FILE_BYTES``) against a hostile process; cmdline and environ are decoded with
``surrogateescape`` and go straight to the redactor, and the start time stays clock ticks (what
the tracker compares) instead of psutil's float seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

import psutil

from agent.bounds import check_fact_value, check_value
from agent.engines import (
    GENERIC,
    MAX_CONFIG_FILE_CHARS,
    REVISION,
    EngineSpec,
    Invocation,
    ParsedCommand,
    Setting,
    is_shell,
    launcher_for,
    model_key,
    redact_with,
    resolve_launched,
)
from agent.engines import config_paths as _config_paths
from agent.engines import locate as _locate
from agent.engines import parse_args as _parse_args
from agent.engines import shell_commands as _shell_commands
from agent.engines.launchers import NIM_PROFILE_ENV, LauncherSpec, metrics_port
from agent.engines.parse import (
    LAUNCHERS,
    Redact,
    basename,
    is_wrapper,
    python_target,
    shell_script,
    strip_wrappers,
)
from agent.errors import SourceUnavailable
from agent.hfcache import ModelRequest, hub_cache_candidates
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, FactBuilder, ProcessInfo, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Observation, SourceState
from skewwatch.redact import Redactor

# /proc/<pid>/cmdline and environ are bounded by the kernel's ARG_MAX-ish limits, but a hostile
# or broken /proc root must not make the agent read without end.
MAX_PROC_FILE_BYTES = 4 * 1024 * 1024
MAX_PROBLEMS_IN_MESSAGE = 5
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "localhost"})


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100  # USER_HZ on every Linux architecture


CLOCK_TICKS = _clock_ticks()

log = logging.getLogger(__name__)


class ProcessGone(SourceUnavailable):
    """The process does not exist (or exited while being read)."""


class AccessDenied(PermissionError):
    """The agent may not read part of the process; the message names the pid and the file."""


# --- hostile command lines ---------------------------------------------------------------------
# Every process on the host is read, and a command line or environment is anyone's text: a
# number of thousands of digits (past Python's int digit limit, or a float's range) or a
# ``$(( ))`` nested past the recursion limit must cost that value, never the source. These
# wrappers retry with such values defused and name what was left unread.

_HOSTILE_ERRORS = (ValueError, OverflowError, RecursionError, MemoryError)
_LONG_NUMBER = re.compile(r"\d{300,}")
_DEFUSED_NOTE = "numbers of 300 or more digits and $(( )) arithmetic were left unread"


def _defuse(text: str) -> str:
    return _LONG_NUMBER.sub("out-of-range-number", text).replace("$((", "$( (")


def _defused(argv: Sequence[str], env: Mapping[str, str] | None) -> tuple[list[str], dict[str, str] | None]:
    return [_defuse(a) for a in argv], (None if env is None else {k: _defuse(v) for k, v in env.items()})


def locate(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Invocation | None:
    try:
        return _locate(argv, env=env)
    except _HOSTILE_ERRORS:
        try:
            defused_argv, defused_env = _defused(argv, env)
            return _locate(defused_argv, env=defused_env)
        except _HOSTILE_ERRORS:
            return None


def locate_engine(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Invocation | None, str]:
    """The engine a command line starts, as far as its launcher and environment tell (a NIM SDK
    server's backend comes from ``NIM_MODEL_PROFILE``), and a note when they cannot."""
    inv = locate(argv, env=env)
    return (None, "") if inv is None else resolve_launched(inv, env)


def shell_commands(script: str, env: Mapping[str, str] | None = None) -> list[list[str]]:
    try:
        return _shell_commands(script, env)
    except _HOSTILE_ERRORS:
        try:
            return _shell_commands(_defuse(script), _defused((), env)[1])
        except _HOSTILE_ERRORS:
            return []


def config_paths(spec: EngineSpec, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    try:
        return _config_paths(spec, argv, env)
    except _HOSTILE_ERRORS:
        try:
            return _config_paths(spec, *_defused(argv, env))
        except _HOSTILE_ERRORS:
            return []


def parse_args(
    spec: EngineSpec,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    redact: Redact | None = None,
    config_files: Mapping[str, str] | None = None,
) -> ParsedCommand:
    """``agent.engines.parse_args``; a value it cannot take costs that value, with a problem."""
    try:
        return _parse_args(spec, argv, env, redact, config_files)
    except _HOSTILE_ERRORS as e:
        why = f"{type(e).__name__}: {str(e)[:120]}"
    note = f"the command line or environment holds values the parser cannot take ({why}); {_DEFUSED_NOTE}"
    try:
        parsed = _parse_args(spec, *_defused(argv, env), redact, config_files)
    except _HOSTILE_ERRORS as e:
        return ParsedCommand(spec.name, problems=[f"{note}; still unreadable: {type(e).__name__}"])
    parsed.problems.insert(0, note)
    return parsed


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


def parse_stat_start_ticks(text: str) -> int:
    """The start time from ``/proc/<pid>/stat`` (field 22): clock ticks after boot."""
    rest = text[text.rfind(")") + 1 :].split()
    # rest[0] is field 3 (the state), so field 22 is rest[19]
    if len(rest) < 20 or not rest[19].isdigit():
        raise ValueError(f"unexpected /proc stat line {text[:80]!r}")
    return int(rest[19])


def parse_boot_time(text: str) -> int:
    """``btime`` from ``/proc/stat``: the boot time in epoch seconds."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "btime" and value.strip().isdigit():
            return int(value.strip())
    raise ValueError("no btime line in /proc/stat")


# --- reading ----------------------------------------------------------------------------------


class ProcFS:
    """Reads processes under a /proc root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._boot_time: int | Literal[False] | None = None  # False: unreadable

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

    def stat(self, pid: int) -> str:
        return self._read(pid, "stat").decode("utf-8", "replace")

    def start_ticks(self, pid: int) -> int | None:
        """When the process started, in clock ticks after boot; None from an odd stat line."""
        try:
            return parse_stat_start_ticks(self.stat(pid))
        except ValueError:
            return None

    def boot_time(self) -> int | None:
        """``btime`` of this /proc root, read once; None when ``stat`` is unreadable or lacks it."""
        if self._boot_time is None:
            try:
                with (self.root / "stat").open("rb") as f:
                    self._boot_time = parse_boot_time(f.read(MAX_PROC_FILE_BYTES).decode("utf-8", "replace"))
            except (OSError, ValueError):
                self._boot_time = False
        return None if self._boot_time is False else self._boot_time

    def start_time(self, ticks: int | None) -> float | None:
        """A process start (clock ticks after boot) in epoch seconds; None without a boot time.

        Without ``btime`` the start is unknown as a time: the ticks alone still tell a restarted
        process from the one attached to (the tracker compares them), so nothing is guessed.
        """
        boot = self.boot_time()
        if ticks is None or boot is None:
            return None
        return boot + ticks / CLOCK_TICKS

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
    note: str = ""  # how it was chosen among several, or that it replaced an ended engine
    start_ticks: int | None = None  # field 22 of /proc/<pid>/stat: clock ticks after boot
    start_time: float | None = None  # the same in epoch seconds, when /proc/stat has btime


class NotFound(SourceUnavailable):
    pass


# skewwatch's own entry points: its console script, ``python -m skewwatch.cli`` and the demo runner
# (``python -m demo.run`` from a checkout: the demo is not in the wheel).
SKEWWATCH_EXECUTABLES = frozenset({"skewwatch"})
SKEWWATCH_MODULES = frozenset({"skewwatch", "skewwatch.cli", "demo.run"})


def _is_skewwatch_command(argv: Sequence[str]) -> bool:
    args = strip_wrappers(argv)
    if not args:
        return False
    program = python_target(args)
    if program is None:
        return PurePosixPath(args[0]).name in SKEWWATCH_EXECUTABLES
    kind, name, _rest = program
    return name in (SKEWWATCH_MODULES if kind == "module" else SKEWWATCH_EXECUTABLES)


def is_skewwatch_process(argv: Sequence[str]) -> bool:
    """True for skewwatch's own processes: never the engine, however well they match.

    The ``skewwatch`` console script (``python …/bin/skewwatch agent --match vllm``),
    ``python -m skewwatch.cli …`` or ``-m skewwatch``, the demo runner ``python -m demo.run``
    (run from a checkout), and a shell whose script runs one of them and starts no engine. A test
    runner (pytest) is not skewwatch; nor is an engine stand-in launched as ``vllm``.
    """
    if _is_skewwatch_command(argv):
        return True
    script = shell_script(strip_wrappers(argv))
    if script is None or locate(argv) is not None:
        return False
    return any(_is_skewwatch_command(command) for command in shell_commands(script))


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
    """Every process with a command line, but the agent's lineage and skewwatch's own processes."""
    for pid in proc.pids():
        if pid in exclude:
            continue
        try:
            argv = proc.cmdline(pid)
        except (SourceUnavailable, PermissionError):
            continue  # processes come and go during a scan; ones we may not read are not ours
        # kernel threads and zombies have no command line
        if argv and not is_skewwatch_process(argv):
            yield pid, argv


def launches(argv: Sequence[str]) -> bool:
    """A shell or a wrapper: a process that starts the engine rather than being it."""
    return is_shell(argv) or is_wrapper(argv)


class _Scan:
    """One cycle's look at /proc: what to skip, what matches, and who is whose child (read once)."""

    def __init__(self, proc: ProcFS, settings: AgentSettings) -> None:
        self.proc = proc
        self.settings = settings
        self.exclude = _own_lineage(proc)
        self.pattern = re.compile(settings.match) if settings.match else None
        self._children: dict[int, list[int]] | None = None
        self._selected: list[tuple[int, list[str]]] | None = None

    def selected(self) -> list[tuple[int, list[str]]]:
        """The processes ``--match`` matches; without it, those an engine table recognises."""
        if self._selected is None:
            pattern = self.pattern
            self._selected = [
                (pid, argv)
                for pid, argv in _processes(self.proc, self.exclude)
                if (pattern.search(" ".join(argv)) if pattern is not None else locate(argv) is not None)
            ]
        return self._selected

    def children(self) -> dict[int, list[int]]:
        if self._children is None:
            self._children = {}
            for child in self.proc.pids():
                try:
                    self._children.setdefault(self.proc.ppid(child), []).append(child)
                except (SourceUnavailable, PermissionError, ValueError):
                    continue
        return self._children

    def engine_child(self, pid: int, command: Sequence[str] = ()) -> tuple[int, list[str]] | None:
        """The first descendant of ``pid``, nearest first, that is the engine itself: one an engine
        table recognises, or one that matches ``--match``, or ``command`` itself (what the wrapper
        ``pid`` runs); never a shell, a wrapper or skewwatch's own. The engine's own children
        (vLLM's ``VLLM::EngineCore``) are only reached through the engine, which comes first."""
        children = self.children()
        queue = list(children.get(pid, []))
        while queue:
            child = queue.pop(0)
            queue.extend(children.get(child, []))
            if child in self.exclude:
                continue
            try:
                argv = self.proc.cmdline(child)
            except (SourceUnavailable, PermissionError):
                continue
            if not argv or launches(argv) or is_skewwatch_process(argv):
                continue
            inv = locate(argv)
            if (
                (inv is not None and not inv.via_shell)
                or (self.pattern and self.pattern.search(" ".join(argv)))
                or (command and argv == list(command))
            ):
                return child, argv
        return None

    def resolve(self, found: Found) -> Found:
        """A shell, or a wrapper that stays as the parent of what it runs (``timeout 600 vllm
        serve …``, ``tini -- …``), yields to its engine child once that has started."""
        command: list[str] = []
        if is_shell(found.argv):
            kind = "shell"
        elif is_wrapper(found.argv):
            name = basename(found.argv[0])
            kind = f"wrapper {name}" if name in LAUNCHERS else "wrapper"  # never an argv[0] of VAR=secret
            command = [] if is_shell(strip_wrappers(found.argv)) else strip_wrappers(found.argv)
        else:
            return found
        child = self.engine_child(found.pid, command)
        if child is None:
            return found
        return replace(found, pid=child[0], argv=child[1], how=f"{found.how}, child of {kind} {found.pid}")

    def several(self, chosen: int, rule: str) -> str:
        """Said when more than one process could be the engine: how many, which, and the rule."""
        pids = sorted(pid for pid, _ in self.selected())
        if len(pids) < 2:
            return ""
        if self.settings.match:
            what = f"{len(pids)} processes match --match {self.settings.match!r}"
        else:
            what = f"{len(pids)} engine processes found"
        return f"{what} (pids {_pids_text(pids)}): chose pid {chosen}, {rule}"


def find_process(proc: ProcFS, settings: AgentSettings) -> Found:
    """The inference process per the settings, chosen afresh; NotFound (unavailable) when none.

    A first attach by :class:`TargetTracker`, which has nothing remembered yet.
    """
    return TargetTracker().find(proc, settings)


# --- keeping the target across cycles ---------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """What makes an engine the same engine after a restart: its engine, port and command line."""

    engine: str  # vllm | sglang | tgi | unknown
    port: int | None  # serving.port as the engine reads it (flag, env, config file or default)
    argv: tuple[str, ...]  # the redacted command line

    def same_engine(self, other: Signature) -> bool:
        """Same engine on the same port; an unknown engine (or no port) only by identical argv."""
        if self.engine != other.engine:
            return False
        if self.engine == GENERIC.name or self.port is None:
            return self.argv == other.argv
        return self.port == other.port

    def describe(self) -> str:
        return f"{self.engine} on port {self.port}" if self.port is not None else f"{self.engine} (no port)"

    def command_line(self) -> str:
        if self.port is None:
            return f"same {self.engine} command line"
        return f"same {self.engine} command line on port {self.port}"


@dataclass(frozen=True)
class Target:
    """The engine process attached to, as remembered between cycles."""

    pid: int
    start_ticks: int | None
    start_time: float | None
    signature: Signature
    how: str  # how it was found: "--match, child of shell 10"


@dataclass(frozen=True)
class _Candidate:
    found: Found  # resolved: a shell's engine child when it has one
    signature: Signature


RULE_ENGINE = "the lowest pid a vLLM, SGLang or TGI table recognises as the engine itself"
RULE_SHELL = "the lowest pid whose shell script or wrapper starts a vLLM, SGLang or TGI engine"
RULE_LOWEST = "the lowest pid (none is a known engine command line)"
_RULES = (RULE_ENGINE, RULE_SHELL, RULE_LOWEST)
MAX_PIDS_IN_MESSAGE = 10


def _pids_text(pids: Sequence[int]) -> str:
    shown = ", ".join(str(p) for p in pids[:MAX_PIDS_IN_MESSAGE])
    return shown + (", …" if len(pids) > MAX_PIDS_IN_MESSAGE else "")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _rank(pid: int, argv: Sequence[str]) -> tuple[int, int]:
    """First-attach order: the engine itself, then a shell or wrapper that starts one (it yields to
    its engine child), then anything; by pid."""
    inv = locate(argv)
    if inv is None:
        return 2, pid
    return (1 if inv.via_shell or launches(argv) else 0), pid


def read_signature(proc: ProcFS, pid: int, argv: Sequence[str], redactor: Redactor) -> Signature:
    """A process's signature; its environment and ``--config`` file count for the port."""
    try:
        env = proc.environ(pid)
    except (SourceUnavailable, AccessDenied):
        env = {}  # the port from the command line or the engine's default
    inv, _ = locate_engine(argv, env)
    spec = inv.spec if inv is not None else GENERIC
    cwd, root = proc.cwd(pid), proc.root_of(pid)
    config_files: dict[str, str] = {}
    for path in config_paths(spec, argv, env):
        text = read_process_file(path, cwd, root)
        if text is not None:
            config_files[path] = text
    value = parse_args(spec, argv, env, redact_with(redactor), config_files).value("serving.port")
    port = value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None
    return Signature(spec.name, port, tuple(redactor.argv(argv)))


class TargetTracker:
    """Which process is the engine, cycle after cycle: the agent keeps its target.

    First attach: the ``--pid`` process; else, among the processes ``--match`` matches (without
    it: those an engine table recognises), the engine itself before a shell or wrapper that starts
    one before anything else, lowest pid first. A shell (``bash -c …``, ``bash launch.sh``) or a
    wrapper that stays as the engine's parent (``timeout``, ``tini``, ``dumb-init``, ``setsid``:
    ``strip_wrappers``) yields to its first descendant that is the engine itself, with ``--pid``
    too; until that has started the wrapper is the target, and the switch is logged once. The
    engine itself never descends: its own children (vLLM's ``VLLM::EngineCore``, workers,
    resource tracker) are not the engine. From then on the
    target's signature (engine, port, redacted argv), pid and start time are remembered. While
    that process runs (same pid, same start time) it stays the target, whatever else matches.
    When it ends, a process with the same signature (same engine and port, identical argv
    first) is the target: among the matches, or with ``--pid`` among all processes; without one
    the source is unavailable, and another replica's engine (another port) is never taken
    instead. skewwatch's own processes never count. Changes are logged once: attach, switch, lost.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.target: Target | None = None
        self.lost_since: float | None = None
        self._clock = clock

    def find(self, proc: ProcFS, settings: AgentSettings) -> Found:
        redactor = Redactor(settings.redaction_salt)
        scan = _Scan(proc, settings)
        target = self.target
        if target is not None and self._running(proc, target):
            # Still the engine attached to: it stays, whatever else matches now.
            found = scan.resolve(Found(target.pid, proc.cmdline(target.pid), target.how))
            if settings.pid is None:
                rule = f"the attached engine ({target.signature.describe()}) while it runs"
                found = replace(found, note=scan.several(target.pid, rule))
            return self._attach(proc, found, redactor)
        if target is not None:
            return self._refind(scan, target, redactor)
        if settings.pid is not None:
            argv = proc.cmdline(settings.pid)
            if not argv:
                raise NotFound(f"pid {settings.pid} has no command line (a kernel thread or a zombie)")
            return self._attach(proc, scan.resolve(Found(settings.pid, argv, "--pid")), redactor)
        selected = scan.selected()
        if not selected:
            if settings.match:
                raise NotFound(f"no process matched --match {settings.match!r}")
            raise NotFound("no process matched a vLLM, SGLang or TGI command line (give --pid or --match)")
        pid, argv = min(selected, key=lambda pa: _rank(*pa))
        how = "--match" if settings.match else "engine detection"
        found = scan.resolve(Found(pid, argv, how, note=scan.several(pid, _RULES[_rank(pid, argv)[0]])))
        return self._attach(proc, found, redactor)

    def _candidates(self, scan: _Scan, target: Target, redactor: Redactor) -> list[_Candidate]:
        """What could replace the ended target: the matches, or (--pid) processes of its engine."""
        if scan.settings.pid is None:
            selected = scan.selected()
            how = "--match" if scan.settings.match else "engine detection"
        else:
            wanted = target.signature
            selected = []
            for pid, argv in _processes(scan.proc, scan.exclude):
                inv = locate(argv)
                if (inv.spec.name if inv is not None else GENERIC.name) != wanted.engine:
                    continue
                if inv is None and (len(argv) != len(wanted.argv) or argv[0] != wanted.argv[0]):
                    continue  # an unknown engine is only the same by its whole command line
                selected.append((pid, argv))
            how = f"--pid {scan.settings.pid}, re-attached by its command line ({wanted.describe()})"
        candidates: dict[int, _Candidate] = {}
        for pid, argv in selected:
            found = scan.resolve(Found(pid, argv, how))
            if found.pid not in candidates:
                signature = read_signature(scan.proc, found.pid, found.argv, redactor)
                candidates[found.pid] = _Candidate(found, signature)
        return list(candidates.values())

    def _refind(self, scan: _Scan, target: Target, redactor: Redactor) -> Found:
        wanted = target.signature
        candidates = self._candidates(scan, target, redactor)
        same = [c for c in candidates if wanted.same_engine(c.signature)]
        if not same:
            raise NotFound(self._lost(target, [c for c in candidates if c not in same], scan.settings))
        best = min(same, key=lambda c: (c.signature.argv != wanted.argv, launches(c.found.argv), c.found.pid))
        switch = (
            f"engine pid {target.pid} (start {_when(target.start_time)}) ended; "
            f"re-attached to pid {best.found.pid}, {best.signature.command_line()}"
        )
        log.info("%s", switch)
        rule = f"the {wanted.command_line()} as the ended pid {target.pid}"
        if best.signature.argv != wanted.argv:
            rule += " (other arguments differ)"
        several = scan.several(best.found.pid, rule) if scan.settings.pid is None else ""
        found = replace(best.found, note="; ".join(n for n in (switch, several) if n))
        return self._attach(scan.proc, found, redactor, signature=best.signature, switched=True)

    def _lost(self, target: Target, others: Sequence[_Candidate], settings: AgentSettings) -> str:
        first = self.lost_since is None
        if self.lost_since is None:
            self.lost_since = self._clock()
        sig = target.signature
        looking = f"{sig.engine} on port {sig.port}" if sig.port is not None else f"the {sig.command_line()}"
        message = f"engine pid {target.pid} not running since {_when(self.lost_since)}; looking for {looking}"
        if others:
            same_engine = all(c.signature.engine == sig.engine for c in others)
            where = "on other ports" if same_engine else "with another engine or port"
            noun = "match" if settings.pid is None else f"{sig.engine} process"
            n = len(others)
            detail = ", ".join(
                f"pid {c.found.pid}: {c.signature.describe()}" for c in others[:MAX_PIDS_IN_MESSAGE]
            )
            message += f"; {n} other {noun}{'es' if n != 1 else ''} {where} ignored ({detail})"
        if first:
            log.warning("%s", message)
        return message

    def replacement(self, proc: ProcFS, settings: AgentSettings) -> int | None:
        """The pid of a process that would replace the ended target now (the same engine and port,
        as :meth:`find` would re-attach), else None; remembers and logs nothing. A /proc scan."""
        target = self.target
        if target is None:
            return None
        redactor = Redactor(settings.redaction_salt)
        candidates = self._candidates(_Scan(proc, settings), target, redactor)
        same = [c.found.pid for c in candidates if target.signature.same_engine(c.signature)]
        return min(same) if same else None

    def running(self, proc: ProcFS) -> bool | None:
        """Does the target still run (same pid and start time)? None while there is no target."""
        target = self.target
        return None if target is None else self._running(proc, target)

    def _running(self, proc: ProcFS, target: Target) -> bool:
        """The target process still runs: same pid, same start time, a command line (no zombie)."""
        try:
            argv = proc.cmdline(target.pid)
            ticks = proc.start_ticks(target.pid)
        except SourceUnavailable:
            return False
        except AccessDenied:
            return True  # it is there; reading it again names what is denied
        if not argv:
            return False
        return ticks is None or target.start_ticks is None or ticks == target.start_ticks

    def _attach(
        self,
        proc: ProcFS,
        found: Found,
        redactor: Redactor,
        *,
        signature: Signature | None = None,
        switched: bool = False,
    ) -> Found:
        """Remember ``found`` as the target (with its start time), logging only what changed."""
        try:
            ticks = proc.start_ticks(found.pid)
        except (SourceUnavailable, AccessDenied):
            ticks = None
        start = proc.start_time(ticks)
        found = replace(found, start_ticks=ticks, start_time=start)
        old = self.target
        if signature is None:
            unchanged = (
                old is not None
                and old.pid == found.pid
                and old.signature.argv == tuple(redactor.argv(found.argv))
            )
            signature = (
                old.signature
                if unchanged and old is not None
                else read_signature(proc, found.pid, found.argv, redactor)
            )
        self.target = Target(found.pid, ticks, start, signature, found.how)
        self.lost_since = None
        if switched:
            return found  # _refind logged the switch
        if old is None:
            log.info(
                "attached to engine pid %d (%s), found by %s", found.pid, signature.describe(), found.how
            )
        elif old.pid != found.pid:  # a shell's engine child has started
            log.info(
                "engine pid %d is now pid %d (%s), found by %s",
                old.pid,
                found.pid,
                signature.describe(),
                found.how,
            )
        return found


class TargetWatch:
    """Between collections: has the engine attached to ended, or has its replacement appeared?

    :meth:`check` is cheap while the target runs (two small reads of ``/proc/<pid>``: its
    command line and start time); once it ended it looks for a process with the same signature
    (:meth:`TargetTracker.replacement`, a /proc scan) at most once per ``scan_every_s``. Each
    change is said once: the end of one target, the appearance of one replacement pid. Nothing is
    attached here: the collection that follows does that, as it always does.
    """

    def __init__(
        self,
        tracker: TargetTracker,
        procfs: Path,
        settings: AgentSettings,
        scan_every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.proc = ProcFS(procfs)
        self.settings = settings
        self.scan_every_s = scan_every_s
        self._clock = clock
        self._ended: tuple[int, int | None] | None = None  # the target whose end was said
        self._replacement: int | None = None  # the replacement pid already said
        self._scanned_at: float | None = None

    def steady(self) -> bool:
        """The target still runs with its start time, by ``/proc/<pid>/stat`` alone: cheap enough
        for the event loop, and a read that takes no lock of the engine's memory (its cmdline
        does). True with no target; False when in doubt, for :meth:`check` to say why."""
        target = self.tracker.target
        if target is None:
            return True
        if self._ended == (target.pid, target.start_ticks):
            return False  # its end was said; a new target (attached since) is judged afresh
        try:
            text = self.proc.stat(target.pid)
            ticks = parse_stat_start_ticks(text)
        except (SourceUnavailable, AccessDenied, ValueError):
            return False
        state = text[text.rfind(")") + 1 :].split()[:1]
        return state not in (["Z"], ["X"]) and (target.start_ticks is None or ticks == target.start_ticks)

    def check(self) -> str | None:
        """Why to collect now (the target ended, a replacement appeared), else None."""
        target = self.tracker.target
        if target is None:
            return None  # nothing attached yet: the next collection looks
        if self.tracker.running(self.proc):
            self._ended = None
            self._replacement = None
            return None
        key = (target.pid, target.start_ticks)
        if self._ended != key:
            self._ended, self._replacement, self._scanned_at = key, None, self._clock()
            return f"engine pid {target.pid} ended"
        now = self._clock()
        if self._scanned_at is not None and now - self._scanned_at < self.scan_every_s:
            return None
        self._scanned_at = now
        try:
            pid = self.tracker.replacement(self.proc, self.settings)
        except (SourceUnavailable, AccessDenied, OSError):
            return None  # the collection says what is wrong
        if pid is None or pid == self._replacement:
            return None
        self._replacement = pid
        return f"engine pid {target.pid} ended and pid {pid} replaces it"


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


def launcher_metrics_url(launcher: LauncherSpec, env: Mapping[str, str]) -> tuple[str | None, str]:
    """Where a launcher serves the engine's metrics (a Dynamo worker's system status server on
    ``DYN_SYSTEM_PORT``), and what said so or why there is none. Pure."""
    if launcher.metrics is None:
        return None, ""
    port, why = metrics_port(launcher.metrics, env)
    if port is None:
        return None, why
    host = next((env[n].strip() for n in launcher.metrics.host_env if env.get(n, "").strip()), "")
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"  # a shared pod network namespace: the worker's port is ours too
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{launcher.metrics.path}", why


def _engine_facts(
    fb: FactBuilder, inv: Invocation | None, note: str, launcher: LauncherSpec | None, redact: Redact
) -> None:
    """``runtime.engine`` (the engine under a launcher, or unknown and why) and ``runtime.launcher``."""
    where = _describe(inv)
    if inv is None:
        fb.add("runtime.engine", "unknown", "derived", where)
    elif inv.spec.name == GENERIC.name:
        fb.add("runtime.engine", "unknown", "derived", f"{where}: {note}" if note else where)
    elif launcher is not None and launcher.engine == GENERIC.name:
        # Told by the environment (NIM_MODEL_PROFILE), not by the command line.
        fb.add(
            "runtime.engine",
            inv.spec.name,
            "env",
            f"{NIM_PROFILE_ENV} ({redact(NIM_PROFILE_ENV, note)}; {where})",
        )
    else:
        fb.add("runtime.engine", inv.spec.name, "arg", where)
    if inv is not None and launcher is not None:
        fb.add("runtime.launcher", launcher.name, "arg", f"{where}: {launcher.describe()}")


# --- the source -------------------------------------------------------------------------------


class EngineUsage:
    """The engine's resident memory and CPU use, through psutil, as observations.

    ``process_rss_bytes`` each collection; ``process_cpu_cores`` (CPU seconds per second over the
    window since the previous collection: 1.0 is one core busy) from the second collection of the
    same process on (psutil's ``cpu_percent`` compares with the previous call). Only for this
    host's ``/proc``: psutil cannot read another root. A process psutil cannot see or read gives
    no observation, never a zero.
    """

    def __init__(self) -> None:
        self._process: psutil.Process | None = None

    def observe(self, pid: int, procfs: Path) -> list[Observation]:
        if procfs != Path("/proc"):
            return []
        try:
            fresh = self._process is None or self._process.pid != pid or not self._process.is_running()
            if fresh:
                self._process = psutil.Process(pid)
            process = self._process
            assert process is not None
            with process.oneshot():
                out = [Observation("process_rss_bytes", float(process.memory_info().rss), "By")]
                cpu = process.cpu_percent(interval=None)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._process = None
            return []
        if not fresh:
            out.append(Observation("process_cpu_cores", cpu / 100.0, "{core}"))
        return out


class ProcessSource:
    """Finds the inference process and reports its engine, flags and environment.

    One per agent: it remembers its target across cycles (:class:`TargetTracker`), and the
    engine's memory and CPU as observations (:class:`EngineUsage`).
    """

    name = "process"
    needs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.tracker = TargetTracker()
        self.usage = EngineUsage()
        self._lock = threading.Lock()

    async def collect(self, ctx: CollectContext) -> SourceResult:
        # /proc reads are cheap but blocking, and a scan touches every process: off the loop.
        return await asyncio.to_thread(self._collect, ctx)

    def _collect(self, ctx: CollectContext) -> SourceResult:
        # A scan stuck on a hung /proc read outlives its timeout in its thread: never pile up.
        if not self._lock.acquire(blocking=False):
            return SourceResult.error("the previous /proc scan is still running")
        try:
            result = collect_process(ctx, self.tracker)
            if result.process is not None:
                result.observations.extend(self.usage.observe(result.process.pid, ctx.paths.procfs))
            return result
        finally:
            self._lock.release()


def collect_process(ctx: CollectContext, tracker: TargetTracker | None = None) -> SourceResult:
    """The synchronous body of the process source; ``tracker`` keeps the target across calls."""
    proc = ProcFS(ctx.paths.procfs)
    if not proc.exists():
        return SourceResult.unavailable(f"no /proc at {ctx.paths.procfs}")
    try:
        found = (tracker or TargetTracker()).find(proc, ctx.settings)
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
    inv, _ = locate_engine(found.argv, env)
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
    inv, engine_note = locate_engine(found.argv, env)
    spec = inv.spec if inv is not None else GENERIC
    launcher = launcher_for(inv.entrypoint) if inv is not None else None
    parsed = parse_args(spec, found.argv, env, redact, config_files)
    problems.extend(parsed.problems)

    model_dir = settings.model_dir
    local_model: Path | None = None
    if parsed.model_arg is not None:
        local_model = resolve_model_dir(parsed.model_arg, cwd, process_root)
        model_dir = model_dir or local_model

    fb = FactBuilder("process")
    _engine_facts(fb, inv, engine_note, launcher, redact)
    for setting in parsed.settings:
        if setting.key in ("model.id", "model.path") and local_model is not None and parsed.model_arg:
            # The engine loads a local directory before it asks the hub: a path, whatever its shape.
            path = redact("model", process_view(parsed.model_arg, cwd))
            _add(fb, replace(setting, key="model.path", value=path), problems)
        else:
            _add(fb, setting, problems)

    notes = [engine_note] if engine_note and spec.name == GENERIC.name else []
    notes.extend(parsed.notes)  # flags an options file cancels: what runs is not what was asked
    if launcher is not None and launcher.metrics is not None:
        # The launcher serves the engine's metrics on its own port, not on the engine's.
        launched_url, why = launcher_metrics_url(launcher, env)
        metrics_url = settings.metrics_url or launched_url
        if launched_url is None and not settings.metrics_url:
            notes.append(f"no metrics URL: {why}")
    else:
        metrics_url = settings.metrics_url or metrics_url_for(parsed, spec.metrics_path)
    info = ProcessInfo(
        model=model_request(parsed, spec, env, redact),
        pid=found.pid,
        engine=spec.name,
        argv=tuple(redactor.argv(found.argv)),
        # Only the variables the engine reports: the rest of an environment is not ours to ship.
        env={k: redact(k, v) for k, v in env.items() if spec.reports_env(k)},
        model_dir=model_dir,
        metrics_url=metrics_url,
        start_time=found.start_time,
    )
    what = spec.name if launcher is None else f"{spec.name} under {launcher.name}"
    summary = f"pid {found.pid} ({what}) found by {found.how}"
    if found.note:
        summary = f"{summary}; {found.note}"
    if notes:
        summary = "; ".join([summary, *notes])
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_IN_MESSAGE])
        more = len(problems) - MAX_PROBLEMS_IN_MESSAGE
        message = f"{summary}; {shown}" + (f"; and {more} more" if more > 0 else "")
        return SourceResult(SourceState.ERROR, message, fb.facts, process=info)
    return SourceResult(SourceState.OK, summary, fb.facts, process=info)


def model_request(
    parsed: ParsedCommand, spec: EngineSpec, env: Mapping[str, str], redact: Redact
) -> ModelRequest:
    """Where the model-files source looks for the model: the parser's model, revision and the
    engine's hub caches (download dir, its variables, ``HF_HOME``, ``HOME``), redacted. Pure."""
    model = redact("model", parsed.model_arg) if parsed.model_arg else None
    caches = hub_cache_candidates(parsed.download_dir, env, spec.hub_cache_env)
    return ModelRequest(
        model=model,
        hub_id=model if model is not None and model_key(model) == "model.id" else None,
        revision=redact(REVISION, parsed.revision) if parsed.revision else None,
        hub_caches=tuple(redact("model.hub_cache", c) for c in caches),
    )


def _add(fb: FactBuilder, setting: Setting, problems: list[str]) -> None:
    """One flag's or variable's fact; a value the wire cannot carry (an int past int64, text that
    is not UTF-8, one over the size caps) loses this fact alone, with a problem naming it."""
    where = setting.detail or setting.key
    where = where if len(where) <= 200 else where[:200] + "…"
    try:
        check_value(setting.key, "key")  # a variable's name that is not UTF-8 cannot be a key
        fb.add(setting.key, check_fact_value(setting.key, setting.value), setting.method, setting.detail)
    except FactError as e:
        problems.append(f"{where}: {str(e)[:300]}")
