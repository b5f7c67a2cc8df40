"""Pure command-line parsing: which engine a command line starts, and what it configures.

Nothing here reads a file or a process; callers hand in an argv (and the process environment)
and get back typed settings with provenance. Raw values never leave this module unredacted:
every string value of a setting passes through the ``redact(name, value)`` function the caller
gives (by default a :class:`~skewwatch.redact.Redactor` with the built-in salt).

Handled: ``--flag value``, ``--flag=value``, ``_`` or ``-`` in flag names, switches and their
``--no-`` forms, unique prefixes where the engine's parser allows them, several values
(``--served-model-name a b``), ``vllm serve MODEL`` (direct or as ``python /usr/local/bin/vllm
serve``), ``python -m module``, launchers before it with their own options (``env A=b``,
``exec``, ``nohup``, ``tini --``, ``dumb-init``, ``timeout``, ``setsid``, ``nice``, ``taskset``,
``numactl``, ``stdbuf``, ``chrt``, ``ionice``: :data:`LAUNCHERS`) and commands inside ``sh -c
SCRIPT`` (with ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` expanded from the process environment,
as the shell did); ``--config FILE`` (YAML, read before the command line so the command line
wins; the caller reads the file and hands in its text); arguments carried by an environment
variable (KServe's ``VLLM_ADDITIONAL_ARGS``), marked as such whether the launch script already
spliced them into the command line or not. Settings left to ``auto`` are resolved later, from
other sources' facts, by :mod:`agent.engines.effective`.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from agent.engines.base import MODEL, REVISION, EngineSpec, Entrypoint, SettingSpec, args_key, normalise_flag
from skewwatch.core.facts import FactValue
from skewwatch.redact import (
    DEFAULT_SALT,
    KNOWN_SECRET_FLAGS,
    Redactor,
    is_secret_name,
    secret_flag_prefix,
    takes_several,
)

Redact = Callable[[str, str], str]

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh"})
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
# A flag name that can become part of a fact key: no whitespace, control characters or oddities.
_FLAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Hugging Face hub repository ids: "gpt2" or "org/name"; anything else is a path or URI.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmgtKMGT]?)$")

MAX_CONFIG_FILE_CHARS = 1024 * 1024
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)

_DTYPES = {
    "half": "float16",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "float": "float32",
    "fp32": "float32",
    "float32": "float32",
}
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;"})


@dataclass(frozen=True)
class Invocation:
    """Where an engine's own arguments start in a command line."""

    spec: EngineSpec
    entrypoint: Entrypoint
    args: tuple[str, ...]
    via_shell: bool = False  # found inside ``sh -c SCRIPT`` rather than as the process itself


@dataclass(frozen=True)
class Setting:
    """A fact-to-be: key, typed (and already redacted) value, and how it was learnt."""

    key: str
    value: FactValue
    method: str  # arg | env | default | derived
    detail: str = ""


@dataclass
class ParsedCommand:
    """What one engine command line (plus its environment) configures."""

    engine: str
    settings: list[Setting] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # malformed values, each naming its flag
    # What a valid launch does not do as it reads (a flag an options file cancels): said, not an error.
    notes: list[str] = field(default_factory=list)
    # Where the model is, as given (unredacted), to look for it on disk: the model (a hub id or
    # a path), its revision and the engine's download dir. The caller redacts what it keeps.
    model_arg: str | None = None
    revision: str | None = None
    download_dir: str | None = None
    host: str | None = None

    def get(self, key: str) -> Setting | None:
        for s in reversed(self.settings):
            if s.key == key:
                return s
        return None

    def value(self, key: str) -> FactValue:
        s = self.get(key)
        return None if s is None else s.value


def redact_with(redactor: Redactor) -> Redact:
    """The redaction every value goes through: secret by name or shape, then secrets inside text."""

    def redact(name: str, value: str) -> str:
        return redactor.text(redactor.value(name, value))

    return redact


def _default_redact() -> Redact:
    return redact_with(Redactor(DEFAULT_SALT))


def _shown_flag(spelled: str) -> str:
    """A flag as a message may quote it: never one that holds a secret (a digest under the
    built-in salt would do for a message, but is guessable for a short secret)."""
    if spelled != Redactor(DEFAULT_SALT).text(spelled):
        return "(a flag holding a secret)"
    return repr(spelled[:40])


# --- recognising the engine -------------------------------------------------------------------


def basename(arg: str) -> str:
    return PurePosixPath(arg).name if arg else ""


