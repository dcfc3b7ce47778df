"""Issue 23: a citation's score is on another scale than a source's (a cross-encoder logit such as 6.3,
or a term-overlap share, against the sources' 0-1 relative scores), so each citation names its scale."""

from __future__ import annotations

from pipeline.models import SourceRef
from pipeline.retrieve.extract import ExtractiveAnswerer
from pipeline.retrieve.rerank import CrossEncoderReranker

TEXT = (
    "The corpus was built in 2019 by a team of researchers. "
    "It contains 81 million papers from many academic disciplines. "
    "The weather in the town was mild for most of the year."
)
QUESTION = "How many papers does the corpus contain?"


def source() -> SourceRef:
    return SourceRef(parent_id="p0", doc_id="/docs/paper.pdf", pages=[3], score=1.0, text=TEXT)


def test_without_a_cross_encoder_citations_say_term_overlap() -> None:
    _, cites = ExtractiveAnswerer(scorer=None, sentences=1).answer(QUESTION, [source()])
    assert cites and all(c.score_kind == "term_overlap" for c in cites)
    assert cites[0].model_dump()["score_kind"] == "term_overlap"  # in the JSON of query --json and the API


def test_with_the_shipped_cross_encoder_citations_say_logit_and_are_off_the_0_1_scale() -> None:
    reranker = CrossEncoderReranker().load()
    _, cites = ExtractiveAnswerer(scorer=reranker.score, sentences=1).answer(QUESTION, [source()])
    assert cites[0].score_kind == "cross_encoder_logit"
    assert not 0.0 <= cites[0].score <= 1.0  # why it needs its own name: a logit, not a relative score
