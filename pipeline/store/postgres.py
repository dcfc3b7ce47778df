"""The docstore, the ingest cache and the ledger in PostgreSQL (``database.url``): the fleet's shared state.

``PostgresKV`` is the same ``BaseKVStore`` as ``SQLiteKVStore`` (``transaction()`` nesting, ``get_many``,
``count``, ``verify``...), so ``ParentStore``, ``CountingCache`` and ``LedgerWriter.apply`` run on it
unchanged: PostgreSQL is a second storage under the one write protocol, not a second protocol.

Why not LlamaIndex's ``PostgresKVStore`` (``llama-index-storage-kvstore-postgres`` 0.6): it commits
every ``put``/``delete`` in its own SQLAlchemy session, so parents and ledger cannot change in one
transaction (the write protocol's step 2 needs that), it has no ``get_many`` (retrieval reads a hit's
parents in one query), and it pulls psycopg2, asyncpg and SQLAlchemy for what is five SQL statements.

Layout: one table ``kv(namespace, collection, key, value jsonb)`` for every store in the database. A
store is a ``namespace`` (``database.namespace``, default the Qdrant prefix, so fleet members that share
collections share rows), its docstore and cache ``<namespace>/docstore`` and ``<namespace>/cache``. One
table, not a schema per store: the schema is versioned once (``schema_version``) and upgrades once for
all stores, and a new store needs no DDL (no CREATE rights for workers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION

from pipeline.errors import ConfigError, StoreUnavailable
from pipeline.store.sqlite_kv import SyncKVStore

SCHEMA_VERSION = 1
# Each upgrade step: the DDL that takes a database from version N-1 to N (index N-1).
_UPGRADES: list[list[str]] = [
    [
        "CREATE TABLE IF NOT EXISTS kv (namespace text NOT NULL, collection text NOT NULL, key text NOT NULL, "
        "value jsonb NOT NULL, PRIMARY KEY (namespace, collection, key))",
        # Ingest workers' claims (ingest/fleet.py): who writes which document, until when.
        "CREATE TABLE IF NOT EXISTS leases (namespace text NOT NULL, doc_id text NOT NULL, owner text, "
        "expires_at timestamptz, finished_at timestamptz, PRIMARY KEY (namespace, doc_id))",
    ],
]
_SCHEMA_LOCK = 0x7069706531  # advisory lock key serialising schema creation/upgrade ("pipe1")

_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()


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

    ``check`` tests a connection before handing it out, so a restarted server costs one failed
    probe per stale connection instead of an error in a request: the pool reconnects by itself.
    """
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        p = _pools.get(url)
        if p is None or p.closed:
            p = ConnectionPool(url, min_size=1, max_size=max(2, size), open=False, check=ConnectionPool.check_connection,
                               kwargs={"autocommit": True}, name="pipeline", timeout=5)
            try:
                p.open(wait=True, timeout=10)
            except Exception as exc:
                p.close()
                raise unavailable(url, exc) from exc
            _ensure_schema(p, url)
            _pools[url] = p
        return p


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

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        import psycopg

        held = getattr(self._local, "conn", None)
        try:
            if held is not None:
                yield held
            else:
                with self._pool.connection() as conn:
                    yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise unavailable(self.url, exc) from exc
        except Exception as exc:
            from psycopg_pool import PoolTimeout

            if isinstance(exc, PoolTimeout):
                raise unavailable(self.url, exc) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic commit; nests (only the outermost commits)."""
        if getattr(self._local, "conn", None) is not None:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._conn() as conn, conn.transaction():
            self._local.conn, self._local.depth = conn, 1
            try:
                yield
            finally:
                self._local.conn = None

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put_all([(key, val)], collection)

    def put_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not kv_pairs:
            return
        with self.transaction(), self._conn() as conn, conn.cursor() as cur:  # atomic, as SQLiteKVStore.put_all
            cur.executemany(
                "INSERT INTO kv (namespace, collection, key, value) VALUES (%s, %s, %s, %s::jsonb) "
                "ON CONFLICT (namespace, collection, key) DO UPDATE SET value = EXCLUDED.value",
                [(self.namespace, collection, k, json.dumps(v)) for k, v in kv_pairs],
            )

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        with self._conn() as conn:
            row = conn.execute("SELECT value FROM kv WHERE namespace = %s AND collection = %s AND key = %s",
                               (self.namespace, collection, key)).fetchone()
        return None if row is None else row[0]

    def get_many(self, keys: list[str], collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        """The values of those ``keys`` that exist, in one query (absent keys are left out)."""
        if not keys:
            return {}
        with self._conn() as conn:
            rows = conn.execute("SELECT key, value FROM kv WHERE namespace = %s AND collection = %s AND key = ANY(%s)",
                                (self.namespace, collection, list(keys))).fetchall()
        return dict(rows)

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        with self._conn() as conn:
            rows = conn.execute("SELECT key, value FROM kv WHERE namespace = %s AND collection = %s",
                                (self.namespace, collection)).fetchall()
        return dict(rows)

    def keys(self, collection: str = DEFAULT_COLLECTION) -> list[str]:
        with self._conn() as conn:
            rows = conn.execute("SELECT key FROM kv WHERE namespace = %s AND collection = %s", (self.namespace, collection)).fetchall()
        return [r[0] for r in rows]

    def count(self, collection: str = DEFAULT_COLLECTION) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT count(*) FROM kv WHERE namespace = %s AND collection = %s",
                                (self.namespace, collection)).fetchone()[0]

    def collections(self) -> list[str]:
        """Every collection this namespace holds (``migrate`` copies them all)."""
        with self._conn() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT collection FROM kv WHERE namespace = %s", (self.namespace,))]

    def is_empty(self) -> bool:
        with self._conn() as conn:
            return conn.execute("SELECT NOT EXISTS (SELECT 1 FROM kv WHERE namespace = %s)", (self.namespace,)).fetchone()[0]

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        with self._conn() as conn:
            cur = conn.execute("DELETE FROM kv WHERE namespace = %s AND collection = %s AND key = %s", (self.namespace, collection, key))
            return cur.rowcount > 0

    def verify(self) -> None:
        """A round trip (PostgreSQL checks its own pages; there is no file to scan)."""
        with self._conn() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Nothing to close per store: the pool is per process (``close_pools``)."""
