"""The ledger protocol (``store/ledger.py``) and ``check_store`` against a real embedded engine in a temp folder.

A kill is simulated by the protocol's own checkpoint hook raising: everything the protocol did before
the step is on disk or in the open engine, nothing after it ran (the end-to-end suites kill real
processes at the same steps: tests/e2e/test_recovery.py). Vectors are random unit vectors: what is
under test is which ids exist where, not what they mean.

Each test gets its own store, but not a new one: a new embedded store is ~680 MB of preallocated files
and costs seconds of disk writes, so each module writes a document into a store once (``Bases``),
closes it, and gives every test a sparse copy of the closed folder (byte for byte the same files).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from pipeline.config import Settings
from pipeline.ingest.reference import make_ref
from pipeline.models import RefKind
from pipeline.store import layout
from pipeline.store import ledger as ledger_mod
from pipeline.store import qdrant as qstore
from pipeline.store.check import check_store
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import Collection
from pipeline.store.ledger import Change, LedgerEntry, LedgerWriter, Op, entry_for_nodes
from pipeline.store.migrate import migrate_parent_refs, needs_migration

DIM = 8
DOC = "/docs/a.pdf"


class Killed(BaseException):
    """What SIGKILL does to the protocol: nothing after the step runs."""


def vec(seed: str) -> list[float]:
    rng = random.Random(seed)
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def parent(i: int, text: str) -> TextNode:
    pid = layout.parent_id_for(DOC, i, text)
    return TextNode(
        id_=pid,
        text=text,
        metadata={layout.KIND: "parent", layout.DOC_ID: DOC, layout.READABLE_ID: f"a.pdf#p{i}", layout.PAGES: [i + 1]},
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=DOC)},
    )


def refs_of(p: TextNode, kinds: dict[RefKind, int], tag: str = "") -> list[Any]:
    out = []
    for kind, n in kinds.items():
        for j in range(n):
            r = make_ref(p, kind, j, f"{kind.value} {j} of {p.text} {tag}")
            r.embedding = vec(r.node_id + tag)
            out.append(r)
    return out


CHUNKS = {RefKind.CHUNK_128: 2, RefKind.CHUNK_256: 1, RefKind.PARENT: 1}


class Store:
    def __init__(self, root: Path) -> None:
        self.settings = Settings(store=root)
        self.client = qstore.open_client(self.settings)
        self.collections = qstore.ensure_collections(self.client, self.settings, "test-model", DIM)
        self.parents = ParentStore(root / "docstore.sqlite")
        self.writer = LedgerWriter(self.client, self.collections, self.parents)

    def points(self) -> dict[str, set[str]]:
        return {c.value: {pid for pid, _ in qstore.scroll_payloads(self.client, n, [])} for c, n in self.collections.items()}

    def close(self) -> None:
        self.parents.close()
        self.client.close()


_BLOCK = 1 << 18
_ZEROS = bytes(_BLOCK)


def _sparse_copy(src: str, dst: str) -> str:
    """``shutil.copy2`` without writing the zero blocks: the engine's WAL segments and page files are
    mostly preallocated zeros, and writing them again made a plain ``copytree`` cost ~6 s per store."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(_BLOCK):
            if chunk == _ZEROS[: len(chunk)]:
                fo.seek(len(chunk), os.SEEK_CUR)
            else:
                fo.write(chunk)
        fo.truncate()
    shutil.copystat(src, dst)
    return dst


