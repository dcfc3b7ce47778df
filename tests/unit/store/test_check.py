"""``check_store`` finds each kind of damage, and its repair never deletes a reference whose parent exists.

Each case damages a real store (the embedded engine and a docstore in a temp folder, written by the
ledger protocol as ingest writes it; ``tests/unit/store/test_ledger.py`` builds it without models)
the way a crash, a lost file or an older version would, then asserts the exact kinds ``check``
reports, which documents it names for rebuild, and that ``--repair`` keeps every reference whose
parent is in the docstore. ``damaged-collection`` (an engine that cannot read its files) is caused
for real in tests/e2e/test_recovery.py; ``damaged-docstore``, ``damaged-cache`` and
``unverified-vectors`` are found by ``pipeline/ingest/repair.py``, around this function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qdrant_client import models

from pipeline.store import layout
from pipeline.store import ledger as ledger_mod
from pipeline.store import qdrant as qstore
from pipeline.store.check import CheckReport, check_store
from pipeline.store.docstore import SELF_REFS
from pipeline.store.layout import Collection
from pipeline.store.ledger import Change, LedgerEntry, Op
from tests.unit.store.test_ledger import CHUNKS, DOC, Bases, Killed, Store, bases, enrichment, kill_at, parent, refs_of, store, write

__all__ = ["bases", "store"]  # the fixtures, shared with test_ledger.py: each test damages its own copy of one written store


@pytest.fixture(scope="module")
def written(bases: Bases) -> LedgerEntry:
    """What ``write(store, ["one", "two"])`` returned for the base every test here copies (``store``)."""
    return bases.entry(["one", "two"])


@pytest.fixture(scope="module")
def clean(bases: Bases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One copy of the written store shared by the tests that only read it (``check_store`` without repair)."""
    s = bases.open_copy(["one", "two"], tmp_path_factory.mktemp("clean") / "store")
    yield s
    s.close()


def kinds(report: CheckReport) -> set[str]:
    return {p.kind for p in report.problems}


def check(s: Store, **kw: Any) -> CheckReport:
    return check_store(s.client, s.collections, s.parents, **kw)


def live_refs(s: Store) -> set[str]:
    """The points whose parent is in the docstore, in any collection: what repair must never delete
    (the layout migration moves some from one collection to another)."""
    ids = set(s.parents.ids())
    return {
        pid
        for n in s.collections.values()
        if s.client.collection_exists(n)
        for pid, pl in qstore.scroll_payloads(s.client, n, [layout.PARENT_ID])
        if pl.get(layout.PARENT_ID) in ids
    }


def ledger_without(s: Store, coll: Collection, drop: int = 1) -> str:
    """The ledger forgets the first reference it lists in ``coll``; returns its id."""
    entry = s.parents.ledger_entry(DOC)
    assert entry is not None
    refs = dict(entry.refs)
    forgotten = refs[coll.value][0]
    refs[coll.value] = refs[coll.value][drop:]
    s.parents.put_ledger(DOC, entry.model_copy(update={"refs": refs}))
    return forgotten


def _pending_write(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    kill_at(monkeypatch, "after-parents")
    with pytest.raises(Killed):
        write(s, ["one", "two changed"])
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)


def _pending_enrichment(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = s.parents.ids()[0]
    kill_at(monkeypatch, "enrich-after-intent")
    with pytest.raises(Killed):
        s.writer.apply(DOC, enrichment(s, first, "new")[1])
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)


def _pending_removal(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    kill_at(monkeypatch, "remove-after-delete-refs")
    with pytest.raises(Killed):
        s.writer.apply(DOC, Change(Op.REMOVE, final=None))
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)


