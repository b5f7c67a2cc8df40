"""The nvml source through the real pynvml ctypes bindings, against a stub libnvidia-ml.so.1.

The stub is compiled here with gcc from ``nvml_stub/nvml_stub.c``; its values are those of a real
H100 capture. Each case runs the source in a subprocess whose ``LD_LIBRARY_PATH`` finds the stub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

STUB_SOURCE = Path(__file__).parent / "nvml_stub" / "nvml_stub.c"
H100_CAPTURE = "nvidia_gpu_exporter__linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build the stub libnvidia-ml.so.1")
    out = tmp_path_factory.mktemp("nvml-stub")
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(out / "libnvidia-ml.so.1"),
            str(STUB_SOURCE),
        ],
        check=True,
        timeout=60,
    )
    return out


def probe(stub_dir: Path, process_env: dict[str, str] | None = None, **stub_env: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUB_NVML_")}
    env["LD_LIBRARY_PATH"] = (
        f"{stub_dir}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(stub_dir)
    )
    env.update(stub_env)
    done = subprocess.run(
        [sys.executable, "-m", "tests.agent.nvml_stub.probe", json.dumps(process_env or {})],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_h100_facts_through_real_pynvml(stub_dir: Path) -> None:
    out = probe(stub_dir, STUB_NVML_UTILIZATION="37")
    assert out["state"] == "ok", out["message"]
    assert out["facts"] == {
        "hardware.gpu.count": 1,
        "hardware.gpu.product": "NVIDIA H100 80GB HBM3",
        "hardware.gpu.memory_bytes": 81559 * MIB,
        "hardware.gpu.compute_capability": "9.0",
        "hardware.driver_version": "590.48.01",
        "hardware.cuda_driver_version": "13.1",
        "hardware.gpu.0.uuid": "GPU-00000000-0000-0000-0000-000000000000",
    }
    assert out["methods"] == ["nvml"]
    assert out["observations"] == {
        "gpu_utilization_ratio": [0.37, "1"],
        "gpu_memory_used_bytes": [479.0 * MIB, "By"],
    }
    assert out["after"] == "Uninitialized"  # nvmlShutdown ran


def test_init_failure_is_unavailable_with_nvmls_message(stub_dir: Path) -> None:
    out = probe(stub_dir, STUB_NVML_INIT_ERROR="9")
    assert out["state"] == "unavailable"
    assert out["message"] == "NVML: Driver Not Loaded"
    assert out["facts"] == {}


def test_unsupported_call_loses_only_its_fact(stub_dir: Path) -> None:
    out = probe(
        stub_dir, STUB_NVML_UNSUPPORTED="nvmlDeviceGetCudaComputeCapability,nvmlDeviceGetUtilizationRates"
    )
    assert out["state"] == "ok"
    assert "hardware.gpu.compute_capability" not in out["facts"]
    assert out["facts"]["hardware.gpu.product"] == "NVIDIA H100 80GB HBM3"
    assert list(out["observations"]) == ["gpu_memory_used_bytes"]
    assert "GPU 0 compute capability: not supported" in out["message"]
    assert out["after"] == "Uninitialized"


def test_visible_devices_pick_from_a_mixed_node(stub_dir: Path) -> None:
    out = probe(
        stub_dir,
        {"CUDA_VISIBLE_DEVICES": "3,GPU-00000000-0000-0000-0000-000000000000"},
        STUB_NVML_COUNT="4",
        STUB_NVML_NAMES="NVIDIA H100 80GB HBM3,NVIDIA H100 PCIe",
    )
    assert out["state"] == "ok"
    facts = out["facts"]
    assert facts["hardware.gpu.count"] == 2
    assert facts["hardware.gpu.product"] == ["NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3"]
    assert facts["hardware.gpu.0.uuid"].endswith("000000000003")
    assert facts["hardware.gpu.1.uuid"].endswith("000000000000")


def test_stub_defaults_match_the_real_capture(real_fixtures: Path) -> None:
    text = (real_fixtures / "nvidia-smi" / H100_CAPTURE).read_text(encoding="utf-8")
    stub = STUB_SOURCE.read_text(encoding="utf-8")
    assert re.search(r"Driver Version\s+: 590\.48\.01", text) and '"590.48.01"' in stub
    assert re.search(r"CUDA Version\s+: 13\.1", text) and "= 13010;" in stub
    assert re.search(r"Product Name\s+: NVIDIA H100 80GB HBM3", text) and '"NVIDIA H100 80GB HBM3"' in stub
    assert re.search(r"FB Memory Usage\s+Total\s+: 81559 MiB", text) and "81559 * MIB" in stub
    assert "GPU-00000000-0000-0000-0000-000000000000" in text
