"""A stand-in for SGLang's server (``python -m sglang.launch_server``), for the demo and tests.

:func:`install_module` writes a package ``sglang`` (with ``sglang/launch_server.py``) into a
directory; with it on ``PYTHONPATH`` the process's command line is really ``python -m
sglang.launch_server --model-path … --port … [--enable-metrics] …``. Flags are read as SGLang's
argparse-based ``ServerArgs.add_cli_args`` reads them (``--model-path``/``--model``, unique
prefixes accepted; an unknown flag is exit 2). It serves what SGLang's HTTP server serves
(sgl-project/sglang, python/sglang/srt/entrypoints/http_server.py; the routes as of the rename at
78043d44):

- ``/server_info`` and ``/model_info``, and the deprecated ``/get_server_info`` and
  ``/get_model_info`` answering the same documents (each logs SGLang's deprecation warning);
  ``--legacy-only`` (the stand-in's own flag) serves only the deprecated two, as an SGLang from
  before the rename would. The server info is ``dataclasses.asdict(server_args)`` flattened at
  the top level — ``api_key`` included, holding the launch's ``--api-key`` in clear, as the real
  one does —, the scheduler's info (``status``, ``max_total_num_tokens``, ``max_req_input_len``),
  ``internal_states`` (one per DP rank: the server args again, ``last_gen_throughput``,
  ``memory_usage``, ``effective_max_running_requests_per_dp``) and ``version``: the shape and the
  fields of a real capture, SGLang's docs/basic_usage/native_api page as built on 2026-03-16
  (version 0.0.0.dev1+g3d58cd16d); fields a CPU cannot resolve keep that capture's values.
- ``/metrics`` (only with ``--enable-metrics``) in SGLang's ``sglang:`` families, types, labels
  and buckets (python/sglang/srt/metrics/collector.py at 00ae9c1590d2d0bb6c0bfff39e312c34ae3dd538):
  the scheduler's gauges (labels ``engine_type``, ``model_name``, ``moe_ep_rank``, ``pp_rank``,
  ``tp_rank``; multiprocess mode ``mostrecent``, so no ``pid``) and the tokenizer's counters and
  latency histograms (label ``model_name``).
- ``/v1/models``, ``/health``, ``/v1/completions`` and ``/v1/chat/completions`` (streamed or not;
  :func:`demo.standin_vllm.openai_routes`).

With ``--api-key`` every route but ``/health*`` and ``/metrics*`` asks for ``Authorization:
Bearer <key>`` and answers ``401 {"error": "Unauthorized"}`` without it (SGLang's
``add_api_key_middleware``); ``--admin-api-key`` alone guards only admin routes (none served
here), so ``/server_info`` stays anonymous and hands out ``admin_api_key`` in clear, as SGLang's
``decide_request_auth`` has it for its NORMAL routes (``/server_info``, ``/model_info``,
``/v1/models``, generation) — the leak an agent reading the server info must not pass on.

``/standin/requests`` (the stand-in's own, never authenticated) answers how often each route was
asked, as JSON, so a test can see which routes a client used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from demo.standin_vllm import SPEED, Histogram, OpenAIServing, openai_routes, run_until_signalled

VERSION = "0.0.0.dev0+skewwatch.standin"
COUNTS_PATH = "/standin/requests"
# TokenizerMetricsCollector's default buckets (collector.py at the commit above).
# Floats: prometheus_client writes every bound as one (le="1.0").
TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0,
                200.0, 400.0)  # fmt: skip
E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0,
               200.0, 400.0, 600.0, 1200.0, 1800.0, 2400.0)  # fmt: skip
ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
               0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000)  # fmt: skip
SCHEDULER_GAUGES = {
    "num_running_reqs": "The number of running requests.",
    "num_used_tokens": "The number of used tokens.",
    "token_usage": "The token usage.",
    "gen_throughput": "The generation throughput (token/s).",
    "num_queue_reqs": "The number of requests in the waiting queue.",
    "num_grammar_queue_reqs": "The number of requests in the grammar waiting queue.",
    "cache_hit_rate": "The prefix cache hit rate.",
    "max_total_num_tokens": "Maximum total number of tokens in the KV cache pool.",
    "spec_accept_length": "The average acceptance length of speculative decoding.",
    "utilization": "The utilization.",
    "is_cuda_graph": "Whether the batch is using CUDA graph.",
    "new_token_ratio": "The new token ratio.",
}
TOKENIZER_COUNTERS = {
    "prompt_tokens_total": "Number of prefill tokens processed.",
    "generation_tokens_total": "Number of generation tokens processed.",
    "cached_tokens_total": "Number of cached prompt tokens.",
    "num_requests_total": "Number of requests processed.",
    "num_aborted_requests_total": "Number of requests aborted.",
}
TOKENIZER_HISTOGRAMS = {
    "time_to_first_token_seconds": (TTFT_BUCKETS, "Histogram of time to first token in seconds."),
    "inter_token_latency_seconds": (ITL_BUCKETS, "Histogram of inter-token latency in seconds."),
    "e2e_request_latency_seconds": (E2E_BUCKETS, "Histogram of End-to-end request latency in seconds"),
}
# The capture's mem_fraction_static, which SGLang chose for its GPU when the flag was not given.
DEFAULT_MEM_FRACTION = 0.836


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sglang.launch_server")
    p.add_argument("--model-path", "--model", dest="model_path", required=True)
    p.add_argument("--tokenizer-path")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--quantization")
    p.add_argument("--context-length", type=int)
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--max-running-requests", type=int)
    p.add_argument("--max-total-tokens", type=int)
    p.add_argument("--chunked-prefill-size", type=int, default=8192)
    p.add_argument("--max-prefill-tokens", type=int, default=16384)
    p.add_argument("--page-size", type=int, default=1)
    p.add_argument("--tp-size", "--tensor-parallel-size", dest="tp_size", type=int, default=1)
    p.add_argument("--pp-size", "--pipeline-parallel-size", dest="pp_size", type=int, default=1)
    p.add_argument("--dp-size", "--data-parallel-size", dest="dp_size", type=int, default=1)
    p.add_argument("--ep-size", "--expert-parallel-size", dest="ep_size", type=int, default=1)
    p.add_argument("--random-seed", type=int)
    p.add_argument("--served-model-name")
    p.add_argument("--api-key")
    p.add_argument("--admin-api-key")
    p.add_argument("--schedule-policy", default="fcfs")
    p.add_argument("--attention-backend")
    p.add_argument("--log-level", default="info")
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--disable-radix-cache", action="store_true")
    p.add_argument("--disable-cuda-graph", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--enable-torch-compile", action="store_true")
    # The stand-in's own: serve only the routes of an SGLang from before /server_info existed.
    p.add_argument("--legacy-only", action="store_true")
    return p.parse_args(argv)


@dataclass
class Engine:
    args: argparse.Namespace
    config: dict[str, Any]
    started: float = field(default_factory=time.time)
    seed: int = field(default_factory=lambda: random.randrange(2**30))  # noqa: S311 - as SGLang picks one
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOKENIZER_COUNTERS, 0.0))
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {n: Histogram(b) for n, (b, _) in TOKENIZER_HISTOGRAMS.items()}
    )
    running: int = 0
    waiting: int = 0
    used_tokens: int = 0
    due: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(13))  # noqa: S311 - simulated load

    @property
    def served_name(self) -> str:
        return str(self.args.served_model_name or self.args.model_path)

    @property
    def dtype(self) -> str:
        if self.args.dtype != "auto":
            return str(self.args.dtype)
        return str(self.config.get("torch_dtype") or self.config.get("dtype") or "bfloat16")

    @property
    def mem_fraction(self) -> float:
        return float(self.args.mem_fraction_static or DEFAULT_MEM_FRACTION)

    @property
    def max_total_num_tokens(self) -> int:
        """The KV pool: what the static memory share leaves of a 24 GiB GPU, by bytes per token."""
        if self.args.max_total_tokens:
            return int(self.args.max_total_tokens)
        per_token = 2 * 24 * 2048 * (4 if self.dtype == "float32" else 2)
        weights = 1.0 * 2**30
        return max(0, int((24 * 2**30 * self.mem_fraction - weights) / per_token))

    @property
    def context_len(self) -> int:
        return int(self.args.context_length or self.config.get("max_position_embeddings", 2048))

    def tick(self, dt: float) -> None:
        speed = SPEED.get(self.dtype, 1.0)
        self.due += 4 * dt
        n, self.due = int(self.due), self.due - int(self.due)
        for _ in range(n):
            prompt, gen = self.rng.randint(200, 800), self.rng.randint(64, 256)
            ttft, itl = self.rng.uniform(0.04, 0.12) / speed, self.rng.uniform(0.018, 0.03) / speed
            self.counters["prompt_tokens_total"] += prompt
            self.counters["generation_tokens_total"] += gen
            self.counters["num_requests_total"] += 1
            if not self.args.disable_radix_cache:
                self.counters["cached_tokens_total"] += prompt // 4
            self.histograms["time_to_first_token_seconds"].observe(ttft)
            self.histograms["inter_token_latency_seconds"].observe(itl)
            self.histograms["e2e_request_latency_seconds"].observe(ttft + gen * itl)
        self.running = self.rng.randint(6, 10)
        self.waiting = self.rng.randint(0, 2)
        self.used_tokens = min(self.max_total_num_tokens, self.running * 600)

    def metrics(self) -> str:
        sched = (
            f'engine_type="unified",model_name="{self.served_name}",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
        )
        tok = f'model_name="{self.served_name}"'
        total = self.max_total_num_tokens
        values = {
            "num_running_reqs": self.running,
            "num_used_tokens": self.used_tokens,
            "token_usage": self.used_tokens / total if total else 0.0,
            "gen_throughput": self.running * 40.0 * SPEED.get(self.dtype, 1.0),
            "num_queue_reqs": self.waiting,
            "num_grammar_queue_reqs": 0,
            "cache_hit_rate": 0.0 if self.args.disable_radix_cache else 0.25,
            "max_total_num_tokens": total,
            "spec_accept_length": 0.0,
            "utilization": min(1.0, self.running / 128),
            "is_cuda_graph": 0.0 if self.args.disable_cuda_graph else 1.0,
            "new_token_ratio": 0.7,
        }
        out: list[str] = []
        for name, help_text in SCHEDULER_GAUGES.items():
            out += [f"# HELP sglang:{name} {help_text}", f"# TYPE sglang:{name} gauge"]
            out.append(f"sglang:{name}{{{sched}}} {float(values[name])}")
        for name, help_text in TOKENIZER_COUNTERS.items():
            out += [f"# HELP sglang:{name} {help_text}", f"# TYPE sglang:{name} counter"]
            out.append(f"sglang:{name}{{{tok}}} {self.counters[name]}")
        for name, (_, help_text) in TOKENIZER_HISTOGRAMS.items():
            out += [f"# HELP sglang:{name} {help_text}", f"# TYPE sglang:{name} histogram"]
            out += self.histograms[name].lines(f"sglang:{name}", tok)
        return "\n".join(out) + "\n"

    def server_args(self) -> dict[str, Any]:
        """``dataclasses.asdict(server_args)`` as the capture has it: resolved, flattened, in clear."""
        a = self.args
        return {
            "model_path": a.model_path,
            "tokenizer_path": a.tokenizer_path or a.model_path,
            "tokenizer_mode": "auto",
            "skip_tokenizer_init": False,
            "load_format": "auto",
            "trust_remote_code": a.trust_remote_code,
            "context_length": a.context_length,
            "is_embedding": False,
            "revision": None,
            "host": a.host,
            "port": a.port,
            "dtype": a.dtype,
            "quantization": a.quantization,
            "kv_cache_dtype": a.kv_cache_dtype,
            "mem_fraction_static": self.mem_fraction,
            "max_running_requests": a.max_running_requests or 128,
            "max_queued_requests": None,
            "max_total_tokens": a.max_total_tokens,
            "chunked_prefill_size": a.chunked_prefill_size,
            "max_prefill_tokens": a.max_prefill_tokens,
            "schedule_policy": a.schedule_policy,
            "schedule_conservativeness": 1.0,
            "page_size": a.page_size,
            "device": "cuda",
            "tp_size": a.tp_size,
            "pp_size": a.pp_size,
            "stream_interval": 1,
            "random_seed": a.random_seed if a.random_seed is not None else self.seed,
            "download_dir": None,
            "base_gpu_id": 0,
            "log_level": a.log_level,
            "show_time_cost": False,
            "enable_metrics": a.enable_metrics,
            "api_key": a.api_key,
            "admin_api_key": a.admin_api_key,
            "served_model_name": self.served_name,
            "weight_version": "default",
            "chat_template": None,
            "dp_size": a.dp_size,
            "load_balance_method": "round_robin",
            "attention_backend": a.attention_backend or "fa3",
            "sampling_backend": "flashinfer",
            "grammar_backend": "xgrammar",
            "speculative_algorithm": None,
            "ep_size": a.ep_size,
            "disable_radix_cache": a.disable_radix_cache,
            "cuda_graph_max_bs": 4,
            "disable_cuda_graph": a.disable_cuda_graph,
            "enable_torch_compile": a.enable_torch_compile,
            "enable_dp_attention": False,
            "disaggregation_mode": "null",
        }

    def server_info(self) -> dict[str, Any]:
        args = self.server_args()
        total = self.max_total_num_tokens
        state = {
            **args,
            "use_mla_backend": False,
            "last_gen_throughput": self.running * 40.0 * SPEED.get(self.dtype, 1.0),
            "memory_usage": {"weight": 0.98, "kvcache": 0.23, "token_capacity": total, "graph": 0},
            "effective_max_running_requests_per_dp": args["max_running_requests"],
        }
        return {
            **args,
            "status": "ready",
            "max_total_num_tokens": total,
            "max_req_input_len": min(self.context_len, total) - 6,
            "internal_states": [state for _ in range(self.args.dp_size)],
            "version": VERSION,
        }

    def model_info(self) -> dict[str, Any]:
        architectures = self.config.get("architectures") or []
        return {
            "model_path": self.args.model_path,
            "tokenizer_path": self.args.tokenizer_path or self.args.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": self.config.get("model_type"),
            "architectures": architectures,
        }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(engine: Engine) -> web.Application:
    asked: Counter[str] = Counter()
    api_key = engine.args.api_key

    @web.middleware
    async def count_and_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != COUNTS_PATH:
            asked[request.path] += 1
        exempt = request.path.startswith(("/health", "/metrics", COUNTS_PATH))
        if api_key and not exempt and request.headers.get("Authorization") != f"Bearer {api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    def deprecated(route: str, current: str, doc: Callable[[], dict[str, Any]]) -> Handler:
        async def handler(_: web.Request) -> web.Response:
            if not engine.args.legacy_only:
                print(
                    f"Endpoint '{route}' is deprecated and will be removed in a future version. "
                    f"Please use '{current}' instead.",
                    file=sys.stderr,
                    flush=True,
                )
            return web.json_response(doc())

        return handler

    async def server_info(_: web.Request) -> web.Response:
        return web.json_response(engine.server_info())

    async def model_info(_: web.Request) -> web.Response:
        return web.json_response(engine.model_info())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=engine.metrics(), content_type="text/plain", charset="utf-8")

    async def models(_: web.Request) -> web.Response:
        card = {
            "id": engine.served_name,
            "object": "model",
            "created": int(engine.started),
            "owned_by": "sglang",
            "root": engine.served_name,
            "max_model_len": engine.context_len,
        }
        return web.json_response({"object": "list", "data": [card]})

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def counts(_: web.Request) -> web.Response:
        return web.json_response(dict(asked))

    app = web.Application(middlewares=[count_and_guard])
    app.router.add_get("/get_server_info", deprecated("/get_server_info", "/server_info", engine.server_info))
    app.router.add_get("/get_model_info", deprecated("/get_model_info", "/model_info", engine.model_info))
    if not engine.args.legacy_only:
        app.router.add_get("/server_info", server_info)
        app.router.add_get("/model_info", model_info)
    if engine.args.enable_metrics:
        app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get(COUNTS_PATH, counts)
    serving = OpenAIServing(engine.served_name, speed=SPEED.get(engine.dtype, 1.0))
    app.add_routes(openai_routes(serving))
    return app


async def serve(engine: Engine) -> None:
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, engine.args.host, engine.args.port).start()
    print(f"INFO: Uvicorn running on http://{engine.args.host}:{engine.args.port}", flush=True)
    print("The server is fired up and ready to roll!", flush=True)
    try:
        await run_until_signalled(engine.tick)
    finally:
        await runner.cleanup()


def build_engine(args: argparse.Namespace) -> Engine:
    config: dict[str, Any] = {}
    cfg_path = Path(args.model_path) / "config.json"
    if cfg_path.is_file():
        config = json.loads(cfg_path.read_text())
    return Engine(args, config)


def install_module(root: Path) -> Path:
    """Write a package ``sglang`` under ``root`` whose ``sglang.launch_server`` runs this stand-in.

    With ``root`` on ``PYTHONPATH``, ``python -m sglang.launch_server …`` is the process's real
    command line, as it is for a pip-installed SGLang. Returns ``root``.
    """
    pkg = root / "sglang"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    checkout = Path(__file__).resolve().parent.parent  # demo/ is not installed: the checkout's
    (pkg / "launch_server.py").write_text(
        f"import sys\nsys.path.insert(0, {str(checkout)!r})\n"
        f"from {__name__} import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(build_engine(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
