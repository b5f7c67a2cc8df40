"""The stand-in TensorRT-LLM, SGLang and Dynamo-launched vLLM, each started as a real process with
its real launch shape: their routes answer in their engine's shapes over HTTP, and a real agent
(streaming to a real collector) pointed at each reports the engine, its launch and what the
engine says of itself — for SGLang without asking a deprecated route every cycle and without
passing on the key its server info holds in clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo import standin_sglang, standin_trtllm, standin_vllm
from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from tests.support.paths import REPO

pytestmark = pytest.mark.e2e

NS, POD = "team-b", "engines-6c5d7f9b8-xyzab"
ADMIN = "sk-admin-e2e-0123456789abcdefghijklmn"  # SGLang's --admin-api-key: /server_info hands it out
API_KEY = "sk-sglang-e2e-0123456789abcdefghijkl"
HF = "hf_StandinStandinStandinStandin0123"
REAL_ENGINES = REPO / "tests" / "fixtures" / "real-world" / "engines"  # their sources: SOURCES.md there


def http(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def families(page: str) -> dict[str, Any]:
    """The page through prometheus_client's own parser: name -> family (a malformed page raises)."""
    return {f.name: f for f in text_string_to_metric_families(page)}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "llama-tiny"
    d.mkdir()
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "bfloat16",
        "max_position_embeddings": 4096,
    }
    (d / "config.json").write_text(json.dumps(config))
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return d


class Rig:
    """The engine under test, and when asked a collector and an agent watching it."""

    def __init__(self, tmp: Path, model_dir: Path) -> None:
        self.tmp, self.model_dir = tmp, model_dir
        self.procs = Processes(tmp)
        self.port, self.grpc_port, self.http_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SKEWWATCH_", "DYN_"))}
        self.env.update(PYTHONUNBUFFERED="1", HF_TOKEN=HF)
        self.pid = 0

    def start_engine(self, argv: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        self.pid = self.procs.start("engine", argv, env or self.env).pid
        wait_for(f"the stand-in at {ready}", lambda: http(ready)[0] in {200, 401}, self.procs)

    def start_trtllm(self, *flags: str) -> None:
        launcher = standin_trtllm.install_launcher(self.tmp / "bin")
        argv = [str(launcher), str(self.model_dir), "--host", "127.0.0.1", "--port", str(self.port), *flags]
        self.start_engine(argv, f"{self.url}/health")

    def start_sglang(self, *flags: str) -> None:
        root = standin_sglang.install_module(self.tmp / "mods")
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(self.model_dir),
                "--port", str(self.port), *flags]  # fmt: skip
        self.start_engine(argv, f"{self.url}/health", dict(self.env, PYTHONPATH=str(root)))

    def start_dynamo_vllm(self, *flags: str) -> None:
        root = standin_vllm.install_dynamo_module(self.tmp / "mods")
        argv = [sys.executable, "-m", "dynamo.vllm", "--model", str(self.model_dir), *flags]
        env = dict(self.env, PYTHONPATH=str(root), DYN_SYSTEM_PORT=str(self.port))
        self.start_engine(argv, f"{self.url}/health", env)

    def watch(self) -> None:
        """A collector on loopback and an agent attached to the engine by its pid."""
        store = f"sqlite:///{self.tmp}/store.db"
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}", "--http",
                      f"127.0.0.1:{self.http_port}", "--store", store),
            self.env,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)
        env = dict(self.env, POD_NAMESPACE=NS, POD_NAME=POD, NODE_NAME="node-1")
        self.procs.start(
            "agent",
            skewwatch("agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--pid", str(self.pid),
                      "--interval", "0.5"),
            env,
        )  # fmt: skip

    def pod(self) -> Any:
        return get_json(f"{self.api}/api/v1/pods/{NS}/{POD}")

    def facts_when(self, key: str, timeout_s: float = 60) -> dict[str, Any]:
        """The pod's facts once ``key`` is among them."""
        wait_for(f"the fact {key}", lambda: key in self.pod()["facts"], self.procs, timeout_s)
        facts: dict[str, Any] = self.pod()["facts"]
        return facts


