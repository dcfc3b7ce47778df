"""Which files an ingest may read: folders expanded, every file resolved and checked before anything opens it.

Why: a path is only a name. A symlink inside an allowed folder can name ``/etc/passwd``, a FIFO blocks
its reader forever, a folder can hold 10,000 files, a JSON string can hold a NUL byte or a lone
surrogate that makes ``os.stat`` raise ``ValueError``. ``scan`` decides per file from ``stat`` alone
(no document is opened) what may be read, and gives every file it leaves out a reason. ``check_path_text``
vets a path string before it reaches the file system at all.

A folder may hold a ``.pipelineignore`` (gitignore syntax, read with ``pathspec``) at its top: files it
matches are left out quietly, e.g. a ``LICENSE.md`` next to the papers. It is read with the rules of a
document (``pipeline.ingest.fsopen``): a regular file, not a symlink, opened without following links,
at most ``IGNORE_MAX_BYTES``, read within ``IGNORE_TIMEOUT`` seconds. One that breaks a rule (a FIFO
would hang the scan, a link to ``/dev/zero`` would fill memory) makes the scan refuse the whole folder
with the reason: scanning without it would ingest the very files it was written to leave out. A
folder without any supported file is reported ("no supported files found under X (skipped: 2 .docx,
1 .png)"), so an ingest of the wrong folder does not look like a success. Files left out of a folder
for their type are named in ``Scan.unsupported`` (the reports list them as "skipped"): a ``.docx``
next to the PDFs would otherwise vanish without a word, and its owner would think it indexed.

The scan only decides; it does not guarantee the file is the same when read. With roots, it records
each accepted file's (st_dev, st_ino) in ``Scan.identity`` and the reader (``load.read_source``)
opens it again from the root without following links and compares. A file with more than one name (a
hard link: its other name may lie outside the roots) is refused under roots unless
``ScanLimits.allow_hardlinks``. A name that is not valid UTF-8 is skipped: it could not be stored,
logged or sent as JSON; reports show it with ``\\xff`` escapes.

Example:
    found = scan([Path("/data/docs")], ScanLimits(roots=(Path("/data/docs"),), max_files=1000))
    found.files    # resolved regular files under the roots, sorted
    found.skipped  # [Skipped(path="/data/docs/pipe.pdf", reason="skipped: not a regular file (FIFO) ...")]
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import LoadError
from pipeline.ingest.fsopen import file_kind as _kind
from pipeline.ingest.fsopen import hardlink_reason, read_checked, shown, valid_utf8

SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md")
# Linux limits: PATH_MAX counts bytes including the final NUL, NAME_MAX bytes per component.
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
IGNORE_FILE = ".pipelineignore"
IGNORE_MAX_BYTES = 64 * 1024  # a gitignore of a few hundred patterns is a few KiB
IGNORE_TIMEOUT = 10.0  # seconds to read it: more means a hung file system


@dataclass(frozen=True)
class ScanLimits:
    """What a scan allows. The CLI uses the defaults (no roots, no caps); the service sets all of them.

    Attributes:
        roots: resolved folders every file must lie in after resolving symlinks; empty = anywhere.
        max_files: files accepted per scan; beyond it the walk stops and says so.
        max_file_bytes: larger files are skipped ("over limit").
        file_timeout: seconds one file may take to read and parse (used by ``load_document``).
        allow_hardlinks: with roots, also read files with more than one name (``st_nlink > 1``).
    """

    roots: tuple[Path, ...] = ()
    max_files: int | None = None
    max_file_bytes: int | None = None
    file_timeout: float | None = None
    allow_hardlinks: bool = False


@dataclass(frozen=True)
class Skipped:
    """A file the scan left out; ``reason`` starts with "skipped:" and says what to do."""

    path: str
    reason: str


@dataclass
class Scan:
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    over_limit: bool = False  # max_files reached: the walk stopped early
    identity: dict[Path, tuple[int, int]] = field(default_factory=dict)  # with roots: (st_dev, st_ino) per file
    unsupported: list[Skipped] = field(default_factory=list)  # files in folders left out for their type (not errors)
    # Every accepted file's (size, mtime ns, inode, ctime ns) as the check saw it: a file the ledger
    # records with the same four is unchanged without being read (``file_stat``, issue 26).
    stats: dict[Path, tuple[int, int, int, int]] = field(default_factory=dict)


def file_stat(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies a file's bytes without reading them: size, mtime, inode and ctime (ns)."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def check_path_text(text: str) -> Path:
    """A path string from a client, checked before anything touches the file system.

    Raises:
        ValueError: empty, a NUL or other control character, not UTF-8 encodable (lone surrogates),
            over ``MAX_PATH_BYTES`` or with a component over ``MAX_NAME_BYTES``, or not absolute.
    """
    if not text:
        raise ValueError("empty path")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("path contains a NUL or control character")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("path is not valid Unicode (lone surrogate)") from None
    if len(raw) > MAX_PATH_BYTES:
        raise ValueError(f"path is {len(raw)} bytes, the limit is {MAX_PATH_BYTES}")
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in text.split("/")):
        raise ValueError(f"a path component is over {MAX_NAME_BYTES} bytes")
    if not text.startswith("/"):
        raise ValueError("path must be absolute on the server")
    return Path(os.path.normpath(text))


def under(path: Path, roots: Iterable[Path]) -> bool:
    """True if the resolved ``path`` lies in one of the resolved ``roots`` (or is one)."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def _ignore_spec(folder: Path, roots: tuple[Path, ...], limits: ScanLimits):  # type: ignore[no-untyped-def]
    """The folder's ``.pipelineignore`` as a gitignore matcher, or None if it has none.

    Raises:
        LoadError: it exists but breaks a rule (see the module docstring); the reason names it.
    """
    path = folder / IGNORE_FILE
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LoadError(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    if stat.S_ISLNK(mode):
        raise LoadError(path, "a symlink (not followed)")
    data = read_checked(
        path,
        roots,
        follow=False,
        max_bytes=IGNORE_MAX_BYTES,
        hardlinks_ok=limits.allow_hardlinks or not roots,
        timeout=IGNORE_TIMEOUT,
    )
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(data.decode("utf-8", errors="replace").splitlines())


def unsupported_reason(suffix: str) -> str:
    """What a report says of a file left out for its type, and what would read it."""
    kind = f"{suffix} files are" if suffix != "(no suffix)" else "files without a suffix are"
    return f"skipped: unsupported type ({kind} not read; supported: {', '.join(SUPPORTED_SUFFIXES)})"


def _walk(folder: Path, unsupported: Counter[str], with_links: bool, spec, named: list[Skipped]) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """Entries under ``folder`` with a supported suffix, sorted; symlinked sub-folders are not entered
    (yielded, to be reported, if ``with_links``); ``spec`` (the ``.pipelineignore``) matches are left
    out; other files are counted by suffix in ``unsupported`` and named in ``named`` (hidden files,
    like ``.DS_Store``, are left out quietly)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        links = [d for d in dirnames if (base / d).is_symlink()] if with_links else []
        for name in sorted(filenames + links):
            entry = base / name
            if spec is not None and spec.match_file(entry.relative_to(folder).as_posix()):
                continue
            if Path(name).suffix.lower() in SUPPORTED_SUFFIXES or name in links:
                yield entry
            elif not name.startswith("."):
                suffix = shown(Path(name).suffix.lower()) or "(no suffix)"
                unsupported[suffix] += 1
                named.append(Skipped(shown(entry), unsupported_reason(suffix)))


def scan(paths: Iterable[Path], limits: ScanLimits = ScanLimits()) -> Scan:
    """Expand folders and check every file; see the module docstring.

    A given path that is a file is checked the same way but kept whatever its suffix (``load_document``
    then says "unsupported file type"). With roots set, accepted files are returned resolved, with the
    inode the check saw in ``identity``: the reader opens that path from its root without following
    links and refuses another inode, so a file swapped after the check is never read.
    """
    out = Scan()
    seen: set[Path] = set()
    roots = tuple(Path(os.path.realpath(r)) for r in limits.roots)

    def skip(path: Path, reason: str) -> None:
        out.skipped.append(Skipped(shown(path), reason))

    def consider(path: Path, given: bool) -> bool:
        """Check one path; False once max_files is reached (stop walking)."""
        if limits.max_files is not None and len(out.files) >= limits.max_files:
            out.over_limit = True
            skip(path, f"skipped: over limit (more than {limits.max_files} files in one ingest); the walk stopped here")
            return False
        if not valid_utf8(path):
            skip(path, "skipped: file name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8)")
            return True
        real = Path(os.path.realpath(path))
        if roots and not under(real, roots):
            why = "it is a symlink that resolves" if real != path else "it lies"
            skip(path, f"skipped: {why} outside the ingest roots")
            return True
        try:
            st = os.stat(real)
        except OSError as exc:
            reason = "dangling symlink" if os.path.islink(path) else (exc.strerror or type(exc).__name__).lower()
            skip(path, f"skipped: {reason}")
            return True
        if stat.S_ISDIR(st.st_mode) and not given:
            skip(path, "skipped: symlink to a folder (not followed; pass the folder itself)")
            return True
        if not stat.S_ISREG(st.st_mode):
            skip(path, f"skipped: not a regular file ({_kind(st.st_mode)}); only regular files are read")
            return True
        if limits.max_file_bytes is not None and st.st_size > limits.max_file_bytes:
            skip(path, f"skipped: over limit ({st.st_size} bytes, the limit is {limits.max_file_bytes} bytes per file)")
            return True
        if roots and not limits.allow_hardlinks and st.st_nlink > 1:
            skip(path, hardlink_reason(st.st_nlink))
            return True
        if real in seen:
            return True  # the same file reached twice (e.g. through a symlink): ingest it once
        seen.add(real)
        out.files.append(real if roots else path)
        out.stats[real if roots else path] = file_stat(st)
        if roots:
            out.identity[real] = (st.st_dev, st.st_ino)
        return True

    for path in paths:
        if not valid_utf8(path):
            skip(path, "skipped: file name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8)")
            continue
        real = Path(os.path.realpath(path))
        if roots and not under(real, roots):
            skip(path, "skipped: outside the ingest roots")
            continue
        if real.is_dir():
            folder = real if roots else path
            try:
                spec = _ignore_spec(folder, roots, limits)
            except LoadError as exc:
                cause = exc.reason.removeprefix("skipped: ")
                skip(
                    path,
                    f"skipped: its {IGNORE_FILE} is unusable: {cause}; the folder was not scanned (a {IGNORE_FILE} "
                    f"must be a regular file, not a link, of at most {IGNORE_MAX_BYTES} bytes)",
                )
                continue
            before = (len(out.files), len(out.skipped))
            unsupported: Counter[str] = Counter()
            for entry in _walk(folder, unsupported, bool(roots), spec, out.unsupported):
                if not consider(entry, given=False):
                    break
            if (len(out.files), len(out.skipped)) == before:  # nothing to ingest, nothing to explain
                kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(unsupported.items()))
                skip(path, f"no supported files found under {shown(path)}" + (f" (skipped: {kinds})" if kinds else " (empty)"))
        elif not consider(path, given=True):
            break
        if out.over_limit:
            break
    return out
