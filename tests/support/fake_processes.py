"""Fake processes for the process source: command lines from real manifests, fake /proc trees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent.settings import AgentSettings
from agent.sources.base import AgentPaths, CollectContext
from skewwatch.core.containers import k8s_expand  # the kubelet's $(VAR), as the check and webhook read it

# What a secretKeyRef would inject: shaped like a real token so the redactor has to catch it.
SECRET_FROM_REF = "hf_FromSecretKeyRef0123456789abcdef"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def container_command(
    manifest: Path, image_entrypoint: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The first container's command line and env as the kubelet would start it.

    ``command`` replaces the image entrypoint, ``args`` follow it, ``$(VAR)`` in both expanded
    from the container's env; ``envFrom`` ConfigMaps in the same file are expanded,
    ``secretKeyRef`` values become a token-shaped stand-in.
    """
    docs = _documents(manifest)
    configmaps = {
        d["metadata"]["name"]: {k: str(v) for k, v in (d.get("data") or {}).items()}
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    container = _first_container(docs)
    env: dict[str, str] = {}
    for ref in container.get("envFrom") or []:
        env.update(configmaps.get(ref.get("configMapRef", {}).get("name", ""), {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = SECRET_FROM_REF
    argv = [k8s_expand(str(a), env) for a in (container.get("command") or image_entrypoint)]
    argv += [k8s_expand(str(a), env) for a in container.get("args") or []]
    return argv, env


def _first_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    for d in docs:
        spec = d.get("spec") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or spec
        containers = pod_spec.get("containers")
        if containers:
            return dict(containers[0])
    raise AssertionError("no container in manifest")


def fake_procfs(tmp_path: Path, btime: int | None = None) -> Path:
    """A /proc with the pod's pause process and a sleeper (and /proc/stat's boot time when given)."""
    root = tmp_path / "proc"
    root.mkdir()
    if btime is not None:
        (root / "stat").write_text(f"cpu  1 2 3\nbtime {btime}\n")
    fake_process(root, 1, ["/pause"])
    fake_process(root, 7, ["sleep", "infinity"])
    return root


def process_context(procfs: Path, **settings: object) -> CollectContext:
    """What a source is collected with over the fake /proc ``procfs``, with these agent settings."""
    return CollectContext(
        settings=AgentSettings(**settings).validate(),  # type: ignore[arg-type]
        paths=AgentPaths(procfs=procfs, podinfo=procfs / "no-podinfo"),
    )


def fake_process(
    procfs: Path,
    pid: int,
    argv: Sequence[str],
    *,
    ppid: int = 1,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    start_ticks: int | None = None,
) -> None:
    """Write /proc/<pid>/{cmdline,environ,stat,cwd} as the kernel lays them out; the stat line
    is cut after field 13 unless ``start_ticks`` (field 22) is given, then it is the kernel's
    full 52 fields."""
    d = procfs / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in (env or {}).items()))
    comm = os.path.basename(argv[0])[:15] if argv else "kworker/0:1"
    stat = f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0"
    if start_ticks is not None:  # fields 14-21 (times, priority, threads), 22, then 23-52
        stat += " 5 2 0 0 20 0 1 0 " + str(start_ticks) + " 0" * 30
    (d / "stat").write_text(stat + "\n")
    if cwd is not None:
        (d / "cwd").symlink_to(cwd)


# --- manifests run as real processes ---------------------------------------------------------------

# KServe's LLMInferenceService has no command of its own: the controller merges the preset
# config-llm-decode-worker-data-parallel (kserve/kserve config/llmisvc, @3cb95ee9) into the
# pod. Its main container's command, rendered by hand for the captured spec (model name
# deepseek-ai/DeepSeek-R1-0528, parallelism data 32, dataLocal 8, expert true, tensor 1):
LLMISVC_MAIN_COMMAND = [
    "/bin/bash",
    "-c",
    """START_RANK=0
eval "vllm serve \\
  /mnt/models \\
  --served-model-name "deepseek-ai/DeepSeek-R1-0528" \\
  --port 8001 \\
  --api-server-count ${VLLM_API_SERVER_COUNT:-8} \\
  --disable-log-requests \\
  --enable-expert-parallel \\
  --tensor-parallel-size 1 \\
  --data-parallel-size $(( 8 * 32 )) \\
  --data-parallel-size-local 8 \\
  --data-parallel-address $(LWS_LEADER_ADDRESS) \\
  --data-parallel-rpc-port 5555 \\
  --data-parallel-start-rank $START_RANK \\
  --data-parallel-hybrid-lb \\
  ${VLLM_ADDITIONAL_ARGS} \\
  --trust-remote-code \\
  --enable-ssl-refresh \\
  --ssl-certfile \\
  /etc/ssl/certs/tls.crt \\
  --ssl-keyfile \\
  /etc/ssl/certs/tls.key"
""",
]
LLMISVC_PRESET_ENV = {"HOME": "/home", "VLLM_LOGGING_LEVEL": "INFO", "HF_HUB_CACHE": "/models"}
# What the LeaderWorkerSet controller injects into a leader pod.
LWS_ENV = {
    "LWS_LEADER_ADDRESS": "deepseek-r1-0528-kserve-mn-0.deepseek-r1-0528-kserve-mn.llm",
    "LWS_WORKER_INDEX": "0",
}


def llmisvc_command(manifest: Path) -> tuple[list[str], dict[str, str]]:
    """The main container of a KServe LLMInferenceService as its preset makes it run."""
    docs = _documents(manifest)
    main = next(c for c in docs[0]["spec"]["template"]["containers"] if c.get("name") == "main")
    env = dict(LLMISVC_PRESET_ENV) | dict(LWS_ENV)
    for item in main.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = SECRET_FROM_REF
    argv = [k8s_expand(a, env) for a in LLMISVC_MAIN_COMMAND]
    return argv, env


def install_fake_engines(root: Path) -> tuple[Path, Path]:
    """Stand-ins for the engines' entry points, so a manifest's command can run for real.

    ``bin/`` holds ``vllm`` and ``text-generation-launcher`` (Python scripts, as pip installs
    them) and a ``python``/``python3`` that runs the real interpreter for the engines' modules
    and succeeds at doing nothing otherwise (``pip install`` lines in launch scripts), plus
    ``apt-get`` and ``update-alternatives`` that do nothing. ``lib/`` holds importable
    ``vllm.entrypoints.openai.api_server`` and ``sglang.launch_server`` modules. Every stand-in
    just sleeps: only its command line and environment matter.
    """
    bindir, lib = root / "bin", root / "lib"
    bindir.mkdir(parents=True)
    sleeper = "import time\ntime.sleep(300)\n"
    for name in ("vllm", "text-generation-launcher"):
        (bindir / name).write_text(f"#!{sys.executable}\n{sleeper}")
    for module in ("vllm/entrypoints/openai/api_server", "sglang/launch_server"):
        path = lib / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sleeper)
        for parent in path.parents:
            if parent == lib:
                break
            (parent / "__init__.py").touch()
    dispatch = (
        f'#!/bin/sh\ncase "$*" in\n  *"-m vllm."*|*"-m sglang."*) exec {sys.executable} "$@";;\n'
        "esac\nexit 0\n"
    )
    for name in ("python", "python3"):
        (bindir / name).write_text(dispatch)
    for name in ("apt-get", "update-alternatives"):
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir, lib


# --- real processes -----------------------------------------------------------------------------

PROCESS_WAIT_S = 10.0


def wait_for_exec(pid: int, marker: str) -> None:
    """Popen returns after fork; the command line is the engine's only once exec has happened."""
    deadline = time.monotonic() + PROCESS_WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never showed {marker!r} in its command line")


class Engines:
    """Real processes started by the test, each in a session of its own, all killed at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], marker: str = "serve") -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.cwd), "VLLM_USE_V1": "1"}
        proc = subprocess.Popen(
            argv, cwd=self.cwd, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        wait_for_exec(proc.pid, marker)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PROCESS_WAIT_S)  # reaped: no zombie left under its pid

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


def standin_argv(launcher: Path, port: int) -> list[str]:
    """The stand-in vLLM (``install_launcher``'s ``vllm``) serving ``models/tiny`` on ``port``."""
    return [str(launcher), "serve", "models/tiny", "--dtype", "float16", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
