"""Open a file once, without following links under an ingest root, check the descriptor, read through it.

Why: ``scan`` decides from ``stat`` and ``realpath`` which files may be read, but a name is only a
name. If the reader opened the checked path again by name, a writer inside a root could swap the file
for a symlink (to ``/proc/self/environ``, say) in between, and the service would ingest and serve its
own environment, API token included. So, under a root, every file is opened by walking from the
root's own descriptor, one component at a time, with ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for the
folders on the way): a symlink anywhere below the root makes the open fail instead of leading out.
What was opened is then checked on the descriptor (``fstat``: a regular file, one name unless hard
links are allowed, the inode the scan saw, the size cap) and read only through it, so the bytes that
are hashed and parsed are the bytes of the checked file.

Without roots (the CLI) a path the user gave is opened as given, symlinks followed: the user may read
whatever they can read anyway. Every open is non-blocking (a FIFO returns at once, then fails the
regular-file check) and close-on-exec.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pipeline.errors import LoadError

T = TypeVar("T")

O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | O_CLOEXEC
BLOCK = 1 << 20

HARDLINK_HINT = "set service.ingest_allow_hardlinks to allow"


def hardlink_reason(links: int) -> str:
    """Why a file with more than one name is not read under a root: its other name may lie outside."""
    return f"skipped: hard link ({links} names for one file; another may lie outside the ingest roots); {HARDLINK_HINT}"


def file_kind(mode: int) -> str:
    """A file type in words, for "not a regular file (...)" reasons."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special file"


def root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    """The resolved root ``path`` (a resolved path) lies under, or None."""
    return next((r for r in roots if path == r or path.is_relative_to(r)), None)


def _open_error(path: Path, exc: OSError, on_the_way: bool) -> LoadError:
    """An ``os.open`` failure as a LoadError naming the file and the cause."""
    if exc.errno == errno.ELOOP or (on_the_way and exc.errno == errno.ENOTDIR):
        where = "a folder on its path is now a symlink or not a folder" if on_the_way else "it is a symlink now"
        return LoadError(path, f"skipped: {where} (replaced after the scan?)", "files under the ingest roots are opened without following links")
    if isinstance(exc, FileNotFoundError):
        return LoadError(path, "file not found", "check the path")
    if isinstance(exc, PermissionError):
        return LoadError(path, "permission denied", "make it readable by this user")
    if isinstance(exc, IsADirectoryError):
        return LoadError(path, "is a directory", "pass files or folders")
    return LoadError(path, f"cannot open ({exc.strerror or exc})", "check the file")


def open_under_root(path: Path, root: Path) -> int:
    """A descriptor of ``path`` (resolved, under the resolved ``root``), reached from the root's descriptor
    without following any link below the root.

    The root itself is opened by name: it is the operator's configuration, resolved when the job starts.

    Raises:
        LoadError: a component is (now) a symlink or not a folder, missing, unreadable.
    """
    parts = path.relative_to(root).parts
    if not parts:
        raise LoadError(path, "is a directory (an ingest root)", "pass files or folders")
    try:
        fd = os.open(root, ROOT_FLAGS)
    except OSError as exc:
        raise _open_error(path, exc, on_the_way=True) from exc
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(part, FILE_FLAGS if last else DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _open_error(path, exc, on_the_way=not last) from exc
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: Path, roots: Sequence[Path] = (), follow: bool = True) -> int:
    """A non-blocking, close-on-exec descriptor of ``path``: under ``roots`` (resolved) when they are set
    (see ``open_under_root``), else by name, following a final symlink only if ``follow``.

    Raises:
        LoadError: outside the roots, a symlink where none may be, missing, unreadable.
    """
    if roots:
        root = root_of(path, roots)
        if root is None:
            raise LoadError(path, "skipped: it lies outside the ingest roots")
        return open_under_root(path, root)
    try:
        return os.open(path, FILE_FLAGS if not follow else FILE_FLAGS & ~os.O_NOFOLLOW)
    except OSError as exc:
        raise _open_error(path, exc, on_the_way=False) from exc


