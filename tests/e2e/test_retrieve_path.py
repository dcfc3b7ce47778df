"""Retrieval reads the engine directly (``search.search_collection``): same results as the LlamaIndex path.

``LlamaIndexPath`` is the search as it was before: LlamaIndex's ``VectorStoreIndex`` retriever over
``QdrantVectorStore`` (dense, and ``VectorStoreQueryMode.SPARSE`` for BM25), every hit a full node, put
in the place of stage 1 (``ParentRetriever.search_one``). Both run on the sample store of each embedded backend (and, with the ``llm`` marker, a store with
summaries and questions) for ~50 queries, modes chunk and all, hybrid on and off, with and without filters: same parents in the same order, scores within 1e-6, the same
matched references and the same ``references_fetched``. The parents themselves are compared with what
LlamaIndex's docstore returns for them (``ParentStore.get_many``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters, VectorStoreQueryMode

from pipeline.config import Settings
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.modes import Search
from pipeline.retrieve.parents import ParentRetriever, Retrieval
from pipeline.retrieve.search import KINDS_IN, Found, Hit, lexical_query, search_collection
from pipeline.store import docstore, layout
from pipeline.store.layout import Collection
from pipeline.store.where import Sparse

HANDWRITTEN = [
    "How does SciBERT differ from a BERT model pretrained on S2ORC?",
    "How many papers are in the corpus?",
    "What is the of and the",  # stop words only: no BM25 side
    "citation contexts and paper abstracts",
    "PDF parsing with GROBID",
]


def _old_filters(search: Search, filters: Mapping[str, Any]) -> MetadataFilters | None:
    items = []
    if set(search.kinds) != KINDS_IN[search.collection]:
        items.append(MetadataFilter(key=layout.KIND, value=[k.value for k in search.kinds], operator=FilterOperator.IN))
    items += [MetadataFilter(key=k, value=v) for k, v in filters.items()]
    return MetadataFilters(filters=items) if items else None


class LlamaIndexPath(ParentRetriever):
    """The pre-change search: LlamaIndex retrievers over ``QdrantVectorStore``, hits as full nodes."""

    query = ""

    def retrieve(self, query: str, *args: Any, **kwargs: Any) -> Retrieval:
        self.query = query
        return super().retrieve(query, *args, **kwargs)

    def search_one(self, store: Any, search: Search, embedding: list[float], sparse: Sparse | None, limit: int, filters: Mapping[str, Any], with_text: bool) -> Found:
        index = store.indexes[search.collection]
        bundle = QueryBundle(query_str=self.query, embedding=embedding)
        out = []
        for is_sparse in [False] + ([True] if sparse is not None else []):
            if is_sparse:
                retriever = index.as_retriever(
                    similarity_top_k=limit, sparse_top_k=limit, filters=_old_filters(search, filters), vector_store_query_mode=VectorStoreQueryMode.SPARSE
                )
            else:
                retriever = index.as_retriever(similarity_top_k=limit, filters=_old_filters(search, filters))
            hits = []
            for hit in retriever.retrieve(bundle):
                parent_id = getattr(hit.node, "index_id", None) or hit.node.metadata.get(layout.PARENT_ID)
                ref = MatchedRef(
                    kind=RefKind(hit.node.metadata[layout.KIND]), node_id=hit.node.node_id, score=float(hit.score or 0.0), via="bm25" if is_sparse else "dense"
                )
                hits.append((parent_id, ref, hit.node.get_content()))
            out.append(hits)
        return Found(search.collection, out[0], out[1] if len(out) > 1 else None)


def make(cls: type[ParentRetriever], engine: Engine, hybrid: bool, scope: str = "parents", rerank: bool = False) -> ParentRetriever:
    cfg = engine.settings.retrieval.model_copy(update={"hybrid": hybrid, "bm25_scope": scope, "rerank": rerank})
    return cls(engine.store, engine.embedder, cfg, engine.reranker if rerank else None)


def assert_same_hits(new: list[Hit], old: list[Hit]) -> None:
    assert [(p, r.kind, r.node_id, r.via) for p, r, _ in new] == [(p, r.kind, r.node_id, r.via) for p, r, _ in old]
    assert [r.score for _, r, _ in new] == pytest.approx([r.score for _, r, _ in old], abs=1e-6)


STORES = {"edge": "plain_store", "local": "local_plain_store", "llm": "llm_store"}


@pytest.fixture(scope="module", params=["edge", "local", pytest.param("llm", marks=pytest.mark.llm)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The sample store on each embedded backend, and (``llm``) one with summaries and questions too."""
    store, _ = request.getfixturevalue(STORES[request.param])
    with Engine(Settings(store=store, llm={"provider": "none"}), load_llm=False) as eng:
        yield eng


