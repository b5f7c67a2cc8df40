"""Pure parsers of real nvidia-smi captures into the stub library's data file.

Two capture formats: the nvidia_gpu_exporter text captures (``nvidia-smi -q``, ``-L``,
``nvlink -s`` and ``--query-gpu`` sections) and ``nvidia-smi -q -x`` XML. What a capture says
"N/A" for, or does not say, is left out, so the stub answers NOT_SUPPORTED for it. Two values are
derived where the capture lacks them, and say so: a MIG profile name from the instance's SM count
and memory (XML has neither names nor MIG UUIDs), and a MIG UUID made from its GPU's UUID.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

MIB = 1024 * 1024
# NVML's architecture numbers (nvml.h NVML_DEVICE_ARCH_*).
ARCH = {
    "kepler": 2,
    "maxwell": 3,
    "pascal": 4,
    "volta": 5,
    "turing": 6,
    "ampere": 7,
    "ada lovelace": 8,
    "hopper": 9,
    "blackwell": 10,
}
COMPUTE_MODE = {"default": 0, "exclusive_thread": 1, "prohibited": 2, "exclusive_process": 3}
# SMs per MIG compute slice, to name XML captures' profiles as nvidia-smi -L does.
SM_PER_SLICE = {"a100": 14, "a30": 14, "h100": 16, "h200": 16}


@dataclass
class MigDevice:
    gi: int
    ci: int
    mem_total_mib: int
    mem_used_mib: int
    profile: str | None = None
    uuid: str | None = None
    sm_count: int | None = None


@dataclass
class Gpu:
    values: dict[str, str] = field(default_factory=dict)  # stub keys without the d<i>. prefix
    migs: list[MigDevice] = field(default_factory=list)


@dataclass
class Machine:
    driver: str
    cuda: int
    gpus: list[Gpu]


def _cuda(text: str) -> int:
    major, minor = text.strip().split(".")[:2]
    return int(major) * 1000 + int(minor) * 10


def _mib(text: str | None) -> int | None:
    m = re.match(r"^\s*(\d+)\s*MiB", text or "")
    return int(m.group(1)) if m else None


def _enabled(text: str | None) -> str | None:
    t = (text or "").strip().lower()
    return {"enabled": "1", "disabled": "0"}.get(t)


def _watts_mw(text: str | None) -> str | None:
    m = re.match(r"^\s*([\d.]+)\s*W", text or "")
    return str(round(float(m.group(1)) * 1000)) if m else None


def _int(text: str | None) -> str | None:
    m = re.match(r"^\s*(\d+)", text or "")
    return m.group(1) if m else None


def _set(values: dict[str, str], key: str, value: str | None) -> None:
    if value is not None:
        values[key] = value


def profile_name(product: str, sm_count: int | None, mem_mib: int) -> str | None:
    """``3g.40gb``: compute slices from the SM count, memory rounded to whole GB (derived)."""
    model = next((m for m in SM_PER_SLICE if m in product.lower()), None)
    if model is None or sm_count is None:
        return None
    return f"{sm_count // SM_PER_SLICE[model]}g.{round(mem_mib / 1024)}gb"


# --- the text capture ---------------------------------------------------------------------------------


def section(text: str, title: str) -> str:
    """The body of the capture section whose header line is ``# <title>``."""
    m = re.search(r"^# " + re.escape(title) + r"\n(?:#.*\n)*", text, re.MULTILINE)
    if m is None:
        return ""
    end = text.find("\n####", m.end())
    return text[m.end() : end if end >= 0 else len(text)]


