"""MIG profile names: one canonical form for every shape NVML and nvidia-smi print.

The canonical form is ``[<C>c.]<G>g.<M>gb[+<ext>…]``: lowercased, the product taken off (it is
``hardware.gpu.product``, the parent's class), the compute-instance prefix kept only for a real
split (``3c.3g.71gb`` is the whole GPU instance, ``3g.71gb``), media extensions kept and spelled
with ``+``. The names come from a table of every shape, from the real captures beside the
checkout (``../shared/fixtures/real``), and from public captures listed in
``tests/fixtures/real-world/SOURCES.md``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from skewwatch.core.gpu import (
    MigProfile,
    gpu_class_name,
    mig_profile_name,
    normalise_gpu,
    split_mig_name,
)

CANONICAL = re.compile(r"^(?:(\d{1,2})c\.)?(\d{1,2})g\.(\d{1,4})gb((?:\+(?:gfx|me|me\.all))*)$")
REAL_WORLD = Path(__file__).resolve().parent.parent / "fixtures" / "real-world" / "mig-names.txt"
# A MIG token as the tools print it: "MIG 1c.3g.71gb", "MIG 1g.18gb+me".
MIG_TOKEN = re.compile(r"\bMIG\s+((?:\d+c\.)?\d+g\.\d+gb(?:[+-][a-z.]+)?)", re.IGNORECASE)


def assert_canonical(value: str) -> None:
    found = CANONICAL.match(value)
    assert found is not None, value
    c, g = found.group(1), int(found.group(2))
    assert c is None or 1 <= int(c) < g, value  # a prefix only for a real split
    extensions = [e for e in found.group(4).split("+") if e]
    assert extensions == sorted(set(extensions)), value


# --- every shape --------------------------------------------------------------------------------

SHAPES: list[tuple[str, str]] = [
    # GPU-instance profiles, bare and with nvidia-smi's "MIG " marker
    ("1g.10gb", "1g.10gb"),
    ("2g.35gb", "2g.35gb"),
    ("3g.71gb", "3g.71gb"),
    ("7g.141gb", "7g.141gb"),
    ("1g.20gb", "1g.20gb"),
    ("4g.40gb", "4g.40gb"),
    ("MIG 3g.40gb", "3g.40gb"),
    ("MIG 7g.80gb", "7g.80gb"),
    # media extensions: +me, -me, the device plugin's .me, +gfx, +me.all
    ("1g.18gb+me", "1g.18gb+me"),
    ("MIG 1g.10gb+me", "1g.10gb+me"),
    ("1g.18gb-me", "1g.18gb+me"),
    ("1g.5gb.me", "1g.5gb+me"),
    ("MIG 1g.24gb+gfx", "1g.24gb+gfx"),
    ("MIG 1g.24gb+me.all", "1g.24gb+me.all"),
    ("1g.24gb+me+gfx", "1g.24gb+gfx+me"),
    ("1g.24gb+gfx+me", "1g.24gb+gfx+me"),
    # compute-instance profiles within a GPU instance
    ("1c.3g.71gb", "1c.3g.71gb"),
    ("2c.4g.40gb", "2c.4g.40gb"),
    ("MIG 1c.7g.80gb", "1c.7g.80gb"),
    ("3c.3g.20gb", "3g.20gb"),  # the whole GPU instance: the same slice as 3g.20gb
    ("MIG 7c.7g.141gb", "7g.141gb"),
    # NVML device names: the product, "MIG", the profile
    ("NVIDIA H200 MIG 1c.3g.71gb", "1c.3g.71gb"),
    ("NVIDIA H200 MIG 2g.35gb", "2g.35gb"),
    ("NVIDIA H200 MIG 1g.18gb", "1g.18gb"),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "1g.10gb"),
    ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "3g.40gb"),
    ("A100-SXM4-40GB MIG 1g.5gb", "1g.5gb"),  # pre-R470 drivers: no "NVIDIA " prefix
    ("A100-SXM4-40GB MIG 1c.3g.20gb", "1c.3g.20gb"),
    ("NVIDIA H100 MIG 1c.4g.48gb", "1c.4g.48gb"),
    ("NVIDIA H200 MIG 1g.18gb+me", "1g.18gb+me"),
    # nvidia-smi -L lines, Kubernetes resources and GPU feature discovery labels
    ("  MIG 1c.3g.71gb  Device  0: (UUID: MIG-00000000-0000-0000-0000-000000000000)", "1c.3g.71gb"),
    ("nvidia.com/mig-1g.10gb", "1g.10gb"),
    ("nvidia.com/mig-1g.5gb.me", "1g.5gb+me"),
    ("nvidia.com/mig-1g.5gb.memory", "1g.5gb"),  # a label's attribute, not an extension
    ("nvidia.com/mig-3g.20gb.count", "3g.20gb"),
    ("mig-1g.18gb", "1g.18gb"),
    # case and space variants
    ("NVIDIA H200 MIG 1C.3G.71GB", "1c.3g.71gb"),
    ("  mig   2G.35GB  ", "2g.35gb"),
    ("1g.18gb + ME", "1g.18gb+me"),
    ("MIG\t1g.10gb", "1g.10gb"),
    ("MIG1g.10gb", "1g.10gb"),
]


@pytest.mark.parametrize(("name", "canonical"), SHAPES)
def test_every_shape_normalises_to_the_canonical_profile(name: str, canonical: str) -> None:
    assert mig_profile_name(name) == canonical
    assert_canonical(canonical)
    assert mig_profile_name(canonical) == canonical  # idempotent


@pytest.mark.parametrize(
    ("name", "product", "profile"),
    [
        ("NVIDIA H200 MIG 1c.3g.71gb", "NVIDIA H200", MigProfile(3, 71, 1)),
        ("A100-SXM4-40GB MIG 3c.3g.20gb", "A100-SXM4-40GB", MigProfile(3, 20)),
        ("NVIDIA H200 MIG 1g.18gb+me", "NVIDIA H200", MigProfile(1, 18, None, ("me",))),
        ("MIG 2g.35gb", "", MigProfile(2, 35)),
        ("nvidia_a100_3g.39gb", "nvidia_a100", MigProfile(3, 39)),
    ],
)
def test_split_gives_the_product_and_the_slice(name: str, product: str, profile: MigProfile) -> None:
    assert split_mig_name(name) == (product, profile)


def test_a_split_names_its_gpu_instance() -> None:
    found = split_mig_name("NVIDIA H200 MIG 2c.3g.71gb")
    assert found is not None
    assert (found[1].name, found[1].gpu_instance) == ("2c.3g.71gb", "3g.71gb")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1g.18gb", "1g.18gb+me"),  # another profile: the media engines
        ("1g.24gb+me", "1g.24gb+me.all"),
        ("1c.3g.71gb", "2c.3g.71gb"),  # different compute
        ("1c.3g.71gb", "3g.71gb"),
        ("3g.40gb", "3g.39gb"),  # drivers that name it so report other memory; not merged
    ],
)
def test_different_slices_stay_different(a: str, b: str) -> None:
    assert mig_profile_name(a) != mig_profile_name(b)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA A100-SXM4-40GB",
        "Some  Future\tSlice 9x.1tb",
        "MIG 0g.5gb",  # no such slice
        "MIG 1g.0gb",
        "4c.3g.20gb",  # more compute than the instance
        "x1g.10gb",  # not a token of its own
        "123g.10gb",
        "MIG-00000000-0000-0000-0000-000000000000",
    ],
)
def test_unknown_shapes_pass_through_trimmed_and_lowercased(text: str) -> None:
    assert mig_profile_name(text) == " ".join(text.split()).lower()
    assert split_mig_name(text) is None


def test_a_mig_device_name_keeps_the_parent_class() -> None:
    # The profile's memory is the slice's: "71gb" is not the H200's size.
    for name in ("NVIDIA H200 MIG 1c.3g.71gb", "NVIDIA H200 MIG 1g.18gb+me", "NVIDIA H200"):
        found = normalise_gpu(name)
        assert found is not None and found.name == "h200-141gb", name
    found = normalise_gpu("NVIDIA H200 MIG 1c.3g.71gb")
    assert found is not None and found.mig_profile == "1c.3g.71gb"
    assert gpu_class_name("A100-SXM4-40GB MIG 1c.3g.20gb") == gpu_class_name("NVIDIA A100-SXM4-40GB")


# --- real captures ----------------------------------------------------------------------------


def _real_world_entries() -> list[tuple[str, str, str]]:
    rows = []
    for line in REAL_WORLD.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            source, product, name = line.split("\t")
            rows.append((source, product, name))
    return rows


def _assert_slices_agree(names: list[tuple[str, str]]) -> None:
    """Every spelling of one slice gives one value; distinct values are distinct slices."""
    by_value: dict[str, set[tuple[int, int, int, tuple[str, ...]]]] = defaultdict(set)
    for product, name in names:
        value = mig_profile_name(name)
        assert_canonical(value)
        found = split_mig_name(name)
        assert found is not None, name
        slice_ = found[1]
        # Whatever way NVML, nvidia-smi -L, the device plugin or a label writes it, the same value.
        spellings = [
            name,
            name.upper(),
            f"  {name.lower()}  ",
            f"{product} {name}" if product != "-" else f"NVIDIA GPU {name}",
            f"nvidia.com/mig-{value.replace('+', '.')}",
            f"  {name}  Device  0: (UUID: MIG-00000000-0000-0000-0000-000000000000)",
        ]
        assert {mig_profile_name(s) for s in spellings} == {value}, name
        compute = slice_.compute_slices or slice_.gpu_slices
        by_value[value].add((slice_.gpu_slices, slice_.memory_gb, compute, slice_.extensions))
    for value, slices in by_value.items():
        assert len(slices) == 1, (value, slices)


def test_every_mig_name_in_the_real_captures_normalises(real_fixtures: Path) -> None:
    names: list[tuple[str, str]] = []
    for path in sorted(real_fixtures.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        products = re.findall(r"^GPU \d+: (.+?) \(UUID", text, re.MULTILINE)
        for token in MIG_TOKEN.findall(text):
            names.append((products[0] if products else "-", f"MIG {token}"))
    if not names:
        pytest.skip(f"no MIG names in the captures at {real_fixtures}")
    _assert_slices_agree(names)
    # The H100 MIG capture's -L section: 3g.40gb, 2g.20gb and two 1g.10gb.
    assert sorted(mig_profile_name(n) for _, n in names) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]


def test_every_public_mig_name_normalises() -> None:
    rows = _real_world_entries()
    assert len(rows) >= 40
    _assert_slices_agree([(product, name) for _, product, name in rows])
    values = {mig_profile_name(name) for _, _, name in rows}
    # The shapes the public captures hold: splits, the whole-instance profiles and every extension.
    assert {"1c.3g.71gb", "2c.3g.71gb", "1c.3g.20gb", "1g.18gb+me", "1g.24gb+gfx", "1g.24gb+me.all"} <= values
    # A split on an older driver names the parent without "NVIDIA "; the class is the same.
    for _, product, _ in rows:
        if product != "-":
            assert normalise_gpu(product) is not None, product


def test_a_compute_instance_split_and_a_gpu_instance_profile_come_out_alike() -> None:
    # The issue: on one H200, "MIG 2g.35gb" came out as 2g.35gb but "MIG 1c.3g.71gb" as the
    # whole device name. Both are now profiles, with the product apart.
    h200 = [(p, n) for s, p, n in _real_world_entries() if s == "S1"]
    values = [mig_profile_name(f"{p} {n}") for p, n in h200]
    assert values == ["1c.3g.71gb", "2c.3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"]


# --- properties --------------------------------------------------------------------------------

profiles = st.builds(
    MigProfile,
    gpu_slices=st.integers(1, 8),
    memory_gb=st.integers(1, 300),
    compute_slices=st.none(),
    extensions=st.sampled_from([(), ("me",), ("gfx",), ("me.all",), ("gfx", "me")]),
)


@st.composite
def canonical_profiles(draw: st.DrawFn) -> str:
    p = draw(profiles)
    split = draw(st.one_of(st.none(), st.integers(1, p.gpu_slices)))
    return MigProfile(p.gpu_slices, p.memory_gb, None if split == p.gpu_slices else split, p.extensions).name


PREFIXES = st.sampled_from(
    [
        "",
        "MIG ",
        "mig ",
        "MIG-",
        "mig_",
        "nvidia.com/mig-",
        "NVIDIA H200 MIG ",
        "NVIDIA H100 80GB HBM3 MIG ",
        "NVIDIA A100-SXM4-80GB MIG ",
        "A100-SXM4-40GB MIG ",
        "NVIDIA B200 MIG ",
        "NVIDIA A30 MIG ",
        "NVIDIA_A100_",
    ]
)
SUFFIXES = st.sampled_from(["", " Device  0: (UUID: MIG-1234)", ".count", ".memory", ")", ",", " "])
SPACE = st.text(alphabet=" \t", min_size=0, max_size=3)


def _variant(canonical: str, data: st.DataObject) -> str:
    text = canonical
    # The extension separators as other tools write them.
    if "+" in text:
        sep = data.draw(st.sampled_from(["+", "-", ".", " + "]))
        text = text.replace("+", sep)
    text = "".join(c.upper() if data.draw(st.booleans()) else c for c in text)
    lead = data.draw(SPACE) + data.draw(PREFIXES)
    return lead + text + data.draw(SUFFIXES) + data.draw(SPACE)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(canonical=canonical_profiles(), data=st.data())
def test_variants_of_a_canonical_profile_normalise_to_it(canonical: str, data: st.DataObject) -> None:
    assert_canonical(canonical)
    assert mig_profile_name(canonical) == canonical
    variant = _variant(canonical, data)
    assert mig_profile_name(variant) == canonical, variant


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300))
@example("MIG " + "1" * 250)
@example(" " * 255 + "1g.10gb")
@example("1g." + " " * 250 + "gb")
@example("mig" * 85 + "1g.5gb")
@example("1g.5gb" + "+me" * 80)
def test_arbitrary_text_never_raises_and_is_quick(text: str) -> None:
    start = time.perf_counter()
    value = mig_profile_name(text)
    found = split_mig_name(text)
    normalise_gpu(text)
    assert time.perf_counter() - start < 0.25
    assert isinstance(value, str)
    if found is None:
        assert value == " ".join(text.split()).lower()
    else:
        assert_canonical(value)


def test_long_input_is_not_parsed() -> None:
    text = "x" * 10_000 + " MIG 1g.10gb"
    start = time.perf_counter()
    assert mig_profile_name(text) == text.lower()
    assert time.perf_counter() - start < 0.25
