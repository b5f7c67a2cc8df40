"""safetensors headers, read bounded: tensor count, dtypes and parameter count without the weights.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (tensor name →
``{"dtype", "shape", "data_offsets"}``, plus an optional ``__metadata__`` of strings), then the
tensor data. ``read_header`` reads at most 8 + ``MAX_HEADER_BYTES`` bytes whatever N claims (the
safetensors library's own limit is 100 MB); ``parse_header`` is pure and checks every entry and
that the data the header describes fits in the file, so a truncated download is named as such.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.bounds import INT64_MAX, JsonProblem, load_json, short_repr
from agent.errors import SourceFailed

MAX_HEADER_BYTES = 100 * 1000 * 1000
METADATA_KEY = "__metadata__"

# Bits per element; sub-byte and exotic types only count elements, their byte size is not checked.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class SafetensorsError(SourceFailed):
    """A safetensors header that cannot be trusted; the message names the file and the fault."""


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: int
    params: int  # elements over all tensors (packed quantized weights count as stored)
    dtypes: Mapping[str, int] = field(default_factory=dict)  # dtype → elements
    data_bytes: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)


def read_header(path: Path, limit: int = MAX_HEADER_BYTES, name: str | None = None) -> tuple[bytes, int]:
    """The header bytes of a safetensors file and the file's size; never reads more than limit.

    ``name`` is how messages call the file (its path in the model, not a blob's hash name).
    """
    label = name or path.name
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SafetensorsError(f"{label}: not a regular file")
        head = os.pread(fd, 8, 0)
        if len(head) < 8:
            raise SafetensorsError(f"{label}: {len(head)} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > limit:
            raise SafetensorsError(
                f"{label}: header claims {n} bytes, over the {limit}-byte limit (corrupt or hostile)"
            )
        if n > st.st_size - 8:
            raise SafetensorsError(
                f"{label}: header claims {n} bytes but the file has {st.st_size} (truncated?)"
            )
        data = os.pread(fd, n, 8)
        if len(data) < n:
            raise SafetensorsError(f"{label}: header cut short at {len(data)} of {n} bytes")
        return data, st.st_size
    finally:
        os.close(fd)


def _is_count(value: object) -> bool:
    """A non-negative integer the wire can carry (out-of-range JSON numbers are Unrepresentable)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


def parse_header(
    data: bytes, file_size: int | None = None, name: str = "model.safetensors"
) -> SafetensorsHeader:
    """Check and summarise a header's JSON. Pure; SafetensorsError names the tensor at fault."""
    try:
        doc = load_json(data, constants=False)
    except JsonProblem as e:
        raise SafetensorsError(f"{name}: header is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise SafetensorsError(f"{name}: header is a JSON {type(doc).__name__}, not an object")
    metadata: dict[str, str] = {}
    raw_meta = doc.get(METADATA_KEY)
    if raw_meta is not None:
        if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
            raise SafetensorsError(f"{name}: {METADATA_KEY} must map strings to strings")
        metadata = dict(raw_meta)
    dtypes: dict[str, int] = {}
    params = 0
    end_max = 0
    count = 0
    for tensor, entry in doc.items():
        if tensor == METADATA_KEY:
            continue
        where = f"{name}: tensor {short_repr(tensor)}"
        if not isinstance(entry, dict):
            raise SafetensorsError(f"{where}: entry is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or not dtype:
            raise SafetensorsError(f"{where}: dtype missing")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise SafetensorsError(f"{where}: shape must be a list of non-negative (int64) integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
            or offsets[1] < offsets[0]
        ):
            raise SafetensorsError(f"{where}: data_offsets must be [begin, end] with begin <= end")
        elements = 0 if 0 in shape else math.prod(shape)
        if elements > INT64_MAX:
            raise SafetensorsError(f"{where}: shape {shape[:8]} has more elements than any file holds")
        bits = DTYPE_BITS.get(dtype)
        if bits is not None and bits % 8 == 0 and elements * bits // 8 != offsets[1] - offsets[0]:
            raise SafetensorsError(
                f"{where}: {dtype} {shape} needs {elements * bits // 8} bytes,"
                f" data_offsets span {offsets[1] - offsets[0]}"
            )
        dtypes[dtype] = dtypes.get(dtype, 0) + elements
        params += elements
        end_max = max(end_max, offsets[1])
        count += 1
    if file_size is not None:
        available = file_size - 8 - len(data)
        if end_max > available:
            raise SafetensorsError(
                f"{name}: tensor data ends at byte {end_max} but the file holds {available} (truncated)"
            )
    return SafetensorsHeader(count, params, dtypes, end_max, metadata)


def parse_index(data: bytes, name: str = "model.safetensors.index.json") -> tuple[list[str], int | None]:
    """The shard files a ``*.safetensors.index.json`` names, and its ``metadata.total_size``. Pure."""
    try:
        doc = load_json(data, constants=False)
    except JsonProblem as e:
        raise SafetensorsError(f"{name}: not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise SafetensorsError(f"{name}: no weight_map object")
    shards = sorted({v for v in doc["weight_map"].values() if isinstance(v, str)})
    meta = doc.get("metadata")
    total = meta.get("total_size") if isinstance(meta, dict) else None
    return shards, total if _is_count(total) else None
