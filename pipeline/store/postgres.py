"""The docstore, the ingest cache and the ledger in PostgreSQL (``database.url``): the fleet's shared state.

``PostgresKV`` is the same ``BaseKVStore`` as ``SQLiteKVStore`` (``transaction()`` nesting, ``get_many``,
``count``, ``verify``...), so ``ParentStore``, ``CountingCache`` and ``LedgerWriter.apply`` run on it
unchanged: PostgreSQL is a second storage under the one write protocol, not a second protocol.

Why not LlamaIndex's ``PostgresKVStore`` (``llama-index-storage-kvstore-postgres`` 0.6): it commits
every ``put``/``delete`` in its own SQLAlchemy session, so parents and ledger cannot change in one
transaction (the write protocol's step 2 needs that), it has no ``get_many`` (retrieval reads a hit's
parents in one query), and it pulls psycopg2, asyncpg and SQLAlchemy for what is five SQL statements.

Layout: one table ``kv(namespace, collection, key, value)`` for every store in the database. A
store is a ``namespace`` (``database.namespace``, default the Qdrant prefix, so fleet members that share
collections share rows), its docstore and cache ``<namespace>/docstore`` and ``<namespace>/cache``. One
table, not a schema per store: the schema is versioned once (``schema_version``) and upgrades once for
all stores, and a new store needs no DDL (no CREATE rights for workers).

``value`` is the JSON as text (schema 3), as SQLite stores it, not ``jsonb``: ``jsonb`` refuses the
escape ``\u0000``, and text pulled out of PDFs may hold NUL characters (the 41-paper store does:
`migrate --to postgres` of it failed with "unsupported Unicode escape sequence"). Nothing
queries inside the values on the server, so ``jsonb`` bought nothing; they are parsed in Python either way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from pipeline.store.sqlite_kv import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION

from pipeline.errors import ConfigError, StoreUnavailable
from pipeline.store.sqlite_kv import SyncKVStore

SCHEMA_VERSION = 3
# Each upgrade step: the DDL that takes a database from version N-1 to N (index N-1).
_UPGRADES: list[list[str]] = [
    [
        "CREATE TABLE IF NOT EXISTS kv (namespace text NOT NULL, collection text NOT NULL, key text NOT NULL, "
        "value jsonb NOT NULL, PRIMARY KEY (namespace, collection, key))",
        # Ingest workers' claims (ingest/fleet.py): who writes which document, until when.
        "CREATE TABLE IF NOT EXISTS leases (namespace text NOT NULL, doc_id text NOT NULL, owner text, "
        "expires_at timestamptz, finished_at timestamptz, PRIMARY KEY (namespace, doc_id))",
    ],
    [
        # The fencing token: raised at every claim, so a worker whose lease was taken over while it
        # stalled finds another token at its ledger commit and does not commit (ingest/fleet.py).
        "ALTER TABLE leases ADD COLUMN IF NOT EXISTS token bigint NOT NULL DEFAULT 0",
    ],
    [
        # JSON as text: jsonb cannot hold \u0000, which PDF text contains (see the module docstring).
        "ALTER TABLE kv ALTER COLUMN value TYPE text USING value::text",
    ],
]
_SCHEMA_LOCK = 0x7069706531  # advisory lock key serialising schema creation/upgrade ("pipe1")

_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()
# A write guard per thread (``guarded``): ingest/fleet.py sets it while a worker holds a lease.
_guard = threading.local()


def masked(url: str) -> str:
    """The URL with its password replaced, for messages (secrets are never printed)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"database {masked(url)} unreachable: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")


