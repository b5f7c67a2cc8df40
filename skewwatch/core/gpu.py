"""GPU class normaliser: NVML product names, node labels and ModelSpec types to one short class.

"NVIDIA H100 80GB HBM3" → ``h100-80gb``, "NVIDIA A100-SXM4-40GB" → ``a100-40gb``, the GPU feature
discovery label "NVIDIA-A100-SXM4-80GB" → ``a100-80gb``, ModelSpec's ``accelerator.type:
a100-80gb`` → ``a100-80gb``. The class is ``<model>-<memory>gb`` with memory the marketed size:
from the name where it says it, else from NVML's total memory rounded to the nearest size the
model ships with, else the model's only size. The form factor (sxm, pcie, nvl) is reported
apart, since a class compares across form factors but a performance baseline may not.

The table is data: one row per GPU model, in the order they are tried (more specific first).

MIG profile names (``mig_profile_name``) have one canonical form, ``[<C>c.]<G>g.<M>gb[+<ext>…]``,
lowercased, with the product taken off (it is the class of the parent GPU, reported apart). The
compute-instance prefix is kept only for a real split: ``3c.3g.71gb``, a compute instance that is
the whole GPU instance, is the same slice as ``3g.71gb`` and is written so, as ``nvidia-smi -L``
does. Media-extension suffixes are kept, since ``1g.18gb+me`` is another profile than
``1g.18gb``; ``-me`` and the Kubernetes resource spelling ``.me`` become ``+me``, and several are
sorted. This is the spelling of ``nvidia-smi -L``, ``nvidia-smi mig -lgip``/``-lcip``,
mig-parted configs and the device plugin's ``nvidia.com/mig-<profile>`` resources, so the fact
compares with all of them. A name with no profile in it passes through trimmed and lowercased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuModel:
    model: str  # the class prefix, e.g. "h100"
    pattern: str  # regex over the cleaned, lowercased name
    sizes_gb: tuple[int, ...]  # marketed memory sizes this model ships with
    vendor: str = "nvidia"
    architecture: str = ""
    # False where the size in the product name is not the GPU's own memory (GH200 names its LPDDR).
    name_says_memory: bool = True


# More specific rows first: "h100 nvl" before "h100", "a100" before "a10", "l40s" before "l40".
GPU_MODELS: tuple[GpuModel, ...] = (
    GpuModel("gb300", r"\bgb300\b", (279,), architecture="blackwell"),
    GpuModel("gb200", r"\bgb200\b", (186, 192), architecture="blackwell"),
    GpuModel("b300", r"\bb300\b", (279, 288), architecture="blackwell"),
    GpuModel("b200", r"\bb200\b", (180, 192), architecture="blackwell"),
    GpuModel("b100", r"\bb100\b", (192,), architecture="blackwell"),
    GpuModel("rtxpro6000", r"\brtx pro 6000\b", (96,), architecture="blackwell"),
    GpuModel("gh200", r"\bgh200\b", (96, 144), architecture="hopper", name_says_memory=False),
    GpuModel("h200", r"\bh200\b", (141,), architecture="hopper"),
    GpuModel("h100", r"\bh100\b.*\bnvl\b", (94,), architecture="hopper"),
    GpuModel("h100", r"\bh100\b", (80, 94, 64), architecture="hopper"),
    GpuModel("h800", r"\bh800\b", (80,), architecture="hopper"),
    GpuModel("h20", r"\bh20\b", (96, 141), architecture="hopper"),
    GpuModel("a800", r"\ba800\b", (40, 80), architecture="ampere"),
    GpuModel("a100", r"\ba100\b", (40, 80), architecture="ampere"),
    GpuModel("a40", r"\ba40\b", (48,), architecture="ampere"),
    GpuModel("a30", r"\ba30\b", (24,), architecture="ampere"),
    GpuModel("a16", r"\ba16\b", (16,), architecture="ampere"),
    GpuModel("a10g", r"\ba10g\b", (24,), architecture="ampere"),
    GpuModel("a10", r"\ba10\b", (24,), architecture="ampere"),
    GpuModel("a2", r"\ba2\b", (16,), architecture="ampere"),
    GpuModel("rtx6000-ada", r"\brtx 6000 ada\b", (48,), architecture="ada"),
    GpuModel("rtxa6000", r"\brtx a6000\b", (48,), architecture="ampere"),
    GpuModel("l40s", r"\bl40s\b", (48,), architecture="ada"),
    GpuModel("l40", r"\bl40\b", (48,), architecture="ada"),
    GpuModel("l20", r"\bl20\b", (48,), architecture="ada"),
    GpuModel("l4", r"\bl4\b", (24,), architecture="ada"),
    GpuModel("t4", r"\bt4\b", (16,), architecture="turing"),
    GpuModel("v100s", r"\bv100s\b", (32,), architecture="volta"),
    GpuModel("v100", r"\bv100\b", (16, 32), architecture="volta"),
    GpuModel("p100", r"\bp100\b", (12, 16), architecture="pascal"),
    GpuModel("p40", r"\bp40\b", (24,), architecture="pascal"),
    GpuModel("p4", r"\bp4\b", (8,), architecture="pascal"),
    GpuModel("mi355x", r"\bmi355x\b", (288,), vendor="amd", architecture="cdna4"),
    GpuModel("mi325x", r"\bmi325x\b", (256,), vendor="amd", architecture="cdna3"),
    GpuModel("mi300x", r"\bmi300x\b", (192,), vendor="amd", architecture="cdna3"),
    GpuModel("mi250x", r"\bmi250x\b", (128,), vendor="amd", architecture="cdna2"),
    GpuModel("mi250", r"\bmi250\b", (128,), vendor="amd", architecture="cdna2"),
    GpuModel("mi210", r"\bmi210\b", (64,), vendor="amd", architecture="cdna2"),
    GpuModel("gaudi3", r"\bgaudi ?3\b|\bhl-325", (128,), vendor="intel", architecture="gaudi"),
    GpuModel("gaudi2", r"\bgaudi ?2\b|\bhl-225", (96,), vendor="intel", architecture="gaudi"),
)
_COMPILED = tuple((m, re.compile(m.pattern)) for m in GPU_MODELS)
_FORM_FACTORS = (("nvl", r"\bnvl\b"), ("sxm", r"\bsxm\d?\b|\bhbm\d?e?\b"), ("pcie", r"\bpcie\b"))
_MEM_IN_NAME = re.compile(r"\b(\d{1,3})\s?gb\b")
# A MIG profile anywhere in a name: after the start or a separator, an optional "mig" marker,
# [<C>c.]<G>g.<M>gb, then media extensions (+me, -me, .me, +gfx, +me.all). No nested repeats,
# so a search is linear in the (bounded) input.
_MIG_PROFILE = re.compile(
    r"(?:^|(?<=[\s/_(:,=-]))"
    r"(?:mig[\s_:-]*)?"
    r"(?:(?P<c>\d{1,2})\s*c\s*\.\s*)?"
    r"(?P<g>\d{1,2})\s*g\s*\.\s*(?P<m>\d{1,4})\s*gb"
    r"(?P<ext>(?:\s*[+.-]\s*(?:me\.all|me|gfx))*)"
    r"(?![a-z0-9])",
    re.IGNORECASE | re.ASCII,
)
_MIG_EXTENSION = re.compile(r"me\.all|me|gfx", re.IGNORECASE | re.ASCII)
_MIG_MARKER_AT_END = re.compile(r"[\s_:-]*\bmig[\s_:-]*$", re.IGNORECASE | re.ASCII)
MAX_NAME_CHARS = 256
_CLASS = re.compile(r"^([a-z0-9]+(?:-ada)?)-(\d{1,3})gb$")


@dataclass(frozen=True)
class GpuClass:
    """The normalised identity of a GPU model; ``name`` is the class, e.g. ``h100-80gb``."""

    name: str
    model: str
    memory_gb: int | None
    vendor: str
    architecture: str
    form_factor: str | None = None
    mig_profile: str | None = None


@dataclass(frozen=True)
class MigProfile:
    """One MIG slice: ``gpu_slices``g.``memory_gb``gb, split to ``compute_slices`` if smaller."""

    gpu_slices: int
    memory_gb: int
    compute_slices: int | None = None  # None: the compute instance is the whole GPU instance
    extensions: tuple[str, ...] = ()  # sorted: ("me",), ("gfx",), ("me.all",)

    @property
    def gpu_instance(self) -> str:
        """The GPU-instance profile the slice lives in, ``3g.71gb`` (with its extensions)."""
        return f"{self.gpu_slices}g.{self.memory_gb}gb" + "".join(f"+{e}" for e in self.extensions)

    @property
    def name(self) -> str:
        """The canonical profile: ``1c.3g.71gb`` for a split, ``3g.71gb`` or ``1g.18gb+me`` else."""
        split = f"{self.compute_slices}c." if self.compute_slices is not None else ""
        return split + self.gpu_instance


def split_mig_name(name: str) -> tuple[str, MigProfile] | None:
    """``("NVIDIA H200", MigProfile(3, 71, 1))`` for "NVIDIA H200 MIG 1c.3g.71gb"; None without one.

    The first text is what comes before the profile (the product, if the name has one), with a
    trailing "MIG" marker taken off. Never raises; names longer than 256 characters are not read.
    """
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        return None
    found = _MIG_PROFILE.search(name)
    if found is None:
        return None
    g, m = int(found.group("g")), int(found.group("m"))
    c = int(found.group("c")) if found.group("c") is not None else None
    if g < 1 or m < 1 or (c is not None and not 1 <= c <= g):
        return None  # not a slice NVIDIA can make: 0g, 0gb, or more compute than the instance has
    extensions = tuple(sorted({e.lower() for e in _MIG_EXTENSION.findall(found.group("ext"))}))
    profile = MigProfile(g, m, None if c == g else c, extensions)
    product = _MIG_MARKER_AT_END.sub("", name[: found.start()]).strip(" \t\r\n_/:,(=-")
    return product, profile


def mig_profile_name(name: str) -> str:
    """The canonical MIG profile in a profile or MIG device name; other text trimmed, lowercased.

    "NVIDIA H200 MIG 1c.3g.71gb" → ``1c.3g.71gb``, "MIG 2g.35gb" → ``2g.35gb``,
    "A100-SXM4-40GB MIG 3c.3g.20gb" → ``3g.20gb``, "1g.18gb-me" → ``1g.18gb+me``,
    "nvidia.com/mig-1g.5gb.me" → ``1g.5gb+me``.
    """
    found = split_mig_name(name)
    if found is not None:
        return found[1].name
    return " ".join(str(name).split()).lower()


def _clean(name: str) -> str:
    text = name.strip().lower().replace("_", " ")
    text = re.sub(r"^(nvidia|tesla|amd|instinct|intel|habana)[\s-]+", "", text)
    text = re.sub(r"^(nvidia|tesla|amd|instinct)[\s-]+", "", text)
    # Label and ModelSpec spellings use hyphens where NVML uses spaces ("NVIDIA-A100-SXM4-80GB").
    text = re.sub(r"(?<=[a-z0-9])-(?=[a-z0-9])", " ", text)
    return re.sub(r"\s+", " ", text)


def _nearest(sizes: tuple[int, ...], memory_bytes: int) -> int:
    # NVML reports usable memory, a little under the marketed size (81559 MiB for an 80 GB H100).
    gib = memory_bytes / GIB
    return min(sizes, key=lambda s: abs(s - gib))


def normalise_gpu(name: str, memory_bytes: int | None = None) -> GpuClass | None:
    """The GPU class of a product name (NVML, node label or ModelSpec type); None if unknown."""
    if not name or len(name) > MAX_NAME_CHARS:
        return None
    # A MIG device name is the parent's product and the slice's profile; the profile's memory is
    # the slice's, so the class is read from the product alone.
    mig = split_mig_name(name)
    text = _clean(mig[0] if mig is not None else name)
    exact = _CLASS.match(text.replace(" ", "-"))
    for model, rx in _COMPILED:
        if not rx.search(text):
            continue
        base = text
        in_name = [int(g) for g in _MEM_IN_NAME.findall(base)] if model.name_says_memory else []
        if (
            exact
            and exact.group(1) == model.model
            and (model.name_says_memory or int(exact.group(2)) in model.sizes_gb)
        ):
            memory: int | None = int(exact.group(2))
        elif in_name:
            memory = in_name[-1]
        elif memory_bytes:
            memory = _nearest(model.sizes_gb, memory_bytes)
        elif len(model.sizes_gb) == 1:
            memory = model.sizes_gb[0]
        else:
            memory = None
        form = next((f for f, pat in _FORM_FACTORS if re.search(pat, base)), None)
        label = f"{model.model}-{memory}gb" if memory is not None else model.model
        return GpuClass(
            name=label,
            model=model.model,
            memory_gb=memory,
            vendor=model.vendor,
            architecture=model.architecture,
            form_factor=form,
            mig_profile=mig[1].name if mig is not None else None,
        )
    return None


def gpu_class_name(name: str, memory_bytes: int | None = None) -> str:
    """The class name, or the cleaned input with hyphens when the model is not in the table."""
    found = normalise_gpu(name, memory_bytes)
    if found is not None:
        return found.name
    return re.sub(r"[^a-z0-9.]+", "-", _clean(name)).strip("-") or "unknown"


def same_gpu_class(a: str, b: str) -> bool:
    """Do two spellings name the same GPU class? (``NVIDIA H100 80GB HBM3`` and ``h100-80gb`` do.)"""
    return gpu_class_name(a) == gpu_class_name(b)
