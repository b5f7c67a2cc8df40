"""The NVML source: which GPUs the inference process runs on, as the NVIDIA driver reports them.

NVML calls block (and can take seconds on a busy or failing GPU), so ``read_nvml`` runs in a
worker thread and always ends with ``nvmlShutdown``. Reading is kept apart from deciding: the
pure ``select_devices`` applies the process's ``NVIDIA_VISIBLE_DEVICES`` and
``CUDA_VISIBLE_DEVICES`` to what NVML sees, and the pure ``reading_to_result`` turns the devices
into facts and observations. No driver or library here is *unavailable*, not an error; one
unsupported call loses only its own fact.

``hardware.gpu.product`` is the normalised GPU class (``h100-80gb``, ``skewwatch.core.gpu``), so
it compares with ModelSpec ``accelerator.type`` and node labels; NVML's own name is
``hardware.gpu.name``. With MIG, the process's devices are MIG instances (named by ``MIG-`` UUIDs
in ``CUDA_VISIBLE_DEVICES``): their profiles (``3g.40gb``, ``1c.3g.71gb`` for a compute-instance
split; ``skewwatch.core.gpu.mig_profile_name``) and memory are what it runs on. Values
that move with load or power state (utilisation, memory used, the current PCIe link generation)
are observations or provenance, never facts, so fingerprints do not flap.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pynvml

from agent.errors import SourceUnavailable
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.facts import FactValue, Observation, SourceState
from skewwatch.core.gpu import mig_profile_name, normalise_gpu

log = logging.getLogger(__name__)

NAME = "nvml"
METHOD = "nvml"

T = TypeVar("T")


@dataclass
class MigReading:
    """One MIG instance (a GPU slice a process can be given)."""

    index: int
    uuid: str | None = None
    name: str | None = None  # "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    memory_total: int | None = None
    memory_used: int | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None

    @property
    def profile(self) -> str | None:
        """The canonical profile (``1c.3g.71gb``, ``3g.40gb``, ``1g.18gb+me``), product taken off.

        Every shape NVML names a MIG device with goes through ``mig_profile_name``, so two
        replicas on the same slice report the same value whatever the driver's spelling.
        """
        return mig_profile_name(self.name) if self.name else None


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
    architecture: int | None = None
    mig_mode: tuple[int, int] | None = None  # (current, pending)
    migs: list[MigReading] = field(default_factory=list)
    ecc_mode: tuple[int, int] | None = None  # (current, pending)
    power_limit_mw: int | None = None  # enforced
    power_default_mw: int | None = None
    persistence_mode: int | None = None
    compute_mode: int | None = None
    pcie_max: tuple[int | None, int | None] = (None, None)  # (generation, width)
    pcie_current: tuple[int | None, int | None] = (None, None)
    nvlink_active: int | None = None  # active links; None when NVLink cannot be asked
    selected_migs: list[MigReading] | None = None  # set by select_devices when CUDA names MIG UUIDs


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
    dev.architecture = _call(reading, f"{where} architecture", pynvml.nvmlDeviceGetArchitecture, handle)
    mig = _call(reading, f"{where} MIG mode", pynvml.nvmlDeviceGetMigMode, handle)
    if mig is not None:
        dev.mig_mode = (int(mig[0]), int(mig[1]))
        if dev.mig_mode[0] == 1:
            dev.migs = read_migs(reading, handle, where)
    ecc = _call(reading, f"{where} ECC mode", pynvml.nvmlDeviceGetEccMode, handle)
    if ecc is not None:
        dev.ecc_mode = (int(ecc[0]), int(ecc[1]))
    dev.power_limit_mw = _call(
        reading, f"{where} power limit", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle
    )
    dev.power_default_mw = _call(
        reading, f"{where} default power limit", pynvml.nvmlDeviceGetPowerManagementDefaultLimit, handle
    )
    dev.persistence_mode = _call(
        reading, f"{where} persistence mode", pynvml.nvmlDeviceGetPersistenceMode, handle
    )
    dev.compute_mode = _call(reading, f"{where} compute mode", pynvml.nvmlDeviceGetComputeMode, handle)
    dev.pcie_max = (
        _call(reading, f"{where} max PCIe generation", pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
        _call(reading, f"{where} max PCIe width", pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
    )
    dev.pcie_current = (
        _call(reading, f"{where} PCIe generation", pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle),
        _call(reading, f"{where} PCIe width", pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle),
    )
    if dev.mig_mode is None or dev.mig_mode[0] != 1:  # NVLink queries are refused in MIG mode
        dev.nvlink_active = read_nvlinks(reading, handle, where)
    return dev


def read_migs(reading: NvmlReading, handle: object, where: str) -> list[MigReading]:
    count = _call(reading, f"{where} MIG device count", pynvml.nvmlDeviceGetMaxMigDeviceCount, handle)
    migs: list[MigReading] = []
    for j in range(count or 0):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
        except pynvml.NVMLError as e:
            if isinstance(e, getattr(pynvml, "NVMLError_NotFound", ())):
                continue  # a slot with no instance in it
            reading.problems.append(f"{where} MIG device {j}: {e}")
            continue
        m = MigReading(j)
        w = f"{where} MIG {j}"
        uuid = _call(reading, f"{w} UUID", pynvml.nvmlDeviceGetUUID, mig)
        m.uuid = _text(uuid) if uuid is not None else None
        name = _call(reading, f"{w} name", pynvml.nvmlDeviceGetName, mig)
        m.name = _text(name) if name is not None else None
        mem = _call(reading, f"{w} memory", pynvml.nvmlDeviceGetMemoryInfo, mig)
        if mem is not None:
            m.memory_total, m.memory_used = int(mem.total), int(mem.used)
        m.gpu_instance_id = _call(reading, f"{w} GPU instance", pynvml.nvmlDeviceGetGpuInstanceId, mig)
        m.compute_instance_id = _call(
            reading, f"{w} compute instance", pynvml.nvmlDeviceGetComputeInstanceId, mig
        )
        migs.append(m)
    return migs


def read_nvlinks(reading: NvmlReading, handle: object, where: str) -> int | None:
    """Active NVLinks; links are numbered from 0 and the first refused number ends the list."""
    active = 0
    for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except pynvml.NVMLError as e:
            if link == 0 and not _is_unsupported(e):
                reading.problems.append(f"{where} NVLink: {e}")
                return None
            break  # NotSupported on link 0: a GPU without NVLink, which has 0 links
        active += 1 if state else 0
    return active


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
            found = _match_mig(devices, entry)
            if found is None:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no MIG device")
                break
            _add_mig(picked, *found)
            continue
        else:
            dev = _match(devices, entry)
            if dev is None:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches no visible GPU")
                break
        if dev not in picked:
            picked.append(dev)
    return picked


def _match_mig(devices: Sequence[DeviceReading], entry: str) -> tuple[DeviceReading, MigReading] | None:
    """A MIG device by ``MIG-<uuid>`` (a unique prefix) or the older ``MIG-GPU-<uuid>/<gi>/<ci>``."""
    old = re.match(r"^MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)$", entry)
    hits = []
    for dev in devices:
        for mig in dev.migs:
            if old is not None:
                if (
                    dev.uuid == old.group(1)
                    and mig.gpu_instance_id == int(old.group(2))
                    and mig.compute_instance_id == int(old.group(3))
                ):
                    hits.append((dev, mig))
            elif mig.uuid is not None and mig.uuid.startswith(entry):
                hits.append((dev, mig))
    return hits[0] if len(hits) == 1 else None


def _add_mig(picked: list[DeviceReading], dev: DeviceReading, mig: MigReading) -> None:
    """A MIG instance is its own CUDA device: one entry per instance, carrying its parent GPU."""
    if any(p.selected_migs and p.selected_migs[0] is mig for p in picked):
        return
    picked.append(replace(dev, selected_migs=[mig]))


def _migs_in_use(d: DeviceReading) -> list[MigReading]:
    if d.selected_migs is not None:
        return d.selected_migs
    return d.migs if d.mig_mode is not None and d.mig_mode[0] == 1 else []


def format_cuda_version(v: int) -> str:
    """NVML's integer CUDA version as CUDA writes it: 12040 → "12.4"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _one_or_list(values: Sequence[T]) -> FactValue | None:
    if not values:
        return None
    if all(v == values[0] for v in values):
        return values[0]  # type: ignore[return-value]  # T is str or int here
    return list(values)  # type: ignore[arg-type]


