"""Integrity check of a store (``pipeline check [--repair]``): references, parents and ledger agree.

Invariants: every reference's parent is in the docstore; every parent has its self-reference; the
points and parents of each document are exactly those its ledger entry lists; no entry is left
pending by a killed run. ``repair`` deletes what nothing should point to and marks documents with
missing pieces for rebuild, which the next ``ingest`` does from the cache (no LLM or embedding calls
for unchanged text). A damaged (truncated, corrupt) docstore is moved aside first and what SQLite can
still read is copied into a new one (``salvage_docstore``); the check then repairs around the loss.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, Field
from qdrant_client import QdrantClient

from pipeline.config import Settings
from pipeline.errors import StoreDamaged, StoreLocked
from pipeline.ingest.write import ids_of
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import Collection
from pipeline.store.migrate import add_sparse_vectors, migrate_parent_refs, needs_migration, needs_sparse
from pipeline.store.sqlite_kv import SQLiteKVStore


class Problem(BaseModel):
    kind: str  # old-layout | orphan-reference | dangling-reference | orphan-parent | missing-reference | missing-parent | pending
    doc_id: str = ""
    detail: str
    count: int = 1


class CheckReport(BaseModel):
    ok: bool
    documents: int
    parents: int
    points: dict[str, int] = Field(default_factory=dict)
    problems: list[Problem] = Field(default_factory=list)
    repaired: list[str] = Field(default_factory=list)


def check_store(client: QdrantClient, collections: dict[Collection, str], parents: ParentStore, repair: bool = False) -> CheckReport:
    if needs_migration(parents):
        if not repair:
            detail = "written by an older version: parent self-references are in the children collection; --repair moves them"
            return CheckReport(
                ok=False, documents=len(parents.ledger()), parents=parents.count(), problems=[Problem(kind="old-layout", detail=detail)]
            )
        moved = migrate_parent_refs(client, collections, parents)
        report = check_store(client, collections, parents, repair=True)
        return report.model_copy(
            update={"ok": False, "problems": [Problem(kind="old-layout", detail="written by an older version (migrated)"), *report.problems], "repaired": [f"migrated the layout: moved {moved} parent self-references", *report.repaired]}
        )
    ledger = parents.ledger()
    parent_ids = set(parents.ids())
    problems: list[Problem] = []
    repaired: list[str] = []
    expected_parents: set[str] = set()
    needs_rebuild: set[str] = set()
    points: dict[str, int] = {}
    orphan_points: dict[Collection, list[str]] = defaultdict(list)
    self_refs: set[str] = set()

    wanted = {doc: ids_of(entry, pending=False) for doc, entry in ledger.items()}
    for doc_id, entry in ledger.items():
        if entry.get("pending"):
            problems.append(Problem(kind="pending", doc_id=doc_id, detail="an ingest was interrupted while writing this document"))
            needs_rebuild.add(doc_id)
        expected_parents |= wanted[doc_id][0]

    for coll, name in collections.items():
        if not client.collection_exists(name):
            continue
        found: dict[str, set[str]] = defaultdict(set)
        n = 0
        for point_id, payload in qstore.scroll_payloads(client, name, ["doc_id", "parent_id", "kind"]):
            n += 1
            doc_id = payload.get("doc_id", "")
            found[doc_id].add(point_id)
            if payload.get("kind") == "parent":
                self_refs.add(payload.get("parent_id", ""))
            if doc_id not in ledger:
                orphan_points[coll].append(point_id)
                problems.append(Problem(kind="orphan-reference", doc_id=doc_id, detail=f"{name}: {point_id} belongs to no ingested document"))
            elif payload.get("parent_id") not in parent_ids:
                problems.append(Problem(kind="dangling-reference", doc_id=doc_id, detail=f"{name}: {point_id} points to missing parent {payload.get('parent_id')}"))
                needs_rebuild.add(doc_id)
        points[name] = n
        for doc_id, (_, refs) in wanted.items():
            have = found.get(doc_id, set())
            missing = refs.get(coll.value, set()) - have
            extra = have - refs.get(coll.value, set())
            if missing:
                problems.append(Problem(kind="missing-reference", doc_id=doc_id, detail=f"{name}: {len(missing)} listed references absent", count=len(missing)))
                needs_rebuild.add(doc_id)
            if extra and not ledger[doc_id].get("pending"):
                orphan_points[coll].extend(sorted(extra))
                problems.append(Problem(kind="orphan-reference", doc_id=doc_id, detail=f"{name}: {len(extra)} references not in the ledger", count=len(extra)))

    for doc_id, (want_parents, _) in wanted.items():
        missing = want_parents - parent_ids
        if missing:
            problems.append(Problem(kind="missing-parent", doc_id=doc_id, detail=f"{len(missing)} parents absent from the docstore", count=len(missing)))
            needs_rebuild.add(doc_id)
        no_self = want_parents - self_refs
        if no_self and not missing:
            problems.append(Problem(kind="missing-reference", doc_id=doc_id, detail=f"{len(no_self)} parents without their self-reference", count=len(no_self)))
            needs_rebuild.add(doc_id)
    pending_parents = set().union(*(ids_of(e)[0] for e in ledger.values())) if ledger else set()
    orphan_parents = sorted(parent_ids - expected_parents - pending_parents)
    if orphan_parents:
        problems.append(Problem(kind="orphan-parent", detail=f"{len(orphan_parents)} parents belong to no ingested document", count=len(orphan_parents)))

    no_bm25 = needs_sparse(client, collections)
    if no_bm25:
        problems.append(Problem(kind="no-bm25", detail=f"{', '.join(no_bm25)}: references without BM25 vectors (written before hybrid search); --repair adds them without re-embedding", count=len(no_bm25)))

    unindexed = parents.unindexed()
    if unindexed:
        problems.append(Problem(kind="no-self-ref-index", detail=f"{len(unindexed)} parents written before the docstore indexed their self-references: each new process hashes every parent id at its first retrieve instead; --repair adds the index", count=len(unindexed)))

    if repair:
        if unindexed:
            parents.index_self_refs(unindexed)
            repaired.append(f"indexed the self-references of {len(unindexed)} parents")
        if no_bm25:
            added = add_sparse_vectors(client, collections)
            repaired.append(f"added BM25 vectors to {added} references")
        for coll, ids in orphan_points.items():
            if ids:
                qstore.delete_points(client, collections[coll], sorted(set(ids)))
                repaired.append(f"deleted {len(set(ids))} orphan references from {collections[coll]}")
        if orphan_parents:
            parents.delete(orphan_parents)
            repaired.append(f"deleted {len(orphan_parents)} orphan parents")
        for doc_id in sorted(needs_rebuild):
            entry = dict(ledger[doc_id])
            entry["content_hash"] = None  # the next ingest redoes it (from the cache where text is unchanged)
            entry["rebuild"] = True  # ... and rewrites every piece, not only the new ones
            parents.put_ledger(doc_id, entry)
            repaired.append(f"marked {doc_id} for rebuild: run `pipeline ingest` on it again")
    return CheckReport(ok=not problems, documents=len(ledger), parents=len(parent_ids), points=points, problems=problems, repaired=repaired)


def salvage_docstore(path: Path) -> tuple[Path, int]:
    """Move a damaged docstore aside and copy every row SQLite can still read into a new one.

    Returns (where the damaged file went, rows salvaged). Rows past the first unreadable page are
    lost; ``check_store(repair=True)`` then deletes the references nothing points to and marks
    documents with missing parents for rebuild, which the next ``ingest`` does from the cache.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))
    rows: list[tuple[str, str, str]] = []
    try:
        conn = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        try:
            for row in conn.execute("SELECT collection, key, value FROM kv"):
                json.loads(row[2])  # a row whose value is not JSON is not kept
                rows.append(row)
        finally:
            conn.close()
    except (sqlite3.Error, ValueError):
        pass  # keep what was read before the damage
    kv = SQLiteKVStore(path)
    try:
        with kv.transaction():
            for collection, key, value in rows:
                kv.put(key, json.loads(value), collection)
    finally:
        kv.close()
    return aside, len(rows)


