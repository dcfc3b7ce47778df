"""Stage 1 of retrieval: search the references of a mode, one engine call per collection.

Each collection of the mode is asked once (``store.qdrant.search``): dense, and BM25 beside it when a
lexical query is given and the collection holds BM25 vectors there. Only the payload keys ranking
needs are read (``parent_id``, ``kind``; the reference's node JSON too when a reranker wants its text),
and the parents collection is read with no payload at all: a self-reference's parent is known from
its id (``Rehydrated.parents_of_self_refs``). Why not LlamaIndex's ``VectorStoreIndex`` retriever over
``QdrantVectorStore``, as before: it turns every hit into a full node of which three fields are read,
and it imports LlamaIndex and qdrant-client (~1.6 s of CPU in a new process). Measured in-process on
the bundled sample (edge backend, hybrid, 300 dev-set queries): a retrieve without the query
embedding took 6.1-7.8 ms that way in mode all and takes 1.8-2.6 ms this way; the results are the same
(``tests/e2e/test_retrieve_path.py`` compares both).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InvalidQuery
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.providers.sparse import VECTOR_NAME as SPARSE
from pipeline.providers.sparse import query_vector
from pipeline.retrieve.modes import Search, searches_for
from pipeline.store import layout
from pipeline.store import qdrant as qstore
from pipeline.store.layout import Collection
from pipeline.store.where import Sparse, Where

FILTERABLE = {layout.DOC_ID, layout.FILE_NAME, layout.PARENT_ID}
KINDS_IN = {c: {k for k, coll in layout.KIND_TO_COLLECTION.items() if coll is c} for c in layout.Collection}
NODE_CONTENT = layout.NODE_CONTENT  # LlamaIndex's payload key holding the node JSON (with its text)
HIT_KEYS = [layout.PARENT_ID, layout.KIND]  # all a hit needs to be ranked; NODE_CONTENT too for the reranker

Hit = tuple[str, MatchedRef, str]  # (parent id, matched reference, reference text or "")


@dataclass
class Found:
    """One collection's hits, best first: ``dense``, and ``bm25`` when a BM25 side was asked (else None,
    which is not the same as a BM25 side that found nothing: that one still counts as a stage)."""

    collection: Collection
    dense: list[Hit]
    bm25: list[Hit] | None = None

    @property
    def fetched(self) -> int:
        return len(self.dense) + len(self.bm25 or [])


def check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's filters, refused (``InvalidQuery``) on a key the payload indexes do not cover."""
    for key in filters or {}:
        if key not in FILTERABLE:
            raise InvalidQuery(f"cannot filter on '{key}': filterable keys are {sorted(FILTERABLE)}")
    return dict(filters or {})


def where_for(search: Search, filters: Mapping[str, Any]) -> Where | None:
    """The payload condition of one search: the wanted kinds and the caller's filters, all required."""
    # A kind condition every point of the collection meets is left out: the embedded engine checks a
    # filter point by point, which dominated retrieval at 10k+ points.
    match_any = {layout.KIND: [k.value for k in search.kinds]} if set(search.kinds) != KINDS_IN[search.collection] else {}
    where = Where(match_any=match_any, match=dict(filters))
    return where if where else None


def lexical_query(text: str) -> Sparse | None:
    """The query's BM25 vector, or None if it has no terms (only stop words, say): then no BM25 side."""
    indices, values = query_vector(text)
    return Sparse(indices=indices, values=values) if indices else None


def search_collection(
    store: Any, search: Search, embedding: list[float], sparse: Sparse | None, limit: int, filters: Mapping[str, Any], with_text: bool
) -> Found:
    """Dense hits, then BM25 hits if ``sparse`` is given, of one collection in one engine call.

    Args:
        store: the rehydrated store (``retrieve.rehydrate.Rehydrated``): client, names, docstore.
        search: the collection and the reference kinds wanted there.
        embedding: the query's dense vector.
        sparse: the query's BM25 vector, or None for dense only.
        limit: references per side.
        filters: payload key → value, all required (``check_filters``).
        with_text: also read each reference's text (the reranker's input; costs a JSON parse per hit).
    """
    # A parent's self-reference names its parent by its id: no payload to read.
    self_refs = search.collection is Collection.PARENTS and not with_text
    keys: list[str] | bool = False if self_refs else [*HIT_KEYS, NODE_CONTENT] if with_text else HIT_KEYS
    queries: list[tuple[str | None, Any]] = [(None, embedding)] if sparse is None else [(None, embedding), (SPARSE, sparse)]
    sides = qstore.search(store.client, store.names[search.collection], queries, where_for(search, filters), limit, keys)
    if self_refs:
        parent_of = store.parents_of_self_refs([point_id for points in sides for point_id, _, _ in points])
        sides = [
            [(pid, score, {layout.PARENT_ID: parent_of[pid], layout.KIND: RefKind.PARENT.value}) for pid, score, _ in points if pid in parent_of]
            for points in sides
        ]
    out: list[list[Hit]] = []
    for via, points in zip(("dense", "bm25"), sides):
        # model_construct: the fields come from our own payloads; validating 30-90 a retrieve cost ~0.5 ms.
        out.append([
            (payload[layout.PARENT_ID], MatchedRef.model_construct(kind=RefKind(payload[layout.KIND]), node_id=point_id, score=float(score), via=via),
             _text(payload) if with_text else "")
            for point_id, score, payload in points
        ])
    return Found(search.collection, out[0], out[1] if len(out) > 1 else None)


def search_references(
    store: Any, mode: Mode, embedding: list[float], lexical: Sparse | None, limit: int, filters: Mapping[str, Any], with_text: bool,
    bm25_scope: str = "parents", search_one: Callable[..., Found] | None = None,
) -> list[Found]:
    """Every collection of ``mode`` the store has, in the mode's order (``modes.searches_for``).

    BM25 runs beside the dense search on the parents' self-references (``bm25_scope="parents"``) or on
    every collection (``"all"``), wherever the collection holds BM25 vectors and ``lexical`` is given.
    ``search_one`` searches one collection (default ``search_collection``; the e2e test puts the old
    LlamaIndex search there to compare both).
    """
    search_one = search_one or search_collection
    found = []
    for search in searches_for(mode):
        if search.collection not in store.names:
            continue
        bm25_here = bm25_scope == "all" or search.collection is Collection.PARENTS
        vector = lexical if bm25_here and search.collection in store.sparse else None
        found.append(search_one(store, search, embedding, vector, limit, filters, with_text))
    return found


def matched_by_parent(found: Sequence[Found]) -> dict[str, list[MatchedRef]]:
    """Every reference that led to each parent, in search order (collection by collection, dense first)."""
    matched: dict[str, list[MatchedRef]] = {}
    for f in found:
        for hits in (f.dense, f.bm25 or []):
            for parent_id, ref, _ in hits:
                matched.setdefault(parent_id, []).append(ref)
    return matched


def _text(payload: Mapping[str, Any]) -> str:
    """A reference's text from LlamaIndex's payload, as ``node.get_content()`` returned it."""
    content = payload.get(NODE_CONTENT)
    return json.loads(content).get("text", "") if content else ""
