"""The NVML source: which GPUs the inference process runs on, as the NVIDIA driver reports them.

NVML calls block (and can take seconds on a busy or failing GPU), so ``read_nvml`` runs in a
worker thread and always ends with ``nvmlShutdown``. Reading is kept apart from deciding: the
pure ``select_devices`` applies the process's ``NVIDIA_VISIBLE_DEVICES`` and
``CUDA_VISIBLE_DEVICES`` to what NVML sees, and the pure ``reading_to_result`` turns the devices
into facts and observations. No driver or library here is *unavailable*, not an error; one
unsupported call loses only its own fact. MIG instances, ECC, power and links come later; a
``DeviceReading`` field and a line in ``read_device`` each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml

from agent.errors import SourceUnavailable
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.facts import FactValue, Observation, SourceState

log = logging.getLogger(__name__)

NAME = "nvml"
METHOD = "nvml"

T = TypeVar("T")


@dataclass
class DeviceReading:
    """One device as NVML reports it; None where the call failed or is not supported."""

    index: int  # NVML's index, as the agent sees the devices
    uuid: str | None = None
    name: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None
    compute_capability: tuple[int, int] | None = None
    utilization_gpu_percent: int | None = None


@dataclass
class NvmlReading:
    devices: list[DeviceReading] = field(default_factory=list)
    driver_version: str | None = None
    cuda_driver_version: int | None = None
    notes: list[str] = field(default_factory=list)  # unsupported calls: no fact, no failure
    problems: list[str] = field(default_factory=list)  # failed calls: the result is an error


class NvmlUnavailable(SourceUnavailable):
    """nvmlInit failed: no library, no driver, no permission. The message is NVML's own."""


# --- reading (blocking) ----------------------------------------------------------------------------

_UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")


def _is_unsupported(e: Exception) -> bool:
    return any(isinstance(e, getattr(pynvml, n, ())) for n in _UNSUPPORTED)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _call(reading: NvmlReading, what: str, fn: Callable[..., T], *args: Any) -> T | None:
    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        if _is_unsupported(e):
            reading.notes.append(f"{what}: not supported ({e})")
        else:
            reading.problems.append(f"{what}: {e}")
        return None


