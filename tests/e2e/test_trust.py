"""Issue 22 on the bundled sample: answers an application can trust.

An out-of-domain question is refused (CLI exit 0, plain message, weak sources; JSON ``answerable:
false``, no answer), an in-domain one answered with clean cited sentences, another language is
reported as such, and an LLM answer its sources do not support is replaced, the stream saying so
before its final event. The LLM here is a fixed-text double: a real small model cannot be made to
invent a number on demand, and that fault is what the rule is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

from pipeline.config import Settings
from pipeline.models import Answer
from pipeline.retrieve.engine import Engine
from pipeline.retrieve.grounding import Replaced
from tests.e2e.conftest import NO_LLM, Run, copy_store, run_cli

pytestmark = pytest.mark.e2e

QUICK_START = "How does SciBERT differ from a BERT model pretrained on S2ORC?"
OUT_OF_DOMAIN = "What is the capital of France?"


class FixedLLM(CustomLLM):
    """Writes ``text`` whatever it is asked, word by word when streaming."""

    text: str = ""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=8192, num_output=256, model_name="fixed-text")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        def gen() -> Iterator[CompletionResponse]:
            so_far = ""
            for word in self.text.split(" "):
                delta = word if not so_far else " " + word
                so_far += delta
                yield CompletionResponse(text=so_far, delta=delta)

        return gen()


@pytest.fixture(scope="module")
def store(plain_store: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(plain_store[0], tmp_path_factory.mktemp("trust") / "store")


@pytest.fixture(scope="module")
def engine(store: Path) -> Iterator[Engine]:
    llm = FixedLLM()
    with Engine(Settings(store=store, llm={"provider": "none"}), llm=llm) as eng:
        yield eng


def test_out_of_domain_refused_in_domain_answered(engine: Engine) -> None:
    refused = engine.query(OUT_OF_DOMAIN, answer="extractive")
    assert not refused.answerable and refused.reason == "low_confidence" and refused.answer is None and not refused.citations
    assert refused.confidence is not None and refused.confidence < engine.settings.retrieval.min_confidence
    assert refused.sources and all(s.score_kind == "relative" for s in refused.sources)  # the nearest, still shown
    answered = engine.query(QUICK_START, answer="extractive")
    assert answered.answerable and answered.confidence >= engine.settings.retrieval.min_confidence
    assert answered.answer and answered.citations and all(c.pages for c in answered.citations)
    for c in answered.citations:  # clean: no ligature, no heading run in, no footnote number glued on
        assert not re.search("[\ufb00-\ufb06]", c.text) and not re.match(r"\d+(?:\.\d+)* [A-Z]", c.text), c.text


@pytest.mark.parametrize("how", ["never", "auto", "always"])
def test_confidence_asks_the_cross_encoder_only_where_the_setting_and_the_cheap_model_say(
    plain_store: tuple[Path, Run], tmp_path: Path, how: str
) -> None:
    """``retrieval.confidence_cross_encoder``: auto (default) asks it only where the cheap model is unsure."""
    store = copy_store(plain_store[0], tmp_path / "store")  # the module's engine holds the shared copy open
    settings = Settings(store=store, llm={"provider": "none"}, retrieval={"confidence_cross_encoder": how})
    with Engine(settings) as eng:
        refused, answered = eng.retrieve(OUT_OF_DOMAIN), eng.retrieve(QUICK_START)  # both clear-cut
        assert not refused.answerable and answered.answerable
        unsure = eng.retrieve("What is S2ORC?", top_k=1)  # short: the cheap model is unsure, the cross-encoder is not
    asked = answered.signals["ce_max"] > -12.0
    assert asked is (how == "always")
    assert (unsure.signals["ce_max"] > -12.0) is (how != "never")
    if how != "never":
        assert unsure.answerable and len(unsure.sources) == 1  # judged on three parents, one returned


def test_another_language_is_reported_as_such(engine: Engine) -> None:
    result = engine.query("Wie viele Artikel enthält das Korpus S2ORC?", answer="extractive")
    assert not result.answerable and result.reason == "language" and result.answer is None
    assert "German" in result.message and "English" in result.message


def test_min_confidence_zero_always_answers(engine: Engine) -> None:
    result = engine.query(OUT_OF_DOMAIN, answer="extractive", min_confidence=0.0)
    assert result.answerable and result.answer


def test_an_llm_number_absent_from_the_sources_is_replaced_and_the_stream_agrees(engine: Engine) -> None:
    engine.llm.text = "S2ORC contains 12.5M papers from many disciplines."  # type: ignore[union-attr]
    result = engine.query("How many papers are in S2ORC?", answer="llm")
    assert result.answer_mode == "extractive" and "12.5" in result.replaced and "12.5M" not in (result.answer or "")
    items = list(engine.stream_query("How many papers are in S2ORC?", answer="llm"))
    deltas = [i for i in items if isinstance(i, str)]
    replaced = [i for i in items if isinstance(i, Replaced)]
    final = items[-1]
    assert isinstance(final, Answer) and "".join(deltas).startswith("S2ORC contains 12.5M")
    assert len(replaced) == 1 and isinstance(items[-2], Replaced)
    assert final.answer == replaced[0].answer and final.answer_mode == "extractive" and final.replaced == replaced[0].reason


def test_a_supported_llm_answer_is_kept_and_the_stream_agrees(engine: Engine) -> None:
    engine.llm.text = "The resulting corpus consists of 81.1M papers."  # type: ignore[union-attr]
    items = list(engine.stream_query("How many papers are in S2ORC?", answer="llm"))
    final = items[-1]
    assert isinstance(final, Answer) and not any(isinstance(i, Replaced) for i in items)
    assert final.answer_mode == "llm" and final.answer == "".join(i for i in items if isinstance(i, str)).strip()


def test_cli_abstains_plainly_with_exit_0(plain_store: tuple[Path, Run]) -> None:
    store, _ = plain_store
    human = run_cli("query", OUT_OF_DOMAIN, "--store", str(store), env=NO_LLM)
    assert human.code == 0, human.stderr
    assert "The indexed documents do not seem to answer this." in human.stdout
    assert "weak" in human.stdout and "Answer" not in human.stdout
    js = run_cli("query", OUT_OF_DOMAIN, "--json", "--store", str(store), env=NO_LLM).json
    assert js["answerable"] is False and js["answer"] is None and 0.0 <= js["confidence"] < 0.5 and js["sources"]
