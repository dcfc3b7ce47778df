"""``matched`` lists each reference once, however many searches found it."""

from __future__ import annotations

from pipeline.models import MatchedRef, RefKind
from pipeline.retrieve import confidence as conf
from pipeline.retrieve.read import unique_refs as _unique


def unique_refs(raw: list[dict]) -> list[MatchedRef]:
    return _unique(MatchedRef(**m) for m in raw)


def test_a_reference_found_by_both_searches_is_listed_once_with_both_scores() -> None:
    raw = [
        {"kind": "parent", "node_id": "p", "score": 0.71, "via": "dense"},
        {"kind": "chunk-128", "node_id": "c", "score": 0.64, "via": "dense"},
        {"kind": "parent", "node_id": "p", "score": 7.5, "via": "bm25"},
    ]
    refs = unique_refs(raw)
    assert [r.node_id for r in refs] == ["p", "c"]  # `parent` once (it was listed twice)
    assert refs[0].kind is RefKind.PARENT and refs[0].score == 0.71 and refs[0].via == "dense" and refs[0].bm25_score == 7.5
    assert refs[1].bm25_score is None


def test_the_confidence_signal_still_sees_the_bm25_score() -> None:
    from pipeline.models import SourceRef

    merged = SourceRef(parent_id="x", doc_id="d", score=1.0, text="t", matched=unique_refs([
        {"kind": "parent", "node_id": "p", "score": 0.7, "via": "dense"}, {"kind": "parent", "node_id": "p", "score": 7.5, "via": "bm25"}]))
    assert conf._best_by_via(merged, "bm25") == 7.5 and conf._best_by_via(merged, "dense") == 0.7
