"""The query side in one object: rehydrate once, then retrieve or answer many queries (CLI and service)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.config import MAX_TOP_K, RetrievalSettings, Settings
from pipeline.errors import ConfigError, InvalidQuery, QueryError
from pipeline.models import CHUNK_KINDS, Answer, Mode, QueryStats, SourceRef
from pipeline.providers.encoder import build_encoder
from pipeline.retrieve import confidence as conf
from pipeline.retrieve.extract import answer_from_sources, answer_mode_for, cite_llm_answer
from pipeline.retrieve.grounding import Replaced
from pipeline.retrieve.parents import ParentRetriever, Retrieval
from pipeline.retrieve.rehydrate import Rehydrated, rehydrate
from pipeline.retrieve.rerank import CrossEncoderReranker
from pipeline.retrieve.search import NODE_CONTENT
from pipeline.store import layout
from pipeline.store import qdrant as qstore

if TYPE_CHECKING:  # LlamaIndex is imported on the LLM answer path only (retrieve/llama.py, retrieve/answer.py)
    from llama_index.core.llms import LLM
    from llama_index.core.schema import NodeWithScore

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 4000


def check_top_k(top_k: int) -> int:
    """The one rule for ``top_k``, used by the CLI, the API schema and the engine: 1 to ``MAX_TOP_K``.

    Raises:
        InvalidQuery: out of range (0 included: it is not "the default").
    """
    if isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidQuery(f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
    return top_k


class Engine:
    """Rehydrated store + models, shared by every query of a process (thread-safe for retrieval).

    Example:
        with Engine(Settings()) as engine:
            result = engine.retrieve("How did AlexNet use GPUs?", mode=Mode.ALL, top_k=3)
            result.stats.embedded_texts  # 0
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Any = None,
        llm: LLM | None = None,
        load_llm: bool = True,
        client: Any = None,
    ) -> None:
        """``embedder``: anything with ``get_query_embedding``, ``model_name`` and ``load()`` (a LlamaIndex
        embedding, e.g. the service's batched one); None builds the lean encoder of the store's model.
        ``client``: a shared store client (the service's); None opens one, closed with the engine."""
        self.settings = settings
        self._llm = llm
        self._llm_built = llm is not None or not load_llm
        self._lock = threading.Lock()
        self._reranker: CrossEncoderReranker | None = None
        if embedder is None:
            # A store opens with the model it was built with unless embed.model asks for another.
            own = client is None
            client = client or qstore.open_client(settings)
            try:
                embedder = build_encoder(settings, qstore.stored_model(client, settings))
            except BaseException:
                if own:
                    client.close()
                raise
        self.embedder = embedder
        self.embedder.load()
        # A passed-in client is shared (the service's one embedded client); ``close()`` closes it too.
        self.store: Rehydrated = rehydrate(settings, self.embedder, client)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def llm(self) -> LLM | None:
        with self._lock:
            if not self._llm_built:
                from pipeline.providers.llm import build_llm

                self._llm = build_llm(self.settings)
                self._llm_built = True
        return self._llm

    def _validate(self, query: str, mode: Mode | str | None, top_k: int | None) -> tuple[Mode, int]:
        if not query or not query.strip():
            raise InvalidQuery("query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidQuery(f"query is {len(query)} characters, the limit is {MAX_QUERY_CHARS}")
        try:
            mode = Mode(mode or Mode.ALL)
        except ValueError as exc:
            raise InvalidQuery(f"unknown mode {mode!r}: use one of {', '.join(m.value for m in Mode)}") from exc
        return mode, check_top_k(self.settings.retrieval.top_k if top_k is None else top_k)

    @property
    def reranker(self) -> CrossEncoderReranker:
        """The cross-encoder, loaded on first use (a retrieve-only process never pays for it)."""
        with self._lock:
            if self._reranker is None:
                # embed.threads 0 (auto) means all cores for ingest only: a query process scores pairs on one thread.
                self._reranker = CrossEncoderReranker(threads=self.settings.embed.threads or 1, model=self.settings.retrieval.rerank_model).load()
        return self._reranker

    def rerank_for(self, rerank: bool | None) -> bool:
        """Whether to rerank: the request's choice, else ``retrieval.rerank`` (off by default: on the dev
        sets it added +0.001 MRR@10 on average for ~0.6 s a query, docs/quality.md)."""
        return self.settings.retrieval.rerank if rerank is None else rerank

    def retrieval_settings(self, rerank: bool | None = None, hybrid: bool | None = None) -> RetrievalSettings:
        """``retrieval`` with this request's changes (``rerank``, ``hybrid``; None keeps the setting)."""
        update = {k: v for k, v in (("rerank", rerank), ("hybrid", hybrid)) if v is not None}
        return self.settings.retrieval.model_copy(update=update) if update else self.settings.retrieval

    def retriever(self, settings: RetrievalSettings | None = None) -> ParentRetriever:
        """The retrieval stages ``settings`` (default: ``retrieval``) choose, over this engine's store;
        the cross-encoder is loaded only when they rerank."""
        cfg = settings or self.settings.retrieval
        return ParentRetriever(self.store, self.embedder, cfg, self.reranker if cfg.rerank else None)

    def llama_retriever(self, mode: Mode = Mode.ALL, top_k: int | None = None, filters: Mapping[str, Any] | None = None) -> Any:
        """A stock LlamaIndex ``BaseRetriever`` over the configured stages (``retrieve/llama.py``; imports
        LlamaIndex), e.g. for ``RetrieverQueryEngine`` or any LlamaIndex pipeline."""
        from pipeline.retrieve.llama import LlamaIndexRetriever

        return LlamaIndexRetriever(self.retriever(), Mode(mode), check_top_k(top_k or self.settings.retrieval.top_k), filters)

    def _stats(self, r: Retrieval, started: float) -> QueryStats:
        usage = getattr(self.embedder, "usage", None)
        return QueryStats(
            embedded_texts=usage.texts if usage else 0,
            embedded_queries=r.embedded_queries,  # this request's, not the process total
            references_fetched=r.references_fetched,
            retrieve_ms=round((time.perf_counter() - started) * 1000, 2),
            embed_ms=r.embed_ms,
            rerank_ms=r.rerank_ms,
            stages=list(r.stages),
        )

    def _run(
        self, query: str, mode: Mode, top_k: int, filters: Mapping[str, Any] | None, rerank: bool | None, hybrid: bool | None, started: float
    ) -> tuple[Retrieval, Answer]:
        r = self.retriever(self.retrieval_settings(rerank, hybrid)).retrieve(query, mode, top_k, filters)
        return r, Answer(query=query, mode=mode, top_k=top_k, sources=r.sources, stats=self._stats(r, started))

    def retrieve(
        self,
        query: str,
        mode: Mode | str | None = None,
        top_k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        rerank: bool | None = None,
        hybrid: bool | None = None,
        min_confidence: float | None = None,
        judge: bool = True,
    ) -> Answer:
        """Top-k distinct parents for ``query``; only the query is embedded.

        With ``judge`` (the default) the result carries ``confidence`` and ``answerable`` (threshold:
        ``min_confidence``, else ``retrieval.min_confidence``); eval runs that measure ranking alone
        skip it (it costs up to four cross-encoder pairs).
        """
        mode, top_k = self._validate(query, mode, top_k)
        started = time.perf_counter()
        # The confidence model was fitted on the top three parents: judge on three, return top_k.
        _, result = self._run(query, mode, max(top_k, conf.TOP_PARENTS) if judge else top_k, filters, rerank, hybrid, started)
        result.top_k = top_k
        if judge:
            self.assess(result, min_confidence)
            del result.sources[top_k:]
            result.stats.retrieve_ms = round((time.perf_counter() - started) * 1000, 2)
        return result

    def threshold(self, min_confidence: float | None) -> float:
        """The request's ``min_confidence``, else ``retrieval.min_confidence``; outside [0, 1] is refused."""
        value = self.settings.retrieval.min_confidence if min_confidence is None else min_confidence
        if isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise InvalidQuery(f"min_confidence must be between 0 and 1, got {value}")
        return float(value)

    def _chunk_texts(self, sources: list[SourceRef]) -> dict[str, str]:
        """Parent id → text of its best dense chunk reference, for the top parents (one Qdrant read)."""
        name = self.store.names.get(layout.Collection.CHILDREN)
        want: dict[str, str] = {}
        for s in sources[: conf.TOP_PARENTS]:
            refs = [m for m in s.matched if m.via == "dense" and m.kind in CHUNK_KINDS]
            if refs:
                want[max(refs, key=lambda m: m.score).node_id] = s.parent_id
        if not want or not name:
            return {}
        try:
            rows = qstore.payloads(self.store.client, name, list(want), [NODE_CONTENT])
        except Exception as exc:  # a confidence signal is not worth failing the query for
            logger.warning("could not read chunk texts for confidence (%s: %s)", type(exc).__name__, exc)
            return {}
        out = {}
        for point_id, payload in rows:
            content = payload.get(NODE_CONTENT)
            if content and point_id in want:
                out[want[point_id]] = json.loads(content).get("text", "")
        return out

    def assess(self, result: Answer, min_confidence: float | None = None) -> Answer:
        """Fill ``confidence``, ``answerable``, ``reason``, ``message`` and ``signals`` of a retrieval."""
        threshold = self.threshold(min_confidence)
        started = time.perf_counter()
        # The cheap model first; the cross-encoder's only where that one is unsure (``conf.CASCADE``):
        # the same held-out answered/refused as always asking it, for it on ~11 % of queries.
        signals = conf.signals(result.query, result.sources, None)
        verdict = conf.judge(signals, threshold, bool(result.sources), cross_encoder=False)
        how = self.settings.retrieval.confidence_cross_encoder
        scorer = None
        if verdict.reason != conf.LANGUAGE and result.sources and (how == "always" or (how == "auto" and conf.unsure(verdict.confidence))):
            try:
                scorer = self.reranker.score
                self.reranker.load()
            except Exception as exc:  # weights missing or changed: keep the verdict without the cross-encoder, say so
                logger.warning("cross-encoder unavailable for confidence (%s: %s)", type(exc).__name__, exc)
                scorer = None
        if scorer is not None:
            # Only the cross-encoder's two signals are new: the rest (language detection included) is kept.
            signals = dataclasses.replace(signals, **conf.cross_encoder_signals(result.query, result.sources, scorer, self._chunk_texts(result.sources)))
            verdict = conf.judge(signals, threshold, True, cross_encoder=True)
        result.confidence = verdict.confidence
        result.answerable = verdict.answerable
        result.reason = verdict.reason
        result.message = "" if verdict.answerable else conf.explain(verdict.reason, signals)
        result.signals = {k: v for k, v in signals.__dict__.items()}
        if scorer is not None:  # the cross-encoder's time (its pairs dominate); the rest is microseconds
            result.stats.rerank_ms = round(result.stats.rerank_ms + (time.perf_counter() - started) * 1000, 2)
        return result

    def _require_llm(self) -> LLM:
        llm = self.llm
        if llm is None:
            raise ConfigError("no LLM configured (llm.provider=none): use --retrieve-only or configure an LLM")
        return llm

    def _retrieve_for_answer(
        self, query: str, mode: Mode | str | None, top_k: int | None, filters: Mapping[str, Any] | None, rerank: bool | None,
        min_confidence: float | None,
    ) -> tuple[LLM, Any, list[NodeWithScore], Answer]:
        """Retrieve and judge for an LLM answer; the LLM is required first (no retrieval if it is missing).

        Returns the LLM, a LlamaIndex retriever over the same stages, the parents as LlamaIndex nodes
        (what the synthesizer reads) and the result.
        """
        from pipeline.retrieve.llama import LlamaIndexRetriever, nodes_of

        mode, top_k = self._validate(query, mode, top_k)
        self.threshold(min_confidence)  # refused before anything runs
        llm = self._require_llm()
        started = time.perf_counter()
        k = max(top_k, conf.TOP_PARENTS)
        r, result = self._run(query, mode, k, filters, self.rerank_for(rerank), None, started)
        result.top_k = top_k
        hits = nodes_of(r)
        retriever = LlamaIndexRetriever(self.retriever(self.retrieval_settings(self.rerank_for(rerank))), mode, k, filters)
        self.assess(result, min_confidence)  # on three parents, as the confidence model was fitted
        del hits[top_k:], result.sources[top_k:]
        result.stats.retrieve_ms = round((time.perf_counter() - started) * 1000, 2)
        return llm, retriever, hits, result

    def answer_extract(self, result: Answer) -> Answer:
        """``result`` (a retrieval) with its extractive answer, whatever its confidence (eval's containment)."""
        return answer_from_sources(self, result, "extractive")

    def query(
        self, query: str, mode: Mode | str | None = None, top_k: int | None = None, filters: Mapping[str, Any] | None = None, answer: str | None = None,
        rerank: bool | None = None, min_confidence: float | None = None,
    ) -> Answer:
        """Retrieve, then answer as ``answer`` (else ``answer.mode``) says: extractive, llm or none.

        Not answerable (``Answer.answerable``): no extract and no LLM call, ``answer`` stays None.
        An LLM answer that its sources do not support is replaced by the extract (``Answer.replaced``).
        """
        how = answer_mode_for(self.settings, answer)
        if how != "llm":  # no generator needed: sentences of the sources, cited (pipeline/retrieve/extract.py)
            result = self.retrieve(query, mode, top_k, filters, self.rerank_for(rerank), min_confidence=min_confidence)
            return answer_from_sources(self, result, how) if result.answerable else result
        llm, retriever, hits, result = self._retrieve_for_answer(query, mode, top_k, filters, rerank, min_confidence)
        if not result.answerable:
            return result
        from llama_index.core.schema import QueryBundle

        from pipeline.retrieve.answer import build_query_engine

        t_answer = time.perf_counter()
        try:
            response = build_query_engine(retriever, llm).synthesize(QueryBundle(query_str=query), nodes=hits)
        except Exception as exc:  # openai/httpx errors from any provider: one clear error for CLI and service
            raise QueryError(f"LLM failed to answer ({type(exc).__name__}: {exc})") from exc
        result.answer = str(response).strip()
        result.stats.answer_ms = round((time.perf_counter() - t_answer) * 1000, 2)
        return cite_llm_answer(self, result)

    def stream_query(
        self, query: str, mode: Mode | str | None = None, top_k: int | None = None, filters: Mapping[str, Any] | None = None, answer: str | None = None,
        rerank: bool | None = None, min_confidence: float | None = None,
    ) -> Iterator[str | Replaced | Answer]:
        """Yield answer text deltas as the LLM writes them, then the complete ``Answer``.

        The final ``Answer`` always says what was shown: when the streamed LLM text is replaced by the
        extract, a ``Replaced`` (the reason and the new text) comes before it, and the final answer is
        the extract with ``answer_mode`` "extractive". Not answerable: no delta, only the ``Answer``.
        """
        how = answer_mode_for(self.settings, answer)
        if how != "llm":  # an extract is ready at once: one delta, then the answer
            result = self.retrieve(query, mode, top_k, filters, self.rerank_for(rerank), min_confidence=min_confidence)
            if result.answerable:
                result = answer_from_sources(self, result, how)
            if result.answer:
                yield result.answer
            yield result
            return
        llm, retriever, hits, result = self._retrieve_for_answer(query, mode, top_k, filters, rerank, min_confidence)
        if not result.answerable:
            yield result
            return
        from llama_index.core.schema import QueryBundle

        from pipeline.retrieve.answer import build_query_engine

        t_answer = time.perf_counter()
        parts: list[str] = []
        try:  # as ``query``: an LLM failure is a QueryError on every front end (an SSE error event of that class)
            response = build_query_engine(retriever, llm, streaming=True).synthesize(QueryBundle(query_str=query), nodes=hits)
            for delta in response.response_gen:
                parts.append(delta)
                yield delta
        except GeneratorExit:
            raise
        except Exception as exc:  # openai/httpx errors from any provider
            raise QueryError(f"LLM failed to answer ({type(exc).__name__}: {exc})") from exc
        result.answer = "".join(parts).strip()
        result.stats.answer_ms = round((time.perf_counter() - t_answer) * 1000, 2)
        result = cite_llm_answer(self, result)
        if result.replaced:
            yield Replaced(reason=result.replaced, answer=result.answer or "")
        yield result

    def close(self) -> None:
        self.store.close()
