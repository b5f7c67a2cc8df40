"""The real manifests' inference containers: what each must yield, its command line, the engine read back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agent.settings import AgentSettings
from agent.sources.base import AgentPaths, CollectContext, SourceResult
from agent.sources.process import ProcessSource
from tests.support.fake_processes import container_command, llmisvc_command

# manifest → (image entrypoint when the container sets no command, expected facts)
EXPECTED: dict[str, tuple[list[str], dict[str, Any]]] = {
    "production-stack__vllm-gpu-deployment.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.id": "meta-llama/Llama-3.2-1B-Instruct",
            "runtime.tensor_parallel_size": 1,
            "runtime.max_num_seqs": 1024,
            "runtime.enable_lora": True,
            "serving.port": 8000,
        },
    ),
    "production-stack__vllm-disagg-prefill-deploy.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.path": "/var/mdl/YOUR-MODEL-PATH",
            "runtime.max_model_len": 512,
            "runtime.served_model_name": "YOUR-MODEL-NAME",
            "serving.port": 8000,
        },
    ),
    "kserve__clusterservingruntime-vllmserver.yaml": (
        [],
        {"runtime.engine": "vllm", "model.path": "/mnt/models", "serving.port": 8080},
    ),
    "kserve__llminferenceservice-deepseek-r1-dp-ep.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.path": "/mnt/models",
            "runtime.served_model_name": "deepseek-ai/DeepSeek-R1-0528",
            "runtime.data_parallel_size": 256,
            "runtime.tensor_parallel_size": 1,
            "runtime.enable_expert_parallel": True,
            "runtime.trust_remote_code": True,
            # from VLLM_ADDITIONAL_ARGS, spliced in by the preset's eval
            "runtime.gpu_memory_utilization": 0.95,
            "runtime.max_model_len": 8192,
            "runtime.enforce_eager": True,
            "serving.port": 8001,
        },
    ),
    "aibrix__sglang-deepseek-r1-distill-llama-8b-deployment.yaml": (
        [],
        {
            "runtime.engine": "sglang",
            "model.path": "/root/models/DeepSeek-R1-Distill-Llama-8B",
            "runtime.served_model_name": "DeepSeek-R1-Distill-Llama-8B",
            "runtime.attention_backend": "flashinfer",
            "serving.port": 8000,
        },
    ),
    # No command: the image's entrypoint runs; TGI is configured by env alone.
    "opea-genaiinfra__tgi-nv.yaml": (
        ["text-generation-launcher"],
        {"runtime.engine": "tgi", "model.id": "Intel/neural-chat-7b-v3-3", "serving.port": 2080},
    ),
}
# Not YAML until Helm renders it with the chart's values; its launch shape is covered by the
# rendered production-stack manifests above.
SKIPPED = {"production-stack__helm-template__deployment-vllm-multi.yaml.tpl"}


def manifest_command(path: Path) -> tuple[list[str], dict[str, str]]:
    if path.name.startswith("kserve__llminferenceservice"):
        return llmisvc_command(path)
    return container_command(path, EXPECTED[path.name][0])


async def read_engine(pid: int, engine: str) -> SourceResult:
    """The process source's result once the engine process under ``pid`` is up (5 s at most)."""
    source = ProcessSource()
    deadline = time.monotonic() + 5
    while True:
        result = await source.collect(CollectContext(settings=AgentSettings(pid=pid), paths=AgentPaths()))
        # A shell is found first; its engine child appears once the script gets there.
        up = result.process is not None and result.process.engine == engine
        if (up and not str(result.process.argv[0] if result.process else "").endswith("sh")) or (
            time.monotonic() > deadline
        ):
            return result
        await asyncio.sleep(0.05)
