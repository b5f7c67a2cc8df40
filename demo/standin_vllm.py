"""A stand-in for a vLLM OpenAI-compatible server, for the demo and end-to-end tests.

It is launched with a command line shaped like a real ``vllm serve`` launch (the demo installs it
as an executable named ``vllm``), reads the model directory's ``config.json`` the way vLLM
resolves ``--dtype auto``, and serves what a real vLLM V1 server serves on its port:
``/metrics`` in vLLM's own family names, labels and buckets — about 300 lines, like a real V1
scrape: the ``python_gc_*``/``process_*`` families, ``vllm:cache_config_info``, token and
prefix-cache counters, TTFT / end-to-end / inter-token / per-request time-per-output-token
histograms, request-phase and token-count histograms, running and waiting gauges —, ``/v1/models``
with ``max_model_len`` and vLLM's permission entry, ``/health`` and ``/version``. Every ``vllm:``
family it serves, with its type, and the ``/v1/models`` shape are a real vLLM 0.32's, checked
against the page the real-engine tests captured (tests/e2e/test_standin.py). What a CPU cannot
show (GPU facts, tensor parallelism) is why it stays; its ``--dtype auto`` keeps the rule of the
releases before 0.9.1 (float32 served as float16), which its version ``0.0.0.dev0`` names.
Load is simulated as a steady offered load of about 4 requests/s that the server keeps up with;
the dtype sets the speed of each request (float32 doubles time to first token, inter-token and
end-to-end latency against bfloat16 and float16), so a dtype drift shows up as slower serving at
the same load, as it would on a GPU below saturation.

It also answers ``POST /v1/completions`` and ``/v1/chat/completions`` in vLLM's shapes, streamed
(SSE) or not (:func:`openai_routes`, which the TensorRT-LLM and SGLang stand-ins share), so
``skewwatch probe`` can measure it; and it runs as an NVIDIA Dynamo worker, ``python -m
dynamo.vllm --model …`` (:func:`install_dynamo_module`), serving its metrics only on the system
status server's port, ``DYN_SYSTEM_PORT``, as a real worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

VERSION = "0.0.0.dev0+skewwatch.standin"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
# vLLM V1's request-phase and token-count buckets (vllm/v1/metrics/loggers.py).
PHASE_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
PARAM_N_BUCKETS = (1, 2, 5, 10, 20)
DTYPE_ALIASES = {
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "float": "float32",
    "fp32": "float32",
}
# Relative decode speed by dtype: memory-bound decoding scales with bytes per weight.
SPEED = {"bfloat16": 1.0, "float16": 1.0, "float32": 0.5}


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, cumulative = [], 0
        for b, c in zip(self.buckets, self.counts, strict=False):
            cumulative += c
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {float(cumulative)}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.n)}')
        out.append(f"{name}_count{{{labels}}} {float(self.n)}")
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        return out


@dataclass
class Engine:
    model: str
    served_name: str
    dtype: str
    max_model_len: int
    block_size: int
    gpu_memory_utilization: float
    enable_prefix_caching: bool
    kv_cache_dtype: str
    started: float = field(default_factory=time.time)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    # The rest of a V1 scrape: request phases and token counts, one histogram per family.
    phases: dict[str, Histogram] = field(
        default_factory=lambda: {
            n: Histogram(PHASE_BUCKETS)
            for n in ("request_queue_time_seconds", "request_inference_time_seconds",
                      "request_prefill_time_seconds", "request_decode_time_seconds")
        }
    )  # fmt: skip
    counts: dict[str, Histogram] = field(
        default_factory=lambda: {
            "request_prompt_tokens": Histogram(TOKEN_BUCKETS),
            "request_generation_tokens": Histogram(TOKEN_BUCKETS),
            "request_max_num_generation_tokens": Histogram(TOKEN_BUCKETS),
            "request_params_max_tokens": Histogram(TOKEN_BUCKETS),
            "request_params_n": Histogram(PARAM_N_BUCKETS),
            "iteration_tokens_total": Histogram(ITERATION_BUCKETS),
        }
    )
    prefix_queries: int = 0
    prefix_hits: int = 0
    # The offered load: 4 requests/s, wandering by this fraction around it (a sine over
    # wander_period_s) when the benchmark asks for it (SKEWWATCH_STANDIN_LOAD_WANDER).
    wander: float = 0.0
    wander_period_s: float = 30.0
    due: float = 0.0  # requests owed to the offered rate, carried between ticks
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311 - simulated load, not crypto

    @property
    def num_gpu_blocks(self) -> int:
        bytes_per_weight = 4 if self.dtype == "float32" else 2
        return int(7281 * self.gpu_memory_utilization / 0.9 * 2 / bytes_per_weight)

    def load_factor(self, now: float) -> float:
        return 1.0 + self.wander * math.sin(2 * math.pi * (now - self.started) / self.wander_period_s)

    def tick(self, dt: float) -> None:
        """Simulate ``dt`` seconds of traffic: about 4 requests/s (times the wandering load)."""
        speed = SPEED.get(self.dtype, 1.0)
        factor = self.load_factor(time.time())
        self.due += 4 * factor * dt
        n, self.due = int(self.due), self.due - int(self.due)
        for _ in range(n):
            prompt = self.rng.randint(200, 800)
            gen = self.rng.randint(64, 256)
            itl = self.rng.uniform(0.018, 0.03) / speed
            ttft = self.rng.uniform(0.04, 0.12) / speed
            self.prompt_tokens += prompt
            self.generation_tokens += gen
            self.requests += 1
            self.ttft.observe(ttft)
            self.itl.observe(itl)
            self.e2e.observe(ttft + gen * itl)
            queue = self.rng.uniform(0.0, 0.05)
            self.phases["request_queue_time_seconds"].observe(queue)
            self.phases["request_prefill_time_seconds"].observe(ttft - queue if ttft > queue else ttft)
            self.phases["request_decode_time_seconds"].observe(gen * itl)
            self.phases["request_inference_time_seconds"].observe(ttft + gen * itl - queue)
            self.counts["request_prompt_tokens"].observe(prompt)
            self.counts["request_generation_tokens"].observe(gen)
            self.counts["request_max_num_generation_tokens"].observe(gen)
            self.counts["request_params_max_tokens"].observe(256)
            self.counts["request_params_n"].observe(1)
            self.counts["iteration_tokens_total"].observe(prompt + self.running)
            self.prefix_queries += prompt
            self.prefix_hits += prompt // 4
        self.running = round(self.rng.randint(6, 10) * factor)
        self.waiting = self.rng.randint(0, 2) if speed >= 1 else self.rng.randint(2, 6)
        self.kv_usage = min(0.99, 0.2 + 0.1 * self.running / speed / 4 + self.rng.uniform(0, 0.05))

    def metrics(self) -> str:
        lab = f'engine="0",model_name="{self.served_name}"'
        out = [*_process_families(self.started)]
        out += [
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
            "# TYPE vllm:cache_config_info gauge",
            "vllm:cache_config_info{"
            f'block_size="{self.block_size}",cache_dtype="{self.kv_cache_dtype}",'
            'calculate_kv_scales="False",cpu_offload_gb="0",'
            f'enable_prefix_caching="{self.enable_prefix_caching}",engine="0",'
            f'gpu_memory_utilization="{self.gpu_memory_utilization}",is_attention_free="False",'
            f'num_cpu_blocks="None",num_gpu_blocks="{self.num_gpu_blocks}",'
            'num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",'
            'sliding_window="None",swap_space="4",swap_space_bytes="4294967296"} 1.0',
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lab}}} {float(self.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lab}}} {float(self.waiting)}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{lab}}} {self.kv_usage}",
            "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{{{lab}}} 0.0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{lab}}} {float(self.prompt_tokens)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {float(self.generation_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} {float(self.requests)}',
            f'vllm:request_success_total{{{lab},finished_reason="length"}} 0.0',
            f'vllm:request_success_total{{{lab},finished_reason="abort"}} 0.0',
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            *self.ttft.lines("vllm:time_to_first_token_seconds", lab),
            "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
            "# TYPE vllm:e2e_request_latency_seconds histogram",
            *self.e2e.lines("vllm:e2e_request_latency_seconds", lab),
            "# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.",
            "# TYPE vllm:inter_token_latency_seconds histogram",
            *self.itl.lines("vllm:inter_token_latency_seconds", lab),
            # vLLM 0.32's per-request time per output token (the V0 time_per_output_token_seconds
            # is gone from 0.32's page: tests/golden/real-vllm/0.32.0-cpu/metrics-families.json).
            "# HELP vllm:request_time_per_output_token_seconds Histogram of time_per_output_token_seconds"
            " per request.",
            "# TYPE vllm:request_time_per_output_token_seconds histogram",
            *self.itl.lines("vllm:request_time_per_output_token_seconds", lab),
            "# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping.",
            "# TYPE vllm:engine_sleep_state gauge",
            f'vllm:engine_sleep_state{{{lab},sleep_state="awake"}} 1.0',
            f'vllm:engine_sleep_state{{{lab},sleep_state="weights_offloaded"}} 0.0',
            f'vllm:engine_sleep_state{{{lab},sleep_state="discard_all"}} 0.0',
            "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in number of queried tokens.",
            "# TYPE vllm:prefix_cache_queries_total counter",
            f"vllm:prefix_cache_queries_total{{{lab}}} {float(self.prefix_queries)}",
            "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.",
            "# TYPE vllm:prefix_cache_hits_total counter",
            f"vllm:prefix_cache_hits_total{{{lab}}} {float(self.prefix_hits)}",
        ]
        helps = {
            "request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
            "request_inference_time_seconds": "Histogram of time spent in RUNNING phase for request.",
            "request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
            "request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
            "request_prompt_tokens": "Number of prefill tokens processed.",
            "request_generation_tokens": "Number of generation tokens processed.",
            "request_max_num_generation_tokens": "Histogram of maximum requested generation tokens.",
            "request_params_max_tokens": "Histogram of the max_tokens request parameter.",
            "request_params_n": "Histogram of the n request parameter.",
            "iteration_tokens_total": "Histogram of number of tokens per engine_step.",
        }
        for name, hist in (*self.phases.items(), *self.counts.items()):
            out += [f"# HELP vllm:{name} {helps[name]}", f"# TYPE vllm:{name} histogram"]
            out += hist.lines(f"vllm:{name}", lab)
        return "\n".join(out) + "\n"


def _process_families(started: float) -> list[str]:
    """The python_gc_* and process_* families prometheus_client serves in every vLLM scrape."""
    cpu = time.process_time()
    out = []
    for kind, help_text, values in (
        ("objects_collected", "Objects collected during gc", (11235.0, 1587.0, 212.0)),
        ("objects_uncollectable", "Uncollectable objects found during GC", (0.0, 0.0, 0.0)),
        ("collections", "Number of times this generation was collected", (1024.0, 93.0, 7.0)),
    ):
        out += [f"# HELP python_gc_{kind}_total {help_text}", f"# TYPE python_gc_{kind}_total counter"]
        out += [f'python_gc_{kind}_total{{generation="{g}"}} {v}' for g, v in enumerate(values)]
    out += [
        "# HELP python_info Python platform information",
        "# TYPE python_info gauge",
        f'python_info{{implementation="CPython",major="{sys.version_info.major}",minor="{sys.version_info.minor}",'
        f'patchlevel="{sys.version_info.micro}",version="{sys.version.split()[0]}"}} 1.0',
        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.",
        "# TYPE process_virtual_memory_bytes gauge",
        "process_virtual_memory_bytes 3.4359738368e+10",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        "process_resident_memory_bytes 2.147483648e+09",
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {started:.2f}",
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {cpu:.2f}",
        "# HELP process_open_fds Number of open file descriptors.",
        "# TYPE process_open_fds gauge",
        "process_open_fds 83.0",
        "# HELP process_max_fds Maximum number of open file descriptors.",
        "# TYPE process_max_fds gauge",
        "process_max_fds 1.048576e+06",
    ]
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    if argv and argv[0] == "serve":
        argv = argv[1:]
    p = _vllm_parser("vllm serve")
    return p.parse_args([_dashed(a) for a in argv])


def _vllm_parser(prog: str) -> argparse.ArgumentParser:
    # vLLM's own parser is argparse's (unique prefixes such as --api-ke accepted) with flags
    # spelled with "_" read as "-" (--max_model_len is --max-model-len).
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("model_tag", nargs="?")
    p.add_argument("--model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--served-model-name")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--api-key", nargs="+")  # any one of several keys opens the API
    # Real vLLM flags a launch carries that change nothing the stand-in simulates: accepted and
    # ignored. Any other flag is an error, exit 2, as vLLM's own argparse-based parser makes it.
    for flag in IGNORED_VALUE_FLAGS:
        p.add_argument(flag)
    for flag in IGNORED_SWITCHES:
        p.add_argument(flag, action=argparse.BooleanOptionalAction)
    return p


def _dashed(arg: str) -> str:
    """``--max_model_len=1`` → ``--max-model-len=1``: the flag's name only, never its value."""
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return name.replace("_", "-") + eq + value


