"""hit@k and reciprocal rank@k on hand-made rankings: no hit, cut-offs, several hits, ties."""

from __future__ import annotations

import pytest

from pipeline.eval.metrics import first_relevant_ranks, hit_at_k, mean, percentile, reciprocal_rank_at_k


class TestHitAndRR:
    def test_first_position(self) -> None:
        assert hit_at_k([True, False, False], 2) == 1.0
        assert reciprocal_rank_at_k([True, False, False], 2) == 1.0

    def test_third_position_inside_and_outside_k(self) -> None:
        rel = [False, False, True]
        assert hit_at_k(rel, 2) == 0.0 and reciprocal_rank_at_k(rel, 2) == 0.0
        assert hit_at_k(rel, 10) == 1.0 and reciprocal_rank_at_k(rel, 10) == pytest.approx(1 / 3)

    def test_no_hit(self) -> None:
        assert hit_at_k([False] * 10, 10) == 0.0
        assert reciprocal_rank_at_k([False] * 10, 10) == 0.0
        assert hit_at_k([], 10) == 0.0
        assert first_relevant_ranks([False, False]) == []

    def test_several_relevant_only_the_first_counts(self) -> None:
        assert reciprocal_rank_at_k([False, True, True], 10) == 0.5

    def test_k_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="k must be at least 1"):
            hit_at_k([True], 0)


class TestTies:
    def test_relevant_tied_with_one_irrelevant(self) -> None:
        rel, scores = [False, True, False], [0.9, 0.9, 0.5]
        assert reciprocal_rank_at_k(rel, 10, scores) == pytest.approx(0.75)  # (1 + 1/2) / 2
        assert hit_at_k(rel, 1, scores) == pytest.approx(0.5)
        assert hit_at_k(rel, 2, scores) == 1.0

    def test_list_order_is_used_without_scores(self) -> None:
        assert reciprocal_rank_at_k([False, True, False], 10) == 0.5

    def test_tie_group_after_an_irrelevant_leader(self) -> None:
        rel, scores = [False, True, True, False], [1.0, 0.5, 0.5, 0.5]
        # Group of 3 at ranks 2-4 with 2 relevant: first relevant at rank 2 w.p. 2/3, rank 3 w.p. 1/3.
        assert first_relevant_ranks(rel, scores) == [(2, pytest.approx(2 / 3)), (3, pytest.approx(1 / 3))]
        assert reciprocal_rank_at_k(rel, 10, scores) == pytest.approx(2 / 3 / 2 + 1 / 3 / 3)
        assert hit_at_k(rel, 2, scores) == pytest.approx(2 / 3)

    def test_tie_across_the_cutoff(self) -> None:
        rel, scores = [False, False, True], [0.7, 0.7, 0.7]
        assert hit_at_k(rel, 1, scores) == pytest.approx(1 / 3)
        assert reciprocal_rank_at_k(rel, 3, scores) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)

    def test_all_tied_all_relevant(self) -> None:
        assert reciprocal_rank_at_k([True, True], 10, [0.3, 0.3]) == 1.0

    def test_scores_length_must_match(self) -> None:
        with pytest.raises(ValueError, match="scores has 1 items"):
            hit_at_k([True, False], 2, [0.1])


class TestAggregates:
    def test_mean(self) -> None:
        assert mean([1.0, 0.0, 0.5]) == 0.5
        assert mean([]) == 0.0

    def test_percentile_matches_linear_interpolation(self) -> None:
        values = [10.0, 20.0, 30.0, 40.0]
        assert percentile(values, 50) == 25.0
        assert percentile(values, 95) == pytest.approx(38.5)
        assert percentile([], 50) == 0.0
        with pytest.raises(ValueError, match="q must be between"):
            percentile(values, 101)
