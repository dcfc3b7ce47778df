"""``Engine`` on a real store (a short text ingested with the shipped MiniLM into a temp folder, seconds):
what it retrieves, how a request changes the stages, what it loads, and that eval's objects are its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidQuery
from pipeline.models import Mode
from pipeline.providers.encoder import OnnxEncoder
from pipeline.retrieve.engine import Engine
from tests.conftest import text_store

TEXT = """Graphics processors in deep learning

AlexNet was trained on two NVIDIA GTX 580 GPUs for five to six days. The network was split across the
two GPUs, which communicated only in certain layers. It won the ImageNet challenge in 2012 with a top-5
error of 15.3 percent, more than ten points ahead of the runner-up.

Energy use of proof of work

Bitcoin mining uses a great deal of electricity. Miners compete to find a block hash below a target, and
the difficulty adjusts every 2016 blocks so that a block is found about every ten minutes. Estimates of
the network's yearly consumption range from 90 to 150 terawatt hours.

Animal migrations

Every year about 1.5 million wildebeest and 200,000 zebra cross the Mara river between Tanzania and
Kenya. Nile crocodiles wait for the herds at the crossing points, and many animals drown in the current.
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return text_store(tmp_path_factory.mktemp("engine"), TEXT * 3)


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings, load_llm=False) as eng:
        yield eng


def test_the_engine_embeds_only_the_query_with_the_lean_encoder(engine: Engine) -> None:
    result = engine.retrieve("How many GPUs was AlexNet trained on?", Mode.CHUNK, 1)
    assert isinstance(engine.embedder, OnnxEncoder)  # no LlamaIndex embedding on the query path
    assert "two NVIDIA GTX 580 GPUs" in result.sources[0].text and len(result.sources) == 1
    assert result.stats.embedded_texts == 0 and result.stats.embedded_queries == 1
    assert result.stats.stages == ["dense", "bm25-relative"] and result.confidence is not None


def test_a_request_changes_the_stages_by_a_settings_copy(engine: Engine) -> None:
    before = engine.settings.retrieval.model_dump()
    dense = engine.retrieve("zebra crossing the Mara river", Mode.CHUNK, 2, hybrid=False, judge=False)
    reranked = engine.retrieve("zebra crossing the Mara river", Mode.CHUNK, 2, rerank=True, judge=False)
    assert dense.stats.stages == ["dense"]
    assert reranked.stats.stages == ["dense", "bm25-relative", "rerank"] and reranked.stats.rerank_ms > 0
    assert "zebra" in reranked.sources[0].text
    assert engine.settings.retrieval.model_dump() == before  # the engine's settings untouched


def test_eval_and_the_engine_use_the_same_retriever(engine: Engine) -> None:
    """``pipeline/eval/run.py`` measures ``Engine.retrieve(judge=False)``: the stages ``Engine.retriever`` composes."""
    query = "How much electricity does Bitcoin mining use?"
    direct = engine.retriever(engine.retrieval_settings(hybrid=True)).retrieve(query, Mode.ALL, 3)
    via_engine = engine.retrieve(query, Mode.ALL, 3, judge=False)
    assert [(s.parent_id, s.score) for s in via_engine.sources] == [(s.parent_id, s.score) for s in direct.sources]
    assert "Bitcoin" in via_engine.sources[0].text


def test_the_cross_encoder_loads_only_when_a_stage_needs_it(settings: Settings, engine: Engine) -> None:
    never = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"confidence_cross_encoder": "never"})})
    eng = Engine(never, load_llm=False, client=engine.store.client)  # a new engine on the open store (one process holds it)
    try:
        eng.retrieve("What is the capital of France?", Mode.CHUNK, 3)
        assert eng._reranker is None  # retrieve-only: never loaded
        answered = eng.query("How many GPUs was AlexNet trained on?", Mode.CHUNK, 3, answer="extractive", min_confidence=0.0)
        assert answered.answer_mode == "extractive" and answered.citations and "GPU" in (answered.answer or "")
        assert eng._reranker is not None  # the extract scores sentences with it
    finally:
        eng.store.parents.close()  # the client stays the module engine's


def test_bad_requests_are_refused_before_anything_runs(engine: Engine) -> None:
    for kwargs, message in (({"top_k": 0}, "top_k"), ({"mode": "nope"}, "unknown mode"), ({"filters": {"kind": "x"}}, "cannot filter")):
        with pytest.raises(InvalidQuery, match=message):
            engine.retrieve("a question", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery, match="empty"):
        engine.retrieve("  ")
    assert Path(engine.settings.store).is_dir()


def test_a_stock_llamaindex_retriever_is_obtainable(engine: Engine) -> None:
    from llama_index.core.base.base_retriever import BaseRetriever

    retriever = engine.llama_retriever(Mode.CHUNK, 2)
    nodes = retriever.retrieve("How many GPUs was AlexNet trained on?")
    direct = engine.retrieve("How many GPUs was AlexNet trained on?", Mode.CHUNK, 2, judge=False)
    assert isinstance(retriever, BaseRetriever)
    assert [n.node.node_id for n in nodes] == [s.parent_id for s in direct.sources]
