"""Files the engine package writes beside the shards: atomic JSON, and the free-space guard before writes.

The engine writes through memory-mapped, sparse-preallocated files: on a full disk a write does not fail,
the process dies of SIGBUS. So every write first checks the space left (``ensure_space``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline.store.edge.tuning import MIN_FREE_BYTES


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic and durable: a reader (or a crash, or a power cut once this returns) sees the old file or
    the new one, never half of one; the folder is synced so the rename itself is on disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _blocks_bytes(folder: Path) -> int:
    """Bytes a folder really uses on disk (its files are sparse: sizes would overstate it ~100x)."""
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def _ensure_space(path: Path, needed: int = 0) -> None:
    """Raise DiskFull unless ``needed`` bytes plus ``MIN_FREE_BYTES`` are free where ``path`` lives."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < needed + MIN_FREE_BYTES:
        from pipeline.errors import DiskFull

        raise DiskFull(
            path,
            f"{free // 1024} KB free, the embedded engine needs {(needed + MIN_FREE_BYTES) // (1024 * 1024)} MB to write safely "
            "(it writes through memory-mapped files, which a full disk would crash)",
        )
