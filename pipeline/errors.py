"""One exception tree for the whole package, so callers map failures to exit codes and HTTP status in one place.

    PipelineError
    ├── ConfigError            settings that cannot work (bad provider, missing weights, bad hash)
    ├── IngestError
    │   ├── LoadError          one input file cannot be read (carries ``path``)
    │   └── EnrichError        the LLM failed to write a summary or questions
    ├── StoreError
    │   ├── StoreUnavailable   Qdrant or the docstore cannot be reached or opened
    │   │   ├── StoreDamaged   a store file (SQLite) is corrupt or truncated (carries ``path``)
    │   │   └── DiskFull       a write failed for lack of space or a file-size limit (carries ``path``)
    │   ├── StoreLocked        another process holds the store (embedded mode, or the ingest lock)
    │   └── ModelMismatch      a collection was built with another embedding model or dimension
    ├── QueryError
    │   └── InvalidQuery       empty query, unknown mode, top_k out of range
    │       └── UnknownDocument  a document name that names none, or several (carries ``ambiguous``)
    └── ShuttingDown           the service is stopping: a query waiting for its embedding was not run

``fatal_error(exc)`` turns anything else a command can hit (``OSError``, ``sqlite3`` errors) into one
of these, so the CLI has one error path: a message naming the file and the next step, exit 2.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Sequence
from pathlib import Path


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """Raised when settings cannot work, e.g. missing model weights or an unknown provider."""


class IngestError(PipelineError):
    """Raised when a document cannot be turned into parents and references."""


class LoadError(IngestError):
    """Raised when one input file cannot be read; the run continues with the other files.

    The message always starts with the file path, then the cause and what to do.
    """

    def __init__(self, path: Path | str, reason: str, hint: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"{self.path}: {reason}" + (f" ({hint})" if hint else ""))


class EnrichError(IngestError):
    """Raised when the LLM fails to write a summary or the questions of a parent."""


class StoreError(PipelineError):
    """Base of errors about Qdrant collections and the parent docstore."""


class StoreUnavailable(StoreError):
    """Raised when Qdrant or the docstore cannot be reached or opened."""


class StoreDamaged(StoreUnavailable):
    """Raised when a store file cannot be read as what it should be (truncated or corrupt SQLite)."""

    def __init__(self, path: Path | str, cause: str, hint: str = "") -> None:
        self.path = str(path)
        hint = hint or "run `python -m pipeline check --repair` to rebuild it, or restore it from a backup"
        super().__init__(f"{self.path} is damaged ({cause}): {hint}")


class DiskFull(StoreUnavailable):
    """Raised when a write fails for lack of space (ENOSPC, EDQUOT, SQLite "disk is full") or a file-size limit."""

    def __init__(self, path: Path | str, cause: str) -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path}: cannot write ({cause}): free disk space (or raise the quota/file-size limit) and run the "
            "command again; what was committed before stays, and the next run finishes the rest"
        )


class StoreLocked(StoreError):
    """Raised when another process holds the store; the message says what to do.

    Structured, so front ends adapt it without editing text: ``holders`` (which process, when known,
    replaces the guess "a running `pipeline serve`?") and ``advice`` (what to do; the CLI swaps the
    ingest advice for the one that fits the command).

    Example:
        raise StoreLocked.open_elsewhere("embedded Qdrant (edge) at store/edge")
        exc.held_by("pid 4242 (pipeline serve)").advise("ask the service instead (GET /status)")
    """

    GUESS = "a running `pipeline serve`?"
    INGEST_ADVICE = "send the job to the service (POST /ingest)"

    def __init__(self, message: str, *, what: str = "", holders: str | None = None, advice: str | None = None) -> None:
        self.what, self.holders, self.advice = what, holders, advice
        super().__init__(message if not what else self._text())

    @classmethod
    def open_elsewhere(cls, what: str) -> "StoreLocked":
        """An embedded store another process has open (the engine's lock, or local mode's)."""
        return cls("", what=what, advice=cls.INGEST_ADVICE)

    def _text(self) -> str:
        guess = "" if self.holders else f" ({self.GUESS})"
        held = f" Held by {self.holders}." if self.holders else ""
        return f"{self.what} is open in another process{guess}. Stop it, {self.advice}, or use a Qdrant server (QDRANT_URL).{held}"

    def held_by(self, holders: str) -> "StoreLocked":
        return StoreLocked("", what=self.what, holders=holders, advice=self.advice) if self.what else StoreLocked(f"{self} Held by {holders}.")

    def advise(self, advice: str) -> "StoreLocked":
        return StoreLocked("", what=self.what, holders=self.holders, advice=advice) if self.what else self


class ModelMismatch(StoreError):
    """Raised when a collection holds vectors of another embedding model or dimension."""

    def __init__(self, collection: str, stored: str, configured: str) -> None:
        self.collection = collection
        self.stored = stored
        self.configured = configured
        super().__init__(
            f"collection '{collection}' holds {stored}, configured {configured}: "
            "use the same embedding model, or ingest into another --store / collection prefix"
        )


class QueryError(PipelineError):
    """Base of errors raised while answering a query."""


class InvalidQuery(QueryError):
    """Raised for bad query input: empty text, unknown mode, top_k out of range."""


class UnknownDocument(InvalidQuery):
    """A document name (or id) that names no document, or more than one; ``closest`` lists candidates.

    ``ambiguous`` says which of the two: callers that answer differently (the service: 422 for a name
    several documents answer to, 404 for one nobody does) read it instead of parsing the message.
    """

    def __init__(self, message: str, name: str, closest: Sequence[str] = (), *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.name = name
        self.closest = list(closest)
        self.ambiguous = ambiguous


class ShuttingDown(PipelineError):
    """Raised to a query still waiting for its batched embedding when the service closes (HTTP 503)."""


NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DAMAGED = ("malformed", "not a database", "file is encrypted", "database corrupt")


def sqlite_error(path: Path | str, exc: sqlite3.Error) -> PipelineError:
    """The PipelineError for an ``sqlite3`` error on the file at ``path``."""
    text = str(exc)
    if "disk is full" in text or "too big" in text:
        return DiskFull(path, f"SQLite: {text}")
    if any(s in text for s in DAMAGED):
        name = Path(path).name
        hint = (
            "delete it; the next ingest rebuilds it (unchanged documents then cost LLM and embedding calls once more)"
            if name == "cache.sqlite"
            else ""
        )
        return StoreDamaged(path, f"SQLite: {text}", hint)
    if "disk I/O error" in text:
        return StoreUnavailable(f"{path}: I/O error ({text}): check free space, quotas and file-size limits, then run again")
    if "readonly" in text or "unable to open" in text:
        return StoreUnavailable(f"{path}: cannot open or write ({text}): check that this user may write the store folder")
    if "locked" in text:
        return StoreLocked(f"{path} is locked by another process ({text}): wait for it, or stop it")
    return StoreUnavailable(f"{path}: SQLite error ({text}): run `python -m pipeline check` to diagnose the store")


def fatal_error(exc: BaseException, where: Path | str = "the store") -> PipelineError | None:
    """The PipelineError a command should report for ``exc``, or None if it is a bug (not an
    environment problem): disk full, permission denied and other OS errors name their file."""
    if isinstance(exc, PipelineError):
        return exc
    if isinstance(exc, OSError):
        where = exc.filename or where
        if exc.errno in NO_SPACE:
            return DiskFull(where, exc.strerror or str(exc))
        if isinstance(exc, PermissionError):
            return StoreUnavailable(f"{where}: permission denied: make it readable and writable by this user")
        return StoreUnavailable(f"{where}: {exc.strerror or exc}: check the file and its file system")
    if isinstance(exc, sqlite3.Error):
        return sqlite_error(f"a SQLite file in {where}", exc)
    if type(exc).__module__.startswith(("qdrant_client.", "httpx", "httpcore")):
        # A Qdrant server's failure (UnexpectedResponse, ResponseHandlingException, a dropped connection):
        # the store is unavailable, not a bug; the CLI and the service say so with the same class.
        return StoreUnavailable(f"Qdrant request failed: {type(exc).__name__}: {exc}")
    return None
