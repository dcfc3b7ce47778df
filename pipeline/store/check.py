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
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field
from qdrant_client import QdrantClient

from pipeline.errors import StoreDamaged
from pipeline.models import RefKind
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import Collection
from pipeline.store.ledger import ENRICH_COLLECTIONS, Change, LedgerEntry, LedgerWriter, Op, total_refs
from pipeline.store.migrate import add_sparse_vectors, migrate_parent_refs, needs_migration, needs_sparse
from pipeline.store.sqlite_kv import SQLiteKVStore


class Problem(BaseModel):
    # old-layout | pending | orphan-reference | unregistered-reference | dangling-reference | orphan-parent |
    # missing-reference | missing-parent | missing-collection | count-mismatch | corrupt-vectors | damaged-collection |
    # unverified-vectors | no-bm25 | no-self-ref-index | damaged-docstore | damaged-cache
    kind: str
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
    rebuild: list[str] = Field(default_factory=list, description="documents whose pieces repair must write again")
    damaged: list[Collection] = Field(default_factory=list, description="collections the engine cannot read: repair drops and rebuilds them")
    # Problems that are notes, not damage: the store is ok with them.
    NOTES: ClassVar[frozenset[str]] = frozenset({"unverified-vectors", "pending-removal"})


def removing(entry: LedgerEntry) -> bool:
    return entry.pending is not None and entry.pending.op is Op.REMOVE


@dataclass
class _Found:
    """A point the ledger does not list: its collection, kind and parent (from its payload)."""

    coll: Collection
    point_id: str
    kind: str
    parent_id: str


