"""The GPU class normaliser on real NVML names, node labels and ModelSpec spellings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skewwatch.core.gpu import GIB, gpu_class_name, normalise_gpu, same_gpu_class

MIB = 1024**2


@pytest.mark.parametrize(
    ("name", "memory", "expected", "form"),
    [
        ("NVIDIA H100 80GB HBM3", 81559 * MIB, "h100-80gb", "sxm"),
        ("NVIDIA H100 PCIe", 81559 * MIB, "h100-80gb", "pcie"),
        ("NVIDIA H100 NVL", 95830 * MIB, "h100-94gb", "nvl"),
        ("NVIDIA H200", 143771 * MIB, "h200-141gb", None),
        ("NVIDIA A100-SXM4-40GB", 40960 * MIB, "a100-40gb", "sxm"),
        ("NVIDIA A100-SXM4-80GB", 81920 * MIB, "a100-80gb", "sxm"),
        ("NVIDIA A100-PCIE-40GB", None, "a100-40gb", "pcie"),
        ("NVIDIA A100 80GB PCIe", None, "a100-80gb", "pcie"),
        ("NVIDIA L40S", 46068 * MIB, "l40s-48gb", None),
        ("NVIDIA L40", None, "l40-48gb", None),
        ("NVIDIA L4", 23034 * MIB, "l4-24gb", None),
        ("NVIDIA A10G", 23028 * MIB, "a10g-24gb", None),
        ("NVIDIA A10", None, "a10-24gb", None),
        ("Tesla T4", 15360 * MIB, "t4-16gb", None),
        ("Tesla P100-PCIE-16GB", None, "p100-16gb", "pcie"),
        ("Tesla V100-SXM2-32GB", None, "v100-32gb", "sxm"),
        ("NVIDIA B200", 183359 * MIB, "b200-180gb", None),
        ("NVIDIA GH200 480GB", 97871 * MIB, "gh200-96gb", None),
        ("NVIDIA RTX 6000 Ada Generation", None, "rtx6000-ada-48gb", None),
        ("AMD Instinct MI300X", None, "mi300x-192gb", None),
    ],
)
def test_nvml_product_names_map_to_short_classes(
    name: str, memory: int | None, expected: str, form: str
) -> None:
    found = normalise_gpu(name, memory)
    assert found is not None
    assert found.name == expected
    assert found.form_factor == form


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("NVIDIA-A100-SXM4-80GB", "a100-80gb"),  # GPU feature discovery node label
        ("NVIDIA-H100-80GB-HBM3", "h100-80gb"),
        ("a100-80gb", "a100-80gb"),  # ModelSpec accelerator.type
        ("H100-80GB", "h100-80gb"),
        ("l40s-48gb", "l40s-48gb"),
        ("nvidia-l4", "l4-24gb"),
        ("Tesla-T4", "t4-16gb"),
    ],
)
def test_labels_and_modelspec_types_map_to_the_same_classes(spelling: str, expected: str) -> None:
    assert gpu_class_name(spelling) == expected


def test_mig_device_names_keep_the_parent_class_and_the_profile() -> None:
    found = normalise_gpu("NVIDIA H100 80GB HBM3 MIG 1g.10gb")
    assert found is not None
    assert (found.name, found.mig_profile) == ("h100-80gb", "1g.10gb")


def test_a100_is_never_mistaken_for_an_a10_nor_l40s_for_l40() -> None:
    assert gpu_class_name("NVIDIA A100-SXM4-40GB") != gpu_class_name("NVIDIA A10")
    assert gpu_class_name("NVIDIA L40S") != gpu_class_name("NVIDIA L40")
    assert not same_gpu_class("NVIDIA A100-SXM4-40GB", "a100-80gb")
    assert same_gpu_class("NVIDIA H100 80GB HBM3", "h100-80gb")


def test_unknown_models_fall_back_to_a_stable_slug() -> None:
    assert normalise_gpu("Acme Accelerator 9000") is None
    assert gpu_class_name("Acme Accelerator 9000") == "acme-accelerator-9000"
    assert gpu_class_name("") == "unknown"


def test_memory_rounds_to_the_nearest_marketed_size() -> None:
    found = normalise_gpu("NVIDIA A100-SXM4", 79 * GIB)
    assert found is not None and found.name == "a100-80gb"


def test_every_product_name_in_the_real_captures_is_known(real_fixtures: Path) -> None:
    names: set[str] = set()
    for path in (real_fixtures / "nvidia-smi").iterdir():
        text = path.read_text(errors="replace")
        names |= set(re.findall(r"<product_name>([^<]+)</product_name>", text))
        names |= {m.strip() for m in re.findall(r"Product Name\s+:\s+(.+)", text)}
        if path.suffix == ".csv":
            names |= {line.split(",")[0] for line in text.splitlines()[1:] if line.strip()}
    assert names
    for name in names:
        assert normalise_gpu(name) is not None, name
