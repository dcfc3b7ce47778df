"""Extractive answers on the bundled sample: the right sentences, cited on the right page, never the question.

Pages were read off the PDF (pypdf): the abstract's corpus size is on page 1, the SciBERT comparison
on page 6, the GROBID step of the pipeline on page 4.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.extract import repeats_question
from tests.e2e.conftest import NO_LLM, Run, run_cli

pytestmark = pytest.mark.e2e

SAMPLE_QUESTIONS = [
    # (question, a phrase the first cited sentence must hold, the page it is on)
    ("How many papers are in S2ORC?", "81.1M", 1),
    ("How does SciBERT differ from a BERT model pretrained on S2ORC?", "SCIBERT", 6),
    ("Which PDF parser does S2ORC use?", "GROBID", 4),
]


@pytest.fixture(scope="module")
def engine(plain_store: tuple[Path, Run]) -> Engine:
    store, _ = plain_store
    with Engine(Settings(store=store, llm={"provider": "none"}), load_llm=False) as eng:
        yield eng


@pytest.mark.parametrize(("question", "phrase", "page"), SAMPLE_QUESTIONS)
def test_extract_cites_the_right_page(engine: Engine, question: str, phrase: str, page: int) -> None:
    result = engine.query(question)
    assert result.answer_mode == "extractive" and result.citations
    first = result.citations[0]
    assert phrase in first.text and first.pages == [page]
    assert first.doc_id.endswith("acl2020.acl-main.447.pdf") and result.sources[first.source - 1].parent_id == first.parent_id
    assert page in result.sources[first.source - 1].pages  # the sentence's page is one of its parent's
    assert result.stats.embedded_texts == 0


@pytest.mark.parametrize("question", [q for q, _, _ in SAMPLE_QUESTIONS] + ["What is S2ORC?", "Can S2ORC be used to pretrain language models?"])
def test_answer_never_repeats_the_question(engine: Engine, question: str) -> None:
    result = engine.query(question)
    assert result.answer and question.lower().rstrip("?") not in result.answer.lower()
    for c in result.citations:
        assert not repeats_question(c.text, question), c.text


def test_cli_json_contract_and_terminal_output(plain_store: tuple[Path, Run]) -> None:
    store, _ = plain_store
    question = SAMPLE_QUESTIONS[1][0]
    run = run_cli("query", question, "--json", "--store", str(store), env=NO_LLM)
    assert run.code == 0, run.stderr
    out = run.json
    assert out["answer_mode"] == "extractive" and out["stats"]["embedded_texts"] == 0
    assert {"text", "doc_id", "pages", "parent_id", "source", "score"} <= set(out["citations"][0])
    assert re.search(r"\[\d, p\. 6\]", out["answer"])  # the marker names the source and the page
    human = run_cli("query", question, "--store", str(store), env=NO_LLM)
    assert "Answer (extract" in human.stdout and re.search(r"\[\d\] acl2020.acl-main.447.pdf p. 6", human.stdout)
    none = run_cli("query", question, "--answer", "none", "--json", "--store", str(store), env=NO_LLM)
    assert none.json["answer"] is None and none.json["answer_mode"] == "none" and none.json["sources"]
    llm = run_cli("query", question, "--answer", "llm", "--store", str(store), env=NO_LLM)
    assert llm.code == 2 and "llm.provider=none" in llm.stderr