def _tree(block: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, value) for every ``Name : value`` line, headings taken from indentation."""
    out: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        name, sep, value = line.strip().partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(s for _, s in stack), name.strip())
        if sep:
            out.append((path, value.strip()))
        else:
            stack.append((indent, name.strip()))
    return out


def _first(tree: list[tuple[tuple[str, ...], str]], *path: str) -> str | None:
    for p, v in tree:
        if p[-len(path) :] == path and "MIG Device" not in p:
            return None if v.startswith("N/A") else v
    return None


def parse_text_capture(text: str) -> Machine:
    query = section(text, "idle :: query (-q)")
    driver = re.search(r"^Driver Version\s*:\s*(\S+)", query, re.MULTILINE)
    cuda = re.search(r"^CUDA Version\s*:\s*(\S+)", query, re.MULTILINE)
    assert driver and cuda, "no -q section in the capture"
    blocks = re.split(r"^GPU [0-9A-Fa-f:.]+\n", query, flags=re.MULTILINE)[1:]
    listing = section(text, "capabilities :: list (-L)")
    nvlink = section(text, "capabilities :: nvlink -s")
    csv = section(text, "idle :: query-gpu (csv, what the exporter parses)").strip().splitlines()
    caps: list[str] = []
    if len(csv) >= 2:
        header = [h.strip() for h in csv[0].split(",")]
        if "compute_cap" in header:
            col = header.index("compute_cap")
            caps = [row.split(",")[col].strip() for row in csv[1:]]
    gpus = []
    for i, block in enumerate(blocks):
        tree = _tree(block)
        v: dict[str, str] = {}
        _set(v, "name", _first(tree, "Product Name"))
        _set(v, "uuid", _first(tree, "GPU UUID"))
        total, used = (
            _mib(_first(tree, "FB Memory Usage", "Total")),
            _mib(_first(tree, "FB Memory Usage", "Used")),
        )
        if total is not None and used is not None:
            # nvidia-smi's "Used" leaves out the driver's "Reserved"; NVML's used includes it.
            reserved = _mib(_first(tree, "FB Memory Usage", "Reserved")) or 0
            v["mem_total"], v["mem_used"] = str(total * MIB), str((used + reserved) * MIB)
        arch = (_first(tree, "Product Architecture") or "").lower()
        _set(v, "arch", str(ARCH[arch]) if arch in ARCH else None)
        _set(v, "cc", caps[i] if i < len(caps) and re.match(r"^\d+\.\d+$", caps[i]) else None)
        _set(v, "util", _int(_first(tree, "Utilization", "GPU")))
        _set(v, "persistence", _enabled(_first(tree, "Persistence Mode")))
        _set(v, "mig_current", _enabled(_first(tree, "MIG Mode", "Current")))
        _set(v, "mig_pending", _enabled(_first(tree, "MIG Mode", "Pending")))
        _set(v, "ecc_current", _enabled(_first(tree, "ECC Mode", "Current")))
        _set(v, "ecc_pending", _enabled(_first(tree, "ECC Mode", "Pending")))
        _set(v, "power_mw", _watts_mw(_first(tree, "GPU Power Readings", "Current Power Limit")))
        _set(v, "power_default_mw", _watts_mw(_first(tree, "GPU Power Readings", "Default Power Limit")))
        mode = (_first(tree, "Compute Mode") or "").lower().replace(" ", "_")
        _set(v, "compute_mode", str(COMPUTE_MODE[mode]) if mode in COMPUTE_MODE else None)
        _set(v, "pcie_gen_max", _int(_first(tree, "PCIe Generation", "Max")))
        _set(v, "pcie_gen_cur", _int(_first(tree, "PCIe Generation", "Current")))
        _set(v, "pcie_width_max", _int(_first(tree, "Link Width", "Max")))
        _set(v, "pcie_width_cur", _int(_first(tree, "Link Width", "Current")))
        links = re.findall(rf"^GPU {i}:.*\n((?:\s+Link \d+:.*\n)+)", nvlink, re.MULTILINE)
        if links:
            v["nvlinks"] = str(len(re.findall(r"Link \d+:", links[0])))
        gpu = Gpu(v)
        mig_blocks = re.split(r"^    MIG Device\n", block, flags=re.MULTILINE)[1:]
        listed = re.findall(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)", listing, re.MULTILINE)
        for j, mb in enumerate(mig_blocks):
            mt = _tree(mb)
            mig = MigDevice(
                gi=int(next(val for p, val in mt if p[-1] == "GPU Instance ID")),
                ci=int(next(val for p, val in mt if p[-1] == "Compute Instance ID")),
                mem_total_mib=_mib(
                    next(val for p, val in mt if p[-2:] == ("Shared FB Memory Usage", "Total"))
                )
                or 0,
                mem_used_mib=_mib(next(val for p, val in mt if p[-2:] == ("Shared FB Memory Usage", "Used")))
                or 0,
            )
            if j < len(listed):
                mig.profile, mig.uuid = listed[j][0], listed[j][2]
            gpu.migs.append(mig)
        gpus.append(gpu)
    return Machine(driver.group(1), _cuda(cuda.group(1)), gpus)


# --- the XML capture ----------------------------------------------------------------------------------


def _x(el: ET.Element, path: str) -> str | None:
    found = el.findtext(path)
    return None if found is None or found.strip().startswith("N/A") else found.strip()


def parse_xml_capture(text: str) -> Machine:
    root = ET.fromstring(text)  # a test fixture from a known upstream repository
    gpus = []
    for g in root.findall("gpu"):
        v: dict[str, str] = {}
        _set(v, "name", _x(g, "product_name"))
        _set(v, "uuid", _x(g, "uuid"))
        total, used = _mib(_x(g, "fb_memory_usage/total")), _mib(_x(g, "fb_memory_usage/used"))
        if total is not None and used is not None:
            reserved = _mib(_x(g, "fb_memory_usage/reserved")) or 0
            v["mem_total"], v["mem_used"] = str(total * MIB), str((used + reserved) * MIB)
        arch = (_x(g, "product_architecture") or "").lower()
        _set(v, "arch", str(ARCH[arch]) if arch in ARCH else None)
        _set(v, "util", _int(_x(g, "utilization/gpu_util")))
        _set(v, "persistence", _enabled(_x(g, "persistence_mode")))
        _set(v, "mig_current", _enabled(_x(g, "mig_mode/current_mig")))
        _set(v, "mig_pending", _enabled(_x(g, "mig_mode/pending_mig")))
        _set(v, "ecc_current", _enabled(_x(g, "ecc_mode/current_ecc")))
        _set(v, "ecc_pending", _enabled(_x(g, "ecc_mode/pending_ecc")))
        power = _x(g, "gpu_power_readings/current_power_limit") or _x(
            g, "power_readings/enforced_power_limit"
        )
        default = _x(g, "gpu_power_readings/default_power_limit") or _x(
            g, "power_readings/default_power_limit"
        )
        _set(v, "power_mw", _watts_mw(power))
        _set(v, "power_default_mw", _watts_mw(default))
        mode = (_x(g, "compute_mode") or "").lower().replace(" ", "_")
        _set(v, "compute_mode", str(COMPUTE_MODE[mode]) if mode in COMPUTE_MODE else None)
        link = "pci/pci_gpu_link_info"
        _set(v, "pcie_gen_max", _int(_x(g, f"{link}/pcie_gen/max_link_gen")))
        _set(v, "pcie_gen_cur", _int(_x(g, f"{link}/pcie_gen/current_link_gen")))
        _set(v, "pcie_width_max", _int(_x(g, f"{link}/link_widths/max_link_width")))
        _set(v, "pcie_width_cur", _int(_x(g, f"{link}/link_widths/current_link_width")))
        gpu = Gpu(v)
        for j, m in enumerate(g.findall("mig_devices/mig_device")):
            gi, ci = _x(m, "gpu_instance_id"), _x(m, "compute_instance_id")
            if gi is None or ci is None:
                continue
            sm = _int(_x(m, "device_attributes/shared/multiprocessor_count"))
            mig = MigDevice(
                int(gi),
                int(ci),
                _mib(_x(m, "fb_memory_usage/total")) or 0,
                _mib(_x(m, "fb_memory_usage/used")) or 0,
                sm_count=int(sm) if sm else None,
            )
            mig.profile = profile_name(v.get("name", ""), mig.sm_count, mig.mem_total_mib)
            mig.uuid = f"MIG-{v.get('uuid', 'GPU-?')[4:-4]}{j:04d}"  # derived: XML names no MIG UUIDs
            gpu.migs.append(mig)
        gpus.append(gpu)
    return Machine(_x(root, "driver_version") or "", _cuda(_x(root, "cuda_version") or "0.0"), gpus)


def data_file(machine: Machine, compute_capability: str | None = None) -> str:
    """The stub's ``key=value`` lines; ``compute_capability`` fills in where the capture lacks it."""
    lines = [f"driver={machine.driver}", f"cuda={machine.cuda}", f"count={len(machine.gpus)}"]
    for i, gpu in enumerate(machine.gpus):
        values = dict(gpu.values)
        if compute_capability is not None:
            values.setdefault("cc", compute_capability)
        if gpu.migs:
            values["mig_count"] = str(len(gpu.migs))
        lines.extend(f"d{i}.{k}={v}" for k, v in values.items())
        for j, mig in enumerate(gpu.migs):
            p = f"d{i}.m{j}."
            name = f"{values.get('name', '')} MIG {mig.profile}" if mig.profile else values.get("name", "")
            lines += [f"{p}name={name}", f"{p}gi={mig.gi}", f"{p}ci={mig.ci}"]
            lines += [f"{p}mem_total={mig.mem_total_mib * MIB}", f"{p}mem_used={mig.mem_used_mib * MIB}"]
            if mig.uuid:
                lines.append(f"{p}uuid={mig.uuid}")
    return "\n".join(lines) + "\n"