@dataclass(frozen=True)
class Launcher:
    """How a launcher's own arguments end, read as its getopt does (``+``: options stop at the
    first operand or ``--``; a short option that takes a value takes the rest of its cluster or
    the next argument, a long one ``--name=v`` or the next argument, a unique prefix counts).

    ``operands`` come after the options and before the command (``timeout``'s DURATION,
    ``taskset``'s mask or list); ``priority``: a number there is one (``chrt``'s PRIORITY);
    ``assignments``: ``NAME=value`` operands (any with an ``=``) come before the command (``env``).
    """

    short_values: str = ""
    long_values: frozenset[str] = frozenset()
    long_flags: frozenset[str] = frozenset()
    operands: int = 0
    priority: bool = False
    assignments: bool = False

    def takes_value(self, long_name: str) -> bool:
        if long_name in self.long_values or long_name in self.long_flags:
            return long_name in self.long_values
        names = [n for n in (*self.long_values, *self.long_flags) if n.startswith(long_name)]
        return bool(names) and all(n in self.long_values for n in names)

    def command_at(self, argv: Sequence[str]) -> int:
        """Where the command it runs starts in ``argv`` (``argv[0]`` is the launcher)."""
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            i += 1
            if arg.startswith("--"):
                name, eq, _ = arg[2:].partition("=")
                if not eq and self.takes_value(name):
                    i += 1
                continue
            for j, ch in enumerate(arg[1:], start=1):
                if ch in self.short_values:
                    if j == len(arg) - 1:
                        i += 1  # -s KILL: the value is the next argument (else -sKILL)
                    break
        i = min(i, len(argv)) + self.operands
        if self.priority and i < len(argv) and argv[i].isdigit():
            i += 1
        while self.assignments and i < len(argv) and "=" in argv[i]:  # as env reads them
            i += 1
        return min(i, len(argv))


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TINI = Launcher("pe")
# Launchers that only prefix the command they run, by program name. exec, env and nohup replace
# themselves with it (so a process never shows them, but a shell script's line does); the others
# stay as its parent process: tini, dumb-init, timeout, setsid (when it forks), and those that exec
# after setting something up (nice, taskset, numactl, stdbuf, chrt, ionice).
LAUNCHERS: dict[str, Launcher] = {
    "exec": Launcher("a"),  # the shell builtin: exec [-cl] [-a NAME] command
    "nohup": Launcher(long_flags=_names("help version")),
    "env": Launcher(
        "uC",
        _names("unset chdir"),
        _names("ignore-environment null debug split-string help version"),
        assignments=True,
    ),
    "tini": _TINI,
    "tini-static": _TINI,
    "dumb-init": Launcher("r", _names("rewrite"), _names("single-child verbose help version")),
    "timeout": Launcher(
        "ks", _names("kill-after signal"), _names("foreground preserve-status verbose help version"), 1
    ),
    "setsid": Launcher(long_flags=_names("ctty fork wait help version")),
    "nice": Launcher("n", _names("adjustment"), _names("help version")),  # -n N, --adjustment=N, -N
    "taskset": Launcher(long_flags=_names("all-tasks pid cpu-list help version"), operands=1),
    "numactl": Launcher(
        "iwpPcNCmSfoLMI",
        _names(
            "interleave weighted-interleave preferred preferred-many cpubind cpunodebind physcpubind membind "
            "shm file offset length shmmode shmid"
        ),
        _names(
            "all show localalloc balancing hardware strict dump dump-nodes huge touch cpu-compress verify "
            "version"
        ),
    ),
    "stdbuf": Launcher("ioe", _names("input output error"), _names("help version")),
    "chrt": Launcher(
        "TPD",
        _names("sched-runtime sched-period sched-deadline"),
        _names("all-tasks batch deadline fifo idle other rr reset-on-fork max pid verbose help version"),
        priority=True,
    ),
    "ionice": Launcher("cnpPu", _names("class classdata pid pgid uid"), _names("ignore help version")),
}


def strip_wrappers(argv: Sequence[str]) -> list[str]:
    """The command a launcher chain runs: ``argv`` without the launchers that only prefix it.

    Shell-style ``NAME=value`` prefixes, and each program :data:`LAUNCHERS` names with its own
    options and operands, nested as deep as they go: ``dumb-init -- timeout -s INT 900 numactl
    --cpunodebind=0 -C 0-1 nice -n 5 python -m vllm…`` is ``python -m vllm…``. exec, env and
    nohup replace themselves with the command; tini, dumb-init, timeout and setsid stay as its
    parent (see ``is_wrapper``). Always a suffix of ``argv``: never more than it was given.
    """
    args = list(argv)
    while args:
        launcher = LAUNCHERS.get(basename(args[0]))
        if _ASSIGNMENT.match(args[0]):
            args = args[1:]
        elif launcher is not None:
            args = args[launcher.command_at(args) :]
        else:
            break
    return args


def is_wrapper(argv: Sequence[str]) -> bool:
    """A launcher (``timeout 600 vllm serve …``, ``tini -- …``) rather than the command it runs."""
    return bool(argv) and strip_wrappers(argv) != list(argv)


def is_shell(argv: Sequence[str]) -> bool:
    return bool(argv) and basename(argv[0]) in SHELLS


def shell_script(argv: Sequence[str]) -> str | None:
    """The script of ``sh [-opts] -c SCRIPT``, else None."""
    if not is_shell(argv):
        return None
    for i, arg in enumerate(argv[1:], start=1):
        if not arg.startswith("-"):
            return None
        if "c" in arg[1:] and not arg.startswith("--") and i + 1 < len(argv):
            return argv[i + 1]
    return None


_ARITH = re.compile(r"\$\(\((?P<expr>[^()]*)\)\)")
_ARITH_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a // b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