# Real ``vllm serve`` flags with a value, and switches, the stand-in accepts without simulating them.
IGNORED_VALUE_FLAGS = (
    "--quantization", "--max-num-seqs", "--max-num-batched-tokens", "--tensor-parallel-size",
    "--pipeline-parallel-size", "--data-parallel-size", "--revision", "--tokenizer",
    "--tokenizer-revision", "--hf-token", "--hf-overrides", "--download-dir", "--seed",
    "--swap-space", "--chat-template", "--generation-config", "--uvicorn-log-level", "--config",
    "--load-format", "--tokenizer-mode",
)  # fmt: skip
IGNORED_SWITCHES = (
    "--trust-remote-code", "--enforce-eager", "--enable-chunked-prefill", "--disable-log-requests",
    "--disable-log-stats",
)  # fmt: skip


def resolve_dtype(requested: str, config: dict[str, object]) -> str:
    """vLLM's rule for ``--dtype auto``: the checkpoint dtype, except float32 is served as float16."""
    requested = DTYPE_ALIASES.get(requested, requested)
    if requested != "auto":
        return requested
    torch_dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")  # transformers 5: dtype
    return "float16" if torch_dtype == "float32" else torch_dtype


def build_engine(args: argparse.Namespace) -> Engine:
    model = args.model or args.model_tag
    if not model:
        raise SystemExit("vllm serve: a model is required")
    config: dict[str, object] = {}
    cfg_path = Path(model) / "config.json"
    if cfg_path.is_file():
        config = json.loads(cfg_path.read_text())
    max_len = args.max_model_len or int(str(config.get("max_position_embeddings", 2048)))
    return Engine(
        wander=float(os.environ.get(LOAD_WANDER_ENV, "0") or 0),
        model=model,
        served_name=args.served_model_name or model,
        dtype=resolve_dtype(args.dtype, config),
        max_model_len=max_len,
        block_size=args.block_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enable_prefix_caching=args.enable_prefix_caching,
        kv_cache_dtype=args.kv_cache_dtype,
    )


