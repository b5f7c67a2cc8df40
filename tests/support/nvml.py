"""The stub libnvidia-ml.so.1 built from real nvidia-smi captures, and the nvml source run against it.

``build_stub`` compiles ``tests/agent/nvml_stub/nvml_stub.c``; ``probe`` runs the nvml source in a
subprocess whose ``LD_LIBRARY_PATH`` finds the stub, so pynvml loads it as it would the driver's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.agent.nvml_stub.capture import Machine, parse_text_capture, parse_xml_capture
from tests.support.paths import REPO

STUB_SOURCE = REPO / "tests" / "agent" / "nvml_stub" / "nvml_stub.c"
H100 = "nvidia_gpu_exporter__linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
H100_MIG = "nvidia_gpu_exporter__linux-x86_64__nvidia-h100-mig__590.48.01.txt"
L40S = "nvidia_gpu_exporter__linux-x86_64__nvidia-l40s__595.80.txt"
A100 = "telegraf__nvidia-smi-q-x__a100-sxm4-v12.xml"
A100_MIG = "netdata__nvidia-smi-q-x__a100-sxm4-mig.xml"
T4 = "telegraf__nvidia-smi-q-x__tesla-t4.xml"
# The XML captures predate nvidia-smi's compute_cap field; these are NVIDIA's published values.
XML_COMPUTE_CAPABILITY = {A100: "8.0", A100_MIG: "8.0", T4: "7.5"}


def machine(real_fixtures: Path, name: str) -> tuple[Machine, str | None]:
    text = (real_fixtures / "nvidia-smi" / name).read_text(encoding="utf-8")
    if name.endswith(".xml"):
        return parse_xml_capture(text), XML_COMPUTE_CAPABILITY[name]
    return parse_text_capture(text), None


def probe(
    stub_dir: Path,
    tmp_path: Path,
    data: str,
    process_env: dict[str, str] | None = None,
    **stub_env: str,
) -> dict[str, Any]:
    (tmp_path / "nvml.data").write_text(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUB_NVML_")}
    env["LD_LIBRARY_PATH"] = (
        f"{stub_dir}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(stub_dir)
    )
    env["STUB_NVML_DATA"] = str(tmp_path / "nvml.data")
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


def build_stub(out: Path) -> Path:
    """Compile the stub libnvidia-ml.so.1 into ``out``; skips the test when gcc is missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build the stub libnvidia-ml.so.1")
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