def check_store(
    client: QdrantClient,
    collections: dict[Collection, str],
    parents: ParentStore,
    repair: bool = False,
    corrupt: dict[Collection, list[str]] | None = None,
) -> CheckReport:
    """Compare the ledger with the engine and the docstore; with ``repair``, make them agree again.

    Repair never deletes a reference whose parent is still in the docstore: such a reference (an
    interrupted enrichment's, or one a damaged ledger forgot) is registered in its document's entry
    instead, and `ingest`/`enrich` redo what it belongs to. Only references whose parent is gone are
    deleted. Documents with missing pieces are returned in ``rebuild`` (``pipeline/ingest/repair.py``
    writes them again from the docstore and the ingest cache). ``corrupt``: points per collection whose
    stored vectors disagree with their cached embeddings (found by the caller): their documents are
    rebuilt too.
    """
    if needs_migration(parents):
        if not repair:
            detail = "written by an older version: parent self-references are in the children collection; --repair moves them"
            return CheckReport(
                ok=False, documents=len(parents.ledger()), parents=parents.count(), problems=[Problem(kind="old-layout", detail=detail)]
            )
        moved = migrate_parent_refs(client, collections, parents)
        report = check_store(client, collections, parents, repair=True, corrupt=corrupt)
        return report.model_copy(
            update={"ok": False, "problems": [Problem(kind="old-layout", detail="written by an older version (migrated)"), *report.problems], "repaired": [f"migrated the layout: moved {moved} parent self-references", *report.repaired]}
        )
    ledger = parents.ledger()
    parent_ids = set(parents.ids())
    problems: list[Problem] = []
    repaired: list[str] = []
    needs_rebuild: set[str] = set()
    points: dict[str, int] = {}
    orphan_points: dict[Collection, list[str]] = defaultdict(list)
    unlisted: dict[str, list[_Found]] = defaultdict(list)  # doc_id -> points to register
    self_refs: set[str] = set()
    expected_parents: set[str] = set()
    damaged: list[Collection] = []

    for doc_id, entry in ledger.items():
        expected_parents |= entry.parent_ids()
        if entry.pending is not None and entry.pending.op is Op.REMOVE:
            # Readers never see a dangling reference meanwhile (references go before parents), so this is
            # a note: the next `ingest --sync`, `ingest` or `check --repair` finishes what was asked.
            problems.append(Problem(kind="pending-removal", doc_id=doc_id, detail="a removal was interrupted; the next ingest (or check --repair) finishes it"))
        elif entry.pending is not None:
            what = "an ingest was interrupted while writing this document" if entry.pending.op is Op.WRITE else f"an enrichment was interrupted (parent {entry.pending.enrich})"
            problems.append(Problem(kind="pending", doc_id=doc_id, detail=what))
            if entry.pending.op is Op.WRITE:
                needs_rebuild.add(doc_id)
    listed = total_refs(e for e in ledger.values() if not removing(e))

    for coll, name in collections.items():
        wanted = {doc: e.ref_ids(pending=False)[coll.value] for doc, e in ledger.items() if not removing(e)}
        if not client.collection_exists(name):
            missing_docs = sorted(d for d, ids in wanted.items() if ids)
            if missing_docs:
                problems.append(Problem(kind="missing-collection", detail=f"{name}: the collection is missing; the ledger lists {listed[coll.value]} references in it", count=listed[coll.value]))
                needs_rebuild.update(missing_docs)
            continue
        found: dict[str, set[str]] = defaultdict(set)
        orphan_docs: Counter[str] = Counter()
        n = leaving = 0
        try:
            scanned = list(qstore.scroll_payloads(client, name, [layout.DOC_ID, layout.PARENT_ID, layout.KIND]))
        except StoreDamaged as exc:
            problems.append(Problem(kind="damaged-collection", detail=f"{name}: cannot be read ({exc})"))
            damaged.append(coll)
            needs_rebuild.update(d for d, ids in wanted.items() if ids)
            continue
        for point_id, payload in scanned:
            n += 1
            doc_id, pid, kind = payload.get(layout.DOC_ID, ""), payload.get(layout.PARENT_ID, ""), payload.get(layout.KIND, "")
            found[doc_id].add(point_id)
            if kind == RefKind.PARENT.value:
                self_refs.add(pid)
            entry = ledger.get(doc_id)
            if entry is not None and removing(entry):
                leaving += 1  # the interrupted removal's: finished by the next run
                continue
            if entry is not None and point_id in wanted.get(doc_id, ()):
                if pid not in parent_ids:
                    problems.append(Problem(kind="dangling-reference", doc_id=doc_id, detail=f"{name}: {point_id} points to missing parent {pid}"))
                    needs_rebuild.add(doc_id)
                continue
            if entry is not None and entry.interrupted_write:
                continue  # an interrupted write's or removal's own: the rebuild or the removal decides
            if pid in parent_ids:
                unlisted[doc_id].append(_Found(coll, point_id, kind, pid))
            else:
                orphan_points[coll].append(point_id)
                orphan_docs[doc_id] += 1
        points[name] = n
        if n - leaving != listed[coll.value]:
            problems.append(Problem(kind="count-mismatch", detail=f"{name}: {n} points, the ledger lists {listed[coll.value]}", count=abs(n - listed[coll.value])))
        for doc_id, refs in wanted.items():
            missing = refs - found.get(doc_id, set())
            if missing:
                problems.append(Problem(kind="missing-reference", doc_id=doc_id, detail=f"{name}: {len(missing)} listed references absent", count=len(missing)))
                needs_rebuild.add(doc_id)
        for doc_id, k in sorted(orphan_docs.items()):
            problems.append(Problem(kind="orphan-reference", doc_id=doc_id, detail=f"{name}: {k} references whose parent is in no docstore", count=k))
    for doc_id, items in sorted(unlisted.items()):
        problems.append(Problem(kind="unregistered-reference", doc_id=doc_id, detail=f"{len(items)} references not in the ledger, their parents in the docstore: --repair registers them", count=len(items)))

    for doc_id, entry in ledger.items():
        if removing(entry):
            continue
        missing = set(entry.parents) - parent_ids
        if missing:
            problems.append(Problem(kind="missing-parent", doc_id=doc_id, detail=f"{len(missing)} parents absent from the docstore", count=len(missing)))
            needs_rebuild.add(doc_id)
        no_self = set(entry.parents) - self_refs
        if no_self and not missing and Collection.PARENTS not in damaged and client.collection_exists(collections[Collection.PARENTS]):
            problems.append(Problem(kind="missing-reference", doc_id=doc_id, detail=f"{len(no_self)} parents without their self-reference", count=len(no_self)))
            needs_rebuild.add(doc_id)
    registered_parents = {f.parent_id for items in unlisted.values() for f in items}
    orphan_parents = sorted(parent_ids - expected_parents - registered_parents)
    if orphan_parents:
        problems.append(Problem(kind="orphan-parent", detail=f"{len(orphan_parents)} parents belong to no ingested document and no reference points at them", count=len(orphan_parents)))

    for coll, ids in (corrupt or {}).items():
        if ids:
            problems.append(Problem(kind="corrupt-vectors", detail=f"{collections[coll]}: {len(ids)} stored vectors differ from their cached embeddings", count=len(ids)))
            needs_rebuild.update(d for d, e in ledger.items() if not removing(e) and set(ids) & e.ref_ids(pending=False)[coll.value])

    no_bm25 = needs_sparse(client, {c: n for c, n in collections.items() if c not in damaged})
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
        writer = LedgerWriter(client, collections, parents)
        for doc_id, entry in sorted(ledger.items()):
            if entry.pending is not None and entry.pending.op is Op.REMOVE:
                writer.apply(doc_id, Change(Op.REMOVE, final=None))  # what was asked: finish it
                repaired.append(f"finished the interrupted removal of {doc_id}")
                needs_rebuild.discard(doc_id)
                unlisted.pop(doc_id, None)
        for doc_id, items in sorted(unlisted.items()):
            _register(parents, doc_id, items)
            repaired.append(f"registered {len(items)} references of {doc_id} that the ledger did not list (their parents exist)")
        for doc_id, entry in sorted(ledger.items()):
            if entry.pending is not None and entry.pending.op is Op.ENRICH and doc_id not in unlisted:
                now = parents.ledger_entry(doc_id)
                if now is not None:
                    parents.put_ledger(doc_id, now.committed())
                    repaired.append(f"closed the interrupted enrichment of {doc_id}: nothing of it was written; `pipeline enrich` does it")
        for coll, ids in orphan_points.items():
            if ids:
                qstore.delete_points(client, collections[coll], sorted(set(ids)))
                repaired.append(f"deleted {len(set(ids))} references from {collections[coll]} whose parents are in no docstore")
        if orphan_parents:
            parents.delete(orphan_parents)
            repaired.append(f"deleted {len(orphan_parents)} parents that no document and no reference names")
        qstore.flush(client)
    return CheckReport(
        ok=not [p for p in problems if p.kind not in CheckReport.NOTES],
        documents=len(ledger),
        parents=len(parent_ids),
        points=points,
        problems=problems,
        repaired=repaired,
        rebuild=sorted(needs_rebuild),
        damaged=damaged,
    )


