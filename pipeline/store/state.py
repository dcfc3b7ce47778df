"""Where a store's state lives: the one place that opens the docstore, the cache KV, the ledger reader and the writer lock.

Unset ``database.url``: the SQLite files in the store folder and ``<store>/ingest.lock``, exactly as
before. Set: the same stores on ``PostgresKV`` (store/postgres.py) under the store's namespace, and
the writer lock a PostgreSQL advisory lock, so processes on other machines exclude each other too.
Every caller goes through here, so no code path can write SQLite while its neighbour writes PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.store.docstore import FAILURES, LEDGER, NAMESPACE, PAGE_OFFSETS, LedgerReader, ParentStore

LOCK_FILE = "ingest.lock"  # the SQLite-mode writer lock's file in the store folder
DOCSTORE_KV = "docstore"
CACHE_KV = "cache"


def fleet(settings: Settings) -> bool:
    """True when the state is in PostgreSQL (``database.url`` set)."""
    return settings.database.url is not None


def db_url(settings: Settings) -> str:
    assert settings.database.url is not None
    return settings.database.url.get_secret_value()


def namespace(settings: Settings) -> str:
    """The store's name in the database: ``database.namespace``, else the Qdrant prefix."""
    return settings.database.namespace or settings.qdrant.prefix


def open_kv(settings: Settings, which: str) -> Any:
    """The KV under the docstore (``which`` = "docstore") or the ingest cache ("cache")."""
    if fleet(settings):
        from pipeline.store.postgres import PostgresKV

        return PostgresKV(db_url(settings), f"{namespace(settings)}/{which}", settings.database.pool_size)
    from pipeline.store.sqlite_kv import SQLiteKVStore

    return SQLiteKVStore(settings.docstore_path if which == DOCSTORE_KV else settings.cache_path)


def open_parents(settings: Settings) -> ParentStore:
    """The docstore (parents + ledger + failures + page offsets) of this store, created if absent."""
    if fleet(settings):
        kv = open_kv(settings, DOCSTORE_KV)
        return ParentStore(kv.path, kv=kv)
    return ParentStore(settings.docstore_path)


def has_docstore(settings: Settings) -> bool:
    """Whether anything was ever written to this store's docstore (nothing is created to find out)."""
    if fleet(settings):
        return not open_kv(settings, DOCSTORE_KV).is_empty()
    return settings.docstore_path.is_file()


class KVLedgerReader:
    """``LedgerReader``'s (and ``DocumentReader``'s) answers from a ``PostgresKV``: writes and creates nothing."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.path = kv.path

    def _all(self, collection: str) -> dict[str, dict[str, Any]]:
        return self.kv.get_all(collection)

    def ledger(self) -> dict[str, Any]:
        from pipeline.store.ledger import LedgerEntry

        return {doc: LedgerEntry.model_validate(raw) for doc, raw in self._all(LEDGER).items()}

    def failures(self) -> dict[str, dict[str, Any]]:
        return self._all(FAILURES)

    def page_offsets(self) -> dict[str, dict[str, Any]]:
        return self._all(PAGE_OFFSETS)

    def count(self) -> int:
        return self.kv.count(f"{NAMESPACE}/data")

    def close(self) -> None:
        self.kv.close()


def open_ledger_reader(settings: Settings) -> LedgerReader | KVLedgerReader:
    """The ledger, failures, page offsets and parent count, read-only (``status``, the catalog)."""
    if fleet(settings):
        return KVLedgerReader(open_kv(settings, DOCSTORE_KV))
    return LedgerReader(settings.docstore_path)


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for a name (PostgreSQL's keys are bigint)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLock:
    """The writer lock as a session-level PostgreSQL advisory lock, with ``FileLock``'s surface.

    Session-level, on a connection of its own (not the pool's): a killed process's session ends and
    PostgreSQL releases the lock at once, as the kernel releases a dead process's file lock.
    ``shared``: ingest workers hold it shared, so many run at once, while ``check --repair``,
    snapshots and ``migrate`` hold it exclusive and wait for (or refuse) every worker.

    Raises ``filelock.Timeout`` like ``FileLock``, so callers' messages need no second branch.
    """

    def __init__(self, url: str, name: str, timeout: float, shared: bool = False) -> None:
        self.url, self.name, self.timeout, self.shared = url, name, timeout, shared
        self.lock_file = f"database advisory lock {name!r}"
        self._key = lock_key("pipeline-writer", name)
        self._conn: Any = None
        self._depth = 0

    @property
    def is_locked(self) -> bool:
        return self._depth > 0

    def acquire(self, timeout: float | None = None, poll_interval: float = 0.05) -> "AdvisoryLock":
        from filelock import Timeout

        if self._depth:
            self._depth += 1
            return self
        timeout = self.timeout if timeout is None else timeout
        conn = self._connect()
        fn = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        deadline = time.monotonic() + timeout if timeout >= 0 else float("inf")
        while not conn.execute(f"SELECT {fn}(%s)", (self._key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                conn.close()
                raise Timeout(self.lock_file)
            time.sleep(poll_interval)
        self._conn, self._depth = conn, 1
        return self

    def _connect(self) -> Any:
        import psycopg

        from pipeline.store.postgres import unavailable

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10, application_name="pipeline-lock")
        except psycopg.Error as exc:
            raise unavailable(self.url, exc) from exc

    def release(self, force: bool = False) -> None:
        if not self._depth:
            return
        self._depth = 0 if force else self._depth - 1
        if self._depth == 0 and self._conn is not None:
            try:
                self._conn.close()  # ending the session releases the lock (also if the server restarted)
            finally:
                self._conn = None

    def __enter__(self) -> "AdvisoryLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def writer_lock(settings: Settings, timeout: float, shared: bool = False) -> Any:
    """The store's writer lock, not yet acquired: ``<store>/ingest.lock``, or in fleet mode the advisory lock.

    ``shared`` only matters in fleet mode (ingest workers); with SQLite one writer runs at a time.
    """
    if fleet(settings):
        return AdvisoryLock(db_url(settings), namespace(settings), timeout, shared=shared)
    from filelock import FileLock

    settings.store.mkdir(parents=True, exist_ok=True)
    return FileLock(str(settings.store / LOCK_FILE), timeout=timeout)


def worker_id() -> str:
    """Who holds a lease: host, pid and a per-process nonce (a pid may be reused after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_NONCE}"


_NONCE = uuid.uuid4().hex[:8]
