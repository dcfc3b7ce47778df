"""pipeline/retrieve/extract.py: sentence splitting, filters, page mapping and the choice of sentences."""

from __future__ import annotations

from pipeline.models import SourceRef
from pipeline.retrieve.extract import ExtractiveAnswerer, answerable, page_of, repeats_question, split_sentences


def source(text: str, pages: list[int] | None = None, i: int = 0) -> SourceRef:
    return SourceRef(parent_id=f"p{i}", doc_id="/docs/paper.pdf", pages=pages or [3], score=0.9, text=text)


class TestSplitSentences:
    def test_abbreviations_do_not_end_a_sentence(self) -> None:
        text = "We follow Lo et al. in this. The corpus, e.g. its abstracts, is large."
        assert [t for _, t in split_sentences(text)] == ["We follow Lo et al. in this.", "The corpus, e.g. its abstracts, is large."]

    def test_headings_and_bullets_are_boundaries_hyphenation_is_joined(self) -> None:
        text = "Abstract\nWe introduce a large cor-\npus of papers. Key points: • Domain: biology. • Vocabulary: new."
        parts = [t for _, t in split_sentences(text)]
        # A heading alone ("Abstract") is dropped since issue 22: it is never worth quoting.
        assert parts == ["We introduce a large corpus of papers.", "Key points:", "Domain: biology.", "Vocabulary: new."]

    def test_offsets_point_into_the_original_text(self) -> None:
        text = "First sentence here. Second one follows."
        for start, sent in split_sentences(text):
            assert text[start:].startswith(sent.split()[0])


def test_filters() -> None:
    assert not answerable("Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics, pages 4969–4983")
    assert not answerable("S2ORC: The Semantic Scholar Open Research Corpus")  # a title
    assert answerable("We introduce S2ORC, a large corpus of 81.1M English-language academic papers.")
    assert repeats_question("How does SciBERT differ from BERT?", "How does SciBERT differ from BERT?")
    assert not repeats_question("SciBERT was trained on 82% biomedical papers, unlike the S2ORC model.", "How does SciBERT differ?")


def test_page_of_uses_document_offsets_else_estimates() -> None:
    src = source("a" * 1000, pages=[4, 5])
    offsets = [0, 100, 5000, 5600]  # pages 1..4 start here; the parent starts at 5500 (page 3)
    assert page_of(src, 5500, offsets, 50, 10) == [3]
    assert page_of(src, 5500, offsets, 150, 10) == [4]
    assert page_of(src, None, None, 900, 10) == [5]  # no offsets: by position within the parent's pages


class TestExtractiveAnswerer:
    TEXT = (
        "The corpus was built in 2019 by a team of researchers. "
        "It contains 81 million papers from many academic disciplines. "
        "How many papers does the corpus contain? "
        "The weather in the town was mild for most of the year."
    )

    def test_lexical_fallback_picks_the_answer_and_cites_it(self) -> None:
        text, cites = ExtractiveAnswerer(scorer=None, sentences=1).answer("How many papers does the corpus contain?", [source(self.TEXT)])
        assert cites[0].text == "It contains 81 million papers from many academic disciplines."
        assert cites[0].pages == [3] and cites[0].source == 1 and text.endswith("[1, p. 3]")

    def test_scorer_decides_and_the_question_is_never_quoted(self) -> None:
        seen: list[list[str]] = []

        def scorer(query: str, passages: list[str]) -> list[float]:
            seen.append(passages)
            return [9.0 if "weather" in p else -5.0 for p in passages]

        _, cites = ExtractiveAnswerer(scorer=scorer, sentences=3).answer("How many papers does the corpus contain?", [source(self.TEXT)])
        assert [c.text for c in cites] == ["The weather in the town was mild for most of the year."]  # others are > margin below
        assert all("How many papers" not in p for p in seen[0])

    def test_a_failing_scorer_falls_back_to_overlap(self) -> None:
        def broken(query: str, passages: list[str]) -> list[float]:
            raise RuntimeError("weights missing")

        _, cites = ExtractiveAnswerer(scorer=broken, sentences=1).answer("How many papers does the corpus contain?", [source(self.TEXT)])
        assert "81 million" in cites[0].text


def test_a_page_number_line_inside_a_sentence_is_dropped() -> None:
    text = "Select the best parses for each paper cluster, and\n4971\nthen filter the papers by quality."
    assert [t for _, t in split_sentences(text)] == ["Select the best parses for each paper cluster, and then filter the papers by quality."]


def test_a_sentence_announcing_a_list_brings_its_first_item() -> None:
    text = ("The key differences between the two corpora that the authors used for pretraining in 2019 are: • Domain: the first corpus "
            "holds 82% biomedical papers and 18% computer science papers. The weather was mild all year long.")
    _, cites = ExtractiveAnswerer(scorer=None, sentences=1).answer("What are the key differences between the corpora?", [source(text)])
    assert cites[0].text.startswith("The key differences") and "82% biomedical" in cites[0].text
