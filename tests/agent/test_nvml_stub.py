"""The nvml source through the real pynvml ctypes bindings, against a stub libnvidia-ml.so.1.

The stub is compiled with gcc from ``nvml_stub/nvml_stub.c`` (``build_stub`` in
tests/support/nvml.py); every value it returns comes from a real ``nvidia-smi`` capture (H100,
H100 with MIG, L40S, A100, A100 with MIG, T4), parsed by ``nvml_stub/capture.py`` into the stub's
data file. Each case runs the source in a subprocess whose ``LD_LIBRARY_PATH`` finds the stub, so
pynvml loads it as it would the driver's library.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.agent.nvml_stub.capture import data_file
from tests.support.nvml import (
    A100,
    A100_MIG,
    H100,
    H100_MIG,
    L40S,
    T4,
    XML_COMPUTE_CAPABILITY,
    machine,
    probe,
)

MIB = 1024 * 1024


def run_capture(stub_dir: Path, tmp_path: Path, real_fixtures: Path, name: str, **kw: Any) -> dict[str, Any]:
    m, cc = machine(real_fixtures, name)
    return probe(stub_dir, tmp_path, data_file(m, cc), **kw)


def test_h100_capture_gives_every_fact_through_real_pynvml(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    out = run_capture(stub_dir, tmp_path, real_fixtures, H100)
    assert out["state"] == "ok", out["message"]
    assert out["facts"] == {
        "hardware.gpu.count": 1,
        "hardware.gpu.product": "h100-80gb",
        "hardware.gpu.name": "NVIDIA H100 80GB HBM3",
        "hardware.gpu.form_factor": "sxm",
        "hardware.gpu.architecture": "hopper",
        "hardware.gpu.memory_bytes": 81559 * MIB,
        "hardware.gpu.compute_capability": "9.0",
        "hardware.gpu.mig_mode": "disabled",
        "hardware.gpu.ecc_mode": "enabled",
        "hardware.gpu.power_limit_watts": 700.0,
        "hardware.gpu.power_default_limit_watts": 700.0,
        "hardware.gpu.persistence_mode": "enabled",
        "hardware.gpu.compute_mode": "default",
        "hardware.gpu.pcie_link": "gen5 x16",
        "hardware.gpu.nvlink_links": 18,
        "hardware.driver_version": "590.48.01",
        "hardware.cuda_driver_version": "13.1",
        "hardware.gpu.0.uuid": "GPU-00000000-0000-0000-0000-000000000000",
    }
    assert out["methods"] == ["nvml"]
    # Idle capture: nvidia-smi's Used is 0 MiB and leaves out the driver's reserved 479 MiB,
    # which NVML's used includes.
    assert out["observations"] == {
        "gpu_utilization_ratio": [0.0, "1"],
        "gpu_memory_used_bytes": [479.0 * MIB, "By"],
    }
    assert out["after"] == "Uninitialized"  # nvmlShutdown ran


def test_h100_mig_process_sees_its_own_slice(stub_dir: Path, tmp_path: Path, real_fixtures: Path) -> None:
    out = run_capture(
        stub_dir,
        tmp_path,
        real_fixtures,
        H100_MIG,
        process_env={"CUDA_VISIBLE_DEVICES": "MIG-00000001-0000-0000-0000-000000000001"},
    )
    assert out["state"] == "ok", out["message"]
    facts = out["facts"]
    assert facts["hardware.gpu.count"] == 1
    assert facts["hardware.gpu.product"] == "h100-80gb"
    assert facts["hardware.gpu.mig_mode"] == "enabled"
    assert facts["hardware.gpu.mig_profiles"] == ["2g.20gb"]
    assert facts["hardware.gpu.memory_bytes"] == 20096 * MIB
    assert facts["hardware.gpu.0.mig_uuid"] == "MIG-00000001-0000-0000-0000-000000000001"
    assert "hardware.gpu.nvlink_links" not in facts  # NVLink is not asked in MIG mode
    assert "gpu_utilization_ratio" not in out["observations"]  # N/A in the capture under MIG


def test_h100_mig_without_a_selection_lists_every_instance(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    out = run_capture(stub_dir, tmp_path, real_fixtures, H100_MIG)
    assert out["facts"]["hardware.gpu.mig_profiles"] == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]


def test_l40s_has_no_mig_and_no_nvlink(stub_dir: Path, tmp_path: Path, real_fixtures: Path) -> None:
    out = run_capture(stub_dir, tmp_path, real_fixtures, L40S)
    assert out["state"] == "ok", out["message"]
    facts = out["facts"]
    assert (facts["hardware.gpu.product"], facts["hardware.gpu.architecture"]) == ("l40s-48gb", "ada")
    assert facts["hardware.gpu.compute_capability"] == "8.9"
    assert facts["hardware.gpu.nvlink_links"] == 0
    assert "hardware.gpu.mig_mode" not in facts  # N/A: the call is not supported, only that fact is lost
    assert facts["hardware.gpu.persistence_mode"] == "disabled"
    assert facts["hardware.gpu.power_limit_watts"] == 350.0
    assert facts["hardware.driver_version"] == "595.80"
    assert out["observations"]["gpu_utilization_ratio"] == [1.0, "1"]
    assert "GPU 0 MIG mode: not supported" in out["message"]


@pytest.mark.parametrize(
    ("capture", "product", "profiles", "pcie"),
    [
        (A100, "a100-80gb", ["1g.20gb"] * 4, "gen4 x16"),
        (A100_MIG, "a100-40gb", ["3g.20gb", "3g.20gb"], "gen4 x16"),
        (T4, "t4-16gb", None, "gen3 x16"),
    ],
)
def test_xml_captures(
    stub_dir: Path,
    tmp_path: Path,
    real_fixtures: Path,
    capture: str,
    product: str,
    profiles: list[str] | None,
    pcie: str,
) -> None:
    out = run_capture(stub_dir, tmp_path, real_fixtures, capture)
    assert out["state"] == "ok", out["message"]
    facts = out["facts"]
    assert facts["hardware.gpu.product"] == product
    assert facts.get("hardware.gpu.mig_profiles") == profiles
    assert facts["hardware.gpu.pcie_link"] == pcie
    assert facts["hardware.gpu.compute_capability"] == XML_COMPUTE_CAPABILITY[capture]


def test_t4_reports_its_degraded_current_link_in_provenance_not_in_the_fact(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    m, cc = machine(real_fixtures, T4)
    assert m.gpus[0].values["pcie_width_cur"] == "8"  # the capture: x8 now, x16 max
    out = probe(stub_dir, tmp_path, data_file(m, cc))
    assert out["facts"]["hardware.gpu.pcie_link"] == "gen3 x16"
    assert out["facts"]["hardware.cuda_driver_version"] == "11.7"


def test_init_failure_is_unavailable_with_nvmls_message(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    out = run_capture(stub_dir, tmp_path, real_fixtures, H100, STUB_NVML_INIT_ERROR="9")
    assert out["state"] == "unavailable"
    assert out["message"] == "NVML: Driver Not Loaded"
    assert out["facts"] == {}


def test_unsupported_call_loses_only_its_fact(stub_dir: Path, tmp_path: Path, real_fixtures: Path) -> None:
    out = run_capture(
        stub_dir,
        tmp_path,
        real_fixtures,
        H100,
        STUB_NVML_UNSUPPORTED="nvmlDeviceGetCudaComputeCapability,nvmlDeviceGetUtilizationRates,nvmlDeviceGetEnforcedPowerLimit",
    )
    assert out["state"] == "ok"
    facts = out["facts"]
    assert "hardware.gpu.compute_capability" not in facts
    assert "hardware.gpu.power_limit_watts" not in facts
    assert facts["hardware.gpu.power_default_limit_watts"] == 700.0
    assert facts["hardware.gpu.product"] == "h100-80gb"
    assert list(out["observations"]) == ["gpu_memory_used_bytes"]
    assert "GPU 0 compute capability: not supported" in out["message"]
    assert out["after"] == "Uninitialized"


def test_visible_devices_pick_from_a_mixed_node(stub_dir: Path, tmp_path: Path, real_fixtures: Path) -> None:
    h100, _ = machine(real_fixtures, H100)
    l40s, _ = machine(real_fixtures, L40S)
    node = copy.deepcopy(h100)
    node.gpus = [
        copy.deepcopy(h100.gpus[0]),
        copy.deepcopy(l40s.gpus[0]),
        copy.deepcopy(h100.gpus[0]),
        copy.deepcopy(l40s.gpus[0]),
    ]
    for i, gpu in enumerate(node.gpus):
        gpu.values["uuid"] = f"GPU-00000000-0000-0000-0000-00000000000{i}"
    out = probe(
        stub_dir,
        tmp_path,
        data_file(node),
        {"CUDA_VISIBLE_DEVICES": "3,GPU-00000000-0000-0000-0000-000000000000"},
    )
    assert out["state"] == "ok", out["message"]
    facts = out["facts"]
    assert facts["hardware.gpu.count"] == 2
    assert facts["hardware.gpu.product"] == ["l40s-48gb", "h100-80gb"]
    assert facts["hardware.gpu.0.uuid"].endswith("000000000003")
    assert facts["hardware.gpu.1.uuid"].endswith("000000000000")


def test_capture_parser_reads_the_real_values(real_fixtures: Path) -> None:
    m, _ = machine(real_fixtures, H100_MIG)
    assert (m.driver, m.cuda) == ("590.48.01", 13010)
    gpu = m.gpus[0]
    assert gpu.values["mig_current"] == "1" and gpu.values["power_mw"] == "700000"
    assert [(g.profile, g.gi, g.mem_total_mib) for g in gpu.migs] == [
        ("3g.40gb", 2, 40448),
        ("2g.20gb", 3, 20096),
        ("1g.10gb", 9, 9984),
        ("1g.10gb", 10, 9984),
    ]