class Bases:
    """Closed stores each holding one document written by the protocol, built on first use and copied per test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[tuple[str, ...], tuple[Path, LedgerEntry]] = {}

    def entry(self, texts: Sequence[str]) -> LedgerEntry:
        """What ``write(store, texts)`` returned when the base was written."""
        return self._base(texts)[1]

    def open_copy(self, texts: Sequence[str], to: Path) -> Store:
        """A store as ``write(Store(to), texts)`` leaves it, from a copy of the closed base."""
        path, entry = self._base(texts)
        shutil.copytree(path, to, copy_function=_sparse_copy)
        s = Store(to)
        assert s.parents.ledger_entry(DOC) == entry  # the copy reads as the store written
        return s

    def _base(self, texts: Sequence[str]) -> tuple[Path, LedgerEntry]:
        key = tuple(texts)
        if key not in self.built:
            path = self.root / f"base-{len(self.built)}"
            s = Store(path)
            try:
                self.built[key] = (path, write(s, list(texts)))
            finally:
                s.close()
        return self.built[key]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Bases:
    return Bases(tmp_path_factory.mktemp("bases"))


@pytest.fixture()
def store(bases: Bases, tmp_path: Path) -> Iterator[Store]:
    """This test's own store, with ``write(store, ["one", "two"])`` done."""
    s = bases.open_copy(["one", "two"], tmp_path / "store")
    yield s
    s.close()


def phase1(texts: list[str]) -> tuple[list[TextNode], list[Any], LedgerEntry]:
    ps = [parent(i, t) for i, t in enumerate(texts)]
    rs = [r for p in ps for r in refs_of(p, CHUNKS)]
    return ps, rs, entry_for_nodes("hash-" + "".join(texts), "fp", ps, rs)


def write(store: Store, texts: list[str]) -> LedgerEntry:
    ps, rs, final = phase1(texts)
    out = store.writer.apply(DOC, Change(Op.WRITE, final, parents=ps, refs=rs, skip_committed=True))
    assert out is not None
    return out


def enrichment(store: Store, pid: str, tag: str) -> tuple[list[Any], Change]:
    p = store.parents.get(pid)
    assert p is not None
    rs = refs_of(p, {RefKind.SUMMARY: 1, RefKind.QUESTION: 3}, tag)
    ids = {Collection.SUMMARIES.value: [r.node_id for r in rs[:1]], Collection.QUESTIONS.value: [r.node_id for r in rs[1:]]}
    entry = store.parents.ledger_entry(DOC)
    assert entry is not None
    final = entry.committed().with_enrichment(pid, "enrich-fp-" + tag, ids)
    return rs, Change(Op.ENRICH, final, refs=rs, enrich=pid)


def kill_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    def hook(name: str) -> None:
        if name == step:
            raise Killed(step)

    monkeypatch.setattr(ledger_mod, "checkpoint", hook)


def state(store: Store) -> tuple[dict[str, set[str]], set[str], dict[str, Any]]:
    return store.points(), set(store.parents.ids()), {d: e.dump() for d, e in store.parents.ledger().items()}


WRITE_STEPS = ["after-intent", "after-parents", "after-children", "after-delete-refs", "after-flush"]
ENRICH_STEPS = ["enrich-after-intent", "enrich-after-summaries", "enrich-after-questions", "enrich-after-delete-refs", "enrich-after-flush"]
THREE = ["one", "two", "three"]


@pytest.fixture(scope="module")
def rewritten(bases: Bases, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, set[str]], set[str], dict[str, Any]]:
    """The state an uninterrupted rewrite ends in: the reference every killed write must reach."""
    reference = bases.open_copy(THREE, tmp_path_factory.mktemp("rewritten") / "store")
    try:
        write(reference, ["one", "two changed", "three"])
        return state(reference)
    finally:
        reference.close()


@pytest.fixture()
def three(bases: Bases, tmp_path: Path) -> Iterator[Store]:
    """This test's own store, with ``write(store, THREE)`` done."""
    s = bases.open_copy(THREE, tmp_path / "store")
    yield s
    s.close()


