"""Move a store's docstore, cache and ledger between SQLite files and PostgreSQL (``pipeline migrate --to postgres|sqlite``).

Nothing is re-embedded; the vectors stay where they are (the embedded engine in the store folder, or
the Qdrant server). Both KVs have the same format (LlamaIndex's KV rows), so every row is copied as
it is, collection by collection, then verified: per collection the row count and a SHA-256 over the
sorted (key, canonical JSON) pairs must be equal on both sides, or the command fails naming it.

Resumable: a collection already equal on both sides is skipped; otherwise rows are upserted in
batches (a rerun after a kill re-copies what is missing) and rows the source lacks are deleted from
the target, so the target ends an exact copy. The source is never changed: after ``--to postgres``
the SQLite files stay in the store folder (unused while ``database.url`` is set) as the way back.
Both writer locks are held (the store's file lock and the database's exclusive advisory lock).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel

from pipeline.config import Settings
from pipeline.errors import ConfigError, StoreError, StoreLocked
from pipeline.store.state import CACHE_KV, DOCSTORE_KV, LOCK_FILE, AdvisoryLock, db_url, namespace

BATCH = 1000
ProgressFn = Callable[[str, int, int], None]


class StateMoveReport(BaseModel):
    """Per KV and collection: rows copied (verified equal, count and hash, on both sides)."""

    to: str
    store: str
    namespace: str
    rows: dict[str, dict[str, int]]
    hashes: dict[str, dict[str, str]]
    skipped: list[str]  # "kv/collection" already equal: a resumed run
    seconds: float


def digest(rows: dict[str, dict]) -> str:
    h = hashlib.sha256()
    for key in sorted(rows):
        h.update(key.encode() + b"\0" + json.dumps(rows[key], sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return h.hexdigest()


def _collections(kv: Any) -> list[str]:
    if hasattr(kv, "collections"):
        return kv.collections()
    return [r[0] for r in kv._conn.execute("SELECT DISTINCT collection FROM kv")]  # SQLiteKVStore


def move_state(settings: Settings, to: str, progress: ProgressFn | None = None) -> StateMoveReport:
    """Copy docstore and cache rows ``to`` "postgres" (from the store's SQLite files) or "sqlite" (from the database).

    Raises:
        ConfigError: no ``database.url``. StoreError: no source, or a verification difference.
        StoreLocked: an ingest (or any writer) holds the store or the database namespace.
    """
    from pipeline.store.postgres import PostgresKV
    from pipeline.store.sqlite_kv import SQLiteKVStore

    if settings.database.url is None:
        raise ConfigError("migrate --to postgres|sqlite needs the database: set PIPELINE_DATABASE__URL (database.url)")
    if to not in ("postgres", "sqlite"):
        raise ConfigError(f"--to {to}: expected postgres or sqlite")
    started = time.perf_counter()
    url, ns = db_url(settings), namespace(settings)
    files = {DOCSTORE_KV: settings.docstore_path, CACHE_KV: settings.cache_path}
    if to == "postgres" and not files[DOCSTORE_KV].is_file():
        raise StoreError(f"no docstore at {files[DOCSTORE_KV]}: nothing to move into the database")
    settings.store.mkdir(parents=True, exist_ok=True)
    file_lock, db_lock = FileLock(str(settings.store / LOCK_FILE)), AdvisoryLock(url, ns, 0)
    try:
        file_lock.acquire(timeout=0)
    except Timeout as exc:
        raise StoreLocked(f"an ingest is writing to {settings.store} (lock {exc.lock_file}): wait for it, then migrate") from exc
    try:
        try:
            db_lock.acquire(timeout=0)
        except Timeout as exc:
            raise StoreLocked(f"a writer holds the store {ns!r} in the database: wait for every ingest worker, then migrate") from exc
        try:
            report = StateMoveReport(to=to, store=str(settings.store), namespace=ns, rows={}, hashes={}, skipped=[], seconds=0)
            for which, path in files.items():
                pg = PostgresKV(url, f"{ns}/{which}", settings.database.pool_size)
                if to == "sqlite" and pg.is_empty():
                    continue
                if to == "postgres" and not path.is_file():
                    continue
                sq = SQLiteKVStore(path)
                try:
                    src, dst = (sq, pg) if to == "postgres" else (pg, sq)
                    _copy(which, src, dst, report, progress)
                finally:
                    sq.close()
            if to == "sqlite" and not report.rows:
                raise StoreError(f"no store named {ns!r} in the database: nothing to move out")
        finally:
            db_lock.release()
    finally:
        file_lock.release()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _copy(which: str, src: Any, dst: Any, report: StateMoveReport, progress: ProgressFn | None) -> None:
    report.rows[which], report.hashes[which] = {}, {}
    for coll in sorted(set(_collections(src)) | set(_collections(dst))):
        rows = src.get_all(coll)
        want = digest(rows)
        have = dst.get_all(coll)
        if digest(have) != want:
            items = sorted(rows.items())
            for start in range(0, len(items), BATCH):
                dst.put_all(items[start : start + BATCH], coll)
                if progress:
                    progress(f"{which}/{coll}", min(start + BATCH, len(items)), len(items))
            with dst.transaction():
                for key in set(have) - set(rows):
                    dst.delete(key, coll)
            have = dst.get_all(coll)
            if len(have) != len(rows) or digest(have) != want:
                raise StoreError(f"{which}/{coll}: {len(have)} rows in the target after the copy, {len(rows)} in the source, or their contents differ: "
                                 "nothing was deleted from the source; run migrate again")
        else:
            report.skipped.append(f"{which}/{coll}")
        if rows:
            report.rows[which][coll], report.hashes[which][coll] = len(rows), want
