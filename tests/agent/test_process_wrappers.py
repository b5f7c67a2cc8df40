"""Wrappers: launchers that prefix the engine's command, and those that stay as its parent.

The parser strips each launcher's own options (``strip_wrappers``) so detection sees the engine
behind ``timeout``, ``numactl``, ``dumb-init`` and the rest. A wrapper that stays as the engine's
parent process (``timeout``, ``setsid``, ``tini``/``dumb-init``, a shell running a launch script)
yields to its engine child, for ``--pid``, ``--match`` and detection: first on fake ``/proc``
trees, then with real processes (``timeout``, ``setsid -w``, ``bash launch.sh``, and a compiled
stand-in for ``dumb-init``, which is not installed here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.engines import VLLM, detect, locate
from agent.engines.parse import LAUNCHERS, is_wrapper, strip_wrappers
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, SourceResult
from agent.sources.process import ProcessSource, ProcFS, find_process
from skewwatch.core.facts import SourceState
from tests.support.fake_processes import fake_process, fake_procfs, process_context

ENGINE = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--port", "8000"]
SERVE = ["vllm", "serve", "/m", "--port", "8000"]
LOGGER = "agent.sources.process"
WAIT_S = 10.0

# --- the parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        # timeout [-s SIG] [-k D] [--preserve-status] [--foreground] [-v] DURATION
        "timeout 600",
        "timeout 10m",
        "timeout -s KILL 600",
        "timeout -sINT 600",
        "timeout --signal=TERM 600",
        "timeout --signal TERM 600",
        "timeout -k 30 600",
        "timeout -k30s 600",
        "timeout --kill-after=30 --preserve-status --foreground -v 600",
        "timeout --kill 30 600",  # a unique prefix, as getopt_long takes it
        "timeout -v -- 600",
        # setsid [-f] [-w] [-c]
        "setsid",
        "setsid -f",
        "setsid -w -c",
        "setsid --fork --wait",
        # nice [-n N | -N | --adjustment=N]
        "nice",
        "nice -n 5",
        "nice -n5",
        "nice -n -5",
        "nice -10",
        "nice --adjustment=3",
        "nice --adjustment 3",
        # taskset [-a] [-c] MASK-or-LIST
        "taskset 0x3",
        "taskset -c 0-3",
        "taskset -c 0,2,4-7",
        "taskset -a -c 0-1",
        "taskset -ac 0-1",
        "taskset --cpu-list 0-1",
        # numactl, its options with or without values
        "numactl --cpunodebind=0",
        "numactl --cpunodebind 0 --membind 0",
        "numactl -N 0 -m 0",
        "numactl -N0 -m0",
        "numactl --physcpubind=0-7",
        "numactl -C 0-7",
        "numactl -C0-7 -l",
        "numactl --interleave=all",
        "numactl -i all",
        "numactl --localalloc",
        "numactl -l",
        "numactl --preferred=1",
        "numactl -p 1",
        "numactl --preferred-many 0,1 --balancing -a",
        "numactl --weighted-interleave=0,1",
        "numactl --cpunode=0 --mem 0",  # unique prefixes
        "numactl -l --",
        # stdbuf -i/-o/-e MODE
        "stdbuf -oL",
        "stdbuf -o L -e 0",
        "stdbuf -i0 -oL -eL",
        "stdbuf --output=L --error 0",
        # chrt [policy] PRIORITY
        "chrt 10",
        "chrt -f 10",
        "chrt --rr 5",
        "chrt -o 0",
        "chrt --other 0",
        "chrt -b 0",
        "chrt -i 0",
        "chrt -R -f 1",
        "chrt -d -T 1000000 -P 2000000 -D 2000000 0",
        "chrt --deadline --sched-runtime=1000000 0",
        # ionice [-c N] [-n N] [-t]
        "ionice -c 3",
        "ionice -c3",
        "ionice -c 2 -n 7",
        "ionice -c2 -n7 -t",
        "ionice --class best-effort --classdata 4",
        "ionice -t -c idle",
        # tini, dumb-init (their options, up to an optional --)
        "tini --",
        "tini -s -g --",
        "tini -p SIGTERM --",
        "tini -vvv -e 143 --",
        "/sbin/tini-static -s --",
        "dumb-init",
        "dumb-init --",
        "/usr/bin/dumb-init --single-child --",
        "dumb-init -c -v",
        "dumb-init --rewrite 15:2 --",
        "dumb-init -r 15:2 -r 2:15",
        # launchers that exec themselves away, as a script's line shows them
        "exec",
        "exec -a vllm-server",
        "exec -cl",
        "nohup",
        "env",
        "env A=b C=d",
        "env -i PATH=/usr/bin",
        "env -u HF_TOKEN -C /srv A=b",
        "env --unset=HF_TOKEN --chdir /srv",
        "VLLM_USE_V1=1 OMP_NUM_THREADS=8",
        # nested chains
        "dumb-init -- timeout 900 numactl -C 0-1",
        "tini -s -- setsid -w timeout -s INT -k 10 900 nice -n 5 taskset -c 0-3 stdbuf -oL",
        "timeout 600 numactl --cpunodebind=0 --membind=0 chrt -o 0 ionice -c 3 env VLLM_CPU_KVCACHE_SPACE=4",
        "nohup setsid nice -n 19 exec -a x",
    ],
)
@pytest.mark.parametrize("command", [ENGINE, SERVE], ids=["module", "executable"])
def test_each_wrapper_shape_strips_to_the_engine_command(prefix: str, command: list[str]) -> None:
    argv = [*shlex.split(prefix), *command]
    assert strip_wrappers(argv) == command
    assert detect(argv) is VLLM
    inv = locate(argv)
    assert inv is not None and not inv.via_shell and inv.args[-2:] == ("--port", "8000")
    assert is_wrapper(argv)


@pytest.mark.parametrize(
    ("argv", "rest"),
    [
        # what an option's value or an operand is, is the launcher's, never the command's
        ("timeout -s 9 600 vllm serve /m", ["vllm", "serve", "/m"]),
        ("taskset -c 0 nice -n 1 vllm serve", ["vllm", "serve"]),
        ("nice -n vllm", []),  # a value where the command should be: nothing left to run
        ("timeout", []),
        ("timeout --", []),
        ("numactl --cpunodebind", []),
        ("env -u", []),
        ("chrt -f", []),  # no priority, no command
        ("chrt -m", []),
        ("numactl --show", []),
        ("taskset -p 0x3 1234", ["1234"]),  # an existing pid, no command: nothing an engine table knows
        # not launchers: left as they are
        (
            "python3 -m vllm.entrypoints.openai.api_server",
            ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        ),
        ("/usr/bin/timeoutd --x", ["/usr/bin/timeoutd", "--x"]),
        ("sh -c true", ["sh", "-c", "true"]),
        ("", []),
    ],
)
def test_strip_wrappers_edge_shapes(argv: str, rest: list[str]) -> None:
    assert strip_wrappers(shlex.split(argv)) == rest


def test_engine_behind_a_wrapper_inside_a_shell_script_is_found() -> None:
    argv = [
        "dumb-init",
        "--",
        "bash",
        "-c",
        "pip list; exec timeout 900 numactl -C 0-1 vllm serve /m --port 9000",
    ]
    inv = locate(argv)
    assert inv is not None and inv.spec is VLLM and inv.via_shell and inv.args == ("/m", "--port", "9000")


def test_is_wrapper_is_the_launcher_not_what_it_runs() -> None:
    assert is_wrapper(["timeout", "600", *ENGINE]) and is_wrapper(["/usr/bin/tini", "--", *SERVE])
    assert not is_wrapper(ENGINE) and not is_wrapper(SERVE) and not is_wrapper([])
    assert not is_wrapper(["bash", "launch.sh"]) and not is_wrapper(["VLLM::EngineCore"])


_TOKENS = st.one_of(
    st.sampled_from(sorted(LAUNCHERS)),
    st.sampled_from(
        ["--", "-", "-n", "-c", "-s", "-k", "-oL", "-C0-1", "--cpunodebind", "--signal=9", "A=b"]
    ),
    st.sampled_from(["600", "0-3", "0x3", "vllm", "serve", "python3", "-m", "sh", "=", ""]),
    st.text(max_size=8),
)


@given(st.lists(_TOKENS, max_size=14))
def test_stripping_never_raises_and_returns_a_suffix_of_what_it_was_given(argv: list[str]) -> None:
    rest = strip_wrappers(argv)
    assert len(rest) <= len(argv)
    assert rest == argv[len(argv) - len(rest) :]
    assert strip_wrappers(rest) == rest  # nothing a second pass would still strip


# --- fake /proc --------------------------------------------------------------------------------------


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    return fake_procfs(tmp_path)


def ctx_for(procfs: Path, **settings: object) -> CollectContext:
    return process_context(procfs, **settings)


def vllm_tree(procfs: Path, wrapper: int = 10) -> int:
    """``dumb-init -- timeout 900 numactl -C 0-1 python -m vllm…`` as it runs: numactl has exec'd
    the engine, dumb-init and timeout stay as its parents, and the engine has its own children."""
    fake_process(
        procfs, wrapper, ["/usr/bin/dumb-init", "--", "timeout", "900", "numactl", "-C", "0-1", *ENGINE]
    )
    fake_process(procfs, wrapper + 1, ["timeout", "900", "numactl", "-C", "0-1", *ENGINE], ppid=wrapper)
    engine = wrapper + 2
    fake_process(procfs, engine, ENGINE, ppid=wrapper + 1)
    fake_process(procfs, engine + 1, ["VLLM::EngineCore"], ppid=engine)
    fake_process(procfs, engine + 2, ["VLLM::Worker_TP0"], ppid=engine + 1)
    tracker = ["/usr/bin/python3", "-c", "from multiprocessing.resource_tracker import main;main(32)"]
    fake_process(procfs, engine + 3, tracker, ppid=engine)
    return engine


def test_pid_of_a_wrapper_yields_to_the_engine_it_runs(procfs: Path) -> None:
    fake_process(procfs, 10, ["timeout", "600", *ENGINE])
    fake_process(procfs, 12, ENGINE, ppid=10)
    found = find_process(ProcFS(procfs), AgentSettings(pid=10))
    assert (found.pid, found.argv) == (12, ENGINE)
    assert found.how == "--pid, child of wrapper timeout 10"


def test_a_nested_chain_yields_to_the_engine_never_to_its_own_children(procfs: Path) -> None:
    engine = vllm_tree(procfs)
    for settings in (
        AgentSettings(pid=10),
        AgentSettings(pid=11),
        AgentSettings(pid=engine),  # the engine itself does not descend
        AgentSettings(match=r"vllm|VLLM|multiprocessing"),  # all of them match
        AgentSettings(match="python"),  # the engine, its wrappers and the resource tracker
        AgentSettings(),
    ):
        found = find_process(ProcFS(procfs), settings)
        assert found.pid == engine, (settings, found)
    assert find_process(ProcFS(procfs), AgentSettings(pid=10)).how == "--pid, child of wrapper dumb-init 10"
    assert find_process(ProcFS(procfs), AgentSettings(pid=engine)).how == "--pid"


@pytest.mark.parametrize("wrapper", [["tini", "--"], ["timeout", "600"], ["dumb-init", "--", "setsid", "-f"]])
async def test_match_of_wrapper_and_engine_chooses_the_engine(procfs: Path, wrapper: list[str]) -> None:
    fake_process(procfs, 10, [*wrapper, *ENGINE])
    fake_process(procfs, 12, ENGINE, ppid=10)
    result = await ProcessSource().collect(ctx_for(procfs, match="vllm.entrypoints"))
    assert result.state is SourceState.OK, result.message
    assert result.process is not None and result.process.pid == 12
    assert "found by --match;" in result.message and "child of" not in result.message
    assert (
        "2 processes match --match 'vllm.entrypoints' (pids 10, 12): chose pid 12, "
        "the lowest pid a vLLM, SGLang or TGI table recognises as the engine itself"
    ) in result.message


async def test_a_wrapper_alone_is_chosen_by_its_own_rule(procfs: Path) -> None:
    fake_process(procfs, 10, ["tini", "--", *ENGINE])
    fake_process(procfs, 11, ["tail", "-f", "/var/log/vllm.entrypoints.log"])
    result = await ProcessSource().collect(ctx_for(procfs, match="vllm.entrypoints"))
    assert result.process is not None and result.process.pid == 10  # its engine has not started
    assert "chose pid 10, the lowest pid whose shell script or wrapper starts a vLLM" in result.message


async def test_detection_reads_the_engine_not_its_wrapper(procfs: Path) -> None:
    fake_process(procfs, 10, ["tini", "-s", "--", *ENGINE], env={"WRAPPER_ONLY": "1"})
    fake_process(procfs, 12, ENGINE, ppid=10, env={"VLLM_USE_V1": "1"})
    result = await ProcessSource().collect(ctx_for(procfs))
    assert result.process is not None and result.process.pid == 12
    assert result.process.env == {"VLLM_USE_V1": "1"}  # the engine's environment, not tini's
    assert result.process.argv == tuple(ENGINE)


async def test_wrapper_is_the_target_until_its_engine_child_starts(
    procfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fake_process(procfs, 10, ["setsid", "-w", "timeout", "-k", "5", "600", *SERVE])
    source, ctx = ProcessSource(), ctx_for(procfs, pid=10)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 10  # not started yet: the wrapper
    assert result.process.engine == "vllm"  # its command line says which engine it runs
    fake_process(procfs, 11, ["timeout", "-k", "5", "600", *SERVE], ppid=10)
    fake_process(procfs, 12, SERVE, ppid=11)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 12
    assert "found by --pid, child of wrapper setsid 10" in result.message
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any(m.startswith("engine pid 10 is now pid 12 (vllm on port 8000)") for m in logged), logged
    assert not any("re-attached" in m for m in logged)


def test_unknown_engine_behind_a_wrapper_is_the_child_running_its_command(procfs: Path) -> None:
    server = ["/opt/llm/server", "--listen", "9000"]
    fake_process(procfs, 10, ["timeout", "600", *server])
    fake_process(procfs, 11, ["logger", "-t", "llm"], ppid=10)
    fake_process(procfs, 12, server, ppid=10)
    found = find_process(ProcFS(procfs), AgentSettings(pid=10))
    assert (found.pid, found.how) == (12, "--pid, child of wrapper timeout 10")


def test_wrapper_name_in_how_is_never_an_argv0_assignment(procfs: Path) -> None:
    secret = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    fake_process(procfs, 10, [f"HF_TOKEN={secret}", *ENGINE])
    fake_process(procfs, 12, ENGINE, ppid=10)
    found = find_process(ProcFS(procfs), AgentSettings(pid=10))
    assert (found.pid, found.how) == (12, "--pid, child of wrapper 10")


def test_a_shell_running_a_launch_script_yields_to_its_engine_child(procfs: Path) -> None:
    fake_process(procfs, 10, ["/bin/bash", "/srv/launch.sh"])
    fake_process(procfs, 11, ["sleep", "1"], ppid=10)
    fake_process(procfs, 12, ["numactl", "-l", *ENGINE], ppid=10)  # not yet exec'd: a wrapper, skipped
    fake_process(procfs, 13, ENGINE, ppid=12)
    found = find_process(ProcFS(procfs), AgentSettings(pid=10))
    assert (found.pid, found.how) == (13, "--pid, child of shell 10")


# --- real processes ---------------------------------------------------------------------------------


def wait_until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def cmdline(pid: int) -> list[str]:
    try:
        data = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in data.split(b"\0")[:-1]]


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
    return out


@contextlib.contextmanager
def spawn(argv: Sequence[str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "VLLM_USE_V1": "1"}
    # A session of its own, so the wrapper's children die with it (killpg) instead of lingering.
    proc = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A stand-in ``vllm`` that starts the real multiprocessing resource tracker, as vLLM does."""
    script = tmp_path / "vllm"
    script.write_text(
        "import multiprocessing.resource_tracker as rt, time\nrt.ensure_running()\ntime.sleep(60)\n"
    )
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    return script


