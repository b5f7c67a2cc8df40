"""The NVML source: the no-GPU path through the real pynvml, device selection, and facts from readings."""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml
import pytest

from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo
from agent.sources.nvml import (
    DeviceReading,
    MigReading,
    NvmlReading,
    NvmlSource,
    NvmlUnavailable,
    _call,
    format_cuda_version,
    reading_to_result,
    select_devices,
)
from skewwatch.core.facts import SourceState

H100 = "NVIDIA H100 80GB HBM3"
MIB = 1024 * 1024


def _nvml_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def _dev(i: int, name: str = H100, **kw: Any) -> DeviceReading:
    base: dict[str, Any] = {
        "uuid": f"GPU-{i:08d}-aaaa-bbbb-cccc-dddddddddddd",
        "name": name,
        "memory_total": 81559 * MIB,
        "memory_used": 479 * MIB,
        "compute_capability": (9, 0),
        "utilization_gpu_percent": 50,
    }
    base.update(kw)
    return DeviceReading(index=i, **base)


def _reading(n: int = 2, **kw: Any) -> NvmlReading:
    return NvmlReading(
        devices=[_dev(i, **kw) for i in range(n)], driver_version="590.48.01", cuda_driver_version=13010
    )


def _indices(devices: list[DeviceReading]) -> list[int]:
    return [d.index for d in devices]


# --- the real library, absent here ----------------------------------------------------------------


@pytest.mark.skipif(_nvml_loadable(), reason="libnvidia-ml.so.1 is present: this is the no-GPU path")
async def test_without_nvml_the_source_is_unavailable_with_nvmls_message() -> None:
    ctx = CollectContext(settings=AgentSettings())
    result = await NvmlSource().collect(ctx)
    assert result.state is SourceState.UNAVAILABLE
    assert result.message == "NVML: NVML Shared Library Not Found"
    assert result.facts == []


async def test_unavailable_reader_is_unavailable_not_error() -> None:
    def reader() -> NvmlReading:
        raise NvmlUnavailable("Driver Not Loaded")

    result = await NvmlSource(reader).collect(CollectContext(settings=AgentSettings()))
    assert result.state is SourceState.UNAVAILABLE
    assert "Driver Not Loaded" in result.message


def test_unsupported_call_loses_only_its_own_value() -> None:
    reading = NvmlReading()

    def unsupported() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def lost() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    assert _call(reading, "GPU 0 utilization", unsupported) is None
    assert reading.notes and "not supported" in reading.notes[0]
    assert reading.problems == []
    assert _call(reading, "GPU 1 memory", lost) is None
    assert reading.problems and reading.problems[0].startswith("GPU 1 memory:")
    assert _call(reading, "fine", lambda: 7) == 7


# --- facts from a reading -------------------------------------------------------------------------


def test_uniform_devices_give_scalar_facts() -> None:
    result = reading_to_result(_reading(2), {})
    assert result.state is SourceState.OK
    facts = {f.key: f.value for f in result.facts}
    assert facts == {
        "hardware.gpu.count": 2,
        "hardware.gpu.product": "h100-80gb",  # the class, comparable with ModelSpec accelerator.type
        "hardware.gpu.name": H100,
        "hardware.gpu.form_factor": "sxm",
        "hardware.gpu.architecture": "hopper",
        "hardware.gpu.memory_bytes": 81559 * MIB,
        "hardware.gpu.compute_capability": "9.0",
        "hardware.driver_version": "590.48.01",
        "hardware.cuda_driver_version": "13.1",
        "hardware.gpu.0.uuid": "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
        "hardware.gpu.1.uuid": "GPU-00000001-aaaa-bbbb-cccc-dddddddddddd",
    }
    assert all(f.provenance.method == "nvml" for f in result.facts)
    obs = {o.name: (o.value, o.unit) for o in result.observations}
    assert obs == {"gpu_utilization_ratio": (0.5, "1"), "gpu_memory_used_bytes": (2 * 479.0 * MIB, "By")}


def test_mixed_products_are_a_list() -> None:
    reading = _reading(1)
    reading.devices.append(
        _dev(1, name="NVIDIA A100-SXM4-40GB", memory_total=40960 * MIB, compute_capability=(8, 0))
    )
    facts = {f.key: f.value for f in reading_to_result(reading, {}).facts}
    assert facts["hardware.gpu.product"] == ["h100-80gb", "a100-40gb"]
    assert facts["hardware.gpu.name"] == [H100, "NVIDIA A100-SXM4-40GB"]
    assert facts["hardware.gpu.memory_bytes"] == [81559 * MIB, 40960 * MIB]
    assert facts["hardware.gpu.compute_capability"] == ["9.0", "8.0"]


def test_unknown_values_drop_only_their_facts() -> None:
    reading = _reading(1, utilization_gpu_percent=None, compute_capability=None)
    reading.notes.append("GPU 0 utilization: not supported (Not Supported)")
    result = reading_to_result(reading, {})
    assert result.state is SourceState.OK
    keys = {f.key for f in result.facts}
    assert "hardware.gpu.compute_capability" not in keys
    assert "hardware.gpu.product" in keys
    assert [o.name for o in result.observations] == ["gpu_memory_used_bytes"]
    assert "not supported" in result.message


