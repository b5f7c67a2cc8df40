"""Runs the nvml source once in a fresh process and prints its result as JSON.

A fresh process because pynvml loads ``libnvidia-ml.so.1`` once per process, found through the
``LD_LIBRARY_PATH`` it started with; the test points that at the compiled stub.
Usage: ``python -m tests.agent.nvml_stub.probe '{"CUDA_VISIBLE_DEVICES": "1"}'``.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pynvml

from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo
from agent.sources.nvml import NvmlSource


def _after_shutdown() -> str:
    """What NVML says once the source is done: "Uninitialized" proves it shut NVML down."""
    try:
        pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as e:
        return str(e)
    return "still initialised"


async def main(env: dict[str, str]) -> None:
    process = ProcessInfo(pid=1, engine="vllm", argv=(), env=env)
    result = await NvmlSource().collect(CollectContext(settings=AgentSettings(), process=process))
    out: dict[str, object] = {
        "state": result.state.value,
        "message": result.message,
        "facts": {f.key: f.value for f in result.facts},
        "methods": sorted({f.provenance.method for f in result.facts}),
        "observations": {o.name: [o.value, o.unit] for o in result.observations},
        "after": _after_shutdown() if result.state.value != "unavailable" else "",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