def engine_argv(fake_vllm: Path, port: int) -> list[str]:
    return [sys.executable, str(fake_vllm), "serve", "models/tiny", "--port", str(port)]


def engine_under(wrapper: int, engine: Sequence[str]) -> int:
    """The pid of the engine the wrapper started, once it runs with its resource tracker child."""
    found: list[int] = []

    def up() -> bool:
        todo, found[:] = [wrapper], []
        while todo:
            pid = todo.pop()
            kids = children(pid)
            todo += kids
            if cmdline(pid) == list(engine) and any("resource_tracker" in " ".join(cmdline(k)) for k in kids):
                found.append(pid)
        return bool(found)

    wait_until(f"the engine under pid {wrapper}", up)
    return found[0]


async def collect(**settings: object) -> SourceResult:
    return await ProcessSource().collect(CollectContext(settings=AgentSettings(**settings)))  # type: ignore[arg-type]


async def assert_yields(wrapper: int, engine: int, kind: str, fake_vllm: Path, port: int) -> None:
    by_pid = await collect(pid=wrapper)
    assert by_pid.state is SourceState.OK, by_pid.message
    assert by_pid.process is not None and by_pid.process.pid == engine and by_pid.process.engine == "vllm"
    assert f"found by --pid, child of {kind} {wrapper}" in by_pid.message
    assert {f.key: f.value for f in by_pid.facts}["serving.port"] == port
    # the wrapper, the engine and its resource tracker all match: the engine itself is chosen
    by_match = await collect(
        match=re.escape(str(fake_vllm)) + "|" + re.escape(str(fake_vllm.parent)) + "|resource_tracker"
    )
    assert by_match.process is not None and by_match.process.pid == engine, by_match.message


