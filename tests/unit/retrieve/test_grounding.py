"""Grounded LLM answers (pipeline/retrieve/grounding.py): each rule with the real cross-encoder and real sample text."""

from __future__ import annotations

import pytest

from pipeline.models import SourceRef
from pipeline.retrieve.grounding import answer_sentences, check, numbers
from pipeline.retrieve.rerank import CrossEncoderReranker

# Page 4 of the bundled sample, as pypdf reads it (one parent's worth).
SAMPLE_TEXT = (
    "We perform an evaluation of linking performance in §4.\n"
    "3 The S2ORC dataset\n"
    "The resulting corpus consists of 81.1M papers. Our publisher-provided abstract coverage is 90.4%, or 73.4M papers. "
    "Our PDF coverage is 35.6%, or 28.9M papers. These PDFs are processed using the pipeline discussed in §2.1. "
    "The vast majority of these PDFs are successfully processed using GROBID, and we extract bibliography entries for 27.6M "
    "of the 28.9M PDFs. We identify 8.1M of the 28.9M PDFs as open access, and we provide full text for all papers in this "
    "open access subset. For the 1.5M papers for which LaTeX source is available through arXiv, we further obtain and provide LaTeX parses."
)
SOURCES = [SourceRef(parent_id="p1", doc_id="acl2020.pdf", pages=[4], score=1.0, text=SAMPLE_TEXT)]


@pytest.fixture(scope="module")
def scorer() -> object:
    return CrossEncoderReranker().load().score


def test_a_number_absent_from_the_sources_is_refused(scorer: object) -> None:
    # Word for word a source sentence, but the paper says 81.1M: only the number rule can catch it.
    verdict = check("The resulting corpus consists of 12.5M papers.", SOURCES, scorer)
    assert not verdict.ok and verdict.reason.startswith("the number 12.5 ")
    assert not check("S2ORC contains 12.5M papers. They are open access.", SOURCES, scorer).ok


def test_a_copied_or_paraphrased_claim_with_its_numbers_is_supported(scorer: object) -> None:
    assert check("The corpus consists of 81.1M papers [1].", SOURCES, scorer).ok
    assert check("S2ORC provides full text for 8.1M open access papers, and LaTeX parses for 1.5M papers.", SOURCES, scorer).ok


def test_a_claim_no_sentence_makes_is_refused(scorer: object) -> None:
    verdict = check("The corpus was built by translating Wikipedia into twelve languages.", SOURCES, scorer)
    assert not verdict.ok and "no source sentence supports" in verdict.reason


def test_a_refusal_or_an_empty_answer_is_not_an_answer(scorer: object) -> None:
    assert not check("The context does not contain information about the vocabulary size.", SOURCES, scorer).ok
    assert not check("   ", SOURCES, scorer).ok


def test_numbers_and_sentences_are_read_as_written() -> None:
    assert numbers("81,100 papers, 28.9M PDFs and 35.6% coverage.") == {"81100", "28.9", "35.6"}
    got = answer_sentences("It has 81.1M papers [1, p. 4]. The corpus is open access [2]. It is.")
    assert got == ["It has 81.1M papers.", "The corpus is open access."]  # markers off; a sentence without content skipped
