"""Backups: ``snapshot create`` copies a store consistently while queries go on; ``restore`` puts one back.

Consistency without stopping readers. Every writer of a store (ingest, enrich, ``docs rm``, repair)
holds ``<store>/ingest.lock``; queries never take it. So a snapshot takes that lock (no write can start
or be half done), flushes the engine (every write so far is in its segment files, not only its WAL),
and then copies:

* the engine's collections. qdrant-edge 0.9.0 can *read* a snapshot (``EdgeShard.unpack_snapshot``,
  ``update_from_snapshot``: for snapshots made by a Qdrant server) but has no call that *makes* one, so
  the shard folders are copied file by file. The copy is sparse (``copy_sparse``, ``cp --sparse=always``
  semantics): the engine pre-sizes its WAL and page files as holes, and a plain copy would write a
  0.6 MB store out as 680 MB (tests/e2e/conftest.py ``copy_store``). Readers only read these files,
  so they keep answering from the same open shards meanwhile.
* the docstore (parents and the ledger) and the ingest cache, with SQLite's online backup API
  (``sqlite3.Connection.backup``): a page-consistent copy whatever other connections do, in journal
  mode DELETE so the copy is one self-contained file whose sha256 means something.
* with a Qdrant server (``QDRANT_URL``), its own collection snapshot API (``create_snapshot``): the
  snapshots stay on the server, their names go into the manifest; ``restore`` then refuses (the
  server recovers them: ``PUT /collections/{name}/snapshots/recover``), see docs/service.md.

The manifest (``manifest.json``) records the embedding model and dimension, point counts per
collection, documents and parents, the sha256 of each SQLite copy, and when. ``restore`` checks the
hashes, refuses another model than the target store's, refuses a non-empty target unless ``force``,
copies into place and checks the counts again on the restored store.

A snapshot folder has a store's layout (``docstore.sqlite``, ``cache.sqlite``, ``edge/``) plus the
manifest; restore it, do not open it as a store (opening would change its files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from filelock import Timeout
from pydantic import BaseModel, Field

from pipeline.config import CACHE_FILE, DOCSTORE_FILE, QdrantBackend, Settings
from pipeline.errors import PipelineError, StoreDamaged, StoreLocked
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import LedgerReader
from pipeline.store.lock import LOCK_FILE, store_lock

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
SKIP = {".lock", LOCK_FILE}  # lock files belong to the process holding the store, not to its data
CHUNK = 1 << 20


class SnapshotError(PipelineError):
    """A snapshot that cannot be made or restored as asked (exit 2 / HTTP 409); the message says why and what to do."""


class Manifest(BaseModel):
    """What a snapshot holds, written last (a folder without one is an unfinished snapshot)."""

    format: int = FORMAT
    created_at: str
    store: str  # where it was taken from (for the reader; restore goes anywhere)
    backend: str  # edge | local | server
    embed_model: str | None = None
    embed_dim: int | None = None
    collections: dict[str, int] = Field(default_factory=dict)  # collection name -> points
    documents: int = 0
    parents: int = 0
    sha256: dict[str, str] = Field(default_factory=dict)  # file in the snapshot -> sha256 (the SQLite copies)
    server_snapshots: dict[str, str] = Field(default_factory=dict)  # collection -> snapshot name on the Qdrant server
    seconds: float = 0.0
    path: str = ""  # where the snapshot is (filled when read or made)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_sparse_file(src: Path, dst: Path) -> None:
    """Copy one file leaving holes (and runs of zero blocks) unwritten, as ``cp --sparse=always`` does."""
    size = src.stat().st_size
    zero = bytes(CHUNK)
    with src.open("rb") as fin, dst.open("wb") as fout:
        pos = 0
        while pos < size:
            try:  # skip the holes without reading them (Linux, most file systems)
                data_at = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
                hole_at = os.lseek(fin.fileno(), data_at, os.SEEK_HOLE)
            except (AttributeError, OSError):  # no SEEK_DATA, or past the last data: read plainly
                data_at, hole_at = pos, size
            if data_at >= size:
                break
            fin.seek(data_at)
            pos = data_at
            while pos < hole_at:
                block = fin.read(min(CHUNK, hole_at - pos))
                if not block:
                    break
                if block != zero[: len(block)]:
                    fout.seek(pos)
                    fout.write(block)
                pos += len(block)
        fout.truncate(size)
    shutil.copystat(src, dst)


def copy_sparse(src: Path, dst: Path) -> None:
    """Copy a folder tree with ``copy_sparse_file``, leaving lock files out."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if name not in SKIP:
                copy_sparse_file(Path(dirpath) / name, dst / rel / name)