def _lost_parent_and_its_entry(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstore lost a parent and the ledger forgot it: its references point nowhere."""
    entry = s.parents.ledger_entry(DOC)
    assert entry is not None
    s.parents.delete([entry.parents[1]])
    keep = entry.parents[0]
    kept = {r.node_id for r in refs_of(s.parents.get(keep), CHUNKS)}
    refs = {c: [i for i in ids if i in kept] for c, ids in entry.refs.items()}
    s.parents.put_ledger(DOC, entry.model_copy(update={"parents": [keep], "refs": refs}))


def _lost_parent(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstore lost a parent the ledger still lists."""
    entry = s.parents.ledger_entry(DOC)
    assert entry is not None
    s.parents.delete([entry.parents[1]])


def _stray_parent(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s.parents.put([parent(7, "a parent no document lists")])


def _lost_chunk(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = s.parents.ledger_entry(DOC)
    assert entry is not None
    qstore.delete_points(s.client, s.collections[Collection.CHILDREN], entry.refs[Collection.CHILDREN.value][:1])


def _lost_self_reference(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = s.parents.ledger_entry(DOC)
    assert entry is not None
    qstore.delete_points(s.client, s.collections[Collection.PARENTS], entry.refs[Collection.PARENTS.value][:1])


def _lost_collection(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s.client.delete_collection(s.collections[Collection.CHILDREN])


def _forgotten_reference(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger_without(s, Collection.CHILDREN)


def _collection_before_hybrid(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The (empty) questions collection as stores written before hybrid search made it: dense only."""
    name = s.collections[Collection.QUESTIONS]
    meta = s.client.get_collection(name).config.metadata
    s.client.delete_collection(name)
    s.client.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE), metadata=meta)


def _docstore_before_self_ref_index(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(s.parents.kv.get_all(SELF_REFS)):
        s.parents.kv.delete(key, SELF_REFS)


def _layout_1(s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an older version wrote: the parents' self-references among the chunks, no ``parents`` list."""
    src, dst = s.collections[Collection.PARENTS], s.collections[Collection.CHILDREN]
    points, _ = s.client.scroll(src, limit=100, with_payload=True, with_vectors=True)
    s.client.upsert(dst, points=[models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points], wait=True)
    qstore.delete_points(s.client, src, [str(p.id) for p in points])
    raw = s.parents.raw_ledger()[DOC]
    raw["refs"][Collection.CHILDREN.value] += raw["refs"].pop(Collection.PARENTS.value)
    s.parents.put_ledger(DOC, raw)


Damage = Callable[[Store, pytest.MonkeyPatch], None]
# (damage, the kinds check reports, the documents it names for rebuild, whether check_store's repair alone makes the store ok)
CASES: dict[str, tuple[Damage, set[str], list[str], bool]] = {
    "pending write": (_pending_write, {"pending"}, [DOC], False),
    "pending enrichment": (_pending_enrichment, {"pending"}, [], True),
    "pending removal (a note)": (_pending_removal, {"pending-removal"}, [], True),
    "orphan reference": (_lost_parent_and_its_entry, {"orphan-reference", "count-mismatch"}, [], True),
    "dangling reference": (_lost_parent, {"dangling-reference", "missing-parent"}, [DOC], False),
    "orphan parent": (_stray_parent, {"orphan-parent"}, [], True),
    "missing reference": (_lost_chunk, {"missing-reference", "count-mismatch"}, [DOC], False),
    "missing self-reference": (_lost_self_reference, {"missing-reference", "count-mismatch"}, [DOC], False),
    "missing collection": (_lost_collection, {"missing-collection"}, [DOC], False),
    "unregistered reference": (_forgotten_reference, {"unregistered-reference", "count-mismatch"}, [], True),
    "no BM25 vectors": (_collection_before_hybrid, {"no-bm25"}, [], True),
    "no self-reference index": (_docstore_before_self_ref_index, {"no-self-ref-index"}, [], True),
    "old layout": (_layout_1, {"old-layout"}, [], True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_damage_is_found_and_repair_keeps_every_reference_whose_parent_exists(store: Store, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    damage, want, rebuild, repairable = CASES[case]
    assert check(store).ok and live_refs(store)
    damage(store, monkeypatch)

    report = check(store)
    assert kinds(report) == want, [p.model_dump() for p in report.problems]
    assert report.ok == (want <= CheckReport.NOTES)
    assert report.rebuild == rebuild

    before = live_refs(store)
    repaired = check(store, repair=True)
    after = live_refs(store)
    assert before <= after, (repaired.repaired, before - after)
    if repairable:
        again = check(store)
        assert again.ok and not [p for p in again.problems if p.kind not in CheckReport.NOTES], again.problems


def test_a_clean_store_reports_nothing_and_counts_every_point(clean: Store, written: LedgerEntry) -> None:
    entry = written
    report = check(clean)
    assert report.ok and report.problems == [] and report.rebuild == [] and report.damaged == []
    assert report.documents == 1 and report.parents == 2
    assert report.points == {clean.collections[c]: len(entry.refs.get(c.value, [])) for c in Collection}


def test_vectors_found_corrupt_name_their_document_for_rebuild(clean: Store, written: LedgerEntry) -> None:
    bad = written.refs[Collection.CHILDREN.value][:2]
    report = check(clean, corrupt={Collection.CHILDREN: bad})
    assert kinds(report) == {"corrupt-vectors"} and report.problems[0].count == 2 and report.rebuild == [DOC]
    assert check(clean, corrupt={Collection.CHILDREN: []}).ok


def test_repair_deletes_the_orphans_and_the_stray_parent_but_nothing_else(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two things repair deletes, each only where nothing that exists names it."""
    _lost_parent_and_its_entry(store, monkeypatch)
    stray = parent(7, "a parent no document lists")
    store.parents.put([stray])
    orphans = {pid for pid, _ in qstore.scroll_payloads(store.client, store.collections[Collection.CHILDREN], [])} - live_refs(store)
    assert orphans
    report = check(store, repair=True)
    assert any("whose parents are in no docstore" in r for r in report.repaired)
    assert any("parents that no document and no reference names" in r for r in report.repaired)
    left = {pid for pid, _ in qstore.scroll_payloads(store.client, store.collections[Collection.CHILDREN], [])}
    assert not orphans & left and stray.node_id not in store.parents.ids()
    assert check(store).ok


def test_a_caller_that_read_the_ledger_gets_the_same_report(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pipeline check`` reads the ledger once and passes it (``ingest/repair.py``): same answer."""
    _lost_chunk(store, monkeypatch)
    assert check(store, ledger=store.parents.ledger()) == check(store)
