"""Relevance matcher on hand-made texts: normalisation, windows, coverage, short parents."""

from __future__ import annotations

import random
import string

import pytest

from pipeline.eval.matcher import Reference, RelevanceMatcher, covers, normalise, window_share, windows_of


def prose(n_words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(n_words))


REF = prose(400, seed=1)  # ~2,400 characters, like a llama-datasets reference context
OTHER = prose(400, seed=2)


class TestNormalise:
    def test_keeps_only_lowercase_alnum(self) -> None:
        assert normalise("Deep-\nLearning, 2012!") == "deeplearning2012"

    def test_nfkc_folds_ligatures_and_fullwidth(self) -> None:
        assert normalise("ﬁne ＡＩ") == "fineai"

    def test_non_latin_letters_are_dropped(self) -> None:
        assert normalise("café ü 東京") == "caf"


class TestWindows:
    def test_twenty_evenly_spaced_windows_of_fifty(self) -> None:
        norm = "".join(string.ascii_lowercase[i % 26] for i in range(1000))
        ws = windows_of(norm)
        assert len(ws) == 20
        assert all(len(w) == 50 for w in ws)
        assert ws[0] == norm[:50] and ws[-1] == norm[-50:]

    def test_short_text_is_one_window(self) -> None:
        assert windows_of("abc") == ["abc"]
        assert windows_of("") == []

    def test_few_positions_give_distinct_windows(self) -> None:
        norm = "a" * 30 + "b" * 30  # 60 chars: only 11 start positions
        assert len(windows_of(norm)) == 11

    def test_window_share(self) -> None:
        assert window_share(["ab", "cd", "xy", "zz"], "abcd") == 0.5
        assert window_share([], "abcd") == 0.0


class TestCovers:
    def test_parent_containing_the_reference(self) -> None:
        parent = OTHER[:800] + " " + REF.upper().replace(" ", "\n") + " " + OTHER[800:]
        assert RelevanceMatcher([REF]).matches(parent)

    def test_unrelated_parent(self) -> None:
        assert not RelevanceMatcher([REF]).matches(OTHER)

    def test_half_of_the_reference_is_enough(self) -> None:
        words = REF.split()
        first_60 = " ".join(words[: int(len(words) * 0.6)])
        first_30 = " ".join(words[: int(len(words) * 0.3)])
        # Parents at least as long as the reference: only the reference-window rule applies.
        assert RelevanceMatcher([REF]).matches(first_60 + " " + OTHER)
        assert not RelevanceMatcher([REF]).matches(first_30 + " " + OTHER)

    def test_parent_shorter_than_the_reference_inside_it(self) -> None:
        words = REF.split()
        piece = " ".join(words[100:200])  # a quarter of the reference, entirely inside it
        ref = Reference.of(REF)
        assert window_share(ref.windows, normalise(piece)) < 0.5  # fails the first rule...
        assert covers(ref, normalise(piece))  # ...but lies inside the reference

    def test_short_parent_mostly_elsewhere_is_not_relevant(self) -> None:
        words = REF.split()
        piece = " ".join(words[100:120]) + " " + prose(80, seed=3)
        assert not RelevanceMatcher([REF]).matches(piece)

    def test_any_of_several_references(self) -> None:
        assert RelevanceMatcher([OTHER, REF]).matches(REF)

    def test_empty_texts(self) -> None:
        assert not RelevanceMatcher([REF]).matches("")
        assert not RelevanceMatcher(["!!!"]).matches(REF)  # nothing left after normalisation

    def test_rejects_bad_threshold(self) -> None:
        with pytest.raises(ValueError, match="threshold must be in"):
            RelevanceMatcher([REF], threshold=0)
