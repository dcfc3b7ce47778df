"""Who holds a store: the processes with a lock on ``<store>/edge/.lock``, ``<store>/qdrant/.lock`` or ``<store>/ingest.lock``.

Why: "open in another process" is only useful if it says which one. Embedded Qdrant (edge and local mode) and the ingest
lock all take ``flock`` locks, which Linux lists in ``/proc/locks`` with the holder's pid and the
file's device and inode; ``/proc/<pid>/cmdline`` then names the command. Nothing is written, so the
answer is right even for a process that was killed while holding a lock (the kernel drops its locks).
Elsewhere (no ``/proc``) the answer is empty and messages fall back to their generic hint.

Example:
    describe_holders(Path("storage"))  # "pid 4242: python -m pipeline serve --store storage"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCK_FILES = ("edge/.lock", "qdrant/.lock", "ingest.lock")
PROC_LOCKS = Path("/proc/locks")


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    lock: str  # which lock file, relative to the store

    def describe(self) -> str:
        return f"pid {self.pid}: {self.command}" if self.command else f"pid {self.pid}"


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= 200 else text[:197] + "..."


def lock_holders(lock_file: Path) -> list[int]:
    """Pids holding a lock on ``lock_file`` (per ``/proc/locks``), or [] if unknown."""
    try:
        st = os.stat(lock_file)
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return []
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 6819 fe:00:2163015 0 EOF" (blocked waiters add "->")
        if "->" in fields:
            continue
        if len(fields) >= 6 and fields[5] == wanted and fields[4].isdigit() and int(fields[4]) > 0:
            pids.append(int(fields[4]))
    return sorted(set(pids))


def store_holders(store: Path) -> list[Holder]:
    """Every process holding one of the store's locks, other than this one."""
    out = []
    for rel in LOCK_FILES:
        for pid in lock_holders(store / rel):
            if pid != os.getpid():
                out.append(Holder(pid, _command(pid), rel))
    return out


def describe_holders(store: Path) -> str:
    """"pid N: command" for each holder, joined by "; ", or "" when none can be found."""
    seen: dict[int, str] = {}
    for h in store_holders(store):
        seen.setdefault(h.pid, h.describe())
    return "; ".join(seen.values())
