"""What changes when a file may have: its mtime, size and inode (a mounted Kubernetes Secret swaps
its ``..data`` link, which changes the inode the path resolves to; an editor's save-by-rename does
too). One rule for every file skewwatch re-reads on change: certificates, keys and token files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

Stamp = tuple[object, ...]


def stamp(paths: Sequence[Path]) -> Stamp:
    """One entry per path: (mtime_ns, size, inode), or ("error", errno) when it cannot be stat'ed
    (a file that comes back is then a change too)."""
    out: list[object] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError as e:
            out.append(("error", e.errno))
    return tuple(out)