async def test_real_timeout_chain_yields_to_its_engine(fake_vllm: Path, port: int) -> None:
    # timeout forks and waits; nice, taskset and stdbuf exec: the engine is timeout's child.
    engine = engine_argv(fake_vllm, port)
    chain = ["timeout", "60", "nice", "-n", "1", "taskset", "-c", "0", "stdbuf", "-oL", *engine]
    with spawn(chain, fake_vllm.parent) as wrapper:
        pid = engine_under(wrapper.pid, engine)
        assert pid != wrapper.pid and cmdline(wrapper.pid)[0] == "timeout"
        assert cmdline(pid)[0] == sys.executable  # nice, taskset and stdbuf are gone: exec'd
        await assert_yields(wrapper.pid, pid, "wrapper timeout", fake_vllm, port)


async def test_real_setsid_wait_yields_to_its_engine(fake_vllm: Path, port: int) -> None:
    engine = engine_argv(fake_vllm, port)
    with spawn(["setsid", "-w", *engine], fake_vllm.parent) as wrapper:
        pid = engine_under(wrapper.pid, engine)
        await assert_yields(wrapper.pid, pid, "wrapper setsid", fake_vllm, port)


async def test_real_launch_script_yields_to_its_engine(fake_vllm: Path, port: int) -> None:
    engine = engine_argv(fake_vllm, port)
    script = fake_vllm.parent / "launch.sh"
    # the engine is started without exec, then the script waits on it: bash stays its parent
    script.write_text(f"echo starting\n{shlex.join(engine)}\nstatus=$?\nexit $status\n")
    with spawn(["bash", str(script)], fake_vllm.parent) as shell:
        pid = engine_under(shell.pid, engine)
        await assert_yields(shell.pid, pid, "shell", fake_vllm, port)