@pytest.fixture
def rig(tmp_path: Path, model_dir: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, model_dir)
    try:
        yield r
    finally:
        r.procs.stop_all()


def assert_nowhere(rig: Rig, *secrets: str) -> None:
    """None of ``secrets`` in what the collector serves of the pod, nor, once every process has
    stopped, in any file the agent or the collector wrote (logs, the store and its WAL)."""
    history = get_json(f"{rig.api}/api/v1/pods/{NS}/{POD}/history?facts=true")
    served = json.dumps(rig.pod()) + json.dumps(history)
    rig.procs.stop_all()
    for secret in secrets:
        assert secret not in served
        for path in rig.tmp.iterdir():
            if path.is_file() and path.name != "engine.log":
                assert secret.encode() not in path.read_bytes(), path.name


def probe(rig: Rig, model: str, *flags: str) -> dict[str, Any]:
    """``skewwatch probe`` against the stand-in, a small plan: its JSON result."""
    done = subprocess.run(
        skewwatch("probe", "--endpoint", rig.url, "--model", model, "--concurrency", "1,2", "--requests",
                  "3", "--warmup", "1", "--max-tokens", "6", "-o", "json", *flags),
        env=rig.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- TensorRT-LLM: trtllm-serve ------------------------------------------------------------------


def write_options(tmp: Path, text: str) -> Path:
    path = tmp / "extra-llm-api-options.yaml"
    path.write_text(text)
    return path


def test_trtllm_standin_refuses_an_unknown_option_as_click_does(tmp_path: Path) -> None:
    launcher = standin_trtllm.install_launcher(tmp_path / "bin")
    done = subprocess.run(
        [str(launcher), "serve", "m", "--max-batch-size", "8"],  # click spells it --max_batch_size
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Error: No such option: --max-batch-size" in done.stderr


def test_trtllm_standin_serves_its_routes_in_trtllm_serves_shapes(rig: Rig) -> None:
    opts = write_options(rig.tmp, "return_perf_metrics: true\nenable_iter_perf_stats: true\n")
    rig.start_trtllm(
        "--max_batch_size", "64", "--max_num_tokens", "4096", "--extra_llm_api_options", str(opts)
    )
    assert http(f"{rig.url}/health")[0] == 200
    assert get_json(f"{rig.url}/version") == {"version": standin_trtllm.VERSION}
    models = get_json(f"{rig.url}/v1/models")
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == rig.model_dir.name  # a directory is served under its name
    assert set(card) == {"id", "object", "created", "owned_by"} and card["owned_by"] == "tensorrt_llm"
    # /metrics is the JSON iteration stats; Prometheus text is under /prometheus/metrics.
    (stats,) = get_json(f"{rig.url}/metrics")
    assert stats["maxBatchSizeStatic"] == 64 and stats["maxNumTokensRuntime"] == 4096
    assert {"maxNumBlocks", "freeNumBlocks", "usedNumBlocks", "tokensPerBlock"} <= set(stats["kvCacheStats"])
    status, body = http(f"{rig.url}/prometheus/metrics")
    assert status == 200
    fams = families(body.decode())
    assert fams and all(name.startswith("trtllm_") for name in fams)
    kinds = {name: f.type for name, f in fams.items()}
    assert kinds["trtllm_time_to_first_token_seconds"] == "histogram"
    assert kinds["trtllm_request_success"] == "counter"  # the parser drops _total from a counter's name
    assert kinds["trtllm_kv_cache_max_blocks"] == "gauge"
    ttft = {s.labels["le"] for s in fams["trtllm_time_to_first_token_seconds"].samples if "le" in s.labels}
    assert {"0.001", "2560.0", "+Inf"} <= ttft  # collector.py's own buckets, to 2560 s
    (static,) = fams["trtllm_max_batch_size_static"].samples
    assert static.value == 64
    assert static.labels["model_name"] == "undefined" and static.labels["engine_type"] == "undefined"
    assert static.labels["pid"] == str(rig.pid)  # a multiprocess gauge carries its process id


def test_the_trtllm_page_has_every_family_of_the_page_rendered_from_collector_py(rig: Rig) -> None:
    # No real capture of a trtllm_ page is public; the fixture is collector.py's families rendered
    # by prometheus_client's multiprocess collector (SOURCES.md): names, help, types, labels, buckets.
    real = families((REAL_ENGINES / "trtllm__prometheus-metrics__050f80d__from-source.txt").read_text())
    opts = write_options(rig.tmp, "return_perf_metrics: true\nenable_iter_perf_stats: true\n")
    rig.start_trtllm("--extra_llm_api_options", str(opts))
    ours = families(http(f"{rig.url}/prometheus/metrics")[1].decode())
    assert set(real) <= set(ours), sorted(set(real) - set(ours))
    for name, fam in real.items():
        mine = ours[name]
        assert (mine.type, mine.documentation) == (fam.type, fam.documentation), name
        assert {k for s in mine.samples for k in s.labels} == {k for s in fam.samples for k in s.labels}, name
        bounds = [s.labels["le"] for s in mine.samples if "le" in s.labels]
        assert bounds == [s.labels["le"] for s in fam.samples if "le" in s.labels], name
    # The inflight-batching families, which the collector sets once an iteration report carries
    # inflightBatchingStats (the fixture's report had none).
    assert set(ours) - set(real) == {
        "trtllm_num_context_requests", "trtllm_num_generation_requests", "trtllm_num_paused_requests",
        "trtllm_num_scheduled_requests", "trtllm_total_context_tokens", "trtllm_avg_decoded_tokens_per_iter",
        "trtllm_prefill_batch_occupancy", "trtllm_prefill_batch_tokens",
    }  # fmt: skip


def test_trtllm_serves_no_prometheus_page_without_return_perf_metrics(rig: Rig) -> None:
    rig.start_trtllm()
    assert http(f"{rig.url}/prometheus/metrics")[0] == 404
    assert get_json(f"{rig.url}/metrics") == []  # no iteration stats without enable_iter_perf_stats


def test_skewwatch_probe_measures_the_trtllm_standin(rig: Rig) -> None:
    rig.start_trtllm()
    name = rig.model_dir.name
    for api in ("chat", "completions"):
        for stream in ("--stream", "--no-stream"):
            result = probe(rig, name, "--api", api, stream)
            assert result["verdict"] == "pass", (api, stream, result["reasons"])
            for level in result["levels"]:
                assert level["requests"]["ok"] == level["requests"]["measured"] == 3
                assert level["output_tokens"] == 3 * 6  # exactly max_tokens each, from usage
    status, body = http(f"{rig.url}/v1/completions", "POST", {"model": "other", "prompt": "x"})
    assert status == 404 and b"does not exist" in body


def test_the_agent_reads_a_trtllm_serve_launch_and_its_page(rig: Rig) -> None:
    opts = write_options(
        rig.tmp,
        "return_perf_metrics: true\nkv_cache_config:\n  free_gpu_memory_fraction: 0.7\n  dtype: fp8\n",
    )
    rig.start_trtllm("--max_batch_size", "48", "--tp_size", "1", "--extra_llm_api_options", str(opts))
    rig.watch()
    facts = rig.facts_when("runtime.num_gpu_blocks")
    assert facts["runtime.engine"] == "trtllm"
    assert facts["runtime.max_num_seqs"] == 48  # --max_batch_size
    assert facts["runtime.kv_cache_dtype"] == "fp8"  # only the options file can say it
    assert facts["runtime.gpu_memory_utilization"] == 0.7  # the file's section, over the flag's default
    assert facts["runtime.dtype"] == "bfloat16"  # the checkpoint's, as TensorRT-LLM's auto takes it
    assert facts["runtime.max_model_len"] == 4096
    assert facts["runtime.version"] == standin_trtllm.VERSION
    assert facts["runtime.backend"] == "pytorch"  # the default since 1.0, unsaid on the command line
    assert "runtime.metrics.missing" not in facts  # every family a 1.3 page must have is there
    page = families(http(f"{rig.url}/prometheus/metrics")[1].decode())
    (blocks,) = page["trtllm_kv_cache_max_blocks"].samples
    assert facts["runtime.num_gpu_blocks"] == int(blocks.value)  # what the engine itself sized


# --- SGLang: python -m sglang.launch_server ---------------------------------------------------------


def test_sglang_standin_runs_as_python_m_sglang_launch_server(rig: Rig) -> None:
    rig.start_sglang("--enable-metrics")
    cmdline = Path(f"/proc/{rig.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"sglang.launch_server"]


def test_sglang_standin_answers_server_and_model_info_in_sglangs_shape(rig: Rig) -> None:
    rig.start_sglang("--enable-metrics", "--api-key", API_KEY, "--tp-size", "1", "--context-length", "2048")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert http(f"{rig.url}/server_info")[0] == 401  # every route but /health and /metrics wants the key
    assert http(f"{rig.url}/health")[0] == 200
    info = json.loads(http(f"{rig.url}/server_info", headers=auth)[1])
    # ServerArgs flattened at the top level, the key in clear, then the scheduler's info.
    assert info["api_key"] == API_KEY and info["model_path"] == str(rig.model_dir)
    assert info["context_length"] == 2048 and info["tp_size"] == 1 and info["enable_metrics"] is True
    assert info["mem_fraction_static"] == standin_sglang.DEFAULT_MEM_FRACTION  # resolved, not requested
    assert info["status"] == "ready" and info["max_total_num_tokens"] > 0
    (state,) = info["internal_states"]
    assert state["memory_usage"]["token_capacity"] == info["max_total_num_tokens"]
    assert state["api_key"] == API_KEY and "last_gen_throughput" in state
    assert info["version"] == standin_sglang.VERSION
    old = json.loads(http(f"{rig.url}/get_server_info", headers=auth)[1])
    assert set(old) == set(info) and old["max_total_num_tokens"] == info["max_total_num_tokens"]
    model = json.loads(http(f"{rig.url}/model_info", headers=auth)[1])
    assert set(model) == {  # the keys of SGLang's own /model_info (docs, native API page)
        "model_path", "tokenizer_path", "is_generation", "preferred_sampling_params", "weight_version",
        "has_image_understanding", "has_audio_understanding", "model_type", "architectures",
    }  # fmt: skip
    assert model == json.loads(http(f"{rig.url}/get_model_info", headers=auth)[1])
    assert "is deprecated" in (rig.tmp / "engine.log").read_text()  # the old routes warn, as SGLang's do
    fams = families(http(f"{rig.url}/metrics")[1].decode())
    assert fams and all(name.startswith("sglang:") for name in fams)
    assert fams["sglang:time_to_first_token_seconds"].type == "histogram"
    assert fams["sglang:num_requests"].type == "counter"
    (total,) = fams["sglang:max_total_num_tokens"].samples
    assert total.value == info["max_total_num_tokens"]
    assert {"model_name", "tp_rank", "pp_rank", "engine_type", "moe_ep_rank"} <= set(total.labels)
    counts = get_json(f"{rig.url}/standin/requests")
    assert counts["/server_info"] == 2 and counts["/get_server_info"] == 1 and counts["/metrics"] == 1


def test_sglangs_server_info_keys_are_a_real_sglang_0_5_9s(rig: Rig) -> None:
    real = json.loads(
        (REAL_ENGINES / "sglang__get_server_info__v0.5.9__deepseek-r1-pd-prefill.json").read_text()
    )
    rig.start_sglang()
    ours = get_json(f"{rig.url}/server_info")
    dropped = {"host"}  # the capture dropped it: it held the site's address

    def kind(value: object) -> str:
        return type(value).__name__

    for mine, theirs in ((ours, real), (ours["internal_states"][0], real["internal_states"][0])):
        assert set(mine) - dropped <= set(theirs), sorted(set(mine) - dropped - set(theirs))
        differ = {
            k: (kind(v), kind(theirs[k]))
            for k, v in mine.items()
            if k in theirs and None not in (v, theirs[k]) and kind(v) != kind(theirs[k])
        }
        assert differ == {}, differ
    # The KV pool's size is the scheduler's, at the top level; each DP rank says its token capacity.
    assert "max_total_num_tokens" not in ours["internal_states"][0]
    assert set(ours["internal_states"][0]["memory_usage"]) == set(real["internal_states"][0]["memory_usage"])


def test_an_older_sglang_serves_only_the_deprecated_routes(rig: Rig) -> None:
    rig.start_sglang("--legacy-only")
    assert http(f"{rig.url}/server_info")[0] == 404 and http(f"{rig.url}/model_info")[0] == 404
    assert http(f"{rig.url}/metrics")[0] == 404  # no --enable-metrics
    assert get_json(f"{rig.url}/get_server_info")["api_key"] is None
    assert "is deprecated" not in (rig.tmp / "engine.log").read_text()


def test_skewwatch_probe_measures_the_sglang_standin(rig: Rig) -> None:
    rig.start_sglang("--served-model-name", "tiny")
    result = probe(rig, "tiny")
    assert result["verdict"] == "pass", result["reasons"]


def test_the_agent_reads_sglangs_server_info_once_and_never_passes_its_key_on(rig: Rig) -> None:
    # Only the admin key is set: /server_info stays anonymous and holds that key in clear.
    rig.start_sglang("--enable-metrics", "--admin-api-key", ADMIN, "--context-length", "2048")
    rig.watch()
    facts = rig.facts_when("runtime.max_total_tokens")
    wait_for(
        "six scrapes", lambda: get_json(f"{rig.url}/standin/requests").get("/metrics", 0) >= 6, rig.procs
    )
    counts = get_json(f"{rig.url}/standin/requests")
    assert counts.get("/server_info") == 1, counts  # asked once for this process, not every cycle
    assert counts.get("/get_server_info", 0) == 0, counts  # the current route answered
    info = get_json(f"{rig.url}/server_info")
    assert facts["runtime.engine"] == "sglang"
    assert facts["runtime.max_total_tokens"] == info["max_total_num_tokens"]
    assert facts["runtime.max_model_len"] == 2048
    # Nothing on the command line says it: only the server info's resolved value can.
    assert facts["runtime.gpu_memory_utilization"] == standin_sglang.DEFAULT_MEM_FRACTION
    assert_nowhere(rig, ADMIN, HF)


def test_the_agent_asks_an_sglang_behind_its_api_key_once_and_never_passes_the_key_on(rig: Rig) -> None:
    rig.start_sglang("--enable-metrics", "--api-key", API_KEY)
    rig.watch()
    facts = rig.facts_when("runtime.max_total_tokens")
    assert facts["runtime.engine"] == "sglang" and facts["serving.api_key_required"] is True
    wait_for(
        "six scrapes", lambda: get_json(f"{rig.url}/standin/requests").get("/metrics", 0) >= 6, rig.procs
    )
    counts = get_json(f"{rig.url}/standin/requests")
    assert counts.get("/server_info") == 1, counts  # a 401 is not asked again every cycle either
    assert counts.get("/get_server_info", 0) == 0, counts  # only a 404 sends the agent to the old route
    (total,) = families(http(f"{rig.url}/metrics")[1].decode())["sglang:max_total_num_tokens"].samples
    assert facts["runtime.max_total_tokens"] == int(total.value)  # /metrics needs no key
    assert_nowhere(rig, API_KEY, HF)  # the key is on the command line the agent reads


def test_the_agent_falls_back_to_an_older_sglangs_route_once(rig: Rig) -> None:
    rig.start_sglang("--legacy-only", "--enable-metrics")
    rig.watch()
    facts = rig.facts_when("runtime.max_total_tokens")
    assert facts["runtime.engine"] == "sglang"
    wait_for(
        "six scrapes", lambda: get_json(f"{rig.url}/standin/requests").get("/metrics", 0) >= 6, rig.procs
    )
    counts = get_json(f"{rig.url}/standin/requests")
    assert counts.get("/server_info") == 1, counts  # one 404, then never again
    assert counts.get("/get_server_info") == 1, counts  # the deprecated route that answered, remembered


# --- NVIDIA Dynamo: python -m dynamo.vllm ----------------------------------------------------------


def test_dynamo_worker_serves_its_system_port_as_dynamos_does(rig: Rig) -> None:
    rig.start_dynamo_vllm("--dtype", "float16", "--endpoint", "dyn://dynamo.backend.generate")
    cmdline = Path(f"/proc/{rig.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:5] == [b"-m", b"dynamo.vllm", b"--model", str(rig.model_dir).encode()]
    status, body = http(f"{rig.url}/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ready" and health["endpoints"]["generate"] == "ready"
    assert set(health["uptime"]) == {"secs", "nanos"}
    fams = families(http(f"{rig.url}/metrics")[1].decode())
    assert {n for n in fams if n.startswith("vllm:")} >= {
        "vllm:cache_config_info",
        "vllm:num_requests_running",
    }
    assert "dynamo_component_requests" in fams and "dynamo_component_inflight_requests" in fams
    assert not any(n.startswith(("python_", "process_")) for n in fams)  # only vllm: lines pass through
    (cache,) = fams["vllm:cache_config_info"].samples
    assert cache.labels["cache_dtype"] == "auto" and int(cache.labels["num_gpu_blocks"]) > 0
    # The worker serves no OpenAI API: python -m dynamo.frontend does.
    assert http(f"{rig.url}/v1/models")[0] == 404


def test_dynamo_worker_without_a_system_port_serves_nothing(tmp_path: Path, model_dir: Path) -> None:
    root = standin_vllm.install_dynamo_module(tmp_path / "mods")
    procs = Processes(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYN_")}
    proc = procs.start("worker", [sys.executable, "-m", "dynamo.vllm", "--model", str(model_dir)],
                       dict(env, PYTHONPATH=str(root)))  # fmt: skip
    try:
        wait_for(
            "the worker's start-up line",
            lambda: "system port 0" in (tmp_path / "worker.log").read_text(),
            procs,
        )
        assert proc.poll() is None
    finally:
        procs.stop_all()


def test_the_agent_reports_a_dynamo_launched_vllm_from_its_system_port(rig: Rig) -> None:
    rig.start_dynamo_vllm("--dtype", "float16", "--max-model-len", "1024")
    rig.watch()
    facts = rig.facts_when("runtime.num_gpu_blocks")
    assert facts["runtime.engine"] == "vllm"
    assert facts["runtime.launcher"] == "dynamo"
    assert facts["runtime.dtype"] == "float16" and facts["runtime.max_model_len"] == 1024
    page = families(http(f"{rig.url}/metrics")[1].decode())
    (cache,) = page["vllm:cache_config_info"].samples
    # Read on DYN_SYSTEM_PORT, the only place the worker says it.
    assert facts["runtime.num_gpu_blocks"] == int(cache.labels["num_gpu_blocks"])
    assert rig.pod()["provenance"]["runtime.num_gpu_blocks"]["source"] == "runtime_metrics"


# --- vLLM: vllm serve, with its generation routes ----------------------------------------------------


def test_skewwatch_probe_measures_the_vllm_standin_behind_its_api_key(rig: Rig) -> None:
    launcher = standin_vllm.install_launcher(rig.tmp / "bin")
    argv = [str(launcher), "serve", str(rig.model_dir), "--served-model-name", "tiny",
            "--port", str(rig.port), "--api-key", API_KEY]  # fmt: skip
    rig.start_engine(argv, f"{rig.url}/health")
    status, _ = http(f"{rig.url}/v1/chat/completions", "POST", {"model": "tiny", "messages": []})
    assert status == 401  # vLLM's --api-key guards the generation routes
    key_file = rig.tmp / "api-key"
    key_file.write_text(API_KEY)
    result = probe(rig, "tiny", "--api-key-file", str(key_file))
    assert result["verdict"] == "pass", result["reasons"]
    assert API_KEY not in json.dumps(result)
