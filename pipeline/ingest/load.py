"""Paths → one ``Document`` per file (PDF, .txt, .md), with page offsets, doc_id and content hash.

Every failure is a ``LoadError`` naming the file, the cause and what to do; callers log it and go on.
Which files to read at all (roots, symlinks, caps) is decided before, by ``pipeline.ingest.scan``; how
a file is opened is ``pipeline.ingest.fsopen``: once, non-blocking (a FIFO named ``x.pdf`` must not
wedge a run), under ingest roots without following any link, checked on the descriptor and read only
through it. ``read_source`` returns those bytes; the caller hashes them (is the file unchanged?) and
hands the same bytes to ``load_document(..., data=...)``, so the hash in the ledger is the hash of the
text that was parsed, and no second open by name can read another file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from llama_index.core.schema import Document

from pipeline.errors import LoadError
from pipeline.ingest.fsopen import check_descriptor, open_file, read_checked, with_timeout
from pipeline.ingest.scan import SUPPORTED_SUFFIXES, ScanLimits, scan
from pipeline.store import layout

__all__ = ["discover", "file_hash", "load_document", "read_file", "read_source", "with_timeout"]

logger = logging.getLogger(__name__)

PAGE_OFFSETS = layout.PAGE_OFFSETS  # document-only metadata: char offset where each page starts
PAGE_SEPARATOR = "\n\n"


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders recursively into supported regular files, sorted, so runs are repeatable.

    Files ``scan`` leaves out (FIFOs, devices, dangling symlinks) are dropped here; use ``scan`` to
    learn why.
    """
    yield from scan(paths).files


def read_source(path: Path, limits: ScanLimits = ScanLimits(), expect: tuple[int, int] | None = None) -> bytes:
    """The bytes of a file the scan accepted, read through one descriptor under ``limits``.

    With roots the file is reached from its root without following links, must be a regular file with
    one name (unless ``limits.allow_hardlinks``), the inode ``expect`` (from ``Scan.identity``) when
    given, and within ``limits.max_file_bytes``; opening and reading take at most ``limits.file_timeout``.

    Raises:
        LoadError: naming the file and why it was not read.
    """
    roots = tuple(Path(os.path.realpath(r)) for r in limits.roots)
    return read_checked(
        path,
        roots,
        max_bytes=limits.max_file_bytes,
        hardlinks_ok=limits.allow_hardlinks or not roots,
        expect=expect,
        timeout=limits.file_timeout,
    )


def file_hash(path: Path) -> str | None:
    """sha256 of the file's bytes, or None if it cannot be read (``load_document`` then says why).

    Streams the file (no size cap). The ingest itself hashes the bytes of ``read_source`` instead, so
    the hash and the parsed text cannot come from two different opens.
    """
    try:
        fd = open_file(path)
    except LoadError:
        return None
    h = hashlib.sha256()
    try:
        check_descriptor(fd, path)
        while block := os.read(fd, 1 << 20):
            h.update(block)
    except (OSError, LoadError):
        return None
    finally:
        os.close(fd)
    return h.hexdigest()


def read_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (more is an error, not a silent cut).

    Raises:
        LoadError: missing, unreadable, not a regular file, or over ``max_bytes``.
    """
    return read_checked(path, max_bytes=max_bytes)


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
    path: Path,
    passwords: dict[str, str] | None = None,
    max_bytes: int | None = None,
    timeout: float | None = None,
    data: bytes | None = None,
) -> Document:
    """Read one file into a Document whose id is the normalised path.

    Args:
        max_bytes: refuse larger files ("over limit"); None = no limit.
        timeout: seconds to read and parse it; None = no limit.
        data: the file's bytes, already read by ``read_source``: parse these, do not open the file again.

    Raises:
        LoadError: empty, unreadable, not a regular file, over a limit, too slow, encrypted,
            malformed, or without any text.
    """
    return with_timeout(lambda: _load(path, passwords, max_bytes, data), timeout, path)


def _load(path: Path, passwords: dict[str, str] | None, max_bytes: int | None, data: bytes | None = None) -> Document:
    if data is None:
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
