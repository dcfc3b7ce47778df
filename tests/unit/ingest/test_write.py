"""``DocumentWriter`` (``pipeline/ingest/write.py``): phase 1's node set in, exactly that store out.

On a real embedded engine and docstore in a temp folder, without models (random unit vectors, as in
``tests/unit/store/test_ledger.py``, whose store and node builders these tests share): what goes to
the docstore and what to which collection, what a changed document leaves behind, what the same
settings do not write twice, and a removal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.ingest.write import DocumentWriter
from pipeline.models import RefKind
from pipeline.store.layout import Collection
from tests.unit.store.test_ledger import CHUNKS, DOC, Store, bases, parent, refs_of, store, vec  # noqa: F401 (fixtures: store needs bases)

__all__ = ["store"]  # the fixture, shared with test_ledger.py


def nodes(texts: Sequence[str], tag: str = "") -> tuple[list[Any], list[Any]]:
    """A document's parents and references as phase 1 hands them over (the self-reference has kind
    "parent" too, but carries an embedding: it is a point, not a docstore row)."""
    ps = [parent(i, t) for i, t in enumerate(texts)]
    return ps, [r for p in ps for r in refs_of(p, CHUNKS, tag)]


def stored_vector(s: Store, coll: Collection, point_id: str) -> list[float]:
    (p,) = s.client.retrieve(s.collections[coll], ids=[point_id], with_vectors=True, with_payload=False)
    v = p.vector.get("") if isinstance(p.vector, dict) else p.vector
    assert v is not None
    return list(v)


def close(a: Sequence[float], b: Sequence[float]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) < 1e-3  # the engine may store int8 copies: compare loosely


def test_write_puts_parents_in_the_docstore_and_each_reference_in_its_collection(store: Store) -> None:
    writer = DocumentWriter(store.client, store.collections, store.parents)
    ps, rs = nodes(["one", "two"])
    entry = writer.write(DOC, "hash-1", "fp", [*ps, *rs])

    assert set(store.parents.ids()) == {p.node_id for p in ps}
    points = store.points()
    self_refs = {r.node_id for r in rs if r.metadata["kind"] == RefKind.PARENT.value}
    assert points[Collection.PARENTS.value] == self_refs and len(self_refs) == 2
    assert points[Collection.CHILDREN.value] == {r.node_id for r in rs} - self_refs
    assert points[Collection.SUMMARIES.value] == points[Collection.QUESTIONS.value] == set()
    assert entry.content_hash == "hash-1" and entry.fingerprint == "fp" and entry.pending is None
    assert entry.parents == [p.node_id for p in ps]
    assert entry.kinds == {RefKind.CHUNK_128.value: 4, RefKind.CHUNK_256.value: 2, RefKind.PARENT.value: 2}
    assert store.parents.ledger_entry(DOC) == entry


def test_a_changed_document_leaves_exactly_its_new_nodes(store: Store) -> None:
    writer = DocumentWriter(store.client, store.collections, store.parents)
    old_ps, old_rs = nodes(["one", "two", "three"])
    writer.write(DOC, "hash-1", "fp", [*old_ps, *old_rs])
    ps, rs = nodes(["one", "two changed", "three"])
    entry = writer.write(DOC, "hash-2", "fp", [*ps, *rs])

    assert set(store.parents.ids()) == {p.node_id for p in ps}
    assert set().union(*store.points().values()) == {r.node_id for r in rs}
    assert old_ps[1].node_id not in store.parents.ids() and entry.content_hash == "hash-2"


def test_references_the_same_settings_wrote_are_not_written_again(store: Store) -> None:
    """Ids are content-addressed: same id and same fingerprint is the same node, so its write is
    skipped (an unchanged parent of an edited document costs nothing). Other settings rewrite it."""
    writer = DocumentWriter(store.client, store.collections, store.parents)
    ps, rs = nodes(["one"])
    writer.write(DOC, "hash-1", "fp", [*ps, *rs])
    chunk = next(r for r in rs if r.metadata["kind"] == RefKind.CHUNK_128.value)
    first = stored_vector(store, Collection.CHILDREN, chunk.node_id)
    assert close(first, vec(chunk.node_id))

    _, again = nodes(["one"], tag="other vectors")  # same ids, other embeddings
    writer.write(DOC, "hash-2", "fp", [*ps, *again])
    assert close(stored_vector(store, Collection.CHILDREN, chunk.node_id), first)

    writer.write(DOC, "hash-2", "fp-other-settings", [*ps, *again])
    assert close(stored_vector(store, Collection.CHILDREN, chunk.node_id), vec(chunk.node_id + "other vectors"))


def test_remove_deletes_every_reference_parent_and_the_entry(store: Store) -> None:
    writer = DocumentWriter(store.client, store.collections, store.parents)
    ps, rs = nodes(["one", "two"])
    writer.write(DOC, "hash-1", "fp", [*ps, *rs])
    writer.remove(DOC)
    assert store.points() == {c.value: set() for c in Collection}
    assert store.parents.ids() == [] and store.parents.ledger() == {}
