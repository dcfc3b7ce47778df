"""Many ingest workers on one database (fleet mode): each document is claimed with a lease before it is written.

Why leases and not the writer lock: with ``database.url`` set, ``pipeline ingest`` processes on one
or many machines hold the writer lock *shared* (store/state.py) and split the work. A lease row per
document says who writes it and until when; a worker claims the next free document with
``SELECT … FOR UPDATE SKIP LOCKED`` (two workers never wait on, or both take, the same row), renews
its claims from a heartbeat thread, and marks a document finished when its write is done. A killed
worker stops renewing: once ``database.lease_seconds`` pass, its document is free and another worker
takes it over; the ledger protocol (``LedgerWriter.apply``) then cleans up whatever it half wrote.

"Finished since I started" is what a worker skips: a document another worker finished during this
run is not read again, while a later run (a changed file) claims it anew and finds it unchanged or not.
Store-wide chores (interrupted removals, ``--sync`` pruning) run under one advisory lock, by one worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.store.layout import doc_id_for
from pipeline.store.state import db_url, lock_key, namespace, worker_id

logger = logging.getLogger(__name__)


class Leases:
    """The ``leases`` rows of one store (``kind`` separates ingest claims from enrich claims)."""

    def __init__(self, settings: Settings, kind: str = "ingest") -> None:
        from pipeline.store.postgres import pool

        self.settings = settings
        self.pool = pool(db_url(settings), settings.database.pool_size)
        self.ns = f"{namespace(settings)}/{kind}"
        self.owner = worker_id()
        self.seconds = settings.database.lease_seconds
        with self.pool.connection() as conn:
            self.since = conn.execute("SELECT now()").fetchone()[0]  # the server's clock: workers' clocks may differ
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def register(self, doc_ids: Sequence[str]) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO leases (namespace, doc_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", [(self.ns, d) for d in doc_ids])

    def claim(self, doc_ids: Sequence[str]) -> str | None:
        """The next document of ``doc_ids`` nobody holds and nobody finished since this run began, now ours."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT doc_id FROM leases WHERE namespace = %s AND doc_id = ANY(%s) "
                "AND (owner IS NULL OR expires_at < now()) AND (finished_at IS NULL OR finished_at < %s) "
                "ORDER BY doc_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (self.ns, list(doc_ids), self.since),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE leases SET owner = %s, expires_at = now() + make_interval(secs => %s) WHERE namespace = %s AND doc_id = %s",
                (self.owner, self.seconds, self.ns, row[0]),
            )
        return row[0]

    def outstanding(self, doc_ids: Sequence[str]) -> int:
        """Documents of ``doc_ids`` not finished since this run began (held by a live worker, or free)."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT count(*) FROM leases WHERE namespace = %s AND doc_id = ANY(%s) AND (finished_at IS NULL OR finished_at < %s)",
                (self.ns, list(doc_ids), self.since),
            ).fetchone()[0]

    def finish(self, doc_id: str, done: bool = True) -> None:
        """Give the document back: finished (``done``), or free for another worker at once (this one failed)."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE leases SET owner = NULL, expires_at = NULL, finished_at = CASE WHEN %s THEN now() ELSE finished_at END "
                "WHERE namespace = %s AND doc_id = %s AND owner = %s",
                (done, self.ns, doc_id, self.owner),
            )

    def renew(self) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE leases SET expires_at = now() + make_interval(secs => %s) WHERE namespace = %s AND owner = %s",
                         (self.seconds, self.ns, self.owner))

    def start_heartbeat(self) -> None:
        """Renew this worker's claims every third of a lease, so a long document is not taken over while alive."""
        def beat() -> None:
            while not self._stop.wait(self.seconds / 3):
                try:
                    self.renew()
                except Exception as exc:  # the database away for a moment: the next beat retries
                    logger.warning("lease renewal failed: %s", exc)

        self._beat = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._beat.start()

    def stop(self) -> None:
        self._stop.set()


def claimed(settings: Settings, sources: Sequence[Path], poll: float = 0.5, kind: str = "ingest") -> Iterator[Path]:
    """The files of ``sources`` this worker should ingest, one claimed document at a time.

    Each one is marked finished when the caller asks for the next; if the caller stops with an
    error, the claim is handed back at once instead (another worker may retry it). Returns when
    every document is finished by someone; waits meanwhile for documents other workers hold.
    """
    by_id = {doc_id_for(p): p for p in sources}
    yield from (by_id[d] for d in claimed_ids(settings, list(by_id), poll, kind))


def claimed_ids(settings: Settings, doc_ids: Sequence[str], poll: float = 0.5, kind: str = "ingest") -> Iterator[str]:
    """``claimed`` for document ids (``enrich``: the store's documents)."""
    leases = Leases(settings, kind)
    leases.register(doc_ids)
    leases.start_heartbeat()
    try:
        while True:
            doc = leases.claim(doc_ids)
            if doc is None:
                if not leases.outstanding(doc_ids):
                    return
                time.sleep(poll)  # held by live workers: wait for them to finish, or for their leases to expire
                continue
            ok = False
            try:
                yield doc
                ok = True
            finally:
                leases.finish(doc, done=ok)
    finally:
        leases.stop()


@contextmanager
def chores(settings: Settings) -> Iterator[bool]:
    """One worker at a time does store-wide chores (``--sync`` pruning, interrupted removals): yields
    True to the one that got the advisory lock, False to the others (which skip them: it is being done).
    Without a database there is one writer anyway: always True, nothing opened."""
    if settings.database.url is None:
        yield True
        return
    import psycopg

    conn: Any = psycopg.connect(db_url(settings), autocommit=True, application_name="pipeline-maintenance")
    try:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key("pipeline-maintenance", namespace(settings)),)).fetchone()[0]
        yield bool(got)
    finally:
        conn.close()  # ends the session: releases the lock