@pytest.mark.parametrize("step", WRITE_STEPS)
def test_a_write_killed_at_any_step_is_finished_by_the_next(
    three: Store, rewritten: tuple[dict[str, set[str]], set[str], dict[str, Any]], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, want = three, rewritten
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        write(store, ["one", "two changed", "three"])
    entry = store.parents.ledger_entry(DOC)
    assert entry is not None and entry.interrupted_write
    # Every reference a reader can find points at a parent that exists.
    ids = set(store.parents.ids())
    for coll, name in store.collections.items():
        assert {pl[layout.PARENT_ID] for _, pl in qstore.scroll_payloads(store.client, name, [layout.PARENT_ID])} <= ids
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)
    write(store, ["one", "two changed", "three"])
    assert state(store) == want
    assert check_store(store.client, store.collections, store.parents).ok


@pytest.fixture(scope="module")
def reenriched(bases: Bases, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, set[str]], set[str], dict[str, Any]]:
    """The state an uninterrupted enrichment of the first parent, then another, ends in."""
    first = bases.entry(["one", "two"]).parents[0]
    reference = bases.open_copy(["one", "two"], tmp_path_factory.mktemp("reenriched") / "store")
    try:
        reference.writer.apply(DOC, enrichment(reference, first, "old")[1])
        reference.writer.apply(DOC, enrichment(reference, first, "new")[1])
        return state(reference)
    finally:
        reference.close()


@pytest.mark.parametrize("step", ENRICH_STEPS)
def test_a_killed_enrichment_then_ingest_check_and_repair_delete_nothing_and_converge(
    store: Store, bases: Bases, reenriched: tuple[dict[str, set[str]], set[str], dict[str, Any]], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect: a killed enrich, then `ingest`, emptied the ledger's parent references (read as an
    old layout), `check --repair` deleted their vectors. Now: the entry stays whole, repair registers
    what the killed run wrote, and the next enrichment gives the uninterrupted run's store."""
    entry = bases.entry(["one", "two"])
    first = entry.parents[0]
    _, done = enrichment(store, first, "old")
    store.writer.apply(DOC, done)  # an earlier enrichment, replaced by the killed one
    want = reenriched
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        store.writer.apply(DOC, enrichment(store, first, "new")[1])
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)

    # What `ingest` does first: the layout migration must not read the enrichment's intent as layout 1.
    assert not needs_migration(store.parents)
    assert migrate_parent_refs(store.client, store.collections, store.parents) == 0
    now = store.parents.ledger_entry(DOC)
    assert now is not None and not now.interrupted_write and len(now.refs[Collection.PARENTS.value]) == 2

    before = store.points()
    report = check_store(store.client, store.collections, store.parents)
    assert not report.ok and "old-layout" not in {p.kind for p in report.problems}
    repaired = check_store(store.client, store.collections, store.parents, repair=True)
    after = store.points()
    kept = {c: before[c] - after[c] for c in before}
    # Nothing whose parent exists was deleted (a killed delete step may have removed the old ones itself).
    assert all(not ids for ids in kept.values()), (repaired.repaired, kept)
    assert check_store(store.client, store.collections, store.parents).ok

    # The next `enrich` redoes the parent (its entry no longer has this fingerprint) and ends where
    # the uninterrupted run ended.
    entry2 = store.parents.ledger_entry(DOC)
    assert entry2 is not None and entry2.enriched.get(first) is not None
    store.writer.apply(DOC, enrichment(store, first, "new")[1])
    assert state(store) == want
    assert check_store(store.client, store.collections, store.parents).ok


