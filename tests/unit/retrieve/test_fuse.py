from pipeline.config import Fusion
from pipeline.models import MatchedRef, RefKind
from pipeline.retrieve.fuse import fuse, rank_parents


def ref(score: float) -> MatchedRef:
    return MatchedRef(kind=RefKind.CHUNK_128, node_id="n", score=score)


def test_rank_parents_uses_best_reference() -> None:
    hits = [("a", ref(0.5)), ("b", ref(0.7)), ("a", ref(0.9))]
    assert rank_parents(hits) == [("a", 0.9), ("b", 0.7)]


def test_max_fusion_and_tie_break_by_id() -> None:
    assert fuse([[("b", 0.8)], [("a", 0.8), ("b", 0.1)]], Fusion.MAX) == [("a", 0.8), ("b", 0.8)]


def test_rrf_rewards_agreement() -> None:
    fused = fuse([[("a", 0.9), ("b", 0.8)], [("b", 0.3), ("c", 0.2)]], Fusion.RRF)
    assert [p for p, _ in fused] == ["b", "a", "c"]


def test_weights_discount_llm_written_kinds() -> None:
    question = MatchedRef(kind=RefKind.QUESTION, node_id="q", score=0.9)
    hits = [("a", question), ("b", ref(0.8))]
    assert [p for p, _ in rank_parents(hits)] == ["a", "b"]
    ranked = rank_parents(hits, {RefKind.QUESTION: 0.8})
    assert ranked[0] == ("b", 0.8) and ranked[1][0] == "a" and abs(ranked[1][1] - 0.72) < 1e-9


def test_support_lets_several_matching_chunks_beat_one_slightly_better_chunk() -> None:
    hits = [("lone", ref(0.80)), ("many", ref(0.78)), ("many", ref(0.70)), ("many", ref(0.60)), ("many", ref(0.55))]
    assert [p for p, _ in rank_parents(hits)] == ["lone", "many"]  # best reference only
    ranked = rank_parents(hits, support=0.1)
    assert ranked[0][0] == "many" and abs(ranked[0][1] - (0.78 + 0.1 * (0.70 + 0.60))) < 1e-9  # the 4th ref counts not
    assert ranked[1] == ("lone", 0.80)
