"""Confidence and abstention (pipeline/retrieve/confidence.py, language.py): the rules, and the cross-encoder
signal on real text (the shipped confidence.json, the real ms-marco cross-encoder)."""

from __future__ import annotations

import pytest

from pipeline.models import MatchedRef, RefKind, SourceRef
from pipeline.retrieve import confidence as conf
from pipeline.retrieve.language import detect
from pipeline.retrieve.rerank import CrossEncoderReranker

SAMPLE_TEXT = (
    "The resulting corpus consists of 81.1M papers. Our publisher-provided abstract coverage is 90.4%, or 73.4M papers. "
    "Our PDF coverage is 35.6%, or 28.9M papers. These PDFs are processed using the pipeline discussed in §2.1. "
    "We identify 8.1M of the 28.9M PDFs as open access, and we provide full text for all papers in this open access subset."
)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("What is the capital of France?", "en"),
        ("Was ist die Hauptstadt von Frankreich?", "de"),
        ("Welche Sprache verwendet S2ORC?", "de"),
        ("Quelle est la capitale de la France ?", "fr"),
        ("¿Cuál es la capital de Francia?", "es"),
        ("法国的首都是什么？", "zh"),
        ("Какая столица Франции?", "ru"),
        ("Die Hard is a film about a policeman", "en"),  # English words that are German function words elsewhere
        ("S2ORC", None),
    ],
)
def test_language_of_a_question(text: str, code: str | None) -> None:
    assert detect(text) == code


def _source(text: str, dense: float, bm25: float) -> SourceRef:
    matched = [MatchedRef(kind=RefKind.CHUNK_128, node_id="c1", score=dense, via="dense"), MatchedRef(kind=RefKind.PARENT, node_id="p1", score=bm25, via="bm25")]
    return SourceRef(parent_id="p1", doc_id="acl2020.pdf", pages=[4], score=1.0, text=text, matched=matched)


class TestJudge:
    def test_another_language_is_never_answerable(self) -> None:
        strong = conf.Signals(dense_top=0.8, bm25_top=3.0, coverage=1.0, ce_max=9.0, ce_top1=9.0, query_language="de", documents_language="en")
        verdict = conf.judge(strong, 0.5, has_sources=True)
        assert not verdict.answerable and verdict.reason == conf.LANGUAGE
        assert "German" in conf.explain(verdict.reason, strong)

    def test_threshold_decides_and_zero_always_answers(self) -> None:
        weak = conf.Signals(dense_top=0.15, bm25_top=0.0, coverage=0.0, ce_max=-11.0, ce_top1=-11.0, query_language="en", documents_language="en")
        assert conf.judge(weak, 0.5, True).reason == conf.LOW_CONFIDENCE
        assert conf.judge(weak, 0.0, True).answerable
        assert conf.judge(weak, 0.5, has_sources=False).reason == conf.NO_SOURCES

    def test_confidence_is_a_probability_that_grows_with_the_evidence(self) -> None:
        probs = [conf.judge(conf.Signals(dense_top=d, bm25_top=b, coverage=c, ce_max=ce, ce_top1=ce), 0.5, True).confidence
                 for d, b, c, ce in [(0.1, 0.0, 0.0, -11.0), (0.4, 1.0, 0.5, -3.0), (0.7, 2.5, 1.0, 8.0)]]
        assert all(0.0 <= p <= 1.0 for p in probs) and probs[0] < probs[1] < probs[2]


@pytest.fixture(scope="module")
def scorer() -> object:
    return CrossEncoderReranker().load().score


def test_cross_encoder_signal_separates_in_domain_from_out_of_domain(scorer: object) -> None:
    """Same passage, same retrieval scores: only the question differs, and with it the verdict."""
    sources = [_source(SAMPLE_TEXT, dense=0.45, bm25=1.0)]
    inside = conf.signals("How many papers does the corpus consist of?", sources, scorer)
    outside = conf.signals("How long should I boil an egg for a soft yolk?", sources, scorer)
    assert inside.ce_max > 3.0 > -3.0 > outside.ce_max
    assert conf.judge(inside, 0.5, True).confidence > conf.judge(outside, 0.5, True).confidence
