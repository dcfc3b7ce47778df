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
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.store.docstore import LEDGER
from pipeline.store.layout import doc_id_for
from pipeline.store.ledger import fault_marker
from pipeline.store.state import db_url, lock_key, namespace, worker_id

logger = logging.getLogger(__name__)

def stall(step: str) -> None:
    """Let the fencing test stall a real worker past its lease, as a long pause would: with
    ``PIPELINE_FAULT_PAUSE=stall-before-commit:/tmp/m`` the process touches /tmp/m and stops itself
    (SIGSTOP: its heartbeat stops too, so the lease runs out) until the test sends SIGCONT.
    Unset (always, outside tests) this is a no-op. The ledger's own pause steps (``checkpoint``)
    sleep in one thread while the heartbeat keeps the lease alive: the opposite case.
    """
    marker = fault_marker(step)
    if marker is None or _stalled.is_set():
        return
    _stalled.set()  # once per process
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGSTOP)


_stalled = threading.Event()


class Leases:
    """The ``leases`` rows of one store (``kind`` separates ingest claims from enrich claims).

    Each claim raises the row's ``token`` (a fencing token): the worker remembers the token it got,
    and its ledger writes for the claimed document check it in their own transaction (``fenced``).
    A worker that stalled past its lease (a long GC or VM pause, a stopped process) while another
    took the document over finds a newer token there and commits nothing: ``StoreLocked``.
    """

    def __init__(self, settings: Settings, kind: str = "ingest") -> None:
        from pipeline.store.postgres import pool

        self.settings = settings
        self.url = db_url(settings)
        self.pool = pool(self.url, settings.database.pool_size)
        self.ns = f"{namespace(settings)}/{kind}"
        self.owner = worker_id()
        self.seconds = settings.database.lease_seconds
        self.tokens: dict[str, int] = {}
        self.since = self._do(lambda conn: conn.execute("SELECT now()").fetchone()[0])  # the server's clock: workers' clocks may differ
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._locks: Any = None  # the connection holding per-document commit locks (``document_lock``)

    def _do(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(conn)`` in one transaction, retried once on a fresh connection (a restarted server
        closed the pooled one); a database still away is ``StoreUnavailable``."""
        import psycopg
        from psycopg_pool import PoolTimeout

        from pipeline.store.postgres import recheck, unavailable

        for attempt in range(2):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return fn(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                if attempt or isinstance(exc, PoolTimeout):
                    raise unavailable(self.url, exc) from exc
                recheck(self.pool)
        raise AssertionError("not reached")

    def register(self, doc_ids: Sequence[str]) -> None:
        """Rows for ``doc_ids`` (existing ones kept). Rows nobody holds that finished over a day ago are
        dropped first: every parent id an ``enrich`` ever saw would otherwise stay in the table."""
        def run(conn: Any) -> None:
            conn.execute("DELETE FROM leases WHERE namespace = %s AND owner IS NULL AND finished_at < now() - interval '1 day'", (self.ns,))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO leases (namespace, doc_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", [(self.ns, d) for d in doc_ids])

        self._do(run)

    def claim(self, doc_ids: Sequence[str]) -> str | None:
        """The next document of ``doc_ids`` nobody holds and nobody finished since this run began, now ours."""
        def run(conn: Any) -> tuple[str, int] | None:
            row = conn.execute(
                "SELECT doc_id FROM leases WHERE namespace = %s AND doc_id = ANY(%s) "
                "AND (owner IS NULL OR expires_at < now()) AND (finished_at IS NULL OR finished_at < %s) "
                "ORDER BY doc_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (self.ns, list(doc_ids), self.since),
            ).fetchone()
            if row is None:
                return None
            token = conn.execute(
                "UPDATE leases SET owner = %s, expires_at = now() + make_interval(secs => %s), token = token + 1 "
                "WHERE namespace = %s AND doc_id = %s RETURNING token",
                (self.owner, self.seconds, self.ns, row[0]),
            ).fetchone()[0]
            return row[0], token

        got = self._do(run)
        if got is None:
            return None
        self.tokens[got[0]] = got[1]
        return got[0]

    def check_token(self, conn: Any, key: str) -> None:
        """Inside the caller's transaction: ``key`` is still ours (same token), and stays so until it
        commits (``FOR SHARE``: a claimer's ``SKIP LOCKED`` passes the row by meanwhile).

        Raises:
            StoreLocked: another worker took the claim over after this one's lease expired.
        """
        from pipeline.errors import StoreLocked

        row = conn.execute("SELECT owner, token FROM leases WHERE namespace = %s AND doc_id = %s FOR SHARE", (self.ns, key)).fetchone()
        if row is None or row[0] != self.owner or row[1] != self.tokens.get(key):
            holder = "nobody" if row is None or row[0] is None else row[0]
            raise StoreLocked(
                f"{key}: this worker's lease expired (it stalled past database.lease_seconds = {self.seconds:g} s) and "
                f"the claim went to {holder}; nothing of it was committed here: that worker writes it"
            )

    @contextmanager
    def fenced(self, key: str, ledger_key: str) -> Iterator[None]:
        """While held, every docstore write by this thread (the document's intent, parents, page
        offsets, its commit) checks the claim on ``key`` in its own transaction. The ingest cache is
        not fenced: its rows are keyed by content, so a stale worker's cache rows are still right.
        ``ledger_key``: the ledger entry whose commit is the claim's (the stall hook's place)."""
        from pipeline.store.postgres import guarded
        from pipeline.store.state import DOCSTORE_KV

        def check(conn: Any, kv_namespace: str, collection: str, keys: list[str], values: list[dict | None]) -> None:
            if not kv_namespace.endswith("/" + DOCSTORE_KV):
                return
            if collection == LEDGER and ledger_key in keys:
                value = values[keys.index(ledger_key)]
                stall("stall-before-commit" if value is not None and not value.get("pending") else "stall-before-intent")
            self.check_token(conn, key)

        with guarded(check):
            yield

    @contextmanager
    def document_lock(self, doc_id: str) -> Iterator[None]:
        """One writer of a document's ledger entry at a time across the fleet: enrich workers each
        enrich other parents, but every parent's commit rewrites the one entry of its document
        (read, change, write), so two at once would lose one's parent. Held for the commit only
        (not the LLM calls); a session lock on a connection of its own, released if this process dies.
        """
        import psycopg

        from pipeline.store.postgres import unavailable

        key = lock_key("pipeline-document", self.ns, doc_id)
        try:
            if self._locks is None or self._locks.closed:
                self._locks = psycopg.connect(self.url, autocommit=True, connect_timeout=10, application_name="pipeline-document-lock")
            self._locks.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.Error as exc:
            self._locks = None
            raise unavailable(self.url, exc) from exc
        try:
            yield
        finally:
            try:
                self._locks.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.Error:  # the session is gone, and its locks with it
                self._locks = None

    def outstanding(self, doc_ids: Sequence[str]) -> int:
        """Documents of ``doc_ids`` not finished since this run began (held by a live worker, or free)."""
        return self._do(lambda conn: conn.execute(
            "SELECT count(*) FROM leases WHERE namespace = %s AND doc_id = ANY(%s) AND (finished_at IS NULL OR finished_at < %s)",
            (self.ns, list(doc_ids), self.since),
        ).fetchone()[0])

    def finish(self, doc_id: str, done: bool = True) -> None:
        """Give the document back: finished (``done``), or free for another worker at once (this one failed).
        A claim another worker took over is not this worker's to finish (``owner`` differs)."""
        self._do(lambda conn: conn.execute(
            "UPDATE leases SET owner = NULL, expires_at = NULL, finished_at = CASE WHEN %s THEN now() ELSE finished_at END "
            "WHERE namespace = %s AND doc_id = %s AND owner = %s AND token = %s",
            (done, self.ns, doc_id, self.owner, self.tokens.pop(doc_id, -1)),
        ))

    def renew(self) -> None:
        self._do(lambda conn: conn.execute(
            "UPDATE leases SET expires_at = now() + make_interval(secs => %s) WHERE namespace = %s AND owner = %s",
            (self.seconds, self.ns, self.owner),
        ))

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
        if self._locks is not None:
            self._locks.close()
            self._locks = None


def claimed(settings: Settings, sources: Sequence[Path], poll: float = 0.5, kind: str = "ingest") -> Iterator[Path]:
    """The files of ``sources`` this worker should ingest, one claimed document at a time.

    Each one is marked finished when the caller asks for the next; if the caller stops with an
    error, the claim is handed back at once instead (another worker may retry it). Returns when
    every document is finished by someone; waits meanwhile for documents other workers hold.
    While the caller works on a document, its ledger writes are fenced by the claim's token.
    """
    by_id = {doc_id_for(p): p for p in sources}
    leases = Leases(settings, kind)
    yield from (by_id[d] for d in claimed_ids(leases, list(by_id), poll))


def claimed_ids(leases: Leases, keys: Sequence[str], poll: float = 0.5, ledger_key: Callable[[str], str] = lambda k: k) -> Iterator[str]:
    """``claimed`` for claim keys: document ids (ingest), or parent ids (``enrich``, whose
    ``ledger_key`` maps a parent to the document whose ledger entry its commit writes)."""
    leases.register(keys)
    leases.start_heartbeat()
    try:
        while True:
            key = leases.claim(keys)
            if key is None:
                if not leases.outstanding(keys):
                    return
                time.sleep(poll)  # held by live workers: wait for them to finish, or for their leases to expire
                continue
            ok = False
            try:
                with leases.fenced(key, ledger_key(key)):
                    yield key
                ok = True
            finally:
                try:
                    leases.finish(key, done=ok)
                except Exception as exc:  # the claim lapses by itself: another worker redoes it after the lease
                    logger.warning("could not give back the claim on %s: %s", key, exc)
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