def make_app(engine: Engine, api_keys: list[str] | None) -> web.Application:
    allowed = {f"Bearer {k}" for k in api_keys or ()}

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=engine.metrics(), content_type="text/plain", charset="utf-8")

    async def models(request: web.Request) -> web.Response:
        if allowed and request.headers.get("Authorization") not in allowed:
            return web.json_response({"error": "Unauthorized"}, status=401)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": engine.served_name,
                        "object": "model",
                        "created": int(engine.started),
                        "owned_by": "vllm",
                        "root": engine.model,
                        "parent": None,
                        "max_model_len": engine.max_model_len,
                        "permission": [model_permission(engine.started)],
                    }
                ],
            }
        )

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    serving = OpenAIServing(
        engine.served_name, speed=SPEED.get(engine.dtype, 1.0), api_keys=frozenset(api_keys or ())
    )
    app.add_routes(openai_routes(serving))
    return app


# --- the OpenAI-compatible generation routes, shared by the stand-in engines -----------------------
#
# vLLM's stream shape (vllm/entrypoints/openai/chat_completion/serving.py and completion/serving.py,
# the shapes skewwatch.probe.client's docstring records): ``data: {json}`` events, a chat stream
# opening with a role chunk (``delta: {role: assistant, content: ""}``, no token), the text in
# ``choices[0].delta.content`` (chat) or ``choices[0].text`` (completions), ``finish_reason`` on
# the last content chunk, a ``choices: []`` chunk with ``usage`` before ``data: [DONE]`` when the
# request asks ``stream_options.include_usage``. SGLang and TensorRT-LLM frame their streams the
# same way. The "text" is one word per token; nothing is generated from the prompt.