@pytest.mark.parametrize("step", ["remove-after-intent", "remove-after-delete-refs", "remove-after-flush"])
def test_a_killed_removal_is_accepted_by_check_and_finished(store: Store, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kill_at(monkeypatch, step)
    with pytest.raises(Killed):
        store.writer.apply(DOC, Change(Op.REMOVE, final=None))
    monkeypatch.setattr(ledger_mod, "checkpoint", lambda name: None)
    report = check_store(store.client, store.collections, store.parents)
    assert report.ok and {p.kind for p in report.problems} == {"pending-removal"}
    check_store(store.client, store.collections, store.parents, repair=True)
    assert state(store) == ({c.value: set() for c in Collection}, set(), {})


def test_repair_registers_a_reference_the_ledger_forgot_instead_of_deleting_it(store: Store, bases: Bases) -> None:
    entry = bases.entry(["one", "two"])
    forgotten = entry.refs[Collection.CHILDREN.value][0]
    refs = dict(entry.refs)
    refs[Collection.CHILDREN.value] = refs[Collection.CHILDREN.value][1:]
    store.parents.put_ledger(DOC, entry.model_copy(update={"refs": refs}))
    report = check_store(store.client, store.collections, store.parents)
    assert not report.ok and "unregistered-reference" in {p.kind for p in report.problems}
    check_store(store.client, store.collections, store.parents, repair=True)
    assert forgotten in store.points()[Collection.CHILDREN.value]
    fixed = store.parents.ledger_entry(DOC)
    assert fixed is not None and forgotten in fixed.refs[Collection.CHILDREN.value]
    assert check_store(store.client, store.collections, store.parents).ok


def test_repair_deletes_only_references_whose_parent_is_gone(store: Store, bases: Bases) -> None:
    entry = bases.entry(["one", "two"])
    gone = entry.parents[1]
    store.parents.delete([gone])  # the docstore lost it and the ledger forgot it: its references are orphans
    kept = {r.node_id for r in refs_of(store.parents.get(entry.parents[0]), CHUNKS)}
    refs = {c: [i for i in ids if i in kept] for c, ids in entry.refs.items()}
    store.parents.put_ledger(DOC, entry.model_copy(update={"parents": entry.parents[:1], "refs": refs}))
    report = check_store(store.client, store.collections, store.parents, repair=True)
    left = store.points()
    payload_parents = {pl[layout.PARENT_ID] for _, pl in qstore.scroll_payloads(store.client, store.collections[Collection.CHILDREN], [layout.PARENT_ID])}
    assert gone not in payload_parents and entry.parents[0] in payload_parents
    assert any("whose parents are in no docstore" in r for r in report.repaired)
    assert len(left[Collection.PARENTS.value]) == 1
    assert check_store(store.client, store.collections, store.parents).ok


def test_a_missing_collection_is_found_and_its_documents_named_for_rebuild(store: Store) -> None:
    store.client.delete_collection(store.collections[Collection.PARENTS])
    report = check_store(store.client, store.collections, store.parents)
    assert not report.ok and "missing-collection" in {p.kind for p in report.problems}
    assert report.rebuild == [DOC]


def test_entries_written_before_ops_were_recorded_read_as_before() -> None:
    old_enrich = {"content_hash": "h", "parents": ["p"], "refs": {"children": ["c"], "parents": ["s"]},
                  "pending": {"parents": [], "refs": {"summaries": ["x"]}, "enrich": "p"}}
    entry = LedgerEntry.model_validate(old_enrich)
    assert entry.pending is not None and entry.pending.op is Op.ENRICH and not entry.interrupted_write
    assert entry.ref_ids()["summaries"] == {"x"} and entry.ref_ids(pending=False)["summaries"] == set()
    old_write = {"content_hash": "h", "parents": ["p"], "refs": {"children": ["c"], "parents": ["s"]}, "pending": {"parents": ["q"], "refs": {}}}
    assert LedgerEntry.model_validate(old_write).interrupted_write
    assert not LedgerEntry.model_validate({**old_write, "pending": None}).interrupted_write


def test_unchanged_is_one_rule_with_the_settings_fingerprint() -> None:
    entry = LedgerEntry(content_hash="h", fingerprint="fp", parents=["p"])
    assert entry.unchanged("h", "fp")
    assert not entry.unchanged("h", "other-settings")  # the dry run once said unchanged here
    assert not entry.unchanged("other-bytes", "fp")
    assert not entry.model_copy(update={"rebuild": True}).unchanged("h", "fp")