DUMB_INIT_C = r"""
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* As dumb-init runs a command: its options up to an optional --, then fork, exec and wait. */
int main(int argc, char **argv) {
    int i = 1, status = 0;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i++], "--") == 0) break;
    }
    if (i >= argc) return 2;
    pid_t pid = fork();
    if (pid == 0) { execvp(argv[i], argv + i); _exit(127); }
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
"""


@pytest.fixture
def dumb_init(tmp_path: Path) -> Path:
    """A stand-in ``dumb-init`` binary: its command line is a real dumb-init's (program, options, ``--``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the dumb-init stand-in")
    source, binary = tmp_path / "dumb-init.c", tmp_path / "bin" / "dumb-init"
    binary.parent.mkdir()
    source.write_text(DUMB_INIT_C)
    subprocess.run([cc, "-O1", "-o", str(binary), str(source)], check=True, capture_output=True)
    return binary


async def test_real_dumb_init_and_timeout_yield_to_their_engine(
    dumb_init: Path, fake_vllm: Path, port: int
) -> None:
    engine = engine_argv(fake_vllm, port)
    with spawn(
        [str(dumb_init), "--single-child", "--", "timeout", "-k", "5", "60", *engine], fake_vllm.parent
    ) as init:
        pid = engine_under(init.pid, engine)
        assert cmdline(init.pid)[:2] == [str(dumb_init), "--single-child"]
        await assert_yields(init.pid, pid, "wrapper dumb-init", fake_vllm, port)


async def test_real_wrapper_switches_to_its_engine_once_started(fake_vllm: Path, port: int) -> None:
    engine = engine_argv(fake_vllm, port)
    go = fake_vllm.parent / "go"
    # the engine starts once the test says so: until then the wrapper is the target
    delayed = [
        "timeout",
        "60",
        "bash",
        "-c",
        f"while [ ! -e {go} ]; do sleep 0.02; done; {shlex.join(engine)}; true",
    ]
    with spawn(delayed, fake_vllm.parent) as wrapper:
        wait_until("the wrapper's exec", lambda: cmdline(wrapper.pid)[:1] == ["timeout"])
        source = ProcessSource()
        ctx = CollectContext(settings=AgentSettings(pid=wrapper.pid))
        first = await source.collect(ctx)
        assert first.state is SourceState.OK, first.message
        assert first.process is not None and first.process.pid == wrapper.pid
        go.touch()
        pid = engine_under(wrapper.pid, engine)
        after = await source.collect(ctx)
        assert after.process is not None and after.process.pid == pid
        assert f"--pid, child of wrapper timeout {wrapper.pid}" in after.message