def _arith(expr: str) -> int | None:
    """Integer ``$(( … ))`` arithmetic over literals (+ - * / %), else None. No names, no calls."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            return _ARITH_OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not integer arithmetic")

    try:
        value = ev(tree.body)
    except (ValueError, ZeroDivisionError):
        return None
    return value if abs(value) < 10**18 else None


def expand_shell_vars(script: str, env: Mapping[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``$(( integer arithmetic ))`` as the shell
    would expand them, from ``env``.

    A variable the environment lacks stays as written (unless it has a default), and so does
    arithmetic over it: a literal ``${PORT}`` then says exactly what the agent could not know.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bare")
        if env.get(name):
            return env[name]
        if m.group("default") is not None:
            return m.group("default")
        return m.group(0)

    def arith(m: re.Match[str]) -> str:
        value = _arith(m.group("expr"))
        return m.group(0) if value is None else str(value)

    return _ARITH.sub(arith, _SHELL_VAR.sub(sub, script))


def shell_commands(script: str, env: Mapping[str, str] | None = None) -> list[list[str]]:
    """Simple commands in a shell script, split at ``;``, ``&&``, ``|`` and newlines.

    Good enough to find the engine command in a container's ``bash -c`` script; a line shlex
    cannot split (an unbalanced quote) is skipped rather than guessed at. With ``env``, each
    line's variables are expanded first (so an unquoted ``${VLLM_ADDITIONAL_ARGS}`` becomes
    several arguments), the script's own ``NAME=value`` assignments count for later lines, and
    ``eval STRING`` is read as the command in the string.
    """
    commands: list[list[str]] = []
    script = re.sub(r"\\\r?\n", " ", script)
    local = dict(env) if env is not None else None
    for raw_line in script.splitlines():
        line = expand_shell_vars(raw_line, local) if local is not None else raw_line
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:
            continue
        current: list[str] = []
        for tok in [*tokens, ";"]:
            if tok not in _SEPARATORS:
                current.append(tok)
                continue
            if current and current[0] == "eval":
                commands.extend(shell_commands(" ".join(current[1:]), local))
            elif current:
                commands.append(current)
                if local is not None and all(_ASSIGNMENT.match(t) for t in current):
                    local.update(t.split("=", 1) for t in current)  # type: ignore[misc]
            current = []
    return commands


def python_target(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """For ``python [opts] -m MOD args`` or ``python [opts] SCRIPT args``: (kind, name, args)."""
    if not argv or not _PYTHON.match(basename(argv[0])):
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m" and i + 1 < len(argv):
            return "module", argv[i + 1], list(argv[i + 2 :])
        if arg.startswith("-m") and len(arg) > 2:
            return "module", arg[2:], list(argv[i + 1 :])
        if arg == "-c":
            return None
        if arg in ("-X", "-W"):
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return "executable", basename(arg), list(argv[i + 1 :])
    return None


def _match(spec: EngineSpec, kind: str, name: str, rest: Sequence[str]) -> Invocation | None:
    for ep in spec.entrypoints:
        if ep.kind != kind or ep.name != name:
            continue
        if ep.subcommand is None:
            return Invocation(spec, ep, tuple(rest))
        if rest and rest[0] == ep.subcommand:
            return Invocation(spec, ep, tuple(rest[1:]))
    return None


def _locate_direct(spec: EngineSpec, argv: Sequence[str]) -> Invocation | None:
    argv = strip_wrappers(argv)
    if not argv:
        return None
    target = python_target(argv)
    if target is not None:
        return _match(spec, *target)
    return _match(spec, "executable", basename(argv[0]), argv[1:])


def locate(
    argv: Sequence[str],
    engines: Sequence[EngineSpec] | None = None,
    env: Mapping[str, str] | None = None,
) -> Invocation | None:
    """The engine a command line starts and where its arguments begin, else None.

    ``env`` (the process environment) expands variables inside a ``sh -c`` script.
    """
    specs = engines if engines is not None else _engines()
    for spec in specs:
        inv = _locate_direct(spec, argv)
        if inv is not None:
            return inv
    script = shell_script(strip_wrappers(argv))
    if script is not None:
        for command in shell_commands(script, env):
            for spec in specs:
                inv = _locate_direct(spec, command)
                if inv is not None:
                    return replace(inv, via_shell=True)
    return None


def detect(
    argv: Sequence[str], engines: Sequence[EngineSpec] | None = None, env: Mapping[str, str] | None = None
) -> EngineSpec | None:
    """The engine a command line starts (vLLM, SGLang, TGI), else None."""
    inv = locate(argv, engines, env)
    return None if inv is None else inv.spec


def _engines() -> tuple[EngineSpec, ...]:
    from agent.engines import ENGINES  # the registry imports this module

    return ENGINES


# --- reading values ---------------------------------------------------------------------------


class ValueProblem(ValueError):
    """A flag or variable value does not have the type its setting expects."""


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueProblem(f"expected true or false, got {raw!r}")


def parse_size(raw: str) -> int:
    """A human-readable integer as vLLM reads it: ``1k`` = 1000, ``1K`` = 1024, ``25.6k`` = 25600."""
    text = raw.strip().replace("_", "")
    m = _SIZE.match(text)
    if not m:
        raise ValueProblem(f"expected an integer like 4096 or 32k, got {raw!r}")
    number, suffix = m.groups()
    exponent = "kmgt".index(suffix.lower()) + 1 if suffix else 0
    base = 1024 if suffix.isupper() else 1000
    value = float(number) * base**exponent if "." in number else int(number) * base**exponent
    if value != int(value):
        raise ValueProblem(f"{raw!r} is not a whole number")
    return int(value)


def convert(setting: SettingSpec, raw: str | bool | list[str]) -> FactValue:
    """Turn a raw flag or env value into the typed value of ``setting``; ValueProblem if it can't."""
    if isinstance(raw, list):
        if setting.multiple:
            return raw[0] if len(raw) == 1 else list(raw)
        raw = raw[-1]
    if isinstance(raw, bool):
        if setting.type != "bool":
            raise ValueProblem("expects a value")
        value: FactValue = raw
    elif setting.type == "bool":
        value = _parse_bool(raw)
    elif setting.type == "int":
        try:
            value = int(raw.strip())
        except ValueError as e:
            raise ValueProblem(f"expected an integer, got {raw!r}") from e
    elif setting.type == "size":
        value = parse_size(raw)
    elif setting.type == "float":
        try:
            number = float(raw.strip())
        except ValueError as e:
            raise ValueProblem(f"expected a number, got {raw!r}") from e
        if not math.isfinite(number):
            raise ValueProblem(f"expected a finite number, got {raw!r}")
        value = number
    elif setting.type == "dtype":
        value = normalise_dtype(raw)
    else:
        value = raw
    if setting.invert and isinstance(value, bool):
        value = not value
    return value


