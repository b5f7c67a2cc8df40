"""safetensors headers: summarised without reading weights, and hostile headers refused bounded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from agent.safetensors import SafetensorsError, parse_header, parse_index, read_header
from tests.support.models import safetensors_bytes
from tests.support.paths import REPO

MINILM = REPO / ".cache" / "demo" / "all-MiniLM-L6-v2" / "model.safetensors"


def test_header_gives_tensor_count_dtypes_and_params(tmp_path: Path) -> None:
    data = safetensors_bytes({"a": ("BF16", [2, 3], b"\0" * 12), "b": ("F32", [4], b"\0" * 16)})
    (tmp_path / "m.safetensors").write_bytes(data)
    header = parse_header(*read_header(tmp_path / "m.safetensors"), name="m.safetensors")
    assert (header.tensors, header.params) == (2, 10)
    assert dict(header.dtypes) == {"BF16": 6, "F32": 4}
    assert header.metadata == {"format": "pt"}


def test_header_claiming_gigabytes_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", 5 * 1024**3) + b"{}")
    with pytest.raises(SafetensorsError, match=r"m.safetensors: header claims 5368709120 bytes, over the"):
        read_header(tmp_path / "m.safetensors")


def test_header_longer_than_the_file_is_truncation(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(SafetensorsError, match="truncated"):
        read_header(tmp_path / "m.safetensors")


def test_data_past_the_end_of_the_file_is_truncation() -> None:
    data = safetensors_bytes({"a": ("F32", [4], b"\0" * 16)})
    text = data[8 : 8 + int.from_bytes(data[:8], "little")]
    with pytest.raises(SafetensorsError, match="ends at byte 16 but the file holds 8"):
        parse_header(text, file_size=8 + len(text) + 8, name="m.safetensors")


def test_offsets_that_disagree_with_dtype_and_shape_name_the_tensor() -> None:
    header = {"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}
    with pytest.raises(SafetensorsError, match=r"tensor 'w': F16 \[3\] needs 6 bytes, data_offsets span 4"):
        parse_header(json.dumps(header).encode())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1]", "not an object"),
        (b"{", "not valid JSON"),
        (b'{"w": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 0]}}', "shape"),
        (b'{"w": {"dtype": "F16", "shape": [1], "data_offsets": [4, 2]}}', "data_offsets"),
        (b'{"__metadata__": {"a": 1}}', "__metadata__"),
        (b'{"w": {"shape": [1], "data_offsets": [0, 2]}}', "dtype missing"),
    ],
)
def test_malformed_headers_are_named(raw: bytes, message: str) -> None:
    with pytest.raises(SafetensorsError, match=message):
        parse_header(raw, name="x.safetensors")


def test_real_minilm_header() -> None:
    if not MINILM.is_file():
        pytest.skip(f"{MINILM} absent: ./scripts/demo.sh downloads it")
    header = parse_header(*read_header(MINILM), name=MINILM.name)
    assert header.tensors == 104
    assert header.params == 22_713_728
    assert set(header.dtypes) == {"F32", "I64"}


def test_real_index_names_its_shards_and_total(real_fixtures: Path) -> None:
    path = real_fixtures / "models" / "meta-llama--Llama-2-7b-hf" / "model.safetensors.index.json"
    shards, total = parse_index(path.read_bytes(), path.name)
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert total == 13_476_839_424
