"""Paths → one ``Document`` per file (PDF, .txt, .md), with page offsets, doc_id and content hash.

Every failure is a ``LoadError`` naming the file, the cause and what to do; callers log it and go on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from llama_index.core.schema import Document

from pipeline.errors import LoadError
from pipeline.store import layout

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md")
PAGE_OFFSETS = "page_offsets"  # document-only metadata: char offset where each page starts
PAGE_SEPARATOR = "\n\n"


def discover(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand folders recursively into supported files, sorted, so runs are repeatable."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        else:
            yield path


def file_hash(path: Path) -> str | None:
    """sha256 of the file's bytes, or None if it cannot be read (``load_document`` then says why).

    Lets an unchanged file be skipped without parsing it: a no-change sync costs a hash per file.
    """
    try:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


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


def load_document(path: Path, passwords: dict[str, str] | None = None) -> Document:
    """Read one file into a Document whose id is the normalised path.

    Raises:
        LoadError: empty, unreadable, encrypted, malformed, or without any text.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise LoadError(path, "file not found", "check the path") from exc
    except PermissionError as exc:
        raise LoadError(path, "permission denied", "make it readable by this user") from exc
    except IsADirectoryError as exc:
        raise LoadError(path, "is a directory", "pass files or folders") from exc
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
