"""A stand-in for TensorRT-LLM's ``trtllm-serve``, for the demo and end-to-end tests.

Installed as an executable named ``trtllm-serve`` (:func:`install_launcher`), it takes a launch
shaped like a real one — ``trtllm-serve [serve] MODEL --host --port --backend --tp_size
--max_batch_size --max_num_tokens --max_seq_len --kv_cache_free_gpu_memory_fraction
--extra_llm_api_options FILE …`` (Click options spelled with ``_``; an unknown one is refused with
Click's ``Error: No such option`` and exit 2) —, reads the model directory's ``config.json`` and
the LLM API options file (YAML; its values win over the flags, as TensorRT-LLM's
``update_llm_args_with_extra_dict`` makes them), and serves what ``OpenAIServer.register_routes``
serves (NVIDIA/TensorRT-LLM, tensorrt_llm/serve/openai_server.py at
00057725d9a6591f033e44f31c219e2426827bb7): ``/health``, ``/version`` (``{"version": …}``),
``/v1/models`` (a ``ModelList`` of one ``ModelCard`` named after the model directory),
``/metrics`` (the JSON list of iteration stats, not Prometheus text), ``/v1/completions`` and
``/v1/chat/completions`` (streamed or not; :func:`demo.standin_vllm.openai_routes`), and
``/prometheus/metrics`` — only when the options file sets ``return_perf_metrics: true``, as the
real server mounts it only then.

``/prometheus/metrics`` carries the real ``trtllm_`` families, types, labels and buckets of
``MetricsCollector`` (tensorrt_llm/metrics/collector.py at
050f80def8df236e326949c8bd9dee10fd896a83): the per-request histograms (end-to-end, time to first
token, time per output token, queue, prefill, decode, inference), token and success counters, and
the iteration-level gauges (running / waiting requests, batch and token limits, KV-cache blocks,
inflight-batching counts). Its labels are the server's own, ``model_name="undefined"`` and
``engine_type="undefined"`` (openai_server.py builds the collector so), plus ``finished_reason``
on ``trtllm_request_success_total``; the page comes from prometheus_client's multiprocess
collector (the server sets ``PROMETHEUS_MULTIPROC_DIR``), so every gauge also carries a ``pid``
label and no ``python_gc_*``/``process_*`` family is served. The ``*_config_info`` families the
collector can log are not served: the server at that commit never logs them.

Load is simulated, as in the vLLM stand-in: about 4 requests/s that the server keeps up with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from aiohttp import web

from demo.standin_vllm import (
    SPEED,
    Histogram,
    OpenAIServing,
    openai_routes,
    run_until_signalled,
)

# A release with the prefixed trtllm_ families and the PyTorch backend as default (1.3.0, the first
# release skewwatch's table is sure serves the prefix), its local label saying it is the stand-in.
VERSION = "1.3.0+skewwatch.standin"
PROG = "trtllm-serve"

# MetricsCollector's default buckets (collector.py at the commit above).
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
PREFILL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
                   40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
# Floats: prometheus_client writes every bound as one (le="64.0").
CACHED_TOKENS_BUCKETS = (0.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0)
PREFILL_BATCH_TOKENS_BUCKETS = (64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0)

# name -> (buckets, HELP), the per-request histograms.
REQUEST_HISTOGRAMS: dict[str, tuple[tuple[float, ...], str]] = {
    "e2e_request_latency_seconds": (E2E_BUCKETS, "Histogram of end to end request latency in seconds."),
    "time_to_first_token_seconds": (TTFT_BUCKETS, "Histogram of time to first token in seconds."),
    "time_per_output_token_seconds": (TPOT_BUCKETS, "Histogram of time per output token in seconds."),
    "request_queue_time_seconds": (E2E_BUCKETS, "Histogram of time spent in WAITING phase for request."),
    "request_prefill_time_seconds": (
        PREFILL_BUCKETS,
        "Histogram of prefill (context) phase duration in seconds (first_token_time - first_scheduled_time).",
    ),
    "request_decode_time_seconds": (
        E2E_BUCKETS,
        "Histogram of decode (generation) phase duration in seconds (last_token_time - first_token_time).",
    ),
    "request_inference_time_seconds": (
        E2E_BUCKETS,
        "Histogram of total inference duration in seconds (last_token_time - first_scheduled_time).",
    ),
    "prompt_cached_tokens_per_request": (
        CACHED_TOKENS_BUCKETS,
        "Histogram of cached prompt tokens per request.",
    ),
    "prefill_batch_tokens": (
        PREFILL_BATCH_TOKENS_BUCKETS,
        "Histogram of total context tokens per iteration.",
    ),
}
GAUGE_HELP = {
    "num_requests_running": "Number of active requests",
    "num_requests_waiting": "Number of queued requests",
    "max_num_active_requests": "Maximum number of active requests",
    "iteration_latency_seconds": "Iteration latency in seconds",
    "gpu_memory_usage_bytes": "GPU memory usage in bytes",
    "cpu_memory_usage_bytes": "CPU memory usage in bytes",
    "pinned_memory_usage_bytes": "Pinned memory usage in bytes",
    "max_batch_size_static": "Static maximum batch size",
    "max_batch_size_runtime": "Runtime maximum batch size",
    "max_num_tokens_runtime": "Runtime maximum number of tokens",
    "kv_cache_max_blocks": "Maximum number of KV cache blocks",
    "kv_cache_free_blocks": "Number of free KV cache blocks",
    "kv_cache_used_blocks": "Number of used KV cache blocks",
    "kv_cache_tokens_per_block": "Number of tokens per KV cache block",
    "kv_cache_hit_rate": "KV cache hit rate",
    "kv_cache_utilization": "KV cache utilization",
    "num_context_requests": "Number of context (prefill) requests",
    "num_generation_requests": "Number of generation (decode) requests",
    "num_paused_requests": "Number of paused requests",
    "num_scheduled_requests": "Number of scheduled requests",
    "total_context_tokens": "Total number of context tokens",
    "avg_decoded_tokens_per_iter": "Average number of decoded tokens per iteration",
    "prefill_batch_occupancy": "Fraction of max active slots occupied by context requests.",
}
COUNTER_HELP = {
    "prompt_tokens_total": "Cumulative number of prompt (input) tokens processed.",
    "generation_tokens_total": "Cumulative number of generation (output) tokens produced.",
    "num_requests_completed_total": "Total number of completed requests across iterations",
    "kv_cache_reused_blocks_total": "Cumulative number of KV cache blocks reused (cache hits)",
    "kv_cache_missed_blocks_total": "Cumulative number of KV cache blocks missed (cache misses)",
    "prompt_cached_tokens_total": (
        "Process-lifetime total prompt tokens served from KV cache. Resets only when the serving "
        "process restarts, not when the KV cache is flushed or evicted."
    ),
}
LABELS = 'engine_type="undefined",model_name="undefined"'
# TensorRT-LLM's model dtype names, as config.json's torch_dtype says them.
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "fp8": 1}


@dataclass
class Options:
    """The launch as the LLM API sees it: the flags, then the options file over them."""

    model: str
    host: str
    port: int
    backend: str
    tp_size: int
    pp_size: int
    max_batch_size: int
    max_num_tokens: int
    max_seq_len: int
    free_gpu_memory_fraction: float
    tokens_per_block: int
    enable_block_reuse: bool
    kv_cache_dtype: str
    dtype: str
    return_perf_metrics: bool
    enable_iter_perf_stats: bool


@dataclass
class Engine:
    opts: Options
    started: float = field(default_factory=time.time)
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {n: Histogram(b) for n, (b, _) in REQUEST_HISTOGRAMS.items()}
    )
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTER_HELP, 0.0))
    success: int = 0
    running: int = 0
    waiting: int = 0
    used_blocks: int = 0
    due: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(11))  # noqa: S311 - simulated load

    @property
    def max_blocks(self) -> int:
        """KV-cache blocks: the free-memory share of an 80 GiB GPU over the bytes one block takes."""
        per_token = 2 * 32 * 4096 * DTYPE_BYTES.get(self.opts.kv_cache_dtype, 2)  # K and V, 32 layers
        free = 80 * 2**30 * 0.7 * self.opts.free_gpu_memory_fraction
        return int(free / (per_token * self.opts.tokens_per_block))

    def tick(self, dt: float) -> None:
        speed = SPEED.get(self.opts.dtype, 1.0)
        self.due += 4 * dt
        n, self.due = int(self.due), self.due - int(self.due)
        for _ in range(n):
            prompt, gen = self.rng.randint(200, 800), self.rng.randint(64, 256)
            ttft = self.rng.uniform(0.04, 0.12) / speed
            tpot = self.rng.uniform(0.018, 0.03) / speed
            queue = self.rng.uniform(0.0, 0.05)
            cached = prompt // 4 if self.opts.enable_block_reuse else 0
            for name, value in (
                ("e2e_request_latency_seconds", ttft + gen * tpot),
                ("time_to_first_token_seconds", ttft),
                ("time_per_output_token_seconds", tpot),
                ("request_queue_time_seconds", queue),
                ("request_prefill_time_seconds", max(ttft - queue, 0.001)),
                ("request_decode_time_seconds", gen * tpot),
                ("request_inference_time_seconds", ttft + gen * tpot - queue),
                ("prompt_cached_tokens_per_request", cached),
                ("prefill_batch_tokens", prompt),
            ):
                self.histograms[name].observe(value)
            self.counters["prompt_tokens_total"] += prompt
            self.counters["generation_tokens_total"] += gen
            self.counters["num_requests_completed_total"] += 1
            self.counters["prompt_cached_tokens_total"] += cached
            self.counters["kv_cache_reused_blocks_total"] += cached // self.opts.tokens_per_block
            self.counters["kv_cache_missed_blocks_total"] += (prompt - cached) // self.opts.tokens_per_block
            self.success += 1
        self.running = min(self.opts.max_batch_size, self.rng.randint(6, 10))
        self.waiting = self.rng.randint(0, 2)
        self.used_blocks = min(self.max_blocks, self.running * 600 // self.opts.tokens_per_block)

    def iteration_stats(self) -> dict[str, Any]:
        """One iteration's stats in the executor's JSON shape (the fields log_iteration_stats reads)."""
        reused = int(self.counters["kv_cache_reused_blocks_total"])
        missed = int(self.counters["kv_cache_missed_blocks_total"])
        context = min(self.running, 2)
        return {
            "iter": int((time.time() - self.started) * 40),
            "iterLatencyMS": 24.5 / SPEED.get(self.opts.dtype, 1.0),
            "timestamp": time.strftime("%m-%d-%Y %H:%M:%S"),
            "numActiveRequests": self.running,
            "numQueuedRequests": self.waiting,
            "numCompletedRequests": 0,
            "maxNumActiveRequests": self.opts.max_batch_size,
            "gpuMemUsage": 76 * 2**30,
            "cpuMemUsage": 0,
            "pinnedMemUsage": 0,
            "maxBatchSizeStatic": self.opts.max_batch_size,
            "maxBatchSizeRuntime": self.opts.max_batch_size,
            "maxNumTokensRuntime": self.opts.max_num_tokens,
            "kvCacheStats": {
                "maxNumBlocks": self.max_blocks,
                "freeNumBlocks": self.max_blocks - self.used_blocks,
                "usedNumBlocks": self.used_blocks,
                "tokensPerBlock": self.opts.tokens_per_block,
                "allocTotalBlocks": reused + missed,
                "allocNewBlocks": missed,
                "reusedBlocks": reused,
                "missedBlocks": missed,
                "cacheHitRate": reused / (reused + missed) if reused + missed else 0.0,
            },
            "inflightBatchingStats": {
                "numScheduledRequests": self.running,
                "numContextRequests": context,
                "numGenRequests": self.running - context,
                "numPausedRequests": 0,
                "numCtxTokens": context * 500,
                "microBatchId": 0,
                "avgNumDecodedTokensPerIter": 1.0,
            },
        }

    def prometheus(self) -> str:
        """The ``/prometheus/metrics`` page, as prometheus_client's multiprocess collector writes it."""
        pid = f'pid="{os.getpid()}"'
        stats = self.iteration_stats()
        kv, ifb = stats["kvCacheStats"], stats["inflightBatchingStats"]
        gauges = {
            "num_requests_running": self.running,
            "num_requests_waiting": self.waiting,
            "max_num_active_requests": stats["maxNumActiveRequests"],
            "iteration_latency_seconds": stats["iterLatencyMS"] / 1000.0,
            "gpu_memory_usage_bytes": stats["gpuMemUsage"],
            "cpu_memory_usage_bytes": stats["cpuMemUsage"],
            "pinned_memory_usage_bytes": stats["pinnedMemUsage"],
            "max_batch_size_static": stats["maxBatchSizeStatic"],
            "max_batch_size_runtime": stats["maxBatchSizeRuntime"],
            "max_num_tokens_runtime": stats["maxNumTokensRuntime"],
            "kv_cache_max_blocks": kv["maxNumBlocks"],
            "kv_cache_free_blocks": kv["freeNumBlocks"],
            "kv_cache_used_blocks": kv["usedNumBlocks"],
            "kv_cache_tokens_per_block": kv["tokensPerBlock"],
            "kv_cache_hit_rate": kv["cacheHitRate"],
            "kv_cache_utilization": kv["usedNumBlocks"] / kv["maxNumBlocks"] if kv["maxNumBlocks"] else 0.0,
            "num_context_requests": ifb["numContextRequests"],
            "num_generation_requests": ifb["numGenRequests"],
            "num_paused_requests": ifb["numPausedRequests"],
            "num_scheduled_requests": ifb["numScheduledRequests"],
            "total_context_tokens": ifb["numCtxTokens"],
            "avg_decoded_tokens_per_iter": ifb["avgNumDecodedTokensPerIter"],
            "prefill_batch_occupancy": ifb["numContextRequests"] / stats["maxNumActiveRequests"],
        }
        out = [
            "# HELP trtllm_request_success_total Count of successfully processed requests.",
            "# TYPE trtllm_request_success_total counter",
            # The multiprocess collector writes label names sorted.
            'trtllm_request_success_total{engine_type="undefined",finished_reason="length",'
            f'model_name="undefined"}} {float(self.success)}',
        ]
        for name, value in self.counters.items():
            out += [f"# HELP trtllm_{name} {COUNTER_HELP[name]}", f"# TYPE trtllm_{name} counter"]
            out.append(f"trtllm_{name}{{{LABELS}}} {float(value)}")
        for name, (_, help_text) in REQUEST_HISTOGRAMS.items():
            out += [f"# HELP trtllm_{name} {help_text}", f"# TYPE trtllm_{name} histogram"]
            out += self.histograms[name].lines(f"trtllm_{name}", LABELS)
        for name, value in gauges.items():
            out += [f"# HELP trtllm_{name} {GAUGE_HELP[name]}", f"# TYPE trtllm_{name} gauge"]
            out.append(f"trtllm_{name}{{{LABELS},{pid}}} {float(value)}")
        return "\n".join(out) + "\n"


