"""Extractive answers on the bundled sample: the right sentences, cited on the right page, never the question.

"The right page" is checked against the PDF itself: every quoted sentence must be on the page its
citation names (page text read with pypdf, compared without spaces, case or punctuation).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.extract import repeats_question
from tests.conftest import SAMPLE_PDF
from tests.e2e.conftest import NO_LLM, copy_store, Run, run_cli

pytestmark = pytest.mark.e2e

SAMPLE_QUESTIONS = [
    # (question, a phrase the first cited sentence must hold)
    ("How many papers are in S2ORC?", "81.1M"),
    ("How does SciBERT differ from a BERT model pretrained on S2ORC?", "SCIBERT"),
    ("Which PDF parser does S2ORC use?", "GROBID"),
]


def squash(text: str) -> str:
    # NFKC first: extracts spell "scientific" where the PDF has the ligature "scientiﬁc" (issue 22).
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", text).lower())


@pytest.fixture(scope="module")
def pdf_pages() -> dict[int, str]:
    from pypdf import PdfReader

    return {i: squash(p.extract_text() or "") for i, p in enumerate(PdfReader(str(SAMPLE_PDF)).pages, 1)}


@pytest.fixture(scope="module")
def engine(plain_store: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One in-process engine on a copy (embedded Qdrant admits one process per folder: the CLI test
    below opens the shared store itself)."""
    store = tmp_path_factory.mktemp("answer") / "store"
    copy_store(plain_store[0], store)
    with Engine(Settings(store=store, llm={"provider": "none"}), load_llm=False) as eng:
        yield eng


@pytest.mark.parametrize(("question", "phrase"), SAMPLE_QUESTIONS)
def test_extract_cites_the_right_page(engine: Engine, pdf_pages: dict[int, str], question: str, phrase: str) -> None:
    result = engine.query(question)
    assert result.answer_mode == "extractive" and result.citations
    # Citations read in document order (issue 22); the best-scored one must hold the phrase.
    assert phrase in max(result.citations, key=lambda c: c.score).text
    for c in result.citations:
        assert c.doc_id.endswith("acl2020.acl-main.447.pdf") and result.sources[c.source - 1].parent_id == c.parent_id
        assert c.pages and set(c.pages) <= set(result.sources[c.source - 1].pages)  # within its parent's pages
        words = squash(c.text)
        # A sentence starts on its first cited page; one that does not cross a page break ends there too.
        assert words[:30] in pdf_pages[c.pages[0]], (c.pages, c.text)
        assert len(c.pages) > 1 or words[-30:] in pdf_pages[c.pages[0]], (c.pages, c.text)
    assert result.stats.embedded_texts == 0


@pytest.mark.parametrize("question", [q for q, _ in SAMPLE_QUESTIONS] + ["What is S2ORC?", "Can S2ORC be used to pretrain language models?"])
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
    assert re.search(r"\[\d, p\. \d+\]", out["answer"])  # each sentence names its source and page
    human = run_cli("query", question, "--store", str(store), env=NO_LLM)
    assert "Answer (extract" in human.stdout and re.search(r"\[\d\] acl2020.acl-main.447.pdf p. \d", human.stdout)
    none = run_cli("query", question, "--answer", "none", "--json", "--store", str(store), env=NO_LLM)
    assert none.json["answer"] is None and none.json["answer_mode"] == "none" and none.json["sources"]
    llm = run_cli("query", question, "--answer", "llm", "--store", str(store), env=NO_LLM)
    assert llm.code == 2 and "llm.provider=none" in llm.stderr
