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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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


@dataclass
class _Findings:
    """What the finders below collect, in the order they run, and what repair acts on.

    Each finder looks for one kind of damage and adds its problems here; ``check_store`` runs them in
    a fixed order (so the report lists problems as before the split) and then, with ``repair``,
    ``_repair`` acts on what they recorded.
    """

    ledger: dict[str, LedgerEntry]
    parent_ids: set[str]
    problems: list[Problem] = field(default_factory=list)
    rebuild: set[str] = field(default_factory=set)
    points: dict[str, int] = field(default_factory=dict)
    orphan_points: dict[Collection, list[str]] = field(default_factory=lambda: defaultdict(list))
    unlisted: dict[str, list[_Found]] = field(default_factory=lambda: defaultdict(list))  # doc_id -> points to register
    self_refs: set[str] = field(default_factory=set)
    damaged: list[Collection] = field(default_factory=list)
    orphan_parents: list[str] = field(default_factory=list)
    no_bm25: list[str] = field(default_factory=list)
    unindexed: list[str] = field(default_factory=list)

    def add(self, kind: str, detail: str, doc_id: str = "", count: int = 1) -> None:
        self.problems.append(Problem(kind=kind, doc_id=doc_id, detail=detail, count=count))

    def live(self) -> dict[str, LedgerEntry]:
        """Entries that are not being removed: what the store should hold."""
        return {d: e for d, e in self.ledger.items() if not removing(e)}


def check_store(
    client: QdrantClient,
    collections: dict[Collection, str],
    parents: ParentStore,
    repair: bool = False,
    corrupt: dict[Collection, list[str]] | None = None,
    ledger: dict[str, LedgerEntry] | None = None,
) -> CheckReport:
    """Compare the ledger with the engine and the docstore; with ``repair``, make them agree again.

    Repair never deletes a reference whose parent is still in the docstore: such a reference (an
    interrupted enrichment's, or one a damaged ledger forgot) is registered in its document's entry
    instead, and `ingest`/`enrich` redo what it belongs to. Only references whose parent is gone are
    deleted. Documents with missing pieces are returned in ``rebuild`` (``pipeline/ingest/repair.py``
    writes them again from the docstore and the ingest cache). ``corrupt``: points per collection whose
    stored vectors disagree with their cached embeddings (found by the caller): their documents are
    rebuilt too. ``ledger``: the ledger as the caller already read it (read once per check), else read here.
    """
    if needs_migration(parents):
        return _old_layout(client, collections, parents, repair, corrupt)
    found = _Findings(ledger=parents.ledger() if ledger is None else ledger, parent_ids=set(parents.ids()))
    _find_pending(found)
    listed = total_refs(found.live().values())
    for coll, name in collections.items():
        _check_collection(client, coll, name, listed[coll.value], found)
    _find_unregistered(found)
    _find_missing_parents(client, collections, found)
    _find_orphan_parents(found)
    _find_corrupt(collections, corrupt or {}, found)
    _find_no_bm25(client, collections, found)
    _find_unindexed(parents, found)
    repaired = _repair(client, collections, parents, found) if repair else []
    return CheckReport(
        ok=not [p for p in found.problems if p.kind not in CheckReport.NOTES],
        documents=len(found.ledger),
        parents=len(found.parent_ids),
        points=found.points,
        problems=found.problems,
        repaired=repaired,
        rebuild=sorted(found.rebuild),
        damaged=found.damaged,
    )


def _old_layout(
    client: QdrantClient, collections: dict[Collection, str], parents: ParentStore, repair: bool, corrupt: dict[Collection, list[str]] | None
) -> CheckReport:
    """``old-layout``: parent self-references still in the children collection; repair moves them, then checks again."""
    if not repair:
        detail = "written by an older version: parent self-references are in the children collection; --repair moves them"
        return CheckReport(ok=False, documents=len(parents.ledger()), parents=parents.count(), problems=[Problem(kind="old-layout", detail=detail)])
    moved = migrate_parent_refs(client, collections, parents)
    report = check_store(client, collections, parents, repair=True, corrupt=corrupt)  # the migration rewrote the ledger: read it again
    return report.model_copy(
        update={
            "ok": False,
            "problems": [Problem(kind="old-layout", detail="written by an older version (migrated)"), *report.problems],
            "repaired": [f"migrated the layout: moved {moved} parent self-references", *report.repaired],
        }
    )