def _verified(path: Path) -> StoreDamaged | None:
    """None if the SQLite file at ``path`` reads whole, else the StoreDamaged that says why."""
    try:
        kv = SQLiteKVStore(path)
    except StoreDamaged as exc:
        return exc
    try:
        kv.verify()
    except StoreDamaged as exc:
        return exc
    finally:
        kv.close()
    return None


def run_check(settings: Settings, repair: bool) -> CheckReport:
    """``pipeline check [--repair]`` on a store: take the ingest lock, verify the SQLite files, then
    check (and repair) references, parents and ledger.

    A damaged docstore is a problem (``damaged-docstore``); with ``repair`` it is moved aside, what
    can be read is salvaged, and the check repairs around the loss (references nothing points to are
    deleted, documents with missing parents are marked for rebuild: `ingest` them again, unchanged
    text comes from the cache). A damaged ingest cache is moved aside (the next ingest starts a new one).

    Raises:
        StoreLocked: an ingest (or the service) holds the store.
    """
    from filelock import Timeout

    from pipeline.ingest.run import store_lock

    path = settings.store / "docstore.sqlite"
    lock = store_lock(settings, timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise StoreLocked(f"store {settings.store} is busy: another process holds its ingest lock ({exc.lock_file}); wait for it") from exc
    try:
        early: list[Problem] = []
        done: list[str] = []
        cache = settings.store / "cache.sqlite"
        if cache.exists() and (damage := _verified(cache)):
            early.append(Problem(kind="damaged-cache", detail=str(damage)))
            if repair:
                aside = cache.with_name(f"cache.sqlite.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
                cache.rename(aside)
                done.append(f"moved the damaged ingest cache to {aside.name}; the next ingest starts a new one")
        if damage := _verified(path):
            early.append(Problem(kind="damaged-docstore", detail=str(damage)))
            if not repair:
                return CheckReport(ok=False, documents=0, parents=0, problems=early)
            aside, rows = salvage_docstore(path)
            done.append(f"moved the damaged docstore to {aside.name}; salvaged {rows} readable rows into a new docstore.sqlite")
        client = qstore.open_client(settings)
        parents = ParentStore(path)
        try:
            report = check_store(client, qstore.names(settings), parents, repair=repair)
            if repair and (upgraded := qstore.upgrade_layout(client)):
                done.append(f"rewrote {', '.join(upgraded)} in the current engine layout (on disk, int8-quantized search)")
        finally:
            parents.close()
            client.close()
        if not early and not done:
            return report
        if any(p.kind == "damaged-docstore" for p in early):
            lost = sorted({p.doc_id for p in report.problems if p.kind == "orphan-reference" and p.doc_id})
            if lost:  # their references were dropped with the parents: ingesting them again restores them
                done.append(f"ingest these {len(lost)} documents again (unchanged text comes from the cache): {' '.join(lost)}")
        return report.model_copy(update={"ok": report.ok and not early, "problems": [*early, *report.problems], "repaired": [*done, *report.repaired]})
    finally:
        lock.release()
