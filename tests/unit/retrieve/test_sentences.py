"""Sentence cleaning (pipeline/retrieve/sentences.py): each rule on the debris the bundled sample really has."""

from __future__ import annotations

import re

import pytest

from pipeline.retrieve.sentences import clean_sentence, is_formula, split_clean, strip_heading
from tests.conftest import SAMPLE_PDF

# Lines as pypdf reads them from the sample's pages 3-4: a numbered heading, a run-in heading,
# ligatures, line-end hyphens, footnotes spliced into a column, a footnote mark, a page number
# between the two halves of a sentence.
PAGE_BREAK_TEXT = (
    "output of this pipeline is visualized in Figure 1.\n"
    "2.1 Processing PDFs\n"
    "We process PDFs from the Semantic Scholar cor-\n"
    "pus using SCIENCEPARSE and GROBID. Our processing pipeline\n"
    "is described below.\n"
    "Selecting PDFs We remove PDFs which are less\n"
    "likely to be academic papers, and this ﬁltering step is neces-\n"
    "sary to increase output data quality. The parses are expressed\n"
    "in JSON format.12\n"
    "9https://github.com/allenai/science-\n"
    "parse\n"
    "11Our evaluations suggest SCIENCEPARSE outperforms\n"
    "GROBID for title and author extraction.\n"
    "In cases where metadata is incomplete, we use majority voting to select\n"
    "4972\n"
    "canonical metadata values. We break ties by min-\n"
    "imizing the total number of sources.\n"
    "C = |N1 ∩N2| / min(|N1|, |N2|)\n"
)


class TestSplitClean:
    def sentences(self) -> list[str]:
        return [s for _, s in split_clean(PAGE_BREAK_TEXT)]

    def test_ligatures_and_line_end_hyphens_are_repaired(self) -> None:
        text = " ".join(self.sentences())
        assert "ﬁ" not in text and "filtering step is necessary" in text
        assert "Semantic Scholar corpus using" in text

    def test_headings_alone_or_run_in_are_dropped(self) -> None:
        sentences = self.sentences()
        assert not any(s.startswith(("2.1", "Processing PDFs", "Selecting PDFs")) for s in sentences), sentences
        assert "We remove PDFs which are less likely to be academic papers, and this filtering step is necessary to increase output data quality." in sentences

    def test_a_sentence_continues_over_the_page_number_and_footnotes(self) -> None:
        sentences = self.sentences()
        assert "In cases where metadata is incomplete, we use majority voting to select canonical metadata values." in sentences
        assert "We break ties by minimizing the total number of sources." in sentences
        assert not any("github" in s or "Our evaluations suggest" in s or "4972" in s for s in sentences), sentences

    def test_footnote_marks_fragments_and_formulas_are_dropped(self) -> None:
        sentences = self.sentences()
        assert "The parses are expressed in JSON format." in sentences
        assert not any(s.startswith("output of this") for s in sentences)  # the tail of a cut sentence
        assert not any("∩" in s for s in sentences)

    def test_offsets_point_at_the_sentence_start_in_the_original(self) -> None:
        for start, sentence in split_clean(PAGE_BREAK_TEXT):
            assert PAGE_BREAK_TEXT[start:].startswith(sentence.split()[0]) or sentence.split()[0] in PAGE_BREAK_TEXT[start : start + 40]


def test_run_in_heading_before_a_sentence_starter_is_removed() -> None:
    assert strip_heading("3 The S2ORC dataset The resulting corpus consists of 81.1M papers.") == "The resulting corpus consists of 81.1M papers."
    assert strip_heading("Extracting structured data from PDFs We use SCIENCEPARSE to extract titles.") == "We use SCIENCEPARSE to extract titles."
    # An ordinary sentence is left alone.
    assert strip_heading("In this paper we describe the corpus.") == "In this paper we describe the corpus."


def test_clean_sentence_normalises_ligatures_accents_and_marks() -> None:
    assert clean_sentence("Inspired by Saier and F \u0308arber, the scientiﬁc ﬂow.11 We") == "Inspired by Saier and Färber, the scientific flow. We"
    assert is_formula("C = |N1 ∩N2| min(|N1|, |N2|)") and not is_formula("The corpus has 81.1M papers.")


@pytest.mark.skipif(not SAMPLE_PDF.exists(), reason="bundled sample missing")
def test_no_sentence_of_the_sample_keeps_debris() -> None:
    """Over the whole bundled paper: no ligature, no leading section number or footnote number, no page number alone."""
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() or "" for p in PdfReader(str(SAMPLE_PDF)).pages)
    sentences = [s for _, s in split_clean(text)]
    assert len(sentences) > 300
    for s in sentences:
        assert not re.search("[\ufb00-\ufb06]", s), s
        assert not re.match(r"\d+(?:\.\d+)+ [A-Z]", s), s  # "2.1 Processing PDFs ..."
        assert not re.match(r"\d{1,2}(?:https?://|[A-Z][a-z])", s), s  # a footnote
        assert not re.fullmatch(r"\d+", s)