def test_failed_call_makes_an_error_with_the_other_facts() -> None:
    reading = _reading(1)
    reading.problems.append("GPU 0 memory: GPU is lost")
    result = reading_to_result(reading, {})
    assert result.state is SourceState.ERROR
    assert "GPU is lost" in result.message
    assert any(f.key == "hardware.gpu.product" for f in result.facts)


@pytest.mark.parametrize(
    ("raw", "text"), [(12040, "12.4"), (13010, "13.1"), (11080, "11.8"), (12000, "12.0")]
)
def test_cuda_version_format(raw: int, text: str) -> None:
    assert format_cuda_version(raw) == text


# --- which devices the process uses ---------------------------------------------------------------


def test_no_env_selects_all() -> None:
    devices = _reading(4).devices
    assert _indices(select_devices(devices, {})[0]) == [0, 1, 2, 3]


def test_cuda_visible_indices_reorder_and_stop_at_invalid() -> None:
    devices = _reading(4).devices
    assert _indices(select_devices(devices, {"CUDA_VISIBLE_DEVICES": "2,0"})[0]) == [2, 0]
    assert _indices(select_devices(devices, {"CUDA_VISIBLE_DEVICES": "1,7,3"})[0]) == [1]
    assert select_devices(devices, {"CUDA_VISIBLE_DEVICES": ""})[0] == []
    assert select_devices(devices, {"CUDA_VISIBLE_DEVICES": "-1"})[0] == []


def test_cuda_visible_uuid_prefix() -> None:
    devices = _reading(4).devices
    chosen, notes = select_devices(devices, {"CUDA_VISIBLE_DEVICES": "GPU-00000003,GPU-00000001-aaaa"})
    assert _indices(chosen) == [3, 1]
    assert notes == []


def test_nvidia_visible_uuids_then_cuda_indices_into_them() -> None:
    devices = _reading(4).devices
    env = {
        "NVIDIA_VISIBLE_DEVICES": f"{devices[3].uuid},{devices[1].uuid}",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    assert _indices(select_devices(devices, env)[0]) == [1]


def test_nvidia_visible_host_indices_when_agent_sees_all() -> None:
    devices = _reading(8).devices
    assert _indices(select_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "6,7"})[0]) == [6, 7]


def test_nvidia_visible_host_indices_inside_the_process_container() -> None:
    # The container got host GPUs 5 and 6; inside it NVML numbers them 0 and 1.
    devices = _reading(2).devices
    chosen, notes = select_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "5,6"})
    assert _indices(chosen) == [0, 1]
    assert notes == []


def test_nvidia_visible_none_and_all() -> None:
    devices = _reading(2).devices
    assert select_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "void"})[0] == []
    assert _indices(select_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "all"})[0]) == [0, 1]


def test_unmatched_uuid_is_noted() -> None:
    devices = _reading(2).devices
    chosen, notes = select_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "GPU-ffffffff"})
    assert chosen == []
    assert "GPU-ffffffff" in notes[0]


async def test_source_uses_the_process_env() -> None:
    reading = _reading(4)
    process = ProcessInfo(pid=1, engine="vllm", argv=(), env={"CUDA_VISIBLE_DEVICES": "3"})
    ctx = CollectContext(settings=AgentSettings(), process=process)
    result = await NvmlSource(lambda: reading).collect(ctx)
    facts = {f.key: f.value for f in result.facts}
    assert facts["hardware.gpu.count"] == 1
    assert facts["hardware.gpu.0.uuid"] == reading.devices[3].uuid


def test_mig_uuid_in_cuda_visible_devices_selects_that_slice() -> None:
    reading = _reading(1)
    gpu = reading.devices[0]
    gpu.mig_mode = (1, 1)
    gpu.migs = [
        MigReading(0, "MIG-aaaa", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40448 * MIB, 26 * MIB, 2, 0),
        MigReading(1, "MIG-bbbb", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 9984 * MIB, 9 * MIB, 9, 0),
    ]
    result = reading_to_result(reading, {"CUDA_VISIBLE_DEVICES": "MIG-bbbb"})
    facts = {f.key: f.value for f in result.facts}
    assert facts["hardware.gpu.count"] == 1
    assert facts["hardware.gpu.product"] == "h100-80gb"
    assert facts["hardware.gpu.mig_mode"] == "enabled"
    assert facts["hardware.gpu.mig_profiles"] == ["1g.10gb"]
    assert facts["hardware.gpu.memory_bytes"] == 9984 * MIB  # the slice, not the whole GPU
    assert facts["hardware.gpu.0.mig_uuid"] == "MIG-bbbb"
    old_style = reading_to_result(reading, {"CUDA_VISIBLE_DEVICES": f"MIG-{gpu.uuid}/2/0"})
    assert {f.key: f.value for f in old_style.facts}["hardware.gpu.mig_profiles"] == ["3g.40gb"]
    missing = reading_to_result(reading, {"CUDA_VISIBLE_DEVICES": "MIG-cccc"})
    assert "'MIG-cccc' matches no MIG device" in missing.message