def _find_pending(found: _Findings) -> None:
    """``pending`` (an interrupted write or enrichment) and ``pending-removal`` (a note)."""
    for doc_id, entry in found.ledger.items():
        if entry.pending is None:
            continue
        if entry.pending.op is Op.REMOVE:
            # Readers never see a dangling reference meanwhile (references go before parents), so this is
            # a note: the next `ingest --sync`, `ingest` or `check --repair` finishes what was asked.
            found.add("pending-removal", "a removal was interrupted; the next ingest (or check --repair) finishes it", doc_id)
            continue
        what = "an ingest was interrupted while writing this document" if entry.pending.op is Op.WRITE else f"an enrichment was interrupted (parent {entry.pending.enrich})"
        found.add("pending", what, doc_id)
        if entry.pending.op is Op.WRITE:
            found.rebuild.add(doc_id)


def _check_collection(client: QdrantClient, coll: Collection, name: str, listed: int, found: _Findings) -> None:
    """One collection against the ledger: ``missing-collection``, ``damaged-collection``, then per point
    (``_classify_point``) and per document ``count-mismatch``, ``missing-reference``, ``orphan-reference``."""
    wanted = {doc: e.ref_ids(pending=False)[coll.value] for doc, e in found.live().items()}
    if not client.collection_exists(name):
        missing_docs = sorted(d for d, ids in wanted.items() if ids)
        if missing_docs:
            found.add("missing-collection", f"{name}: the collection is missing; the ledger lists {listed} references in it", count=listed)
            found.rebuild.update(missing_docs)
        return
    try:
        scanned = list(qstore.scroll_payloads(client, name, [layout.DOC_ID, layout.PARENT_ID, layout.KIND]))
    except StoreDamaged as exc:
        found.add("damaged-collection", f"{name}: cannot be read ({exc})")
        found.damaged.append(coll)
        found.rebuild.update(d for d, ids in wanted.items() if ids)
        return
    present: dict[str, set[str]] = defaultdict(set)
    orphan_docs: Counter[str] = Counter()
    leaving = 0
    for point_id, payload in scanned:
        doc_id = payload.get(layout.DOC_ID, "")
        present[doc_id].add(point_id)
        verdict = _classify_point(coll, name, point_id, payload, wanted, found)
        leaving += verdict == "leaving"
        if verdict == "orphan":
            orphan_docs[doc_id] += 1
    n = len(scanned)
    found.points[name] = n
    if n - leaving != listed:
        found.add("count-mismatch", f"{name}: {n} points, the ledger lists {listed}", count=abs(n - listed))
    for doc_id, refs in wanted.items():
        missing = refs - present.get(doc_id, set())
        if missing:
            found.add("missing-reference", f"{name}: {len(missing)} listed references absent", doc_id, len(missing))
            found.rebuild.add(doc_id)
    for doc_id, k in sorted(orphan_docs.items()):
        found.add("orphan-reference", f"{name}: {k} references whose parent is in no docstore", doc_id, k)


def _classify_point(coll: Collection, name: str, point_id: str, payload: dict[str, Any], wanted: dict[str, set[str]], found: _Findings) -> str:
    """One stored point: "leaving" (an interrupted removal's), "listed" (``dangling-reference`` if its
    parent is gone), "unlisted" (its parent exists: repair registers it), "orphan" (repair deletes it),
    or "skipped" (an interrupted write's own: the rebuild decides)."""
    doc_id, pid, kind = payload.get(layout.DOC_ID, ""), payload.get(layout.PARENT_ID, ""), payload.get(layout.KIND, "")
    if kind == RefKind.PARENT.value:
        found.self_refs.add(pid)
    entry = found.ledger.get(doc_id)
    if entry is not None and removing(entry):
        return "leaving"  # finished by the next run
    if entry is not None and point_id in wanted.get(doc_id, ()):
        if pid not in found.parent_ids:
            found.add("dangling-reference", f"{name}: {point_id} points to missing parent {pid}", doc_id)
            found.rebuild.add(doc_id)
        return "listed"
    if entry is not None and entry.interrupted_write:
        return "skipped"
    if pid in found.parent_ids:
        found.unlisted[doc_id].append(_Found(coll, point_id, kind, pid))
        return "unlisted"
    found.orphan_points[coll].append(point_id)
    return "orphan"


def _find_unregistered(found: _Findings) -> None:
    """``unregistered-reference``: points the ledger does not list whose parents are in the docstore."""
    for doc_id, items in sorted(found.unlisted.items()):
        found.add("unregistered-reference", f"{len(items)} references not in the ledger, their parents in the docstore: --repair registers them", doc_id, len(items))