def normalise_dtype(raw: str) -> str:
    """A dtype as torch names it: ``half``, ``fp16`` and ``torch.float16`` are all ``float16``."""
    low = raw.strip().lower().removeprefix("torch.")
    return _DTYPES.get(low, low)


def convert_typed(type_: str, raw: object) -> FactValue:
    """A JSON or YAML value as the table's type says; ValueProblem when it does not fit."""
    if isinstance(raw, bool) and type_ == "bool":
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool) and type_ in ("int", "size", "float"):
        if type_ == "float":
            return float(raw)
        if raw != int(raw):
            raise ValueProblem(f"expected a whole number, got {raw!r}")
        return int(raw)
    if isinstance(raw, str | int | float | bool):
        return convert(SettingSpec("", type=type_), str(raw))  # type: ignore[arg-type]
    raise ValueProblem(f"expected a {type_}, got {type(raw).__name__}")


def model_key(value: str) -> str:
    """``model.id`` for a hub repository id, ``model.path`` for a path or URI."""
    return "model.id" if _HUB_ID.match(value) and not value.startswith(".") else "model.path"


# --- the parser -------------------------------------------------------------------------------


@dataclass
class _Seen:
    name: str  # resolved, normalised flag name
    spelled: str  # as on the command line
    raw: str | bool | list[str]
    origin: str = ""  # "" for the command line, else the config file or variable it came from
    redact_as: str = ""  # the name its value is redacted under: the secret flag a prefix abbreviates


def _fallback_args(argv: Sequence[str]) -> list[str]:
    argv = strip_wrappers(argv)
    target = python_target(argv)
    if target is not None:
        return target[2]
    return list(argv[1:])


def _looks_like_flag(arg: str) -> bool:
    return arg.startswith("-") and len(arg) > 1 and not _NUMBER.match(arg)


def secret_flags(spec: EngineSpec) -> frozenset[str]:
    """The normalised flags whose value is a secret: the engine's API-key flags, its secret-named
    flags and the secret flags of every engine skewwatch knows (``skewwatch.redact``)."""
    flags = {normalise_flag(f) for f in spec.api_key_flags}
    flags.update(f for f in spec.flag_table() if is_secret_name(f))
    flags.update(normalise_flag(f) for f in KNOWN_SECRET_FLAGS)
    return frozenset(flags)


def _redaction_name(secrets: frozenset[str], name: str, spelled: str) -> str:
    """The name a flag's value is redacted under: the secret flag it abbreviates, if any (an
    ambiguous or unknown prefix of one too: argparse may resolve it where the table cannot)."""
    if is_secret_name(name):
        return name
    return secret_flag_prefix("--" + name if spelled.startswith("--") else spelled, secrets) or name


@dataclass(frozen=True)
class _FlagNames:
    """What the tokeniser knows of ``spec``'s flags, computed once per parse."""

    spec: EngineSpec
    table: Mapping[str, SettingSpec]
    switches: frozenset[str]
    known: frozenset[str]
    secrets: frozenset[str]
    long_known: tuple[str, ...]  # argparse resolves a unique prefix of any of these

    @classmethod
    def of(cls, spec: EngineSpec) -> _FlagNames:
        table = spec.flag_table()
        switches = spec.switch_names()
        extra = {normalise_flag(f) for f in (*spec.host_flags, *spec.api_key_flags)}
        spellings = (
            *(f for s in spec.settings for f in s.flags),
            *spec.switches,
            *spec.host_flags,
            *spec.api_key_flags,
        )
        long_known = tuple(sorted({normalise_flag(f) for f in spellings if f.startswith("--")}))
        known = frozenset(set(table) | switches | extra)
        return cls(spec, table, switches, known, secret_flags(spec), long_known)

    def resolve(self, spelled: str) -> tuple[str, bool]:
        """The normalised flag ``spelled`` names, and whether it is a switch's ``--no-`` form."""
        name = normalise_flag(spelled)
        if name in self.known:
            return name, False
        if name.startswith("no-") and name[3:] in self.switches:
            return name[3:], True
        if self.spec.allow_abbrev and spelled.startswith("--"):
            candidates = [k for k in self.long_known if k.startswith(name)]
            if len(candidates) == 1:
                return candidates[0], False
        return name, False

    def takes_several(self, name: str, redact_as: str) -> bool:
        """Several values; an API-key flag takes one or more keys (vLLM), so a key after the
        first is never read as the model."""
        setting = self.table.get(name)
        if setting is not None:
            return setting.multiple
        return redact_as in self.secrets and takes_several("--" + redact_as)