class ClickLikeParser(argparse.ArgumentParser):
    """argparse, refusing as Click refuses: ``Error: No such option: --x``, exit 2; no prefixes."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        if "unrecognized arguments:" in message:
            message = "No such option: " + message.split("unrecognized arguments:", 1)[1].split(maxsplit=1)[0]
        self.exit(2, f"Try '{PROG} serve --help' for help.\n\nError: {message}\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    if argv and argv[0] == "serve":
        argv = argv[1:]
    p = ClickLikeParser(prog=f"{PROG} serve", usage=f"{PROG} serve [OPTIONS] MODEL", allow_abbrev=False)
    p.add_argument("model")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", default="pytorch", choices=("pytorch", "tensorrt", "_autodeploy"))
    p.add_argument("--tp_size", type=int, default=1)
    p.add_argument("--pp_size", type=int, default=1)
    p.add_argument("--ep_size", type=int)
    p.add_argument("--max_batch_size", type=int, default=2048)
    p.add_argument("--max_num_tokens", type=int, default=8192)
    p.add_argument("--max_seq_len", type=int)
    p.add_argument("--max_beam_width", type=int, default=1)
    p.add_argument("--kv_cache_free_gpu_memory_fraction", type=float, default=0.9)
    p.add_argument("--extra_llm_api_options", "--config", dest="extra_llm_api_options")
    p.add_argument("--trust_remote_code", action="store_true")
    # Real flags a launch may carry that change nothing the stand-in simulates.
    for flag in ("--log_level", "--tokenizer", "--num_postprocess_workers", "--reasoning_parser",
                 "--tool_parser", "--chat_template", "--server_role", "--cluster_size",
                 "--gpus_per_node", "--metadata_server_config_file"):  # fmt: skip
        p.add_argument(flag)
    return p.parse_args(argv)


def read_options(args: argparse.Namespace) -> Options:
    """The flags, the checkpoint's config.json, then the LLM API options file over them."""
    config: dict[str, Any] = {}
    cfg_path = Path(args.model) / "config.json"
    if cfg_path.is_file():
        config = json.loads(cfg_path.read_text())
    extra: dict[str, Any] = {}
    if args.extra_llm_api_options:
        loaded = yaml.safe_load(Path(args.extra_llm_api_options).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.extra_llm_api_options}: the LLM API options must be a mapping")
        extra = loaded
    kv = extra.get("kv_cache_config") or {}
    dtype = str(extra.get("dtype") or "auto")
    if dtype == "auto":
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return Options(
        model=args.model,
        host=args.host,
        port=args.port,
        backend=str(extra.get("backend", args.backend)),
        tp_size=int(extra.get("tensor_parallel_size", args.tp_size)),
        pp_size=int(extra.get("pipeline_parallel_size", args.pp_size)),
        max_batch_size=int(extra.get("max_batch_size", args.max_batch_size)),
        max_num_tokens=int(extra.get("max_num_tokens", args.max_num_tokens)),
        max_seq_len=int(
            extra.get("max_seq_len") or args.max_seq_len or config.get("max_position_embeddings", 2048)
        ),
        # A kv_cache_config in the file replaces the command line's whole section: llm_args | extra
        # is a shallow merge (update_llm_args_with_extra_dict), KvCacheConfig's default under it.
        free_gpu_memory_fraction=float(
            kv.get("free_gpu_memory_fraction", 0.9)
            if "kv_cache_config" in extra
            else args.kv_cache_free_gpu_memory_fraction
        ),
        tokens_per_block=int(kv.get("tokens_per_block", 32)),
        enable_block_reuse=bool(kv.get("enable_block_reuse", True)),
        kv_cache_dtype=dtype if kv.get("dtype") in (None, "auto") else str(kv["dtype"]),
        dtype=dtype,
        return_perf_metrics=bool(extra.get("return_perf_metrics", False)),
        enable_iter_perf_stats=bool(extra.get("enable_iter_perf_stats", False)),
    )