@pytest.fixture(scope="module")
def queries(engine: Engine) -> list[tuple[str, list[float]]]:
    """50 queries (handwritten, and runs of words from the store's chunks), embedded once."""
    points, _ = engine.store.client.scroll("docs_children", limit=10_000, with_payload=["_node_content"])
    texts = [json.loads(p.payload["_node_content"])["text"].split() for p in sorted(points, key=lambda p: str(p.id))]
    snippets = [" ".join(words[start : start + 12]) for start in (0, 40, 80) for words in texts if len(words) > start + 6]
    picked = snippets[:: max(1, len(snippets) // 45)][:45]
    return [(q, engine.embedder.get_query_embedding(q)) for q in HANDWRITTEN + picked]


@pytest.fixture(scope="module")
def sample_ids(engine: Engine) -> dict[str, str]:
    parent = next(iter(engine.store.parents.get_many(engine.store.parents.ids()[:1]).values()))
    return {layout.DOC_ID: parent.metadata[layout.DOC_ID], layout.FILE_NAME: parent.metadata[layout.FILE_NAME], layout.PARENT_ID: parent.node_id}


def compare(
    engine: Engine, query: str, embedding: list[float], mode: Mode, filters: dict[str, str] | None, hybrid: bool, scope: str = "parents", rerank: bool = False
) -> None:
    new_r = make(ParentRetriever, engine, hybrid, scope, rerank)
    old_r = make(LlamaIndexPath, engine, hybrid, scope, rerank)
    new = new_r.retrieve(query, mode, 3, filters, embedding=list(embedding))
    old = old_r.retrieve(query, mode, 3, filters, embedding=list(embedding))
    where = f"{query!r} mode={mode.value} hybrid={hybrid} filters={filters}"
    assert [s.parent_id for s in new.sources] == [s.parent_id for s in old.sources], where
    assert [s.score for s in new.sources] == pytest.approx([s.score for s in old.sources], abs=1e-6), where
    for n, o in zip(new.sources, old.sources):
        assert [(m.kind, m.node_id, m.via) for m in n.matched] == [(m.kind, m.node_id, m.via) for m in o.matched], where
        assert [m.score for m in n.matched] == pytest.approx([m.score for m in o.matched], abs=1e-6), where
        assert n.model_dump(exclude={"score", "matched"}) == o.model_dump(exclude={"score", "matched"}), where
    nodes = engine.store.parents.get_many([s.parent_id for s in new.sources])  # LlamaIndex's own reading of the parents
    assert [s.text for s in new.sources] == [nodes[s.parent_id].get_content() for s in new.sources], where
    assert new.references_fetched == old.references_fetched, where
    assert new.stages == old.stages, where


@pytest.mark.e2e
@pytest.mark.parametrize("hybrid", [False, True], ids=["dense", "hybrid"])
@pytest.mark.parametrize("mode", [Mode.CHUNK, Mode.ALL])
def test_direct_search_returns_what_the_llamaindex_path_returned(engine: Engine, queries: list[tuple[str, list[float]]], mode: Mode, hybrid: bool) -> None:
    assert len(queries) >= 45
    for query, embedding in queries:
        compare(engine, query, embedding, mode, None, hybrid)


@pytest.mark.e2e
@pytest.mark.parametrize("key", [layout.DOC_ID, layout.FILE_NAME, layout.PARENT_ID])
def test_filters_give_the_same_results(engine: Engine, queries: list[tuple[str, list[float]]], sample_ids: dict[str, str], key: str) -> None:
    for query, embedding in queries[:15]:
        for hybrid in (False, True):
            compare(engine, query, embedding, Mode.ALL, {key: sample_ids[key]}, hybrid)
    compare(engine, queries[0][0], queries[0][1], Mode.CHUNK, {layout.DOC_ID: "/no/such/file.pdf"}, True)  # nothing matches


@pytest.mark.e2e
def test_bm25_over_every_collection_gives_the_same_results(engine: Engine, queries: list[tuple[str, list[float]]]) -> None:
    for query, embedding in queries[:15]:
        compare(engine, query, embedding, Mode.CHUNK, None, True, scope="all")


@pytest.mark.e2e
def test_reranked_results_match(engine: Engine, queries: list[tuple[str, list[float]]]) -> None:
    """The cross-encoder reads the reference texts from the payload JSON: same input, same ranking."""
    for query, embedding in queries[:4]:
        compare(engine, query, embedding, Mode.CHUNK, None, True, rerank=True)


@pytest.mark.e2e
def test_kind_filter_and_reference_texts_match(engine: Engine, queries: list[tuple[str, list[float]]]) -> None:
    """A search wanting some kinds of a collection filters on ``kind``; texts (the reranker's input) match."""
    search = Search(Collection.CHILDREN, (RefKind.CHUNK_128, RefKind.CHUNK_512))
    old_r = make(LlamaIndexPath, engine, True)
    limit = 3 * engine.settings.retrieval.overfetch
    for query, embedding in queries[:10]:
        old_r.query = query  # type: ignore[attr-defined]
        sparse = lexical_query(query)
        new_f = search_collection(engine.store, search, embedding, sparse, limit, {}, with_text=True)
        old_f = old_r.search_one(engine.store, search, embedding, sparse, limit, {}, with_text=True)
        new, old = [new_f.dense, new_f.bm25], [old_f.dense, old_f.bm25]
        assert (new_f.bm25 is None) == (old_f.bm25 is None) == (sparse is None)
        for n, o in zip(new, old):
            if n is None or o is None:
                continue
            assert_same_hits(n, o)
            assert [t for _, _, t in n] == [t for _, _, t in o]
            assert all(t for _, _, t in n)
            assert {r.kind for _, r, _ in n} <= {RefKind.CHUNK_128, RefKind.CHUNK_512}


@pytest.mark.e2e
def test_parents_read_in_one_query_equal_those_read_one_by_one(engine: Engine) -> None:
    ids = engine.store.parents.ids()
    many = engine.store.parents.get_many([*ids, "no-such-parent"])
    assert sorted(many) == sorted(ids)  # every stored one, the missing one left out
    assert all(many[i].to_dict() == engine.store.parents.get(i).to_dict() for i in ids)


@pytest.mark.e2e
def test_parent_self_references_resolve_without_payloads_even_when_unknown(engine: Engine, queries: list[tuple[str, list[float]]]) -> None:
    """The parents collection is searched without payloads, its point ids mapped to parents
    (``Rehydrated.parents_of_self_refs``): from the docstore's ``SELF_REFS`` (written with each parent),
    in a store written before them from every parent id hashed once, and an id neither knows is read
    from Qdrant once; each way gives the hits that reading the payloads gives."""
    search = Search(Collection.PARENTS, (RefKind.PARENT,))
    store = engine.store
    limit = 3 * engine.settings.retrieval.overfetch
    ids = store.parents.ids()
    refs = {layout.ref_id_for(pid, RefKind.PARENT, 0): pid for pid in ids}
    assert store.parents.parents_of_self_refs(list(refs)) == refs  # ingest wrote them

    def same_hits() -> None:
        store._self_refs.clear()
        for query, embedding in queries[:8]:
            sparse = lexical_query(query)
            lean = search_collection(store, search, embedding, sparse, limit, {}, with_text=False)
            read = search_collection(store, search, embedding, sparse, limit, {}, with_text=True)
            assert lean.dense
            assert_same_hits(lean.dense, read.dense)
            assert_same_hits(lean.bm25 or [], read.bm25 or [])
        assert store._self_refs and set(store._self_refs.values()) <= set(ids)  # the ids read are kept

    store._self_refs_built = False
    same_hits()
    assert not store._self_refs_built  # nothing hashed: the docstore knew every one
    try:
        for rid in refs:  # a store written before SELF_REFS
            store.parents.kv.delete(rid, docstore.SELF_REFS)
        same_hits()
        assert store._self_refs_built
        same_hits()  # built already: what the map lacks (nothing here, a point made otherwise) comes from Qdrant
    finally:
        store.parents.kv.put_all([(rid, {"parent_id": pid}) for rid, pid in refs.items()], docstore.SELF_REFS)
    assert store.parents_of_self_refs(["00000000-0000-0000-0000-000000000000"]) == {}  # a point that is not there