ARCHITECTURES: dict[int, str] = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}
COMPUTE_MODES: dict[int, str] = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def _on_off(v: int | None) -> str | None:
    return None if v is None else ("enabled" if v else "disabled")


def _device_facts(d: DeviceReading) -> dict[str, FactValue]:
    """This CUDA device's facts (a MIG instance reports its slice's memory and profile). Pure."""
    out: dict[str, FactValue] = {}
    migs = d.selected_migs or []
    memory = migs[0].memory_total if migs else d.memory_total
    if d.name is not None:
        gpu = normalise_gpu(d.name, d.memory_total)
        out["hardware.gpu.name"] = d.name
        out["hardware.gpu.product"] = gpu.name if gpu is not None else d.name
        if gpu is not None and gpu.form_factor is not None:
            out["hardware.gpu.form_factor"] = gpu.form_factor
        arch = ARCHITECTURES.get(d.architecture or -1) or (gpu.architecture if gpu is not None else None)
        if arch:
            out["hardware.gpu.architecture"] = arch
    elif d.architecture in ARCHITECTURES:
        out["hardware.gpu.architecture"] = ARCHITECTURES[d.architecture or -1]
    if memory is not None:
        out["hardware.gpu.memory_bytes"] = memory
    if d.compute_capability is not None:
        out["hardware.gpu.compute_capability"] = f"{d.compute_capability[0]}.{d.compute_capability[1]}"
    if d.mig_mode is not None:
        out["hardware.gpu.mig_mode"] = _on_off(d.mig_mode[0])
    if d.ecc_mode is not None:
        out["hardware.gpu.ecc_mode"] = _on_off(d.ecc_mode[0])
    if d.power_limit_mw is not None:
        out["hardware.gpu.power_limit_watts"] = round(d.power_limit_mw / 1000, 2)
    if d.power_default_mw is not None:
        out["hardware.gpu.power_default_limit_watts"] = round(d.power_default_mw / 1000, 2)
    if d.persistence_mode is not None:
        out["hardware.gpu.persistence_mode"] = _on_off(d.persistence_mode)
    if d.compute_mode is not None:
        out["hardware.gpu.compute_mode"] = COMPUTE_MODES.get(d.compute_mode, str(d.compute_mode))
    gen, width = d.pcie_max
    if gen is not None and width is not None:
        # The maximum the link trained to, not the current generation, which drops when idle.
        out["hardware.gpu.pcie_link"] = f"gen{gen} x{width}"
    if d.nvlink_active is not None:
        out["hardware.gpu.nvlink_links"] = d.nvlink_active
    return out


