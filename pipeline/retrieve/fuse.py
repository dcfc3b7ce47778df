"""Score parents from the references that matched them: best reference (max) or reciprocal-rank fusion."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from pipeline.config import Fusion
from pipeline.models import MatchedRef, RefKind

RRF_K = 60


def rank_parents(hits: Sequence[tuple[str, MatchedRef]], weights: Mapping[RefKind, float] | None = None) -> list[tuple[str, float]]:
    """(parent_id, ref) hits of one search → parents ordered by their best reference score.

    ``weights`` scale the score of some kinds first (missing kinds: 1.0), e.g. to discount LLM-written
    questions, which resemble any question more than a text chunk does.
    """
    best: dict[str, float] = {}
    for parent_id, ref in hits:
        score = ref.score * (weights.get(ref.kind, 1.0) if weights else 1.0)
        best[parent_id] = max(best.get(parent_id, float("-inf")), score)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


def fuse(rankings: Sequence[list[tuple[str, float]]], fusion: Fusion) -> list[tuple[str, float]]:
    """Combine per-search parent rankings into one, ties broken by parent id for repeatable output.

    MAX: a parent scores its best cosine over every search. RRF: sum of 1/(60 + rank) over searches.
    """
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, (parent_id, score) in enumerate(ranking, start=1):
            if fusion is Fusion.RRF:
                scores[parent_id] += 1.0 / (RRF_K + rank)
            else:
                scores[parent_id] = max(scores.get(parent_id, float("-inf")), score)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