def _register(parents: ParentStore, doc_id: str, items: list[_Found]) -> None:
    """Put references the ledger did not list into their document's entry (creating one if needed).

    Summary and question references become an enrichment to redo (fingerprint None), so `enrich`
    replaces them with the current LLM's; a parent the entry did not list makes the next ingest redo
    the document (``content_hash`` None), which drops whatever the current file no longer has.
    An interrupted enrichment's intent is closed: what it wrote is registered, the rest never existed.
    """
    entry = (parents.ledger_entry(doc_id) or LedgerEntry()).committed()
    refs = {c: list(ids) for c, ids in entry.refs.items()}
    new_parents = [p for p in dict.fromkeys(f.parent_id for f in items) if p not in entry.parents]
    enrich: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in items:
        if f.point_id not in refs[f.coll.value]:
            refs[f.coll.value].append(f.point_id)
        if f.coll in ENRICH_COLLECTIONS:
            enrich[f.parent_id][f.coll.value].append(f.point_id)
    kinds = Counter(entry.kinds)
    for f in items:
        if f.kind:
            kinds[f.kind] += 1
    update: dict[str, object] = {"refs": refs, "kinds": dict(kinds), "parents": [*entry.parents, *new_parents]}
    if new_parents:
        update["content_hash"] = None
    entry = entry.model_copy(update=update)
    for pid, by_coll in enrich.items():
        old = entry.enriched.get(pid)
        ids = {c.value: sorted(set((old.refs if old else {}).get(c.value, [])) | set(by_coll.get(c.value, []))) for c in ENRICH_COLLECTIONS}
        entry = entry.with_enrichment(pid, None, ids)
    parents.put_ledger(doc_id, entry)


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