def backup_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of the SQLite database ``src`` (online backup API), as one file in journal mode DELETE."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
        target.commit()
    except sqlite3.Error as exc:
        raise StoreDamaged(src, f"SQLite backup failed: {exc}") from exc
    finally:
        target.close()
        source.close()


def _engine_folder(settings: Settings) -> tuple[QdrantBackend, Path | None]:
    chosen = qstore.backend(settings)
    if chosen is QdrantBackend.SERVER:
        return chosen, None
    return chosen, settings.edge_path if chosen is QdrantBackend.EDGE else settings.qdrant_path


def _model(client: Any, settings: Settings) -> tuple[str | None, int | None, dict[str, int]]:
    model, dim, counts = None, None, {}
    for name in qstore.names(settings).values():
        if not qstore.with_retries(client.collection_exists)(name):
            continue
        meta = qstore.with_retries(client.get_collection)(name).config.metadata or {}
        model, dim = model or meta.get(qstore.META_MODEL), dim or meta.get(qstore.META_DIM)
        counts[name] = qstore.count_points(client, name)
    return model, dim, counts


def _acquire(settings: Settings, timeout: float) -> Any:
    lock = store_lock(settings, timeout)
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise StoreLocked(f"an ingest is writing to {settings.store} (lock {lock.lock_file}); the snapshot waits for no writer: retry when it is done") from exc
    return lock


def create_snapshot(settings: Settings, dest: Path, client: Any = None, lock_timeout: float = 0.0) -> Manifest:
    """Copy the store at ``settings.store`` into the new folder ``dest``; returns the manifest written there.

    Args:
        client: the open client to flush and count with (the service's); opened and closed here when None.
        lock_timeout: seconds to wait for a running writer.

    Raises:
        StoreUnavailable: no store there ("no store at …"). SnapshotError: ``dest`` exists, or lies inside the store.
        StoreLocked: a writer holds the store (or, embedded, another process has it open).
    """
    from pipeline.store.documents import docstore_path

    started = time.perf_counter()
    if settings.database.url is not None:  # fleet mode: the state is not files in the store folder
        raise SnapshotError("snapshots copy the store's files; with database.url set, back up the database (pg_dump) and Qdrant (its snapshots) instead")
    docstore_path(settings.store)  # "no store at …" before anything is created
    dest = dest.expanduser().absolute()
    store = settings.store.resolve()
    if dest.exists():
        raise SnapshotError(f"{dest} exists: a snapshot goes into a new folder (name another one)")
    if dest.resolve().is_relative_to(store):
        raise SnapshotError(f"{dest} lies inside the store {store}: put snapshots outside it")
    chosen, folder = _engine_folder(settings)
    lock = _acquire(settings, lock_timeout)
    own = client is None
    tmp = dest.with_name(dest.name + ".partial")
    try:
        client = client or qstore.open_client(settings)
        try:
            qstore.flush(client)  # every write so far in the segment files
            model, dim, counts = _model(client, settings)
            if tmp.exists():
                shutil.rmtree(tmp)  # left by a snapshot that was killed
            tmp.mkdir(parents=True)
            server: dict[str, str] = {}
            if chosen is QdrantBackend.SERVER:
                for name in counts:
                    made = qstore.with_retries(client.create_snapshot)(collection_name=name, wait=True)
                    server[name] = made.name
            elif folder is not None and folder.is_dir():
                copy_sparse(folder, tmp / folder.name)
            hashes = {}
            for name, src in ((DOCSTORE_FILE, settings.docstore_path), (CACHE_FILE, settings.cache_path)):
                if src.exists():
                    backup_sqlite(src, tmp / name)
                    hashes[name] = sha256(tmp / name)
        finally:
            if own and client is not None:
                client.close()
    finally:
        lock.release()
    reader = LedgerReader(tmp / DOCSTORE_FILE)
    try:
        documents, parents = len(reader.ledger()), reader.count()
    finally:
        reader.close()
    manifest = Manifest(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        store=str(store),
        backend=chosen.value,
        embed_model=model,
        embed_dim=dim,
        collections=counts,
        documents=documents,
        parents=parents,
        sha256=hashes,
        server_snapshots=server,
        seconds=round(time.perf_counter() - started, 3),
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2, exclude={"path"}) + "\n", encoding="utf-8")
    tmp.rename(dest)  # a folder named ``dest`` is always a whole snapshot
    logger.info("snapshot of %s in %s: %s", store, dest, counts)
    return manifest.model_copy(update={"path": str(dest)})