@dataclass(frozen=True)
class OpenAIServing:
    """What the generation routes need to know of the engine behind them."""

    served_name: str
    speed: float = 1.0  # relative decode speed (SPEED): a slower dtype is slower here too
    api_keys: frozenset[str] = frozenset()  # any one opens the routes; none: open
    first_token_s: float = 0.02
    token_s: float = 0.004


def openai_routes(serving: OpenAIServing) -> list[web.RouteDef]:
    """``POST /v1/completions`` and ``/v1/chat/completions``, streamed (SSE) or not."""

    async def completions(request: web.Request) -> web.StreamResponse:
        return await _generate(serving, request, "completions")

    async def chat(request: web.Request) -> web.StreamResponse:
        return await _generate(serving, request, "chat")

    return [web.post("/v1/completions", completions), web.post("/v1/chat/completions", chat)]


def _openai_error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}, status=status
    )


@dataclass(frozen=True)
class _Ask:
    """One generation request, as read: which API, how many tokens, whether streamed."""

    api: str  # chat | completions
    tokens: int
    prompt_tokens: int
    stream: bool
    include_usage: bool
    rid: str
    created: int

    @property
    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.tokens, "total_tokens": total}

    def envelope(self, model: str, choices: list[dict[str, object]], streamed: bool) -> dict[str, object]:
        kind = {"chat": "chat.completion", "completions": "text_completion"}[self.api]
        if streamed and self.api == "chat":
            kind = "chat.completion.chunk"
        return {"id": self.rid, "object": kind, "created": self.created, "model": model, "choices": choices}