def pool(url: str, size: int = 4) -> Any:
    """One connection pool per URL per process (the service's threads and an ingest share it).

    No check per checkout: it cost a round trip before every query (the parent lookup's p95 was
    +3.9 ms over SQLite with it). A connection a restarted server closed is found by its failing
    query instead: the pool drops it, ``recheck`` replaces the other idle ones the restart closed, and
    ``PostgresKV`` retries the read (or the transaction's ``BEGIN``) once, so a replica recovers by itself.
    """
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        p = _pools.get(url)
        if p is None or p.closed:
            p = ConnectionPool(url, min_size=1, max_size=max(2, size), open=False,
                               kwargs={"autocommit": True}, name="pipeline", timeout=5)
            try:
                p.open(wait=True, timeout=10)
            except Exception as exc:
                p.close()
                raise unavailable(url, exc) from exc
            _ensure_schema(p, url)
            _pools[url] = p
        return p


@contextmanager
def guarded(check: Callable[[Any, str, str, list[str], list[dict | None]], None]) -> Iterator[None]:
    """Run ``check(conn, namespace, collection, keys, values)`` inside every write this thread makes to a
    ``PostgresKV``, in the write's own transaction, before it (``values`` None for a delete). Raising aborts the write.

    Why a hook here: the fencing token must be checked in the transaction that commits the ledger
    entry (the write protocol's commit point) and in those that write a document's parents, and
    those transactions are this KV's; the lease table belongs to the ingest side (ingest/fleet.py),
    which passes the check in.
    """
    before = getattr(_guard, "check", None)
    _guard.check = check
    try:
        yield
    finally:
        _guard.check = before


def _guard_write(conn: Any, namespace: str, collection: str, keys: list[str], values: list[dict | None]) -> None:
    check = getattr(_guard, "check", None)
    if check is not None:
        check(conn, namespace, collection, keys, values)


def recheck(p: Any) -> None:
    """After one connection failed: test every idle one of the pool and replace the broken ones, so
    the retry does not draw another connection the same restart closed. Paid only on a failure."""
    try:
        p.check()
    except Exception:  # the server still away: the retry reports it
        pass


def close_pools() -> None:
    with _pools_lock:
        for p in _pools.values():
            p.close()
        _pools.clear()


def _ensure_schema(p: Any, url: str) -> None:
    """Create or upgrade the schema to ``SCHEMA_VERSION``; refuse a newer one with a clear message."""
    with p.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        have = row[0] or 0
        if have > SCHEMA_VERSION:
            raise ConfigError(
                f"database {masked(url)} has schema version {have}, newer than this pipeline's {SCHEMA_VERSION}: "
                "upgrade pipeline on this machine (every fleet member must run the same or a newer version)"
            )
        for version in range(have + 1, SCHEMA_VERSION + 1):
            for ddl in _UPGRADES[version - 1]:
                conn.execute(ddl)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


