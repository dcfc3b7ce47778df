"""Evaluate retrieval: dataset × modes × k → hit rate, MRR, parents returned and latency per mode.

Flow: ingest the dataset's sources into an isolated store (named by the dataset and the ingest
fingerprint, so a second run finds everything unchanged and ingests nothing), open one ``Engine``,
then run every query in every mode at every k — at each k exactly what ``query --top-k k`` returns —
and judge each returned parent with the text-coverage ``RelevanceMatcher``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM
from pydantic import BaseModel, Field

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.eval.answers import Answerability, Containment, answerability, containment
from pipeline.eval.datasets import EvalDataset
from pipeline.eval.matcher import RelevanceMatcher, normalise
from pipeline.eval.metrics import hit_at_k, mean, percentile, reciprocal_rank_at_k
from pipeline.models import IngestReport, IngestStats, Mode

logger = logging.getLogger(__name__)

# Called with (event, detail): the ingest events ("file", "parent", "done") are passed through, then
# "queries" once with {"total"} and "query" after every retrieval with {"done", "total", "mode", "k"}.
EvalProgressFn = Callable[[str, dict], None]

DEFAULT_MODES = (Mode.BASE, Mode.CHUNK, Mode.METADATA, Mode.ALL)
DEFAULT_KS = (2, 10)

# Retrieval stages an eval can measure side by side on one store: name → (hybrid, rerank).
# "default" is whatever the settings say; its results are keyed by the mode alone.
VARIANTS: dict[str, tuple[bool | None, bool | None]] = {
    "default": (None, None),
    "dense": (False, False),
    "hybrid": (True, False),
    "dense+rerank": (False, True),
    "hybrid+rerank": (True, True),
}


def result_key(mode: Mode, variant: str) -> str:
    return mode.value if variant == "default" else f"{mode.value}/{variant}"


def _noop(event: str, detail: dict) -> None:
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "dataset"


class ModeResult(BaseModel):
    """Metrics of one mode, averaged over the examples; dict keys are k."""

    hit: dict[int, float]
    mrr: dict[int, float]
    parents_returned: dict[int, float]
    latency_ms_p50: float
    latency_ms_p95: float

    def flat(self) -> dict[str, float]:
        """``{"hit@2": .., "mrr@2": .., ..., "parents_returned": .., "latency_ms_p50": ..}`` (parents at the largest k)."""
        out: dict[str, float] = {}
        for k in sorted(self.hit):
            out[f"hit@{k}"] = round(self.hit[k], 4)
            out[f"mrr@{k}"] = round(self.mrr[k], 4)
        out["parents_returned"] = round(self.parents_returned[max(self.parents_returned)], 3)
        out["latency_ms_p50"] = round(self.latency_ms_p50, 2)
        out["latency_ms_p95"] = round(self.latency_ms_p95, 2)
        return out


class EvalReport(BaseModel):
    """Everything one evaluation measured; ``to_json()`` is the ``eval --json`` object."""

    dataset: str
    path: str
    format: str
    store: str
    examples: int
    ks: list[int]
    oracle_coverage: float
    results: dict[str, ModeResult]
    config: dict[str, Any] = Field(default_factory=dict)
    answerability: Answerability | None = None
    containment: Containment | None = None
    ingest: IngestStats = Field(default_factory=IngestStats)
    seconds: float = 0.0
    date: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "oracle_coverage": round(self.oracle_coverage, 4),
            "results": {mode: r.flat() for mode, r in self.results.items()},
            "examples": self.examples,
            "store": self.store,
            **({"answerability": self.answerability.flat()} if self.answerability else {}),
            **({"containment": self.containment.flat()} if self.containment else {}),
            "config": self.config,
            "ingest": {
                "parents": self.ingest.parents,
                "references": self.ingest.references,
                "llm_calls": self.ingest.llm_calls,
                "embedded_texts": self.ingest.embedded_texts,
                "files_unchanged": self.ingest.files_unchanged,
                "seconds": self.ingest.seconds,
            },
            "seconds": round(self.seconds, 1),
            "date": self.date,
        }


def describe(settings: Settings) -> dict[str, Any]:
    """The settings that shape the numbers, recorded with every report."""
    from pipeline.ingest.run import enrich_during_ingest

    provider = settings.llm.provider.value
    enrich = enrich_during_ingest(settings) and provider != "none"
    if not enrich:
        llm = "none"
    elif provider == "llamacpp":
        llm = settings.llm.model or "smollm2"
    else:
        llm = settings.llm.model or "gpt-4o-mini"
    r = settings.retrieval
    return {
        "embed": settings.embed.model or settings.embed.provider.value,
        "hybrid": r.hybrid,
        "hybrid_fusion": r.hybrid_fusion.value,
        "bm25_scope": r.bm25_scope,
        "dense_weight": r.dense_weight,
        "support_weight": r.support_weight,
        "rerank": r.rerank,
        "rerank_candidates": r.rerank_candidates,
        "rerank_passages": r.rerank_passages,
        "llm": llm,
        "enrich": enrich,
        "questions": settings.ingest.questions,
        "parent_chunk_size": settings.ingest.parent_chunk_size,
        "child_chunk_sizes": settings.ingest.child_chunk_sizes,
        "fusion": settings.retrieval.fusion.value,
        "overfetch": settings.retrieval.overfetch,
        "summary_weight": settings.retrieval.summary_weight,
        "question_weight": settings.retrieval.question_weight,
    }


class EvalRunner:
    """Ingest a dataset into its own store and measure every mode at every k.

    Models are passed in or built from settings; the eval store is ``eval_root/<dataset>-<fingerprint>``
    (default ``<settings.store>/eval``), or exactly ``store`` when given.

    Example:
        report = EvalRunner(Settings(store=Path("storage"))).run(load_dataset(Path("paul_graham_essay")))
        report.results["chunk"].mrr[10]
    """

    def __init__(
        self,
        settings: Settings,
        modes: Sequence[Mode] = DEFAULT_MODES,
        ks: Sequence[int] = DEFAULT_KS,
        embedder: BaseEmbedding | None = None,
        llm: LLM | None = None,
        eval_root: Path | None = None,
        store: Path | None = None,
        progress: EvalProgressFn = _noop,
        ingest: bool = True,
        variants: Sequence[str] = ("default",),
        negatives: Sequence[str] | None = None,
        answers: bool = False,
    ) -> None:
        """``negatives``: questions this store cannot answer (``answers.answerability`` is measured when
        given, at the largest k); ``answers``: also measure answer containment of the extracts."""
        if not modes:
            raise ConfigError("modes is empty: give at least one of base, chunk, metadata, all")
        bad = [k for k in ks if not 1 <= k <= 50]
        if not ks or bad:
            raise ConfigError(f"every k must be between 1 and 50, got {list(ks)}")
        self.settings = settings
        self.modes = [Mode(m) for m in dict.fromkeys(modes)]
        self.ks = sorted(set(ks))
        self.embedder = embedder
        self.llm = llm
        self.eval_root = eval_root
        self.store = store
        self.progress = progress
        self.do_ingest = ingest
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise ConfigError(f"unknown variant(s) {unknown}: use {', '.join(VARIANTS)}")
        self.variants = list(dict.fromkeys(variants))
        self.negatives = list(negatives) if negatives is not None else None
        self.answers = answers

    def _models(self) -> tuple[BaseEmbedding, LLM | None]:
        from pipeline.providers.embeddings import build_embedder
        from pipeline.providers.llm import build_llm
        from pipeline.ingest.run import enrich_during_ingest

        if self.embedder is None:
            self.embedder = build_embedder(self.settings)
        if self.llm is None and enrich_during_ingest(self.settings):
            self.llm = build_llm(self.settings)
        return self.embedder, self.llm

    def store_for(self, dataset: EvalDataset) -> Path:
        """The isolated store of this dataset under these ingest settings."""
        if self.store is not None:
            return self.store
        from pipeline.ingest.run import Ingestor

        embedder, llm = self._models()
        fingerprint = Ingestor(self.settings, embedder=embedder, llm=llm).output_fingerprint()
        root = self.eval_root or self.settings.store / "eval"
        return root / f"{_slug(dataset.name)}-{fingerprint[:10]}"

    def _sources(self, dataset: EvalDataset, store: Path) -> list[Path]:
        if dataset.sources:
            return list(dataset.sources)
        # An EmbeddingQA set without source files: ingest its corpus texts, one file per set.
        corpus = store / "sources" / "corpus.txt"
        text = "\n\n".join(dataset.corpus)
        if not corpus.exists() or corpus.read_text(encoding="utf-8") != text:
            corpus.parent.mkdir(parents=True, exist_ok=True)
            corpus.write_text(text, encoding="utf-8")
        return [corpus]

    def ingest(self, dataset: EvalDataset) -> tuple[Settings, IngestReport]:
        """Ingest the dataset's sources into its store; unchanged sources cost nothing.

        With ``ingest=False`` the store is used as it is (retrieval-only variants of a built store).
        """
        from pipeline.ingest.run import Ingestor

        store = self.store_for(dataset)
        settings = self.settings.with_overrides(store=store)
        if not self.do_ingest:
            if not (store / "docstore.sqlite").exists():
                raise ConfigError(f"{store}: no eval store to re-use; run once with ingestion")
            return settings, IngestReport(store=str(store), stats=IngestStats())
        embedder, llm = self._models()
        report = Ingestor(settings, embedder=embedder, llm=llm, progress=self.progress).run(self._sources(dataset, store))
        failed = [f for f in report.files if f.status == "failed"]
        if failed and len(failed) == len(report.files):
            raise ConfigError(f"{dataset.path}: no source file could be ingested: {failed[0].path}: {failed[0].reason}")
        for f in failed:
            logger.warning("eval: source %s failed: %s", f.path, f.reason)
        return settings, report

    def run(self, dataset: EvalDataset) -> EvalReport:
        """Ingest if needed, then measure; raises ``PipelineError`` subclasses on fatal problems."""
        from pipeline.retrieve.engine import Engine
        from pipeline.store.docstore import ParentStore

        started = time.perf_counter()
        settings, report = self.ingest(dataset)
        matchers = [RelevanceMatcher(ex.reference_contexts) for ex in dataset.examples]

        norms: dict[str, str] = {}
        parents = ParentStore(settings.store / "docstore.sqlite")
        try:
            for pid in parents.ids():
                node = parents.get(pid)
                if node is not None:
                    norms[pid] = normalise(node.get_content())
        finally:
            parents.close()
        all_norms = list(norms.values())
        covered = sum(1 for m in matchers if any(m.matches_normalised(n) for n in all_norms))
        oracle = covered / len(matchers)
        if oracle < 0.5:
            logger.warning("eval %s: only %.0f%% of references are found in any parent: wrong sources or a broken matcher?", dataset.name, oracle * 100)

        total = len(self.modes) * len(self.variants) * len(self.ks) * len(dataset.examples)
        self.progress("queries", {"total": total})
        done = 0
        results: dict[str, ModeResult] = {}
        embedder, _ = self._models()
        with Engine(settings, embedder=embedder, load_llm=False) as engine:
            engine.retrieve(dataset.examples[0].query, self.modes[0], self.ks[0])  # warm-up: first search loads lazily
            for mode, variant in ((m, v) for m in self.modes for v in self.variants):
                use_hybrid, use_rerank = VARIANTS[variant]
                hits: dict[int, list[float]] = {k: [] for k in self.ks}
                rrs: dict[int, list[float]] = {k: [] for k in self.ks}
                returned: dict[int, list[float]] = {k: [] for k in self.ks}
                latencies: list[float] = []
                for k in self.ks:
                    for ex, matcher in zip(dataset.examples, matchers):
                        answer = engine.retrieve(ex.query, mode, k, rerank=use_rerank, hybrid=use_hybrid, judge=False)
                        relevant = []
                        for s in answer.sources:
                            if s.parent_id not in norms:
                                norms[s.parent_id] = normalise(s.text)
                            relevant.append(matcher.matches_normalised(norms[s.parent_id]))
                        scores = [s.score for s in answer.sources]
                        hits[k].append(hit_at_k(relevant, k, scores))
                        rrs[k].append(reciprocal_rank_at_k(relevant, k, scores))
                        returned[k].append(len({s.parent_id for s in answer.sources}))
                        if k == self.ks[-1]:
                            latencies.append(answer.stats.retrieve_ms)
                        done += 1
                        self.progress("query", {"done": done, "total": total, "mode": result_key(mode, variant), "k": k})
                results[result_key(mode, variant)] = ModeResult(
                    hit={k: mean(v) for k, v in hits.items()},
                    mrr={k: mean(v) for k, v in rrs.items()},
                    parents_returned={k: mean(v) for k, v in returned.items()},
                    latency_ms_p50=percentile(latencies, 50),
                    latency_ms_p95=percentile(latencies, 95),
                )
            answerable = None
            if self.negatives is not None:
                answerable = answerability(
                    engine, dataset, self.negatives, max(self.ks), engine.threshold(None),
                    lambda d, t: self.progress("query", {"done": d, "total": t, "mode": "answerability", "k": max(self.ks)}),
                )
            contained = None
            if self.answers:
                contained = containment(engine, dataset, lambda d, t: self.progress("query", {"done": d, "total": t, "mode": "containment", "k": 3}))
        return EvalReport(
            dataset=dataset.name,
            path=str(dataset.path),
            format=dataset.format.value,
            store=str(settings.store),
            examples=len(dataset.examples),
            ks=self.ks,
            oracle_coverage=oracle,
            results=results,
            answerability=answerable,
            containment=contained,
            config={**describe(self.settings), "embed": embedder.model_name, "variants": self.variants},
            ingest=report.stats,
            seconds=time.perf_counter() - started,
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