def read_device(reading: NvmlReading, index: int) -> DeviceReading:
    dev = DeviceReading(index)
    handle = _call(reading, f"GPU {index} handle", pynvml.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return dev
    where = f"GPU {index}"
    uuid = _call(reading, f"{where} UUID", pynvml.nvmlDeviceGetUUID, handle)
    dev.uuid = _text(uuid) if uuid is not None else None
    name = _call(reading, f"{where} name", pynvml.nvmlDeviceGetName, handle)
    dev.name = _text(name) if name is not None else None
    mem = _call(reading, f"{where} memory", pynvml.nvmlDeviceGetMemoryInfo, handle)
    if mem is not None:
        dev.memory_total, dev.memory_used = int(mem.total), int(mem.used)
    cc = _call(reading, f"{where} compute capability", pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    if cc is not None:
        dev.compute_capability = (int(cc[0]), int(cc[1]))
    util = _call(reading, f"{where} utilization", pynvml.nvmlDeviceGetUtilizationRates, handle)
    if util is not None:
        dev.utilization_gpu_percent = int(util.gpu)
    return dev


def read_nvml() -> NvmlReading:
    """Everything the source reports, for every device NVML sees. Blocking; run it in a thread."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise NvmlUnavailable(str(e)) from e
    try:
        reading = NvmlReading()
        driver = _call(reading, "driver version", pynvml.nvmlSystemGetDriverVersion)
        reading.driver_version = _text(driver) if driver is not None else None
        reading.cuda_driver_version = _call(
            reading, "CUDA driver version", pynvml.nvmlSystemGetCudaDriverVersion
        )
        count = _call(reading, "device count", pynvml.nvmlDeviceGetCount)
        for index in range(count or 0):
            reading.devices.append(read_device(reading, index))
        return reading
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as e:
            # The facts are already read; a failed shutdown only leaks a handle in this process.
            log.warning("nvmlShutdown failed: %s", e)


# --- deciding (pure) -------------------------------------------------------------------------------

_NONE_VALUES = ("", "none", "void")


def _entries(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _match(devices: Sequence[DeviceReading], entry: str) -> DeviceReading | None:
    """A device by UUID (a unique prefix is enough, as CUDA accepts) or None."""
    hits = [d for d in devices if d.uuid is not None and d.uuid.startswith(entry)]
    return hits[0] if len(hits) == 1 else None


def select_devices(
    devices: Sequence[DeviceReading], env: Mapping[str, str]
) -> tuple[list[DeviceReading], list[str]]:
    """The devices the process can use, in its CUDA order, with notes for entries that matched none.

    ``NVIDIA_VISIBLE_DEVICES`` (what the container runtime gave the container) names host indices
    or UUIDs; ``CUDA_VISIBLE_DEVICES`` then names indices into that set, or UUIDs.
    """
    notes: list[str] = []
    chosen = _apply_nvidia_visible(list(devices), env.get("NVIDIA_VISIBLE_DEVICES"), notes)
    chosen = _apply_cuda_visible(chosen, env.get("CUDA_VISIBLE_DEVICES"), notes)
    return chosen, notes


def _apply_nvidia_visible(
    devices: list[DeviceReading], value: str | None, notes: list[str]
) -> list[DeviceReading]:
    if value is None or value.strip().lower() == "all":
        return devices
    if value.strip().lower() in _NONE_VALUES:
        return []
    wanted = _entries(value)
    by_index = {d.index: d for d in devices}
    picked: list[DeviceReading] = []
    missing: list[str] = []
    for entry in wanted:
        dev = by_index.get(int(entry)) if entry.isdigit() else _match(devices, entry)
        if dev is None:
            missing.append(entry)
        elif dev not in picked:
            picked.append(dev)
    if missing and all(e.isdigit() for e in wanted) and len(wanted) == len(devices):
        # Host indices that do not fit, but as many GPUs as named: the agent runs inside the
        # process's own container, which sees exactly its GPUs, renumbered from 0.
        return devices
    notes.extend(f"NVIDIA_VISIBLE_DEVICES entry {e!r} matches no GPU the agent sees" for e in missing)
    return picked


def _apply_cuda_visible(
    devices: list[DeviceReading], value: str | None, notes: list[str]
) -> list[DeviceReading]:
    if value is None:
        return devices
    picked: list[DeviceReading] = []
    for entry in _entries(value):
        dev: DeviceReading | None
        if entry.lstrip("-").isdigit():
            i = int(entry)
            if not 0 <= i < len(devices):
                break  # CUDA ignores this entry and everything after it
            dev = devices[i]
        elif entry.startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r}: MIG devices are not resolved yet")
            continue
        else:
            dev = _match(devices, entry)
            if dev is None:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no visible GPU")
                break
        if dev not in picked:
            picked.append(dev)
    return picked


def format_cuda_version(v: int) -> str:
    """NVML's integer CUDA version as CUDA writes it: 12040 → "12.4"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _one_or_list(values: Sequence[T]) -> FactValue | None:
    if not values:
        return None
    if all(v == values[0] for v in values):
        return values[0]  # type: ignore[return-value]  # T is str or int here
    return list(values)  # type: ignore[arg-type]


def reading_to_result(reading: NvmlReading, env: Mapping[str, str], source: str = NAME) -> SourceResult:
    devices, notes = select_devices(reading.devices, env)
    b = FactBuilder(source)
    b.add("hardware.gpu.count", len(devices), METHOD, "devices visible to the process")
    selected = ", ".join(str(d.index) for d in devices)
    detail = f"NVML device(s) {selected}" if devices else "no device"
    for key, values in (
        ("hardware.gpu.product", [d.name for d in devices if d.name is not None]),
        ("hardware.gpu.memory_bytes", [d.memory_total for d in devices if d.memory_total is not None]),
        (
            "hardware.gpu.compute_capability",
            [f"{d.compute_capability[0]}.{d.compute_capability[1]}" for d in devices if d.compute_capability],
        ),
    ):
        value = _one_or_list(values)
        if value is not None:
            b.add(key, value, METHOD, detail)
    if reading.driver_version is not None:
        b.add("hardware.driver_version", reading.driver_version, METHOD, "nvmlSystemGetDriverVersion")
    if reading.cuda_driver_version is not None:
        b.add(
            "hardware.cuda_driver_version",
            format_cuda_version(reading.cuda_driver_version),
            METHOD,
            f"nvmlSystemGetCudaDriverVersion = {reading.cuda_driver_version}",
        )
    for i, d in enumerate(devices):
        # i is the process's CUDA ordinal (cuda:i), which is what its logs and errors name.
        if d.uuid is not None:
            b.add(f"hardware.gpu.{i}.uuid", d.uuid, METHOD, f"NVML device {d.index}")
    observations: list[Observation] = []
    utils = [d.utilization_gpu_percent for d in devices if d.utilization_gpu_percent is not None]
    if utils:
        observations.append(Observation("gpu_utilization_ratio", sum(utils) / len(utils) / 100.0, "1"))
    used = [d.memory_used for d in devices if d.memory_used is not None]
    if used:
        observations.append(Observation("gpu_memory_used_bytes", float(sum(used)), "By"))
    messages = reading.problems + notes + reading.notes
    state = SourceState.ERROR if reading.problems else SourceState.OK
    return SourceResult(state, "; ".join(messages), b.facts, observations)


class NvmlSource:
    """Reads the GPUs through the real NVML library (``libnvidia-ml.so.1``)."""

    name = NAME

    def __init__(self, reader: Callable[[], NvmlReading] = read_nvml) -> None:
        self.reader = reader

    async def collect(self, ctx: CollectContext) -> SourceResult:
        env: Mapping[str, str] = ctx.process.env if ctx.process is not None else {}
        try:
            reading = await asyncio.to_thread(self.reader)
        except NvmlUnavailable as e:
            return SourceResult.unavailable(f"NVML: {e}")
        return reading_to_result(reading, env, self.name)