def reading_to_result(reading: NvmlReading, env: Mapping[str, str], source: str = NAME) -> SourceResult:
    devices, notes = select_devices(reading.devices, env)
    b = FactBuilder(source)
    b.add("hardware.gpu.count", len(devices), METHOD, "CUDA devices visible to the process")
    selected = ", ".join(
        str(d.index) + (f" MIG {d.selected_migs[0].index}" if d.selected_migs else "") for d in devices
    )
    detail = f"NVML device(s) {selected}" if devices else "no device"
    per_device = [_device_facts(d) for d in devices]
    keys = sorted({k for facts in per_device for k in facts})
    for key in keys:
        value = _one_or_list([f[key] for f in per_device if key in f])
        if value is not None:
            extra = ""
            if key == "hardware.gpu.pcie_link":
                current = [
                    f"gen{d.pcie_current[0]} x{d.pcie_current[1]}"
                    for d in devices
                    if None not in d.pcie_current
                ]
                extra = f"; max generation and width (now: {', '.join(current) or 'unknown'})"
            b.add(key, value, METHOD, detail + extra)
    profiles = [m.profile or m.name or "unknown" for d in devices for m in _migs_in_use(d)]
    if any(d.mig_mode is not None and d.mig_mode[0] == 1 for d in devices):
        how = "the process's MIG devices" if any(d.selected_migs for d in devices) else "every MIG device"
        listed: list[FactValue] = list(profiles)
        b.add("hardware.gpu.mig_profiles", listed, METHOD, f"{how} on {detail}")
    for d in devices:
        if d.mig_mode is not None and d.mig_mode[0] != d.mig_mode[1]:
            notes.append(f"GPU {d.index}: MIG mode change pending (takes effect on reset)")
        if d.ecc_mode is not None and d.ecc_mode[0] != d.ecc_mode[1]:
            notes.append(f"GPU {d.index}: ECC mode change pending (takes effect on reboot)")
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
        if d.selected_migs and d.selected_migs[0].uuid is not None:
            b.add(f"hardware.gpu.{i}.mig_uuid", d.selected_migs[0].uuid, METHOD, f"NVML device {d.index}")
    observations: list[Observation] = []
    utils = [d.utilization_gpu_percent for d in devices if d.utilization_gpu_percent is not None]
    if utils:
        observations.append(Observation("gpu_utilization_ratio", sum(utils) / len(utils) / 100.0, "1"))
    used = [(d.selected_migs[0].memory_used if d.selected_migs else d.memory_used) for d in devices]
    known = [u for u in used if u is not None]
    if known:
        observations.append(Observation("gpu_memory_used_bytes", float(sum(known)), "By"))
    messages = reading.problems + notes + reading.notes
    state = SourceState.ERROR if reading.problems else SourceState.OK
    return SourceResult(state, "; ".join(messages), b.facts, observations)


class NvmlSource:
    """Reads the GPUs through the real NVML library (``libnvidia-ml.so.1``)."""

    name = NAME
    needs: tuple[str, ...] = ("process",)  # the engine's CUDA_VISIBLE_DEVICES

    def __init__(self, reader: Callable[[], NvmlReading] = read_nvml) -> None:
        self.reader = reader

    async def collect(self, ctx: CollectContext) -> SourceResult:
        env: Mapping[str, str] = ctx.process.env if ctx.process is not None else {}
        try:
            reading = await asyncio.to_thread(self.reader)
        except NvmlUnavailable as e:
            return SourceResult.unavailable(f"NVML: {e}")
        return reading_to_result(reading, env, self.name)