def _flag_value(
    names: _FlagNames, args: Sequence[str], i: int, name: str, redact_as: str
) -> tuple[str | bool | list[str] | None, int]:
    """The value of the flag ``name`` written without ``=`` before ``args[i]``, and where the next
    token starts; None when it expects a value and has none."""
    if name in names.switches:
        return True, i
    if names.takes_several(name, redact_as):
        j = i
        while j < len(args) and not _looks_like_flag(args[j]):
            j += 1
        return (list(args[i:j]) if j > i else None), j
    if i < len(args) and not _looks_like_flag(args[i]):
        return args[i], i + 1
    if name not in names.table:
        return True, i  # an unknown flag followed by another flag: a switch
    return None, i


def _tokenise(
    spec: EngineSpec, args: Sequence[str], problems: list[str], origins: Sequence[str] = ()
) -> tuple[list[_Seen], list[str]]:
    """Split engine arguments into flags (last occurrence wins later) and positionals.

    ``origins[i]`` names where ``args[i]`` came from when not from the command line itself.
    """
    names = _FlagNames.of(spec)
    seen: list[_Seen] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            positionals.extend(args[i:])
            break
        origin = origins[i - 1] if i - 1 < len(origins) else ""
        if not _looks_like_flag(tok):
            positionals.append(tok)
            continue
        spelled, has_value, inline = tok.partition("=")
        name, negated = names.resolve(spelled)
        if not _FLAG_NAME.match(name):
            problems.append(f"argument {i}: {_shown_flag(spelled)} is not a flag name skewwatch can report")
            continue
        redact_as = _redaction_name(names.secrets, name, spelled)
        raw: str | bool | list[str] | None
        if negated:
            raw = False
        elif has_value:
            raw = inline
        else:
            raw, i = _flag_value(names, args, i, name, redact_as)
        if raw is None:
            problems.append(f"{spelled}: expects a value")
            continue
        seen.append(_Seen(name, spelled, raw, origin, redact_as))
    return seen, positionals


def _args_name(spec: EngineSpec, name: str) -> str:
    """The one name a setting's flag is reported under, whichever spelling was used."""
    return args_key(spec, name).removeprefix("runtime.args.")


def _redacted(redact: Redact, name: str, raw: str | bool | list[str]) -> FactValue:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, list):
        return [redact(name, v) for v in raw] if len(raw) > 1 else redact(name, raw[0])
    return redact(name, raw)


