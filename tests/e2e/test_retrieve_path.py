"""Retrieval reads Qdrant directly (``ParentRetriever._search_collection``): same results as the LlamaIndex path.

``LlamaIndexPath`` is the search as it was before: LlamaIndex's ``VectorStoreIndex`` retriever over
``QdrantVectorStore`` (dense, and ``VectorStoreQueryMode.SPARSE`` for BM25), every hit a full node.
Both run on the sample store of each embedded backend (and, with the ``llm`` marker, a store with
summaries and questions) for ~50 queries, modes chunk and all, hybrid on and off, with and without filters: same parents in the same order, scores within 1e-6, the same
matched references and the same ``references_fetched``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters, VectorStoreQueryMode
from qdrant_client import models

from pipeline.config import Settings
from pipeline.models import MatchedRef, Mode, RefKind
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.modes import Search
from pipeline.retrieve.parents import KINDS_IN, MATCHED, Hit, ParentRetriever, _sparse_query
from pipeline.store import docstore, layout
from pipeline.store.layout import Collection

HANDWRITTEN = [
    "How does SciBERT differ from a BERT model pretrained on S2ORC?",
    "How many papers are in the corpus?",
    "What is the of and the",  # stop words only: no BM25 side
    "citation contexts and paper abstracts",
    "PDF parsing with GROBID",
]


class LlamaIndexPath(ParentRetriever):
    """The pre-change search: LlamaIndex retrievers over ``QdrantVectorStore``, hits as full nodes."""

    def _retrieve(self, query_bundle: QueryBundle) -> Any:
        self._query = query_bundle.query_str
        return super()._retrieve(query_bundle)

    def _old_filters(self, search: Search) -> MetadataFilters | None:
        items = []
        if set(search.kinds) != KINDS_IN[search.collection]:
            items.append(MetadataFilter(key=layout.KIND, value=[k.value for k in search.kinds], operator=FilterOperator.IN))
        items += [MetadataFilter(key=k, value=v) for k, v in self.filters.items()]
        return MetadataFilters(filters=items) if items else None

    def _search_collection(self, search: Search, embedding: list[float], sparse: models.SparseVector | None, with_text: bool) -> list[list[Hit]]:
        index = self.store.indexes[search.collection]
        limit = self.top_k * self.overfetch
        bundle = QueryBundle(query_str=self._query, embedding=embedding)
        out = []
        for is_sparse in [False] + ([True] if sparse is not None else []):
            if is_sparse:
                retriever = index.as_retriever(
                    similarity_top_k=limit, sparse_top_k=limit, filters=self._old_filters(search), vector_store_query_mode=VectorStoreQueryMode.SPARSE
                )
            else:
                retriever = index.as_retriever(similarity_top_k=limit, filters=self._old_filters(search))
            hits = []
            for hit in retriever.retrieve(bundle):
                parent_id = getattr(hit.node, "index_id", None) or hit.node.metadata.get(layout.PARENT_ID)
                ref = MatchedRef(
                    kind=RefKind(hit.node.metadata[layout.KIND]), node_id=hit.node.node_id, score=float(hit.score or 0.0), via="bm25" if is_sparse else "dense"
                )
                hits.append((parent_id, ref, hit.node.get_content()))
            self.references_fetched += len(hits)
            out.append(hits)
        return out


def make(
    cls: type[ParentRetriever], engine: Engine, mode: Mode, top_k: int, filters: dict[str, str] | None, hybrid: bool, scope: str = "parents", rerank: bool = False
) -> ParentRetriever:
    cfg = engine.settings.retrieval
    return cls(
        engine.store, engine.embedder, mode, top_k, cfg.overfetch, cfg.fusion, filters, cfg.weights(),
        hybrid=hybrid, hybrid_fusion=cfg.hybrid_fusion, dense_weight=cfg.dense_weight, bm25_scope=scope,
        reranker=engine.reranker if rerank else None, rerank_candidates=max(cfg.rerank_candidates, top_k),
        rerank_passages=cfg.rerank_passages, rerank_first_stage_weight=cfg.rerank_first_stage_weight,
    )


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
    new_r = make(ParentRetriever, engine, mode, 3, filters, hybrid, scope, rerank)
    old_r = make(LlamaIndexPath, engine, mode, 3, filters, hybrid, scope, rerank)
    new = new_r.retrieve(QueryBundle(query_str=query, embedding=list(embedding)))
    old = old_r.retrieve(QueryBundle(query_str=query, embedding=list(embedding)))
    where = f"{query!r} mode={mode.value} hybrid={hybrid} filters={filters}"
    assert [h.node.node_id for h in new] == [h.node.node_id for h in old], where
    assert [h.score for h in new] == pytest.approx([h.score for h in old], abs=1e-6), where
    for n, o in zip(new, old):
        nm, om = n.node.metadata.pop(MATCHED), o.node.metadata.pop(MATCHED)
        assert [(m["kind"], m["node_id"], m["via"]) for m in nm] == [(m["kind"], m["node_id"], m["via"]) for m in om], where
        assert [m["score"] for m in nm] == pytest.approx([m["score"] for m in om], abs=1e-6), where
        assert n.node.to_dict() == o.node.to_dict(), where
    assert new_r.references_fetched == old_r.references_fetched, where
    assert new_r.stages == old_r.stages, where


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
    new_r, old_r = make(ParentRetriever, engine, Mode.CHUNK, 3, None, True), make(LlamaIndexPath, engine, Mode.CHUNK, 3, None, True)
    for query, embedding in queries[:10]:
        old_r._query = query
        sparse = _sparse_query(query)
        new = new_r._search_collection(search, embedding, sparse, with_text=True)
        old = old_r._search_collection(search, embedding, sparse, with_text=True)
        assert len(new) == len(old)
        for n, o in zip(new, old):
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
    retriever = make(ParentRetriever, engine, Mode.CHUNK, 3, None, True)
    store = engine.store
    ids = store.parents.ids()
    refs = {layout.ref_id_for(pid, RefKind.PARENT, 0): pid for pid in ids}
    assert store.parents.parents_of_self_refs(list(refs)) == refs  # ingest wrote them

    def same_hits() -> None:
        store._self_refs.clear()
        for query, embedding in queries[:8]:
            sparse = _sparse_query(query)
            lean = retriever._search_collection(search, embedding, sparse, with_text=False)
            read = retriever._search_collection(search, embedding, sparse, with_text=True)
            assert len(lean) == len(read) and lean[0]
            for n, o in zip(lean, read):
                assert_same_hits(n, o)
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