def _find_missing_parents(client: QdrantClient, collections: dict[Collection, str], found: _Findings) -> None:
    """``missing-parent`` (listed, absent from the docstore) and ``missing-reference`` (a parent without its self-reference)."""
    parents_readable = Collection.PARENTS not in found.damaged and client.collection_exists(collections[Collection.PARENTS])
    for doc_id, entry in found.live().items():
        missing = set(entry.parents) - found.parent_ids
        if missing:
            found.add("missing-parent", f"{len(missing)} parents absent from the docstore", doc_id, len(missing))
            found.rebuild.add(doc_id)
        no_self = set(entry.parents) - found.self_refs
        if no_self and not missing and parents_readable:
            found.add("missing-reference", f"{len(no_self)} parents without their self-reference", doc_id, len(no_self))
            found.rebuild.add(doc_id)


def _find_orphan_parents(found: _Findings) -> None:
    """``orphan-parent``: parents no ledger entry lists and no unlisted reference points at."""
    expected = {p for e in found.ledger.values() for p in e.parent_ids()}
    registered = {f.parent_id for items in found.unlisted.values() for f in items}
    found.orphan_parents = sorted(found.parent_ids - expected - registered)
    if found.orphan_parents:
        found.add("orphan-parent", f"{len(found.orphan_parents)} parents belong to no ingested document and no reference points at them", count=len(found.orphan_parents))


def _find_corrupt(collections: dict[Collection, str], corrupt: dict[Collection, list[str]], found: _Findings) -> None:
    """``corrupt-vectors``: the points the caller found differing from their cached embeddings; their documents are rebuilt."""
    for coll, ids in corrupt.items():
        if ids:
            found.add("corrupt-vectors", f"{collections[coll]}: {len(ids)} stored vectors differ from their cached embeddings", count=len(ids))
            found.rebuild.update(d for d, e in found.live().items() if set(ids) & e.ref_ids(pending=False)[coll.value])


def _find_no_bm25(client: QdrantClient, collections: dict[Collection, str], found: _Findings) -> None:
    """``no-bm25``: collections written before hybrid search (repair adds the sparse vectors)."""
    found.no_bm25 = list(needs_sparse(client, {c: n for c, n in collections.items() if c not in found.damaged}))
    if found.no_bm25:
        found.add("no-bm25", f"{', '.join(found.no_bm25)}: references without BM25 vectors (written before hybrid search); --repair adds them without re-embedding", count=len(found.no_bm25))


def _find_unindexed(parents: ParentStore, found: _Findings) -> None:
    """``no-self-ref-index``: parents written before the docstore indexed their self-references."""
    found.unindexed = list(parents.unindexed())
    if found.unindexed:
        found.add(
            "no-self-ref-index",
            f"{len(found.unindexed)} parents written before the docstore indexed their self-references: each new process hashes every parent id at its first retrieve instead; --repair adds the index",
            count=len(found.unindexed),
        )


def _repair(client: QdrantClient, collections: dict[Collection, str], parents: ParentStore, found: _Findings) -> list[str]:
    """Act on the findings, in an order that never deletes a reference whose parent exists: finish
    interrupted removals, register unlisted references, close interrupted enrichments, and only then
    delete the points and parents nothing names. What is returned says what was done."""
    repaired: list[str] = []
    if found.unindexed:
        parents.index_self_refs(found.unindexed)
        repaired.append(f"indexed the self-references of {len(found.unindexed)} parents")
    if found.no_bm25:
        added = add_sparse_vectors(client, collections)
        repaired.append(f"added BM25 vectors to {added} references")
    writer = LedgerWriter(client, collections, parents)
    for doc_id, entry in sorted(found.ledger.items()):
        if removing(entry):
            writer.apply(doc_id, Change(Op.REMOVE, final=None))  # what was asked: finish it
            repaired.append(f"finished the interrupted removal of {doc_id}")
            found.rebuild.discard(doc_id)
            found.unlisted.pop(doc_id, None)
    for doc_id, items in sorted(found.unlisted.items()):
        _register(parents, doc_id, items)
        repaired.append(f"registered {len(items)} references of {doc_id} that the ledger did not list (their parents exist)")
    for doc_id, entry in sorted(found.ledger.items()):
        if entry.pending is not None and entry.pending.op is Op.ENRICH and doc_id not in found.unlisted:
            now = parents.ledger_entry(doc_id)
            if now is not None:
                parents.put_ledger(doc_id, now.committed())
                repaired.append(f"closed the interrupted enrichment of {doc_id}: nothing of it was written; `pipeline enrich` does it")
    for coll, ids in found.orphan_points.items():
        if ids:
            qstore.delete_points(client, collections[coll], sorted(set(ids)))
            repaired.append(f"deleted {len(set(ids))} references from {collections[coll]} whose parents are in no docstore")
    if found.orphan_parents:
        parents.delete(found.orphan_parents)
        repaired.append(f"deleted {len(found.orphan_parents)} parents that no document and no reference names")
    qstore.flush(client)
    return repaired


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
