"""Keeping a shard's pages in the page cache across processes (qdrant-edge drops them at close).

``mincore`` notes what is cached before close, ``posix_fadvise(WILLNEED)`` asks the kernel to read it back
after; a warm-up thread reads the files first searches need at open. Linux only; elsewhere a no-op.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from pipeline.store.edge.tuning import WARM_FILES, WARM_MEMORY_SHARE

logger = logging.getLogger(__name__)

def _read_into_cache(path: Path, size: int, stop: threading.Event, chunk: int = 64 << 20) -> None:
    """Read ``path`` into the page cache without copying it to Python: ``sendfile`` to /dev/null, in
    chunks so ``stop`` is seen. Not ``read()`` in a loop: each 1 MB read waited to take the GIL back from
    the embedder loading meanwhile (114 MB took 0.7 s; 219 MB take 0.08 s this way). Not one
    ``posix_fadvise(WILLNEED)``: it reads one readahead window (8 MB here), and the searches it is for
    start at once (``_keep_cached`` uses it at close, where nothing waits)."""
    with open(path, "rb") as src, open(os.devnull, "wb") as sink:
        offset = 0
        while offset < size and not stop.is_set():
            sent = os.sendfile(sink.fileno(), src.fileno(), offset, min(chunk, size - offset))
            if sent <= 0:
                return
            offset += sent


def _warm_files(folder: Path) -> list[Path]:
    """The files of a shard that its first searches read (``WARM_FILES``)."""
    return [f for pattern in WARM_FILES for f in folder.glob(f"segments/*/{pattern}") if f.is_file()]


def _cached_ranges(folder: Path, gap: int = 32) -> list[tuple[Path, list[tuple[int, int]]]]:
    """(file, [(offset, length)]) of every file under ``folder`` that has pages in the page cache now.

    ``mincore`` on a private, unread mapping of each file: it reports the page cache, reads nothing.
    Runs of cached pages less than ``gap`` pages apart are merged (fewer calls to re-read them). Best
    effort: on any error, what was found so far."""
    out: list[tuple[Path, list[tuple[int, int]]]] = []
    try:
        _find_cached(folder, gap, out)
    except Exception as exc:  # noqa: BLE001 - closing must go on
        logger.debug("edge: page cache not read for %s: %s", folder, exc)
    return out


def _find_cached(folder: Path, gap: int, out: list[tuple[Path, list[tuple[int, int]]]]) -> None:
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = f.stat().st_size
        if not size:
            continue
        with open(f, "rb") as fh:
            mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
        try:
            view = (ctypes.c_char * size).from_buffer(mapped)
            pages = (size + page - 1) // page
            vec = (ctypes.c_ubyte * pages)()
            failed = libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(size), vec)
            del view
        finally:
            mapped.close()
        if failed:
            raise OSError(ctypes.get_errno(), f"mincore {f}")
        runs = _runs(bytes(vec), gap)
        if runs:
            out.append((f, [(a * page, (b - a) * page) for a, b in runs]))


# mincore's byte per page: bit 0 set when resident. Mapped to b"\x01"/b"\x00" so runs are a regex away.
_RESIDENT = bytes(i & 1 for i in range(256))


def _runs(vec: bytes, gap: int) -> list[tuple[int, int]]:
    """[start, stop) page runs of resident pages, runs less than ``gap`` pages apart merged. Plain
    bytes and ``re`` (C loops), not numpy: a store's close should not import numpy (~0.2 s) for this."""
    import re

    out: list[list[int]] = []
    for m in re.finditer(rb"\x01+", vec.translate(_RESIDENT)):
        if out and m.start() - out[-1][1] < gap:
            out[-1][1] = m.end()
        else:
            out.append([m.start(), m.end()])
    return [(a, b) for a, b in out]


def _to_recache(folder: Path) -> list[tuple[Path, list[tuple[int, int]]]]:
    """What to read back after closing the shard at ``folder``: what is cached now (``_cached_ranges``)
    and the whole of what the warm-up reads (``WARM_FILES``), which an optimize leaves uncached."""
    try:
        warm = {f: [(0, f.stat().st_size)] for f in _warm_files(folder)}
    except OSError:  # a file gone meanwhile: only what is cached
        warm = {}
    return [*((f, runs) for f, runs in _cached_ranges(folder) if f not in warm), *warm.items()]


def _keep_cached(ranges: Sequence[tuple[Path, list[tuple[int, int]]]], chunk: int = 8 << 20) -> None:
    """Ask the kernel to read ``ranges`` (``_to_recache`` before the close) back into the page cache.

    Closing a shard makes qdrant-edge drop its files from the page cache (``fincore``: 0 pages after
    ``close()``), so the next process to open the store (a restarted service, the next CLI query)
    would read from disk, page by page during its first searches, what this one had in memory. Right
    after the engine closes a shard this re-reads what was cached before, up to the warm-up's budget:
    ``posix_fadvise(WILLNEED)`` returns at once and the kernel reads meanwhile (110 MB queued in 24 ms
    here); one call reads at most the device's readahead window, hence the chunks. Best effort: a
    failed advice costs only speed."""
    try:
        budget = _available_memory() * WARM_MEMORY_SHARE
        # Smallest first, as the warm-up: what loading reads (id trackers, keyword indexes, the log) and
        # the HNSW links are back before the bulk (float vectors an exact search swept in, say).
        for f, runs in sorted(ranges, key=lambda fr: sum(length for _, length in fr[1])):
            fd = os.open(f, os.O_RDONLY)
            try:
                for offset, length in runs:
                    budget -= length
                    if budget < 0:
                        return
                    for start in range(offset, offset + length, chunk):
                        os.posix_fadvise(fd, start, min(chunk, offset + length - start), os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)
    except Exception as exc:  # noqa: BLE001 - also at interpreter exit, when open() may be gone
        logger.debug("edge: pages not re-read after close: %s", exc)


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where there is none: then nothing is warmed)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
