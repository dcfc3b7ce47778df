"""Ranking metrics for one query (hit@k, reciprocal rank@k) and their aggregates (pure functions).

Ties: when scores are given, parents with equal scores form one group whose internal order is
arbitrary (our fusion breaks ties by parent id). The metrics are then the expectation over every
order of that group, so a mode gains nothing from a lucky id order, e.g. a relevant parent tied
with one irrelevant parent at ranks 1–2 scores MRR 0.75, not 1.0 or 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _tie_groups(n: int, scores: Sequence[float] | None) -> list[tuple[int, int]]:
    """(start, end) index ranges of equal consecutive scores; singletons without scores."""
    if scores is None:
        return [(i, i + 1) for i in range(n)]
    if len(scores) != n:
        raise ValueError(f"scores has {len(scores)} items, relevance has {n}")
    groups, start = [], 0
    for i in range(1, n + 1):
        if i == n or not math.isclose(scores[i], scores[start], rel_tol=1e-9, abs_tol=1e-12):
            groups.append((start, i))
            start = i
    return groups


def first_relevant_ranks(relevant: Sequence[bool], scores: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Distribution of the 1-based rank of the first relevant item: ``[(rank, probability), ...]``.

    Empty when nothing is relevant. Without ties it is one rank with probability 1.
    """
    for start, end in _tie_groups(len(relevant), scores):
        r = sum(1 for x in relevant[start:end] if x)
        if r == 0:
            continue
        g = end - start
        total = math.comb(g, r)
        # P(first relevant at offset j) = C(g-j-1, r-1) / C(g, r) for a random order of the group.
        return [(start + j + 1, math.comb(g - j - 1, r - 1) / total) for j in range(g - r + 1)]
    return []


def hit_at_k(relevant: Sequence[bool], k: int, scores: Sequence[float] | None = None) -> float:
    """1.0 if a relevant item is among the first ``k`` (expected value under ties), else 0.0."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return sum(p for rank, p in first_relevant_ranks(relevant, scores) if rank <= k)


def reciprocal_rank_at_k(relevant: Sequence[bool], k: int, scores: Sequence[float] | None = None) -> float:
    """1 / rank of the first relevant item if it is within ``k``, else 0.0 (expected value under ties)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return sum(p / rank for rank, p in first_relevant_ranks(relevant, scores) if rank <= k)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for no values."""
    return sum(values) / len(values) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation, like ``numpy.percentile``; 0.0 if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    if not values:
        return 0.0
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
