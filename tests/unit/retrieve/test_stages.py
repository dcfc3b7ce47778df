"""Each retrieval stage on the real embedded engine and docstore (``tiny_store``: three parents, vectors by
hand), then the stages composed by ``ParentRetriever`` from ``RetrievalSettings``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Fusion, HybridFusion, RetrievalSettings
from pipeline.errors import InvalidQuery
from pipeline.models import CHUNK_KINDS, MatchedRef, Mode, RefKind
from pipeline.retrieve.fuse import rank_found
from pipeline.retrieve.modes import Search
from pipeline.retrieve.parents import ParentRetriever
from pipeline.retrieve.read import read_parents
from pipeline.retrieve.rehydrate import Rehydrated, rehydrate
from pipeline.retrieve.search import Found, lexical_query, matched_by_parent, search_collection, search_references, where_for
from pipeline.store import layout
from pipeline.store.layout import Collection
from tests.unit.retrieve import tiny_store
from tests.unit.retrieve.tiny_store import Q, Tiny, cosine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_store.build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def store(tiny: Tiny) -> Iterator[Rehydrated]:
    opened = rehydrate(tiny.settings, tiny.encoder())
    yield opened
    opened.close()


def ref(kind: RefKind, score: float, via: str = "dense", node: str = "n") -> MatchedRef:
    return MatchedRef(kind=kind, node_id=node, score=score, via=via)


class TestSearch:
    def test_dense_hits_are_the_cosines_best_first_each_naming_its_parent(self, tiny: Tiny, store: Rehydrated) -> None:
        found = search_collection(store, Search(Collection.CHILDREN, CHUNK_KINDS), Q, None, 10, {}, with_text=False)
        assert found.bm25 is None  # no BM25 side asked
        assert [(p, r.node_id) for p, r, _ in found.dense] == [
            (tiny.ids["A"], tiny.refs["a1"]), (tiny.ids["B"], tiny.refs["b1"]), (tiny.ids["A"], tiny.refs["a2"]), (tiny.ids["C"], tiny.refs["c1"])]
        assert [r.score for _, r, _ in found.dense] == pytest.approx([cosine(v) for v in ([0.9, 0.1, 0, 0], [0.95, 0, 0.3122, 0], [0.6, 0.8, 0, 0], [0, 1, 0, 0])], abs=1e-5)
        assert all(t == "" for _, _, t in found.dense) and found.fetched == 4

    def test_the_parents_collection_maps_hits_to_parents_without_payloads_and_reads_texts_when_asked(self, tiny: Tiny, store: Rehydrated) -> None:
        search = Search(Collection.PARENTS, (RefKind.PARENT,))
        lean = search_collection(store, search, Q, lexical_query("zebra crossing"), 10, {}, with_text=False)
        read = search_collection(store, search, Q, lexical_query("zebra crossing"), 10, {}, with_text=True)
        assert [p for p, _, _ in lean.dense] == [tiny.ids[n] for n in "BAC"] == [p for p, _, _ in read.dense]
        assert lean.bm25 is not None and [p for p, _, _ in lean.bm25] == [tiny.ids["C"]]  # only C holds "zebra"
        assert read.bm25 is not None and read.bm25[0][2] == tiny_store.TEXTS["C"]  # the reference's text, from its node JSON
        assert lean.bm25[0][1].via == "bm25" and lean.bm25[0][1].score > 0

    def test_filters_and_kinds_narrow_the_search(self, tiny: Tiny, store: Rehydrated) -> None:
        only_b = search_collection(store, Search(Collection.CHILDREN, CHUNK_KINDS), Q, None, 10, {layout.DOC_ID: "/docs/b.pdf"}, False)
        assert {p for p, _, _ in only_b.dense} == {tiny.ids["B"]}
        only_256 = search_collection(store, Search(Collection.CHILDREN, (RefKind.CHUNK_256,)), Q, None, 10, {}, False)
        assert [r.node_id for _, r, _ in only_256.dense] == [tiny.refs["a2"]]
        assert where_for(Search(Collection.PARENTS, (RefKind.PARENT,)), {}) is None  # every point is a parent: no condition to check

    def test_a_mode_searches_its_collections_in_order_with_bm25_on_the_parents_only_by_default(self, store: Rehydrated) -> None:
        found = search_references(store, Mode.CHUNK, Q, lexical_query("zebra"), 10, {}, with_text=False)
        assert [(f.collection, f.bm25 is not None) for f in found] == [(Collection.CHILDREN, False), (Collection.PARENTS, True)]
        everywhere = search_references(store, Mode.CHUNK, Q, lexical_query("zebra"), 10, {}, with_text=False, bm25_scope="all")
        assert [f.bm25 is not None for f in everywhere] == [True, True]
        every = search_references(store, Mode.ALL, Q, None, 10, {}, False)
        assert [f.collection for f in every] == [Collection.CHILDREN, Collection.PARENTS, Collection.SUMMARIES, Collection.QUESTIONS]
        assert every[2].dense == [] and every[3].dense == []  # no summaries or questions written

    def test_a_query_of_stop_words_has_no_bm25_side(self) -> None:
        assert lexical_query("what is the of and") is None and lexical_query("zebra") is not None


class TestRank:
    def found(self) -> list[Found]:
        return [
            Found(Collection.CHILDREN, [("A", ref(RefKind.CHUNK_128, 0.9), ""), ("B", ref(RefKind.CHUNK_128, 0.8), ""), ("A", ref(RefKind.CHUNK_256, 0.7), "")]),
            Found(Collection.PARENTS, [("B", ref(RefKind.PARENT, 0.6), ""), ("A", ref(RefKind.PARENT, 0.5), "")], [("C", ref(RefKind.PARENT, 3.0, "bm25"), "")]),
        ]

    def test_max_fusion_scores_the_best_reference_plus_support(self) -> None:
        ranked, stages = rank_found(self.found()[:1], RetrievalSettings(support_weight=0.1))
        assert ranked == [("A", pytest.approx(0.9 + 0.1 * 0.7)), ("B", pytest.approx(0.8))] and stages == ["dense"]

    def test_rrf_sums_reciprocal_ranks_over_collections(self) -> None:
        ranked, _ = rank_found(self.found()[:1] + [Found(Collection.PARENTS, [("B", ref(RefKind.PARENT, 0.6), "")])], RetrievalSettings(fusion=Fusion.RRF))
        assert [p for p, _ in ranked] == ["B", "A"] and ranked[0][1] == pytest.approx(1 / 62 + 1 / 61)

    def test_a_bm25_side_is_fused_and_named_as_a_stage_even_when_empty(self) -> None:
        cfg = RetrievalSettings(support_weight=0.0, hybrid_fusion=HybridFusion.RELATIVE, dense_weight=0.5)
        ranked, stages = rank_found(self.found(), cfg)
        assert stages == ["dense", "bm25-relative"]
        assert ranked[0] == ("A", pytest.approx(0.5)) and ("C", pytest.approx(0.5)) in ranked  # best dense vs the only BM25 hit
        empty = [self.found()[0], Found(Collection.PARENTS, [("A", ref(RefKind.PARENT, 0.5), "")], [])]
        assert rank_found(empty, cfg)[1] == ["dense", "bm25-relative"]

    def test_kind_weights_apply_to_max_fusion_only(self) -> None:
        found = [Found(Collection.QUESTIONS, [("Q", ref(RefKind.QUESTION, 0.9), "")]), Found(Collection.CHILDREN, [("T", ref(RefKind.CHUNK_128, 0.8), "")])]
        assert [p for p, _ in rank_found(found, RetrievalSettings(question_weight=0.7, support_weight=0))[0]] == ["T", "Q"]
        assert [p for p, _ in rank_found(found, RetrievalSettings(question_weight=1.0, support_weight=0))[0]] == ["Q", "T"]


class TestRead:
    def test_parents_come_from_the_stored_json_as_llamaindex_reads_them(self, tiny: Tiny, store: Rehydrated) -> None:
        ranked = [(tiny.ids["B"], 0.9), ("no-such-parent", 0.8), (tiny.ids["A"], 0.7), (tiny.ids["C"], 0.1)]
        matched = {tiny.ids["B"]: [ref(RefKind.PARENT, 3.0, "bm25", "x"), ref(RefKind.PARENT, 0.7, "dense", "x")]}
        read = read_parents(store.parents, ranked, matched, top_k=2)
        sources = [s for s, _ in read]
        assert [s.parent_id for s in sources] == [tiny.ids["B"], tiny.ids["A"]]  # the missing one skipped, the next read
        nodes = store.parents.get_many([s.parent_id for s in sources])  # LlamaIndex's own reading of the same rows
        for s in sources:
            node = nodes[s.parent_id]
            assert s.text == node.get_content() and s.doc_id == node.metadata[layout.DOC_ID] and s.pages == node.metadata[layout.PAGES]
        assert sources[0].readable_id == "b.pdf#parent-1" and sources[0].score == 0.9
        assert [(m.via, m.score, m.bm25_score) for m in sources[0].matched] == [("dense", 0.7, 3.0)]  # one entry, both scores


class TestComposed:
    def test_settings_choose_the_stages_and_a_request_changes_them_by_copy(self, tiny: Tiny, store: Rehydrated) -> None:
        cfg = RetrievalSettings(support_weight=0.1)
        full = ParentRetriever(store, tiny.encoder(), cfg).retrieve("zebra crossing", Mode.CHUNK, 3, embedding=Q)
        assert [s.parent_id for s in full.sources] == [tiny.ids[n] for n in "ABC"]
        assert full.stages == ["dense", "bm25-relative"] and full.embedded_queries == 0 and full.references_fetched == 4 + 3 + 1
        c_self = next(m for m in full.sources[2].matched if m.kind is RefKind.PARENT)
        assert c_self.via == "dense" and c_self.bm25_score and c_self.bm25_score > 0  # found by both sides: listed once
        dense = ParentRetriever(store, tiny.encoder(), cfg.model_copy(update={"hybrid": False})).retrieve("zebra crossing", Mode.CHUNK, 3, embedding=Q)
        assert dense.stages == ["dense"] and dense.references_fetched == 7
        lexical = ParentRetriever(store, tiny.encoder(), cfg.model_copy(update={"dense_weight": 0.0})).retrieve("zebra crossing", Mode.CHUNK, 1, embedding=Q)
        assert [s.parent_id for s in lexical.sources] == [tiny.ids["C"]]  # BM25 alone decides
        assert cfg.hybrid is True  # the copy left the settings as they were

    def test_top_k_counts_distinct_parents_and_filters_are_checked(self, tiny: Tiny, store: Rehydrated) -> None:
        r = ParentRetriever(store, tiny.encoder(), RetrievalSettings())
        assert len(r.retrieve("x", Mode.CHUNK, 2, embedding=Q).sources) == 2
        only_b = r.retrieve("x", Mode.CHUNK, 3, {layout.DOC_ID: "/docs/b.pdf"}, embedding=Q)
        assert [s.parent_id for s in only_b.sources] == [tiny.ids["B"]]
        with pytest.raises(InvalidQuery, match="cannot filter on 'kind'"):
            r.retrieve("x", Mode.CHUNK, 3, {"kind": "parent"}, embedding=Q)
        with pytest.raises(InvalidQuery, match="at least 1"):
            r.retrieve("x", Mode.CHUNK, 0, embedding=Q)

    def test_rerank_needs_a_reranker(self, tiny: Tiny, store: Rehydrated) -> None:
        with pytest.raises(ValueError, match="needs a reranker"):
            ParentRetriever(store, tiny.encoder(), RetrievalSettings(rerank=True))


def test_matched_lists_dense_then_bm25_in_search_order(tiny: Tiny, store: Rehydrated) -> None:
    found = search_references(store, Mode.CHUNK, Q, lexical_query("zebra"), 10, {}, with_text=False)
    matched = matched_by_parent(found)
    assert [(r.kind, r.via) for r in matched[tiny.ids["C"]]] == [(RefKind.CHUNK_128, "dense"), (RefKind.PARENT, "dense"), (RefKind.PARENT, "bm25")]
    assert Path(tiny.settings.store).is_dir()


class TestRerank:
    def test_the_cross_encoder_reorders_candidates_by_their_best_reference_text(self) -> None:
        from pipeline.retrieve.rerank import CrossEncoderReranker, passages_of, rerank_found

        found = [Found(Collection.CHILDREN, [
            ("B", ref(RefKind.CHUNK_128, 0.9), "Bitcoin mining uses a great deal of electricity."),
            ("A", ref(RefKind.CHUNK_128, 0.8), "AlexNet was trained on two GPUs for five days."),
            ("A", ref(RefKind.CHUNK_256, 0.7), "It won the ImageNet challenge in 2012."),
        ])]
        assert passages_of(found, ["A", "B"]) == {
            "A": ["AlexNet was trained on two GPUs for five days.", "It won the ImageNet challenge in 2012."],
            "B": ["Bitcoin mining uses a great deal of electricity."],
        }
        reranker = CrossEncoderReranker(threads=1)
        ranked = [("B", 0.9), ("A", 0.8)]
        cross_only = rerank_found(reranker, "How many GPUs was AlexNet trained on?", ranked, found, RetrievalSettings(rerank_first_stage_weight=0.0), top_k=2)
        assert [p for p, _ in cross_only] == ["A", "B"] and reranker.pairs_scored == 2  # one passage per candidate (rerank_passages=1)
        kept = rerank_found(reranker, "How many GPUs was AlexNet trained on?", ranked, found, RetrievalSettings(rerank_first_stage_weight=1.0), top_k=2)
        assert [p for p, _ in kept] == ["B", "A"]  # all weight on the first stage: its order stands


class TestLlamaIndexAdapter:
    def test_a_stock_llamaindex_retriever_returns_the_same_parents_as_nodes(self, tiny: Tiny, store: Rehydrated) -> None:
        from llama_index.core.base.base_retriever import BaseRetriever
        from llama_index.core.schema import MetadataMode, QueryBundle

        from pipeline.retrieve.llama import MATCHED, LlamaIndexRetriever

        inner = ParentRetriever(store, tiny.encoder(), RetrievalSettings())
        adapter = LlamaIndexRetriever(inner, Mode.CHUNK, 3)
        assert isinstance(adapter, BaseRetriever)
        nodes = adapter.retrieve(QueryBundle(query_str="zebra crossing", embedding=Q))
        direct = inner.retrieve("zebra crossing", Mode.CHUNK, 3, embedding=Q)
        assert [(n.node.node_id, n.score) for n in nodes] == [(s.parent_id, s.score) for s in direct.sources]
        assert [n.node.get_content() for n in nodes] == [s.text for s in direct.sources]
        assert nodes[0].node.metadata[MATCHED][0]["node_id"] == direct.sources[0].matched[0].node_id
        assert MATCHED not in nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)  # hidden from the LLM
        assert nodes[0].node.to_dict()["start_char_idx"] == store.parents.get(nodes[0].node.node_id).start_char_idx