def served_model(model: str) -> str:
    """The id /v1/models names: the directory's name when the model is a directory (as the server does)."""
    path = Path(model)
    return path.name if path.is_dir() else model


def make_app(engine: Engine) -> web.Application:
    name = served_model(engine.opts.model)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def models(_: web.Request) -> web.Response:
        card = {"id": name, "object": "model", "created": int(engine.started), "owned_by": "tensorrt_llm"}
        return web.json_response({"object": "list", "data": [card]})

    async def iteration_stats(_: web.Request) -> web.Response:
        return web.json_response([engine.iteration_stats()] if engine.opts.enable_iter_perf_stats else [])

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(text=engine.prometheus(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", iteration_stats)
    if engine.opts.return_perf_metrics:
        app.router.add_get("/prometheus/metrics", prometheus)
        app.router.add_get("/prometheus/metrics/", prometheus)
    app.add_routes(openai_routes(OpenAIServing(name, speed=SPEED.get(engine.opts.dtype, 1.0))))
    return app


async def serve(opts: Options) -> None:
    engine = Engine(opts)
    runner = web.AppRunner(make_app(engine), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, opts.host, opts.port).start()
    print(
        f"[TRT-LLM] [I] LLM args: backend={opts.backend} dtype={opts.dtype} "
        f"tensor_parallel_size={opts.tp_size} max_batch_size={opts.max_batch_size} "
        f"max_num_tokens={opts.max_num_tokens} max_seq_len={opts.max_seq_len}",
        file=sys.stderr,
        flush=True,
    )
    print(f"INFO:     Uvicorn running on http://{opts.host}:{opts.port} (Press CTRL+C to quit)", flush=True)
    try:
        await run_until_signalled(engine.tick)
    finally:
        await runner.cleanup()


def install_launcher(bindir: Path) -> Path:
    """Write an executable named ``trtllm-serve`` that runs this stand-in, as the console script does.

    Launched as ``trtllm-serve MODEL …`` its command line reads ``<python> <bindir>/trtllm-serve MODEL …``,
    like a pip-installed TensorRT-LLM's.
    """
    bindir.mkdir(parents=True, exist_ok=True)
    launcher = bindir / PROG
    root = Path(__file__).resolve().parent.parent  # demo/ is not installed: the checkout's
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(root)!r})\n"
        f"from {__name__} import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return launcher


def main(argv: list[str] | None = None) -> int:
    opts = read_options(parse_args(list(sys.argv[1:] if argv is None else argv)))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
