"""A LlamaIndex ``BaseKVStore`` on one SQLite file: the disk format under the docstore and the ingest cache.

It imports no LlamaIndex: a query process reads parents through it, and ``llama_index.core``'s package
``__init__`` alone costs ~1 s of CPU. It is LlamaIndex's ``BaseKVStore`` all the same, as a virtual
subclass (``abc`` registration, ``llama_kv``), registered where LlamaIndex is imported anyway: the
ingest cache (``IngestionCache`` checks the type) and the docstore's ``KVDocumentStore``.

Why SQLite: a JSON ``SimpleKVStore`` must be loaded whole and rewritten whole; here a lookup reads one
row, and a ``transaction()`` makes a batch of writes atomic (a killed process leaves the old state).
Every ``sqlite3`` error leaves this module as a ``PipelineError`` naming the file (``StoreDamaged`` for
a truncated or corrupt file, ``DiskFull``, ``StoreLocked``...), so callers need no SQLite knowledge.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import Any

from pipeline.errors import fatal_error, sqlite_error

# LlamaIndex's (llama_index.core.storage.kvstore.types), so rows land in the collections its stores read.
DEFAULT_COLLECTION = "data"
DEFAULT_BATCH_SIZE = 1


class SyncKVStore:
    """LlamaIndex's ``BaseKVStore`` interface, its async methods answered by the sync ones: both our
    stores are local and fast (SQLite) or pooled (PostgreSQL), and nothing here runs an event loop over
    them. A virtual subclass of ``BaseKVStore`` once ``llama_kv`` has run."""

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        raise NotImplementedError

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        raise NotImplementedError

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        raise NotImplementedError

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        raise NotImplementedError

    def put_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        for key, val in kv_pairs:
            self.put(key, val, collection)

    async def aput_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.put_all(kv_pairs, collection, batch_size)

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put(key, val, collection)

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self.get(key, collection)

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self.get_all(collection)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self.delete(key, collection)


def llama_kv(kv: Any) -> Any:
    """``kv``, with our KV classes made LlamaIndex ``BaseKVStore``s (``ABCMeta.register``: idempotent) so
    ``IngestionCache`` and ``KVDocumentStore`` take them. Call where LlamaIndex is being used anyway."""
    from llama_index.core.storage.kvstore.types import BaseKVStore

    BaseKVStore.register(SyncKVStore)
    return kv


class SQLiteKVStore(SyncKVStore):
    """Key → JSON dict, partitioned by collection, safe to share between threads.

    Example:
        kv = SQLiteKVStore("store/docstore.sqlite")
        with kv.transaction():
            kv.put("a", {"x": 1}); kv.put("b", {"x": 2})
        kv.get("a")  # {"x": 1}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS kv (collection TEXT NOT NULL, key TEXT NOT NULL, "
                    "value TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID"
                )
            except BaseException:
                self._conn.close()
                raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn sqlite3 and OS errors into PipelineErrors naming this file (see the module docstring)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc
        except OSError as exc:
            raise (fatal_error(exc) or exc) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise sqlite_error(self.path, sqlite3.DatabaseError(f"database corrupt: a stored value is not JSON ({exc})")) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic commit; nests (only the outermost commits)."""
        with self._lock:
            if self._depth == 0:
                with self._errors():
                    self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite already rolled back (e.g. after "disk is full"); report the first error
                raise
            self._depth -= 1
            if self._depth == 0:
                try:
                    with self._errors():
                        self._conn.execute("COMMIT")
                except BaseException:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        with self._lock, self._errors():
            self._conn.execute(
                "INSERT OR REPLACE INTO kv (collection, key, value) VALUES (?, ?, ?)",
                (collection, key, json.dumps(val)),
            )

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        with self.transaction(), self._errors():
            self._conn.executemany(
                "INSERT OR REPLACE INTO kv (collection, key, value) VALUES (?, ?, ?)",
                [(collection, k, json.dumps(v)) for k, v in kv_pairs],
            )

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        with self._lock, self._errors():
            row = self._conn.execute(
                "SELECT value FROM kv WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
            return None if row is None else json.loads(row[0])

    def get_many(self, keys: list[str], collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        """The values of those ``keys`` that exist, in one query (absent keys are left out)."""
        out: dict[str, dict] = {}
        with self._lock, self._errors():
            for start in range(0, len(keys), 500):  # SQLite allows 999 parameters in old builds
                chunk = keys[start : start + 500]
                rows = self._conn.execute(
                    f"SELECT key, value FROM kv WHERE collection = ? AND key IN ({', '.join('?' * len(chunk))})", (collection, *chunk)
                ).fetchall()
                out.update((k, json.loads(v)) for k, v in rows)
        return out

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        with self._lock, self._errors():
            rows = self._conn.execute("SELECT key, value FROM kv WHERE collection = ?", (collection,)).fetchall()
            return {k: json.loads(v) for k, v in rows}

    def keys(self, collection: str = DEFAULT_COLLECTION) -> list[str]:
        with self._lock, self._errors():
            return [r[0] for r in self._conn.execute("SELECT key FROM kv WHERE collection = ?", (collection,))]

    def count(self, collection: str = DEFAULT_COLLECTION) -> int:
        with self._lock, self._errors():
            return self._conn.execute("SELECT COUNT(*) FROM kv WHERE collection = ?", (collection,)).fetchone()[0]

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        with self._lock, self._errors():
            cur = self._conn.execute("DELETE FROM kv WHERE collection = ? AND key = ?", (collection, key))
            return cur.rowcount > 0

    def verify(self) -> None:
        """Read every page (``PRAGMA quick_check``).

        Raises:
            StoreDamaged: the file is truncated or corrupt.
        """
        with self._lock, self._errors():
            rows = [r[0] for r in self._conn.execute("PRAGMA quick_check")]
            if rows != ["ok"]:
                raise sqlite3.DatabaseError(f"database corrupt: {'; '.join(rows[:3])}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