def engine_args(spec: EngineSpec, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The arguments ``spec``'s engine receives from ``argv`` (inside a shell script too)."""
    inv = _invocation(spec, argv, env)
    return list(inv.args) if inv is not None else _fallback_args(argv)


def config_paths(spec: EngineSpec, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The files ``--config FILE`` names on the command line, for the caller to read."""
    flags = {normalise_flag(f) for f in spec.config_flags}
    if not flags:
        return []
    args = engine_args(spec, argv, env)
    paths: list[str] = []
    for i, tok in enumerate(args):
        spelled, has_value, inline = tok.partition("=")
        if not _looks_like_flag(spelled) or normalise_flag(spelled) not in flags:
            continue
        if has_value:
            paths.append(inline)
        elif i + 1 < len(args):
            paths.append(args[i + 1])
    return paths


def config_file_args(text: str, where: str, nested: bool = False) -> list[str]:
    """A ``--config`` YAML file as the arguments it stands for (vLLM's FlexibleArgumentParser).

    ``key: value`` is ``--key value``, ``key: true`` is ``--key``, ``key: false`` is
    ``--no-key`` and a list is ``--key v1 v2``. ``nested`` (TensorRT-LLM's LLM API options):
    every leaf of the nested mapping is one ``--a.b=value`` token (:func:`_nested_args`).
    ValueProblem names the file when it is no mapping, no YAML or nested too deep.
    """
    if len(text) > MAX_CONFIG_FILE_CHARS:
        raise ValueProblem(f"{where}: over {MAX_CONFIG_FILE_CHARS} characters")
    import yaml  # only for --config files / KUBECONFIG: not worth its memory in every agent

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueProblem(f"{where}:{line}: not valid YAML") from e
    except RecursionError as e:  # PyYAML composes nested collections recursively
        raise ValueProblem(f"{where}: nested deeper than the YAML reader can follow") from e
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ValueProblem(f"{where}: expected a mapping of flag names to values, got {type(doc).__name__}")
    if nested:
        return _nested_args(doc, where)
    args: list[str] = []
    for key, value in doc.items():
        flag = "--" + str(key).lstrip("-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            args.append(flag)
            args.extend(str(v) for v in value)
        elif isinstance(value, dict):
            args += [flag, json.dumps(value, sort_keys=True)]
        elif value is not None:
            args += [flag, str(value)]
    return args


MAX_CONFIG_NESTING = 16


def _nested_args(doc: Mapping[object, object], where: str, prefix: str = "", depth: int = 0) -> list[str]:
    """A nested options mapping as dotted flags, one self-contained ``--a.b=value`` token each.

    The value rides inline so that it is never read as another flag, and a list (or anything
    inside one) is one JSON value, so that its items never become positional arguments (the
    model). An empty mapping is kept (``--kv_cache_config={}``): it still replaces the section.
    """
    if depth >= MAX_CONFIG_NESTING:
        raise ValueProblem(f"{where}: {prefix.rstrip('.')!r} nested deeper than {MAX_CONFIG_NESTING} levels")
    args: list[str] = []
    for key, value in doc.items():
        name = prefix + str(key).lstrip("-")
        if isinstance(value, dict) and value:
            args += _nested_args(value, where, name + ".", depth + 1)
        elif isinstance(value, bool):
            args.append(f"--{name}={'true' if value else 'false'}")
        elif isinstance(value, list | dict):
            try:
                args.append(f"--{name}=" + json.dumps(value, sort_keys=True, default=str))
            except (TypeError, ValueError, RecursionError) as e:
                raise ValueProblem(f"{where}: {name!r} is no value skewwatch can read") from e
        elif value is not None:
            args.append(f"--{name}={value}")
    return args


def _file_sections(extra: Sequence[str]) -> set[str]:
    """The top-level mappings a nested options file sets (normalised), from its dotted tokens."""
    sections: set[str] = set()
    for tok in extra:
        name, _, value = tok.partition("=")
        if "." in name:
            sections.add(normalise_flag(name.split(".", 1)[0]))
        elif value == "{}":
            sections.add(normalise_flag(name))
    return sections


def _drop_replaced(
    spec: EngineSpec,
    args: list[str],
    origins: list[str],
    replaced: Mapping[str, str],
    notes: list[str],
) -> tuple[list[str], list[str]]:
    """The command line without the flags of sections an options file replaces whole.

    TensorRT-LLM merges the file over the command line's options one top-level key at a time
    (``llm_args | extra``): a file's ``kv_cache_config`` mapping replaces the one the command line
    built, so ``--kv_cache_free_gpu_memory_fraction 0.7`` no longer holds (the file's value, or the
    section's default, does). A flag belongs to a section when its setting has a dotted spelling
    in it. Each dropped flag is said in a note: what the command line asks is not what runs (a
    valid launch, so not a problem of the source: the engine runs so).
    """
    table = spec.flag_table()
    sections_of = {
        name: {normalise_flag(f).split(".", 1)[0] for f in setting.flags if "." in f}
        for name, setting in table.items()
        if "." not in name
    }
    switches = spec.switch_names()
    out: list[str] = []
    out_origins: list[str] = []
    i = 0
    while i < len(args):
        spelled, has_value, _ = args[i].partition("=")
        name = normalise_flag(spelled) if _looks_like_flag(spelled) else ""
        hit = sorted(sections_of.get(name, set()) & set(replaced))
        if not hit:
            out.append(args[i])
            out_origins.append(origins[i])
            i += 1
            continue
        step = 1
        if not has_value and name not in switches and i + 1 < len(args) and not _looks_like_flag(args[i + 1]):
            step = 2
        section = hit[0].replace("-", "_")
        notes.append(
            f"{_shown_flag(spelled)}: not in effect, the section {section} is replaced whole "
            f"by {replaced[hit[0]]} ({spec.name} merges the file's options over the command line's)"
        )
        i += step
    return out, out_origins


def _sublist_at(haystack: Sequence[str], needle: Sequence[str]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i : i + len(needle)]) == list(needle):
            return i
    return -1


def _splice_args_env(
    spec: EngineSpec, args: list[str], env: Mapping[str, str], problems: list[str]
) -> tuple[list[str], list[str]]:
    """The arguments with those of args-carrying variables spliced in, and where each came from."""
    origins = [""] * len(args)
    for name in spec.args_env:
        value = env.get(name, "").strip()
        if not value:
            continue
        try:
            extra = shlex.split(value)
        except ValueError:
            problems.append(f"{name}: unbalanced quotes, its arguments are not read")
            continue
        at = _sublist_at(args, extra)
        if at >= 0:  # the launch script already spliced them into the command line
            for j in range(at, at + len(extra)):
                origins[j] = f"via ${name}"
        else:  # the launcher reads the variable itself: they come after the command line's
            args = args + extra
            origins = origins + [f"${name}"] * len(extra)
    return args, origins


def _with_origins(
    spec: EngineSpec,
    args: list[str],
    env: Mapping[str, str],
    config_files: Mapping[str, str],
    problems: list[str],
    *,
    notes: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """The arguments with those from ``--config`` files and args-carrying variables spliced in,
    and where each came from (``notes``: the command line's flags an options file cancels)."""
    args, origins = _splice_args_env(spec, args, env, problems)
    flags = {normalise_flag(f) for f in spec.config_flags}
    out: list[str] = []
    out_origins: list[str] = []
    prefix: list[str] = []
    prefix_origins: list[str] = []
    suffix: list[str] = []
    suffix_origins: list[str] = []
    replaced: dict[str, str] = {}  # section -> the file that replaces it
    i = 0
    while i < len(args):
        spelled, has_value, inline = args[i].partition("=")
        if flags and _looks_like_flag(spelled) and normalise_flag(spelled) in flags:
            path = inline if has_value else (args[i + 1] if i + 1 < len(args) else "")
            step = 1 if has_value else 2
            if path in config_files:
                try:
                    extra = config_file_args(config_files[path], path, nested=spec.config_nested)
                except ValueProblem as e:
                    problems.append(f"{spelled}: {e}")
                    extra = []
                origin = f"in {spelled} {path}"
                if spec.config_overrides_cli:
                    # Read after the command line (TensorRT-LLM): a flag given in both keeps the file's.
                    suffix += extra
                    suffix_origins += [origin] * len(extra)
                    if spec.config_nested:
                        replaced.update(dict.fromkeys(_file_sections(extra), f"{spelled} {path}"))
                else:
                    # The file is read before the command line: a flag given in both keeps the command line's.
                    prefix += extra
                    prefix_origins += [origin] * len(extra)
            elif path:
                problems.append(f"{spelled} {path}: file not readable by the agent, its settings are unknown")
            out += args[i : i + step]
            out_origins += origins[i : i + step]
            i += step
            continue
        out.append(args[i])
        out_origins.append(origins[i])
        i += 1
    if replaced:
        cancelled = problems if notes is None else notes
        out, out_origins = _drop_replaced(spec, out, out_origins, replaced, cancelled)
    return prefix + out + suffix, prefix_origins + out_origins + suffix_origins


def _detail(flag: _Seen) -> str:
    return f"{flag.spelled} ({flag.origin})" if flag.origin else flag.spelled


def _method(flag: _Seen) -> str:
    return "env" if flag.origin.startswith("$") else "arg"


@dataclass
class _Layers:
    """Canonical settings folded from the layers, highest first: a layer fills what is undecided.

    A key whose flag was given but unreadable is decided as unknown: an env value or a default
    would lie.
    """

    settings: dict[str, Setting] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)

    def decided(self, key: str) -> bool:
        return key in self.settings or key in self.unreadable


def _invocation(spec: EngineSpec, argv: Sequence[str], env: Mapping[str, str] | None) -> Invocation | None:
    inv = _locate_direct(spec, argv)
    if inv is None and shell_script(strip_wrappers(argv)) is not None:
        inv = locate(argv, [spec], env)
    return inv


def _command_line_layer(
    spec: EngineSpec, seen: Sequence[_Seen], redact: Redact, result: ParsedCommand, layers: _Layers
) -> None:
    """Every flag as ``runtime.args.<flag>``, and the canonical keys its table gives (the
    ``--config`` files' flags come first, so the command line's win: the last occurrence counts)."""
    table = spec.flag_table()
    hosts = {normalise_flag(f) for f in spec.host_flags}
    downloads = {normalise_flag(f) for f in spec.download_dir_flags}
    for flag in seen:
        name = flag.redact_as or flag.name
        result.settings.append(
            Setting(
                f"runtime.args.{_args_name(spec, flag.name)}",
                _redacted(redact, name, flag.raw),
                _method(flag),
                _detail(flag),
            )
        )
        if flag.name in hosts and isinstance(flag.raw, str):
            result.host = flag.raw
        if flag.name in downloads and isinstance(flag.raw, str):
            result.download_dir = flag.raw
        setting = table.get(flag.name)
        if setting is None:
            continue
        try:
            value = convert(setting, flag.raw)
        except ValueProblem as e:
            result.problems.append(f"{_detail(flag)}: {redact(name, str(e))}")
            layers.unreadable.add(setting.key)
            continue
        layers.unreadable.discard(setting.key)
        _note_location(setting, value, result)
        layers.settings[setting.key] = Setting(
            setting.key, _redact_value(redact, name, value), _method(flag), _detail(flag)
        )


def _positional_layer(
    inv: Invocation | None, positionals: Sequence[str], redact: Redact, result: ParsedCommand, layers: _Layers
) -> None:
    """``vllm serve MODEL``: the entry point's positional argument (it beats ``--model``)."""
    if inv is None or inv.entrypoint.positional is None or not positionals:
        return
    key = inv.entrypoint.positional
    where = f"positional argument of {inv.entrypoint.name} {inv.entrypoint.subcommand or ''}".strip()
    result.settings.append(
        Setting(f"runtime.args.{key.replace('.', '_')}", redact(key, positionals[0]), "arg", where)
    )
    if key == MODEL:
        result.model_arg = positionals[0]
    layers.settings[key] = Setting(key, redact(key, positionals[0]), "arg", where)


def _env_layer(
    spec: EngineSpec, env: Mapping[str, str], redact: Redact, result: ParsedCommand, layers: _Layers
) -> None:
    """The table's environment variables, for the keys no flag decided."""
    for name, setting in spec.env_table().items():
        if layers.decided(setting.key) or not env.get(name):
            continue
        try:
            value = convert(setting, env[name])
        except ValueProblem as e:
            result.problems.append(f"{name}: {redact(name, str(e))}")
            layers.unreadable.add(setting.key)
            continue
        _note_location(setting, value, result)
        layers.settings[setting.key] = Setting(setting.key, _redact_value(redact, name, value), "env", name)


def _default_layer(spec: EngineSpec, layers: _Layers) -> None:
    for key, default in spec.defaults.items():
        if not layers.decided(key):
            layers.settings[key] = Setting(key, default, "default", f"{spec.name} default")


def _note_location(setting: SettingSpec, value: FactValue, result: ParsedCommand) -> None:
    """Keep the model and its revision as given (unredacted, to look for them on disk)."""
    if isinstance(value, str) and setting.key == MODEL:
        result.model_arg = value
    elif isinstance(value, str) and setting.key == REVISION:
        result.revision = value


def _lookup_layer(
    spec: EngineSpec, seen: Sequence[_Seen], env: Mapping[str, str], result: ParsedCommand
) -> None:
    """The model and revision from ``spec.lookup_settings`` (an unknown engine's), not reported."""
    if not spec.lookup_settings:
        return
    table = {normalise_flag(f): s for s in spec.lookup_settings for f in s.flags}
    found: set[str] = set()
    for flag in seen:
        setting = table.get(flag.name)
        if setting is not None and not isinstance(flag.raw, bool):
            _note_location(setting, flag.raw if isinstance(flag.raw, str) else flag.raw[-1], result)
            found.add(setting.key)
    for setting in spec.lookup_settings:
        for name in setting.env:
            if setting.key not in found and env.get(name):
                _note_location(setting, env[name], result)
                found.add(setting.key)


def _canonical(layers: _Layers, result: ParsedCommand) -> list[Setting]:
    """The folded settings, the model under ``model.id`` or ``model.path`` as its value says."""
    out: list[Setting] = []
    for key, s in layers.settings.items():
        if key == MODEL:
            model_value = s.value if isinstance(s.value, str) else str(s.value)
            out.append(replace(s, key=model_key(result.model_arg or model_value)))
        else:
            out.append(s)
    return out


def _api_key(spec: EngineSpec, seen: Sequence[_Seen], env: Mapping[str, str]) -> Setting:
    """``serving.api_key_required``: a key flag (the last one given) beats a key variable."""
    flags = {normalise_flag(f) for f in spec.api_key_flags}
    given = [f for f in seen if f.name in flags and f.raw not in ("", False)]
    if given:
        return Setting("serving.api_key_required", True, _method(given[-1]), _detail(given[-1]))
    for name in spec.api_key_env:
        if env.get(name):
            return Setting("serving.api_key_required", True, "env", name)
    looked = " or ".join([*spec.api_key_flags, *spec.api_key_env]) or "api key setting"
    return Setting("serving.api_key_required", False, "derived", f"no {looked}")


def _reported_env(spec: EngineSpec, env: Mapping[str, str], redact: Redact, result: ParsedCommand) -> None:
    for name in sorted(env):
        if not spec.reports_env(name):
            continue
        if not _ENV_NAME.match(name):
            result.problems.append(f"environment variable {name[:40]!r} has a name skewwatch cannot report")
            continue
        result.settings.append(Setting(f"runtime.env.{name}", redact(name, env[name]), "env", name))


def parse_args(
    spec: EngineSpec,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    redact: Redact | None = None,
    config_files: Mapping[str, str] | None = None,
) -> ParsedCommand:
    """Every setting a command line (and environment) gives ``spec``'s engine, as typed settings.

    ``argv`` is the whole command line; when it does not start ``spec``'s engine (a process
    found by pid whose engine is unknown) everything after the program is read as arguments.
    ``config_files`` maps the paths :func:`config_paths` named to their text (a path missing
    from it is a problem: its settings are unknown). Emits ``runtime.args.<flag>`` for every
    flag, the canonical keys of the engine's table, ``model.id`` or ``model.path``,
    ``serving.api_key_required`` and ``runtime.env.<NAME>`` for the variables the engine reports.

    The canonical keys are layers folded in precedence order, highest first, each filling only
    what the ones above left undecided: the command line (a positional model beats ``--model``;
    ``--config`` files' flags sit before the command line's, so the command line wins), then the
    environment, then the engine's defaults.
    """
    redact = redact or _default_redact()
    env = env or {}
    result = ParsedCommand(engine=spec.name)
    inv = _invocation(spec, argv, env)
    args = list(inv.args) if inv is not None else _fallback_args(argv)
    args, origins = _with_origins(spec, args, env, config_files or {}, result.problems, notes=result.notes)
    seen, positionals = _tokenise(spec, args, result.problems, origins)
    layers = _Layers()
    _command_line_layer(spec, seen, redact, result, layers)
    _positional_layer(inv, positionals, redact, result, layers)
    _env_layer(spec, env, redact, result, layers)
    _default_layer(spec, layers)
    _lookup_layer(spec, seen, env, result)
    result.settings.extend(_canonical(layers, result))
    result.settings.append(_api_key(spec, seen, env))
    _reported_env(spec, env, redact, result)
    return result


def _redact_value(redact: Redact, name: str, value: FactValue) -> FactValue:
    if isinstance(value, str):
        return redact(name, value)
    if isinstance(value, list):
        return [redact(name, v) if isinstance(v, str) else v for v in value]
    return value