def _read_ask(serving: OpenAIServing, body: object, api: str) -> _Ask | web.Response:
    if not isinstance(body, dict):
        return _openai_error(400, "the request body is not a JSON object", "BadRequestError")
    if body.get("model") != serving.served_name:
        return _openai_error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _openai_error(400, "messages: a non-empty list is required", "BadRequestError")
        prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    else:
        prompt = str(body.get("prompt", ""))
    prefix = "chatcmpl" if api == "chat" else "cmpl"
    return _Ask(
        api=api,
        tokens=max(1, int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)),
        prompt_tokens=len(prompt.split()),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        rid=f"{prefix}-{random.getrandbits(64):016x}",
        created=int(time.time()),
    )


async def run_until_signalled(tick: Callable[[float], None], step_s: float = 0.25) -> None:
    """Call ``tick(elapsed)`` every ``step_s`` (the simulation's clock) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    last = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):  # the timeout is the simulation tick
            await asyncio.wait_for(stop.wait(), timeout=step_s)
        now = time.monotonic()
        tick(now - last)
        last = now


async def _generate(serving: OpenAIServing, request: web.Request, api: str) -> web.StreamResponse:
    allowed = {f"Bearer {k}" for k in serving.api_keys}
    if allowed and request.headers.get("Authorization") not in allowed:
        return web.json_response({"error": "Unauthorized"}, status=401)
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return _openai_error(400, "the request body is not JSON", "BadRequestError")
    ask = _read_ask(serving, body, api)
    if isinstance(ask, web.Response):
        return ask
    if ask.stream:
        return await _stream(serving, request, ask)
    first, per_token = serving.first_token_s / serving.speed, serving.token_s / serving.speed
    await asyncio.sleep(first + per_token * (ask.tokens - 1))
    text = "".join(f" t{i}" for i in range(ask.tokens))
    choice: dict[str, object] = {"index": 0, "logprobs": None, "finish_reason": "length"}
    if api == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return web.json_response({**ask.envelope(serving.served_name, [choice], False), "usage": ask.usage})


async def _stream(serving: OpenAIServing, request: web.Request, ask: _Ask) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)

    async def send(data: object) -> None:
        await resp.write(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode())

    def chunk(piece: dict[str, object], finish: str | None) -> dict[str, object]:
        choice = {"index": 0, **piece, "logprobs": None, "finish_reason": finish}
        return ask.envelope(serving.served_name, [choice], True)

    if ask.api == "chat":
        await send(chunk({"delta": {"role": "assistant", "content": ""}}, None))  # no token yet
    await asyncio.sleep(serving.first_token_s / serving.speed)
    for i in range(ask.tokens):
        if i:
            await asyncio.sleep(serving.token_s / serving.speed)
        piece: dict[str, object] = (
            {"delta": {"content": f" t{i}"}} if ask.api == "chat" else {"text": f" t{i}"}
        )
        await send(chunk(piece, "length" if i == ask.tokens - 1 else None))
    if ask.include_usage:
        await send({**ask.envelope(serving.served_name, [], True), "usage": ask.usage})
    await send("[DONE]")
    await resp.write_eof()
    return resp


# Like vLLM, which loads weights and profiles memory before its API server listens (about a
# minute for a tiny model on a CPU here), the stand-in can wait before it listens.
LOAD_SECONDS_ENV = "SKEWWATCH_STANDIN_LOAD_SECONDS"
LOAD_WANDER_ENV = "SKEWWATCH_STANDIN_LOAD_WANDER"


async def serve(args: argparse.Namespace) -> None:
    engine = build_engine(args)
    load_s = float(os.environ.get(LOAD_SECONDS_ENV, "0") or 0)
    if load_s > 0:
        await asyncio.sleep(load_s)
    runner = web.AppRunner(make_app(engine, args.api_key), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    # vLLM tells the dtype it resolved only in its start-up log, in this shape; nothing on its port
    # says it, so the agent must resolve ``--dtype auto`` itself, as it must for a real vLLM.
    print(
        f"INFO [core.py:75] Initializing a V1 LLM engine (v{VERSION}) with config: model={engine.model!r}, "
        f"tokenizer={engine.model!r}, dtype=torch.{engine.dtype}, max_seq_len={engine.max_model_len}, "
        f"served_model_name={engine.served_name}",
        file=sys.stderr,
        flush=True,
    )
    print(
        f"INFO [api_server.py:1880] Starting vLLM API server 0 on http://{args.host}:{args.port}", flush=True
    )
    try:
        await run_until_signalled(engine.tick)
    finally:
        await runner.cleanup()


def model_permission(created: float) -> dict[str, object]:
    """The permission entry vLLM 0.32 puts in each /v1/models item (its fields, not their meaning)."""
    return {
        "id": f"modelperm-{int(created * 1000):016x}"[-26:],
        "object": "model_permission",
        "created": int(created),
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def install_launcher(bindir: Path) -> Path:
    """Write an executable named ``vllm`` that runs this stand-in, as vLLM's console script does.

    Launched as ``vllm serve MODEL …`` its command line reads ``<python> <bindir>/vllm serve MODEL …``,
    exactly like a pip-installed vLLM's.
    """
    bindir.mkdir(parents=True, exist_ok=True)
    launcher = bindir / "vllm"
    # demo/ is not installed: the launcher finds it in the checkout this module was loaded from.
    root = Path(__file__).resolve().parent.parent
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(root)!r})\n"
        f"from {__name__} import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    return launcher


# --- the NVIDIA Dynamo vLLM worker shape: ``python -m dynamo.vllm --model …`` ------------------------
#
# A Dynamo worker (ai-dynamo/dynamo, components/src/dynamo/vllm/) runs vLLM's engine in-process,
# takes vLLM's engine flags plus its own, and serves no OpenAI API (python -m dynamo.frontend does).
# Its metrics are on the runtime's system status server, on the port in DYN_SYSTEM_PORT (not
# served when unset; docs/observability/health-checks.md at 0b71cf8463a800f6dbe9789813b5445354ca25d5):
# ``/metrics`` holds the runtime's own ``dynamo_component_*`` families (labels dynamo_namespace,
# dynamo_component, dynamo_endpoint; docs/observability/metrics.md, Backend Component Metrics; the
# HELP texts here are the stand-in's) and the engine's page passed through with only its ``vllm:``
# lines kept (register_engine_metrics_callback / get_prometheus_expfmt with
# metric_prefix_filters=["vllm:"], components/src/dynamo/common/utils/prometheus.py at
# 041ec8b0a9da970374a2d52190c4d7f2c6ec6090: no python_gc_*/process_* there); ``/health`` and
# ``/live`` answer the documented JSON (endpoints, status, uptime) as text/plain.

DYN_SYSTEM_PORT_ENV = "DYN_SYSTEM_PORT"
DYN_SYSTEM_HOST_ENV = "DYN_SYSTEM_HOST"
DYNAMO_ENDPOINTS = ("clear_kv_blocks", "generate", "load_metrics")
# Flags of dynamo.vllm's own (components/src/dynamo/vllm/args.py) a launch may carry, beside vLLM's.
DYNAMO_VALUE_FLAGS = ("--endpoint", "--connector", "--migration-limit", "--namespace", "--component")
DYNAMO_SWITCHES = ("--is-prefill-worker", "--is-decode-worker", "--enable-local-indexer")


def parse_dynamo_args(argv: list[str]) -> argparse.Namespace:
    """``python -m dynamo.vllm`` flags: vLLM's engine flags (``--model``) and Dynamo's own."""
    p = _vllm_parser("python -m dynamo.vllm")
    for flag in DYNAMO_VALUE_FLAGS:
        p.add_argument(flag)
    for flag in DYNAMO_SWITCHES:
        p.add_argument(flag, action="store_true")
    return p.parse_args([_dashed(a) for a in argv])


def dynamo_metrics(engine: Engine, namespace: str = "dynamo", component: str = "backend") -> str:
    """The system status server's page: the runtime's families, then the engine's ``vllm:`` lines."""
    base = f'dynamo_component="{component}",dynamo_namespace="{namespace}"'
    gen = f'{base},dynamo_endpoint="generate"'
    out = [
        "# HELP dynamo_component_requests_total Total requests handled by the endpoint",
        "# TYPE dynamo_component_requests_total counter",
        f"dynamo_component_requests_total{{{gen}}} {engine.requests}",
        "# HELP dynamo_component_inflight_requests Requests being handled by the endpoint",
        "# TYPE dynamo_component_inflight_requests gauge",
        f"dynamo_component_inflight_requests{{{gen}}} {engine.running}",
        "# HELP dynamo_component_request_duration_seconds Time the endpoint took per request",
        "# TYPE dynamo_component_request_duration_seconds histogram",
        *engine.e2e.lines("dynamo_component_request_duration_seconds", gen),
        "# HELP dynamo_component_uptime_seconds Seconds since the component started",
        "# TYPE dynamo_component_uptime_seconds gauge",
        f"dynamo_component_uptime_seconds{{{base}}} {time.time() - engine.started:.3f}",
    ]
    keep = ("vllm:", "# HELP vllm:", "# TYPE vllm:")
    out += [line for line in engine.metrics().split("\n") if line.startswith(keep)]
    return "\n".join(out) + "\n"