def read_manifest(src: Path) -> Manifest:
    """The manifest of the snapshot at ``src``, its SQLite copies checked against their sha256.

    Raises:
        SnapshotError: no manifest (not a snapshot, or an unfinished one). StoreDamaged: a copy changed.
    """
    path = src / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"no snapshot at {src}: {MANIFEST} is missing (not a snapshot, or one that did not finish)")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise StoreDamaged(path, f"not a snapshot manifest: {exc}", "take a new snapshot") from exc
    if manifest.format != FORMAT:
        raise SnapshotError(f"{src} is a snapshot of format {manifest.format}; this version reads format {FORMAT}")
    for name, digest in manifest.sha256.items():
        if not (src / name).is_file() or sha256(src / name) != digest:
            raise StoreDamaged(src / name, "its sha256 differs from the manifest's", "the snapshot is damaged: use another one")
    return manifest.model_copy(update={"path": str(src)})


def _target_state(settings: Settings) -> tuple[str | None, int]:
    """The target store's embedding model (None: none yet) and how many documents it holds."""
    if not settings.store.exists():
        return None, 0
    documents = 0
    if settings.docstore_path.is_file():
        reader = LedgerReader(settings.docstore_path)
        try:
            documents = len(reader.ledger())
        finally:
            reader.close()
    _, folder = _engine_folder(settings)
    if folder is not None and not folder.exists():
        return None, documents  # opening would create it
    client = qstore.open_client(settings)
    try:
        return qstore.stored_model(client, settings), documents
    finally:
        client.close()


def restore_snapshot(settings: Settings, src: Path, force: bool = False, lock_timeout: float = 0.0) -> Manifest:
    """Replace the store at ``settings.store`` by the snapshot at ``src``; returns its manifest.

    Raises:
        SnapshotError: not a snapshot; a server snapshot (the server restores it); another embedding
            model than the target's; a target holding documents without ``force``.
        StoreLocked: a writer, or another process (a running service), holds the target.
        StoreDamaged: a copy's sha256, or the restored store's counts, differ from the manifest.
    """
    src = src.expanduser().absolute()
    manifest = read_manifest(src)
    chosen, folder = _engine_folder(settings)
    if manifest.server_snapshots or manifest.backend == QdrantBackend.SERVER.value:
        raise SnapshotError(
            f"{src} holds Qdrant server snapshots ({', '.join(f'{c}: {n}' for c, n in manifest.server_snapshots.items())}): "
            "recover them on the server (PUT /collections/{name}/snapshots/recover), docs/service.md"
        )
    if chosen is QdrantBackend.SERVER:
        raise SnapshotError("the target store uses a Qdrant server (QDRANT_URL): restore an embedded snapshot into an embedded store")
    if settings.store.resolve().is_relative_to(src.resolve()) or src.resolve().is_relative_to(settings.store.resolve()):
        raise SnapshotError(f"the snapshot {src} and the store {settings.store} overlap: restore into another folder")
    engine_dir = src / (folder.name if folder is not None else "edge")
    if manifest.collections and not engine_dir.is_dir():
        raise SnapshotError(f"{src} holds no {engine_dir.name}/ folder: it was taken with another backend ({manifest.backend})")
    model, documents = _target_state(settings)
    if model is not None and manifest.embed_model is not None and model != manifest.embed_model:
        raise SnapshotError(
            f"the snapshot's embedding model is {manifest.embed_model}, the store at {settings.store} holds {model}: "
            "its vectors would not compare; restore into an empty folder (another --store)"
        )
    if documents and not force:
        raise SnapshotError(f"the store at {settings.store} holds {documents} documents: pass --force to replace them with the snapshot's {manifest.documents}")
    lock = _acquire(settings, lock_timeout)
    try:
        _swap_in(settings, src, engine_dir, folder)
    finally:
        lock.release()
    _verify(settings, manifest)
    logger.info("restored %s into %s", src, settings.store)
    return manifest


