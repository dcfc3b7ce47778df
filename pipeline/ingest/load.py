"""Paths → one ``Document`` per file (PDF, .txt, .md), with page offsets, doc_id and content hash.

Every failure is a ``LoadError`` naming the file, the cause and what to do; callers log it and go on.
Only regular files are opened, and without blocking (a FIFO named ``x.pdf`` must not wedge a run);
``load_document`` can cap the bytes read and the seconds spent per file. Which files to read at all
(roots, symlinks, caps) is decided before, by ``pipeline.ingest.scan``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from llama_index.core.schema import Document

from pipeline.errors import LoadError
from pipeline.ingest.scan import SUPPORTED_SUFFIXES, scan
from pipeline.store import layout

logger = logging.getLogger(__name__)

PAGE_OFFSETS = "page_offsets"  # document-only metadata: char offset where each page starts
PAGE_SEPARATOR = "\n\n"


T = TypeVar("T")


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders recursively into supported regular files, sorted, so runs are repeatable.

    Files ``scan`` leaves out (FIFOs, devices, dangling symlinks) are dropped here; use ``scan`` to
    learn why.
    """
    yield from scan(paths).files


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer; the type is
    then checked on the open descriptor, so a file swapped after a ``stat`` is still caught.

    Raises:
        OSError: cannot be opened; LoadError: not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "FIFO" if stat.S_ISFIFO(mode) else "folder" if stat.S_ISDIR(mode) else "socket or device"
        raise LoadError(path, f"skipped: not a regular file ({kind})", "only regular files are read")
    return fd


def file_hash(path: Path) -> str | None:
    """sha256 of the file's bytes, or None if it cannot be read (``load_document`` then says why).

    Lets an unchanged file be skipped without parsing it: a no-change sync costs a hash per file.
    """
    try:
        fd = _open_regular(path)
    except (OSError, LoadError):
        return None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        except OSError:
            return None
    return h.hexdigest()


def read_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (more is an error, not a silent cut).

    Raises:
        LoadError: missing, unreadable, not a regular file, or over ``max_bytes``.
    """
    try:
        fd = _open_regular(path)
    except FileNotFoundError as exc:
        raise LoadError(path, "file not found", "check the path") from exc
    except PermissionError as exc:
        raise LoadError(path, "permission denied", "make it readable by this user") from exc
    except IsADirectoryError as exc:
        raise LoadError(path, "is a directory", "pass files or folders") from exc
    except OSError as exc:
        raise LoadError(path, f"cannot open ({exc.strerror or exc})", "check the file") from exc
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise LoadError(path, f"read failed ({exc.strerror or exc})", "check the file and its file system") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise LoadError(path, f"skipped: over limit (more than {max_bytes} bytes per file)", "split the file or raise the limit")
    return data


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


def _pdf_pages(path: Path, data: bytes, passwords: dict[str, str]) -> list[str]:
    from io import BytesIO

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if not data.lstrip()[:1024].startswith(b"%PDF-") and b"%PDF-" not in data[:1024]:
        raise LoadError(path, f"not a PDF (starts with {data[:8]!r})", "rename it or remove it from the input")
    try:
        reader = PdfReader(BytesIO(data))
        if reader.is_encrypted:
            password = passwords.get(path.name) or passwords.get(str(path)) or passwords.get(layout.doc_id_for(path))
            if password is None:
                try:
                    reader.decrypt("")  # owner-password-only PDFs open with an empty user password
                    reader.pages[0].extract_text()
                except Exception as exc:
                    raise LoadError(
                        path,
                        f"encrypted PDF (pypdf: {type(exc).__name__})",
                        f"set a password: PIPELINE_INGEST__PDF_PASSWORDS='{{\"{path.name}\": \"...\"}}'",
                    ) from exc
            elif not reader.decrypt(password):
                raise LoadError(path, "encrypted PDF: the configured password is wrong", "fix ingest.pdf_passwords")
        return [page.extract_text() or "" for page in reader.pages]
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, f"encrypted PDF (pypdf: {type(exc).__name__})", "configure ingest.pdf_passwords") from exc
    except PdfReadError as exc:
        raise LoadError(path, f"malformed PDF (pypdf: {exc})", "repair it, e.g. with qpdf, or re-export it") from exc
    except Exception as exc:  # pypdf raises many kinds on corrupt input
        raise LoadError(path, f"unreadable PDF ({type(exc).__name__}: {exc})", "repair or re-export it") from exc


def load_document(
    path: Path, passwords: dict[str, str] | None = None, max_bytes: int | None = None, timeout: float | None = None
) -> Document:
    """Read one file into a Document whose id is the normalised path.

    Args:
        max_bytes: refuse larger files ("over limit"); None = no limit.
        timeout: seconds to read and parse it; None = no limit.

    Raises:
        LoadError: empty, unreadable, not a regular file, over a limit, too slow, encrypted,
            malformed, or without any text.
    """
    return with_timeout(lambda: _load(path, passwords, max_bytes), timeout, path)


def _load(path: Path, passwords: dict[str, str] | None, max_bytes: int | None) -> Document:
    data = read_file(path, max_bytes)
    if not data:
        raise LoadError(path, "empty file (0 bytes)", "remove it or re-export it")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        pages = _pdf_pages(path, data, passwords or {})
    elif suffix in (".txt", ".md"):
        pages = [data.decode("utf-8", errors="replace")]
    else:
        raise LoadError(path, f"unsupported file type '{suffix}'", f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if not any(p.strip() for p in pages):
        what = f"{len(pages)} page(s), no extractable text" if suffix == ".pdf" else "no text"
        raise LoadError(path, f"{what} (image-only or blank)", "run OCR first (e.g. ocrmypdf) or remove it")

    # pypdf can return lone UTF-16 surrogates (papers/iop_conference_paper_cc_by_3.pdf does); they cannot
    # be encoded as UTF-8, so hashing the text (cache keys) would crash the run: replace them with "?".
    pages = [p.encode("utf-8", "replace").decode("utf-8") for p in pages]
    offsets, text = [], ""
    for page in pages:
        offsets.append(len(text))
        text += page + PAGE_SEPARATOR
    doc_id = layout.doc_id_for(path)
    metadata = {
        layout.FILE_NAME: path.name,
        layout.DOC_ID: doc_id,
        layout.CONTENT_HASH: hashlib.sha256(data).hexdigest(),
        PAGE_OFFSETS: offsets,
    }
    hidden = [*layout.HIDDEN_KEYS, PAGE_OFFSETS]
    return Document(
        id_=doc_id,
        text=text,
        metadata=metadata,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=hidden,
    )