class PostgresKV(SyncKVStore):
    """Key → JSON dict, partitioned by collection, in the ``kv`` table under one ``namespace``.

    Outside a transaction each call borrows a pooled connection (autocommit); inside ``transaction()``
    the calling thread keeps one connection until the outermost block commits, so the service's
    threads read concurrently while an ingest writes.

    Example:
        kv = PostgresKV("postgresql://localhost/test", "docs/docstore")
        with kv.transaction():
            kv.put("a", {"x": 1}); kv.put("b", {"x": 2})
    """

    def __init__(self, url: str, namespace: str, pool_size: int = 4) -> None:
        self.url = url
        self.namespace = namespace
        self.path = f"{masked(url)} [{namespace}]"  # what messages name, as SQLiteKVStore names its file
        self._pool = pool(url, pool_size)
        self._local = threading.local()

    def _held(self) -> Any:
        return getattr(self._local, "conn", None)

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(conn)`` on this thread's transaction's connection, or on a pooled one.

        Outside a transaction, a failure on a connection the server closed (restart, failover) is
        retried once on a fresh one: every call that gets here alone is a read. Inside a transaction
        it is not (the caller's earlier statements went with the connection): the caller sees it.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        held = self._held()
        attempts = 1 if held is not None else 2
        for attempt in range(attempts):
            try:
                if held is not None:
                    return fn(held)
                with self._pool.connection() as conn:
                    return fn(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt + 1 == attempts:
                    raise unavailable(self.url, exc) from exc
                recheck(self._pool)
            except PoolTimeout as exc:
                raise unavailable(self.url, exc) from exc
        raise AssertionError("not reached")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic commit; nests (only the outermost commits).

        The outermost block's ``BEGIN`` is the first statement on its connection: one the server
        closed fails there, before any work, and the block starts again on a fresh connection.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._held() is not None:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        errors = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
        for attempt in range(2):
            stack = ExitStack()
            try:
                conn = stack.enter_context(self._pool.connection())
                stack.enter_context(conn.transaction())  # sends BEGIN
                break
            except errors as exc:
                stack.__exit__(type(exc), exc, exc.__traceback__)  # the pool drops the broken connection
                if attempt or isinstance(exc, PoolTimeout):
                    raise unavailable(self.url, exc) from exc
                recheck(self._pool)
        try:
            with stack:
                self._local.conn, self._local.depth = conn, 1
                try:
                    yield
                finally:
                    self._local.conn = None
        except errors as exc:
            raise unavailable(self.url, exc) from exc

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put_all([(key, val)], collection)

    def put_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not kv_pairs:
            return
        with self.transaction():  # atomic, as SQLiteKVStore.put_all
            conn = self._held()
            _guard_write(conn, self.namespace, collection, [k for k, _ in kv_pairs], [v for _, v in kv_pairs])
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO kv (namespace, collection, key, value) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (namespace, collection, key) DO UPDATE SET value = EXCLUDED.value",
                    [(self.namespace, collection, k, json.dumps(v)) for k, v in kv_pairs],
                )

    def _rows(self, sql: str, params: tuple) -> list[tuple]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall())

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        rows = self._rows("SELECT value FROM kv WHERE namespace = %s AND collection = %s AND key = %s", (self.namespace, collection, key))
        return json.loads(rows[0][0]) if rows else None

    def get_many(self, keys: list[str], collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        """The values of those ``keys`` that exist, in one query (absent keys are left out)."""
        if not keys:
            return {}
        return {k: json.loads(v) for k, v in self._rows("SELECT key, value FROM kv WHERE namespace = %s AND collection = %s AND key = ANY(%s)",
                                                        (self.namespace, collection, list(keys)))}

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self._rows("SELECT key, value FROM kv WHERE namespace = %s AND collection = %s", (self.namespace, collection))}

    def keys(self, collection: str = DEFAULT_COLLECTION) -> list[str]:
        return [r[0] for r in self._rows("SELECT key FROM kv WHERE namespace = %s AND collection = %s", (self.namespace, collection))]

    def count(self, collection: str = DEFAULT_COLLECTION) -> int:
        return self._rows("SELECT count(*) FROM kv WHERE namespace = %s AND collection = %s", (self.namespace, collection))[0][0]

    def collections(self) -> list[str]:
        """Every collection this namespace holds (``migrate`` copies them all)."""
        return [r[0] for r in self._rows("SELECT DISTINCT collection FROM kv WHERE namespace = %s", (self.namespace,))]

    def is_empty(self) -> bool:
        return self._rows("SELECT NOT EXISTS (SELECT 1 FROM kv WHERE namespace = %s)", (self.namespace,))[0][0]

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        with self.transaction():
            conn = self._held()
            _guard_write(conn, self.namespace, collection, [key], [None])
            cur = conn.execute("DELETE FROM kv WHERE namespace = %s AND collection = %s AND key = %s", (self.namespace, collection, key))
            return cur.rowcount > 0

    def verify(self) -> None:
        """A round trip (PostgreSQL checks its own pages; there is no file to scan)."""
        self._rows("SELECT 1", ())

    def close(self) -> None:
        """Nothing to close per store: the pool is per process (``close_pools``)."""
