"""Stage 2 of retrieval: score parents from the references that matched them (best reference or
reciprocal-rank fusion), and fuse the dense and BM25 rankings (``rank_found`` composes them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.config import Fusion, HybridFusion
from pipeline.models import MatchedRef, RefKind

if TYPE_CHECKING:
    from pipeline.config import RetrievalSettings
    from pipeline.retrieve.search import Found

RRF_K = 60


SUPPORT_REFS = 2  # how many references after a parent's best one count as support


def rank_parents(
    hits: Sequence[tuple[str, MatchedRef]], weights: Mapping[RefKind, float] | None = None, support: float = 0.0
) -> list[tuple[str, float]]:
    """(parent_id, ref) hits → parents ordered by their best reference score, plus support.

    ``weights`` scale the score of some kinds first (missing kinds: 1.0), e.g. to discount LLM-written
    questions, which resemble any question more than a text chunk does. ``support`` adds that share of
    the parent's next ``SUPPORT_REFS`` reference scores: a parent that several chunks match beats one
    with a single lucky chunk of the same score. Replayed on the dev sets (MiniLM, hybrid; docs/quality.md,
    summed evidence), 0.1 raised mean MRR@10 0.811 → 0.817 and hit@10 on two sets, losing 0.001 MRR@10
    on the third; 0.2 gave the same mean (0.818) but moved hit@10 both ways, so the smaller step.
    """
    scores: dict[str, list[float]] = {}
    for parent_id, ref in hits:
        scores.setdefault(parent_id, []).append(ref.score * (weights.get(ref.kind, 1.0) if weights else 1.0))
    ranked = {}
    for parent_id, values in scores.items():
        values.sort(reverse=True)
        ranked[parent_id] = values[0] + (support * sum(values[1 : 1 + SUPPORT_REFS]) if support else 0.0)
    return sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))


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


def _minmax(ranking: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    lo, hi = min(scores), max(scores)
    span = hi - lo
    return {pid: (s - lo) / span if span > 0 else 1.0 for pid, s in ranking}


def _dbsf(ranking: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    mu = sum(scores) / len(scores)
    sd = (sum((s - mu) ** 2 for s in scores) / len(scores)) ** 0.5
    lo, hi = mu - 3 * sd, mu + 3 * sd
    span = hi - lo
    return {pid: min(1.0, max(0.0, (s - lo) / span)) if span > 0 else 1.0 for pid, s in ranking}


def hybrid(
    dense: Sequence[tuple[str, float]], sparse: Sequence[tuple[str, float]], method: HybridFusion, dense_weight: float = 0.5
) -> list[tuple[str, float]]:
    """Fuse the dense and the BM25 parent rankings of one query into one, ties broken by parent id.

    Scores of the two sides live on different scales (cosine in [-1, 1], BM25 unbounded and
    collection-dependent), so RELATIVE and DBSF normalise each side over this query's candidates
    before weighting; a parent found by one side only gets 0 from the other. RRF uses ranks only.
    """
    if not sparse:
        return list(dense)
    if method is HybridFusion.RRF:
        fused: dict[str, float] = defaultdict(float)
        for ranking in (dense, sparse):
            for rank, (pid, _) in enumerate(ranking, start=1):
                fused[pid] += 1.0 / (RRF_K + rank)
    else:
        norm = _dbsf if method is HybridFusion.DBSF else _minmax
        d, s = norm(dense), norm(sparse)
        fused = {pid: dense_weight * d.get(pid, 0.0) + (1.0 - dense_weight) * s.get(pid, 0.0) for pid in d.keys() | s.keys()}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def weights_for(cfg: RetrievalSettings) -> dict[RefKind, float] | None:
    """Per-kind score weights where LLM-written and text references compete on raw cosine (fusion MAX
    with a weight other than 1), else None."""
    weights = cfg.weights()
    return weights if cfg.fusion is Fusion.MAX and any(w != 1.0 for w in weights.values()) else None


def rank_found(found: Sequence[Found], cfg: RetrievalSettings) -> tuple[list[tuple[str, float]], list[str]]:
    """Stage 2: the searches' hits → parents ranked best first, and the stages that ranked them.

    Dense: a parent scores its best reference over every collection plus ``support_weight`` × its next
    two (``Fusion.MAX``, some kinds first weighted), or the reciprocal-rank fusion of its
    per-collection ranks (``Fusion.RRF``). BM25 (when any search had a BM25 side): a parent scores its
    best reference over those sides, and the two rankings are fused by ``hybrid_fusion``.
    """
    dense_rankings: list[list[tuple[str, float]]] = []  # per collection, for RRF
    dense_hits: list[tuple[str, MatchedRef]] = []  # every collection's, for MAX
    sparse_rankings: list[list[tuple[str, float]]] = []
    for f in found:
        pairs = [(p, r) for p, r, _ in f.dense]
        if cfg.fusion is Fusion.RRF:
            dense_rankings.append(rank_parents(pairs))
        else:
            dense_hits += pairs
        if f.bm25 is not None:
            sparse_rankings.append(rank_parents([(p, r) for p, r, _ in f.bm25]))
    ranked = fuse(dense_rankings, Fusion.RRF) if cfg.fusion is Fusion.RRF else rank_parents(dense_hits, weights_for(cfg), cfg.support_weight)
    stages = ["dense"]
    if sparse_rankings:
        ranked = hybrid(ranked, fuse(sparse_rankings, Fusion.MAX), cfg.hybrid_fusion, cfg.dense_weight)
        stages.append(f"bm25-{cfg.hybrid_fusion.value}")
    return ranked, stages