def check_descriptor(
    fd: int,
    path: Path,
    max_bytes: int | None = None,
    hardlinks_ok: bool = True,
    expect: tuple[int, int] | None = None,
) -> os.stat_result:
    """``fstat`` the opened file and refuse what may not be read (the caller closes ``fd``).

    Args:
        hardlinks_ok: False under ingest roots by default: a file with more than one name is refused.
        expect: (st_dev, st_ino) the scan saw; another inode means the file was replaced meanwhile.

    Raises:
        LoadError: not a regular file, a hard link, replaced since the scan, over ``max_bytes``.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(path, f"skipped: not a regular file ({file_kind(st.st_mode)})", "only regular files are read")
    if not hardlinks_ok and st.st_nlink > 1:
        raise LoadError(path, hardlink_reason(st.st_nlink))
    if expect is not None and (st.st_dev, st.st_ino) != expect:
        raise LoadError(path, "skipped: the file was replaced between the scan and the read", "the next ingest reads it")
    if max_bytes is not None and st.st_size > max_bytes:
        raise LoadError(path, f"skipped: over limit ({st.st_size} bytes, the limit is {max_bytes} bytes per file)", "split the file or raise the limit")
    return st


def read_descriptor(fd: int, path: Path, max_bytes: int | None = None) -> bytes:
    """All bytes of the open file, at most ``max_bytes`` (a file that grew past it is an error, not a cut).

    Raises:
        LoadError: a read error, or more than ``max_bytes``.
    """
    chunks, total = [], 0
    try:
        while True:
            block = os.read(fd, BLOCK if max_bytes is None else min(BLOCK, max_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if max_bytes is not None and total > max_bytes:
                raise LoadError(path, f"skipped: over limit (more than {max_bytes} bytes per file)", "split the file or raise the limit")
    except OSError as exc:
        raise LoadError(path, f"read failed ({exc.strerror or exc})", "check the file and its file system") from exc
    return b"".join(chunks)


def read_checked(
    path: Path,
    roots: Sequence[Path] = (),
    *,
    follow: bool = True,
    max_bytes: int | None = None,
    hardlinks_ok: bool = True,
    expect: tuple[int, int] | None = None,
    timeout: float | None = None,
) -> bytes:
    """Open once (``open_file``), check (``check_descriptor``), read through the same descriptor, all
    within ``timeout`` seconds (a hung file system must not stop a job).

    Raises:
        LoadError: whatever the three steps refuse, or the timeout.
    """

    def work() -> bytes:
        fd = open_file(path, roots, follow)
        try:
            check_descriptor(fd, path, max_bytes, hardlinks_ok, expect)
            return read_descriptor(fd, path, max_bytes)
        finally:
            os.close(fd)

    return with_timeout(work, timeout, path)


def with_timeout(fn: Callable[[], T], timeout: float | None, path: Path) -> T:
    """``fn()``, or a LoadError after ``timeout`` seconds.

    A thread cannot be killed: a parse that never ends keeps running in its daemon thread, but the
    ingest moves on (and the process can still exit). Used for the service, where one malformed PDF
    or a hung network file system must not stop every later file and job.
    """
    if timeout is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"load:{path.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise LoadError(path, f"skipped: reading and parsing took longer than {timeout:g} s", "check the file (malformed PDF, hung file system)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def shown(path: Path | str) -> str:
    """``path`` as text that is always valid UTF-8: undecodable bytes of a file name (kept by Python as
    lone surrogates) become ``\\xff`` escapes, so reports and JSON answers can carry it."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def valid_utf8(path: Path | str) -> bool:
    """False if the name holds bytes that are not UTF-8 (they cannot go into JSON, SQLite or logs as is)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