def make_dynamo_app(engine: Engine) -> web.Application:
    started = time.monotonic()

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=dynamo_metrics(engine), content_type="text/plain", charset="utf-8")

    async def health(_: web.Request) -> web.Response:
        up = time.monotonic() - started
        doc = {
            "endpoints": dict.fromkeys(DYNAMO_ENDPOINTS, "ready"),
            "status": "ready",
            "uptime": {"nanos": int(up % 1 * 1e9), "secs": int(up)},
        }
        return web.Response(text=json.dumps(doc), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/live", health)
    return app


async def serve_dynamo(args: argparse.Namespace) -> None:
    engine = build_engine(args)
    port = int(os.environ.get(DYN_SYSTEM_PORT_ENV, "0") or 0)
    runner: web.AppRunner | None = None
    if port > 0:
        runner = web.AppRunner(make_dynamo_app(engine), access_log=None)
        await runner.setup()
        host = os.environ.get(DYN_SYSTEM_HOST_ENV, "0.0.0.0")  # Dynamo's default: every address
        await web.TCPSite(runner, host, port).start()
    print(
        f"INFO [core.py:75] Initializing a V1 LLM engine (v{VERSION}) with config: model={engine.model!r}, "
        f"dtype=torch.{engine.dtype}, max_seq_len={engine.max_model_len}",
        file=sys.stderr,
        flush=True,
    )
    print(f"INFO dynamo.vllm: worker serving dyn://dynamo.backend.generate (system port {port})", flush=True)
    try:
        await run_until_signalled(engine.tick)
    finally:
        if runner is not None:
            await runner.cleanup()


def dynamo_main(argv: list[str] | None = None) -> int:
    """The stand-in run as ``python -m dynamo.vllm …`` (see :func:`install_dynamo_module`)."""
    args = parse_dynamo_args(list(sys.argv[1:] if argv is None else argv))
    asyncio.run(serve_dynamo(args))
    return 0


def install_dynamo_module(root: Path) -> Path:
    """Write a package ``dynamo`` under ``root`` whose ``dynamo.vllm`` runs the Dynamo worker shape.

    With ``root`` on ``PYTHONPATH``, ``python -m dynamo.vllm --model M …`` is the process's real
    command line, as a Dynamo worker's is (``dynamo/vllm/__main__.py``, as in Dynamo's own tree).
    Returns ``root``.
    """
    pkg = root / "dynamo" / "vllm"
    pkg.mkdir(parents=True, exist_ok=True)
    (root / "dynamo" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    checkout = Path(__file__).resolve().parent.parent
    (pkg / "__main__.py").write_text(
        f"import sys\nsys.path.insert(0, {str(checkout)!r})\n"
        f"from {__name__} import dynamo_main\nsys.exit(dynamo_main())\n"
    )
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if math.isnan(args.gpu_memory_utilization):
        raise SystemExit("--gpu-memory-utilization: not a number")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
