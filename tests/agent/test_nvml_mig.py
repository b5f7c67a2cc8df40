"""MIG device names through the real pynvml bindings and the stub libnvidia-ml.so.1.

NVML names a MIG device "<product> MIG <profile>", and the profile can be a GPU-instance profile
(``2g.35gb``), a compute-instance split of one (``1c.3g.71gb``) or carry a media extension
(``1g.18gb+me``). ``hardware.gpu.mig_profiles`` must be the canonical profile for every shape
(``skewwatch.core.gpu.mig_profile_name``), with the product in ``hardware.gpu.product``, so that
two replicas on the same slice report the same facts.

Machines come from real captures: the A100 MIG capture in ``../shared/fixtures/real`` and, for
the H200 (whose capture is not among the shared ones), the names, instance ids and memory of the
public capture S1 in ``tests/fixtures/real-world/SOURCES.md``, written out below as data.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tests.agent.nvml_stub.capture import MIB, Gpu, Machine, MigDevice, data_file
from tests.support.nvml import A100_MIG, H100_MIG, machine, probe

# S1: utkuozdemir/nvidia_gpu_exporter, linux-x86_64__nvidia-h200-mig__590.48.01.txt. `-L` gives
# the profiles and UUIDs; `-q` gives the parent's 143771 MiB and each instance's GI/CI ids and
# shared memory (idle: 22, 22, 17, 9 and 9 MiB used).
H200_S1 = [
    ("1c.3g.71gb", 2, 0, 71424, 22),
    ("2c.3g.71gb", 2, 1, 71424, 22),
    ("2g.35gb", 3, 0, 33280, 17),
    ("1g.18gb", 9, 0, 16384, 9),
    ("1g.18gb", 10, 0, 16384, 9),
]


def h200(migs: list[tuple[str, int, int, int, int]] = H200_S1, name: str = "NVIDIA H200") -> Machine:
    values = {
        "name": name,
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "mem_total": str(143771 * MIB),
        "mem_used": str(0),
        "arch": "9",
        "mig_current": "1",
        "mig_pending": "1",
    }
    gpu = Gpu(values)
    for j, (profile, gi, ci, total, used) in enumerate(migs):
        uuid = f"MIG-{j:08d}-0000-0000-0000-{j:012d}"
        gpu.migs.append(MigDevice(gi, ci, total, used, profile=profile, uuid=uuid))
    return Machine("590.48.01", 13010, [gpu])


def run(stub_dir: Path, tmp_path: Path, m: Machine, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = probe(stub_dir, tmp_path, data_file(m, "9.0"), env)
    assert out["state"] == "ok", out["message"]
    facts: dict[str, Any] = out["facts"]
    return facts


def test_h200_compute_instance_splits_come_out_as_profiles_like_the_gpu_instances(
    stub_dir: Path, tmp_path: Path
) -> None:
    # Before: 1c.3g.71gb and 2c.3g.71gb came out as "NVIDIA H200 MIG 1c.3g.71gb", beside 2g.35gb.
    facts = run(stub_dir, tmp_path, h200())
    assert facts["hardware.gpu.mig_profiles"] == ["1c.3g.71gb", "2c.3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"]
    assert facts["hardware.gpu.product"] == "h200-141gb"
    assert facts["hardware.gpu.name"] == "NVIDIA H200"


def test_a_process_on_a_compute_instance_split_reports_its_slice(stub_dir: Path, tmp_path: Path) -> None:
    facts = run(
        stub_dir, tmp_path, h200(), {"CUDA_VISIBLE_DEVICES": "MIG-00000001-0000-0000-0000-000000000001"}
    )
    assert facts["hardware.gpu.mig_profiles"] == ["2c.3g.71gb"]
    assert facts["hardware.gpu.product"] == "h200-141gb"  # the parent's class, not "h200-71gb"
    assert facts["hardware.gpu.memory_bytes"] == 71424 * MIB
    assert facts["hardware.gpu.0.mig_uuid"] == "MIG-00000001-0000-0000-0000-000000000001"


def test_a_media_extension_slice_is_its_own_profile(stub_dir: Path, tmp_path: Path) -> None:
    # 1g.18gb+me on an H200 (S5, nvidia-smi mig -lgip): 16 GiB like 1g.18gb, but another profile.
    me = run(stub_dir, tmp_path, h200([("1g.18gb+me", 9, 0, 16384, 9)]))
    plain = run(stub_dir, tmp_path, h200([("1g.18gb", 9, 0, 16384, 9)]))
    assert me["hardware.gpu.mig_profiles"] == ["1g.18gb+me"]
    assert plain["hardware.gpu.mig_profiles"] == ["1g.18gb"]
    assert me["hardware.gpu.product"] == plain["hardware.gpu.product"] == "h200-141gb"


def test_two_replicas_on_the_same_slice_agree_across_driver_spellings(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    """A100 MIG capture (shared), named as a pre-R470 driver and as a current one names it.

    Pre-R470 (S4's ``nvidia-smi -L``): the product has no "NVIDIA " prefix, the split is
    ``1c.3g.20gb`` and CUDA names the slice ``MIG-GPU-<uuid>/<gi>/<ci>``. Current drivers: the
    product with "NVIDIA ", and a ``MIG-<uuid>``.
    """
    new, cc = machine(real_fixtures, A100_MIG)
    assert new.gpus[0].values["name"] == "NVIDIA A100-SXM4-40GB"
    for mig in new.gpus[0].migs:
        mig.profile = "1c.3g.20gb"
    old = copy.deepcopy(new)
    old.gpus[0].values["name"] = "A100-SXM4-40GB"
    gpu = new.gpus[0]
    first = gpu.migs[0]
    new_facts = probe(stub_dir, tmp_path, data_file(new, cc), {"CUDA_VISIBLE_DEVICES": first.uuid or ""})
    old_env = {"CUDA_VISIBLE_DEVICES": f"MIG-{gpu.values['uuid']}/{first.gi}/{first.ci}"}
    old_facts = probe(stub_dir, tmp_path, data_file(old, cc), old_env)
    keys = ("hardware.gpu.product", "hardware.gpu.mig_profiles", "hardware.gpu.memory_bytes")
    assert {k: new_facts["facts"][k] for k in keys} == {k: old_facts["facts"][k] for k in keys}
    assert new_facts["facts"]["hardware.gpu.mig_profiles"] == ["1c.3g.20gb"]
    assert new_facts["facts"]["hardware.gpu.product"] == "a100-40gb"
    assert old_facts["facts"]["hardware.gpu.name"] != new_facts["facts"]["hardware.gpu.name"]  # NVML's own


def test_every_mig_device_in_the_h100_capture_gives_the_profile_nvidia_smi_lists(
    stub_dir: Path, tmp_path: Path, real_fixtures: Path
) -> None:
    m, _ = machine(real_fixtures, H100_MIG)
    listed = [mig.profile for mig in m.gpus[0].migs]
    assert listed == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]  # the capture's -L section
    for mig in m.gpus[0].migs:
        facts = run(stub_dir, tmp_path, m, {"CUDA_VISIBLE_DEVICES": mig.uuid or ""})
        assert facts["hardware.gpu.mig_profiles"] == [mig.profile]
        assert facts["hardware.gpu.product"] == "h100-80gb"
        assert facts["hardware.gpu.memory_bytes"] == mig.mem_total_mib * MIB