STAGED, REPLACED, COMPLETE = ".restoring", ".replaced", ".complete"


def finish_interrupted_restore(store: Path) -> str | None:
    """Finish or undo a restore a crash stopped; returns what was done, None if there was nothing.

    The copy is staged whole (marked ``.complete``) before any live file moves; so a marked stage is
    moved in (the old files are aside already or about to be), an unmarked one is dropped and the
    old files that had been moved aside are put back.
    """
    staged, old = store / STAGED, store / REPLACED
    if (staged / COMPLETE).exists():
        for item in staged.iterdir():
            if item.name != COMPLETE and not (store / item.name).exists():
                item.rename(store / item.name)
        shutil.rmtree(staged)
        shutil.rmtree(old, ignore_errors=True)
        return "finished an interrupted restore"
    if old.exists():
        for item in old.iterdir():
            if not (store / item.name).exists():
                item.rename(store / item.name)
        shutil.rmtree(old)
        shutil.rmtree(staged, ignore_errors=True)
        return "undid an interrupted restore (the store is as it was before it)"
    if staged.exists():
        shutil.rmtree(staged)
    return None


def _swap_in(settings: Settings, src: Path, engine_dir: Path, folder: Path | None) -> None:
    """Stage a whole copy of the snapshot beside the live files, mark it complete, then rename it in;
    the old files go last. A crash anywhere is finished or undone by ``finish_interrupted_restore``."""
    store = settings.store
    if done := finish_interrupted_restore(store):
        logger.warning("%s: %s", store, done)
    staged = store / STAGED
    staged.mkdir(parents=True)
    if folder is not None and engine_dir.is_dir():
        copy_sparse(engine_dir, staged / folder.name)
    for name in (DOCSTORE_FILE, CACHE_FILE):
        if (src / name).is_file():
            backup_sqlite(src / name, staged / name)
    with open(staged / COMPLETE, "w") as mark:
        mark.flush()
        os.fsync(mark.fileno())
    old = store / REPLACED
    if old.exists():
        shutil.rmtree(old)
    old.mkdir()
    for name in (DOCSTORE_FILE, CACHE_FILE):
        for suffix in ("", "-wal", "-shm"):  # a WAL left beside the new file would be replayed into it
            if (store / (name + suffix)).exists():
                (store / (name + suffix)).rename(old / (name + suffix))
    if folder is not None and folder.exists():
        folder.rename(old / folder.name)
    for item in staged.iterdir():
        if item.name != COMPLETE:
            item.rename(store / item.name)
    shutil.rmtree(staged)
    shutil.rmtree(old)


def _verify(settings: Settings, manifest: Manifest) -> None:
    """The restored store holds what the manifest says (points per collection, documents, parents)."""
    client = qstore.open_client(settings)
    try:
        _, _, counts = _model(client, settings)
    finally:
        client.close()
    reader = LedgerReader(settings.docstore_path)
    try:
        documents, parents = len(reader.ledger()), reader.count()
    finally:
        reader.close()
    if counts != manifest.collections or (documents, parents) != (manifest.documents, manifest.parents):
        raise StoreDamaged(
            settings.store,
            f"restored counts differ from the snapshot's: points {counts} vs {manifest.collections}, "
            f"documents/parents {documents}/{parents} vs {manifest.documents}/{manifest.parents}",
            "restore again from another snapshot",
        )


def default_snapshot_dir(settings: Settings) -> Path:
    """Where the service writes snapshots when ``service.snapshot_dir`` is unset: ``<store>-snapshots`` beside the store."""
    configured = getattr(settings.service, "snapshot_dir", None)
    return Path(configured) if configured else settings.store.resolve().with_name(settings.store.resolve().name + "-snapshots")

