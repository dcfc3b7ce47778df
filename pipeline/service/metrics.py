"""Prometheus metrics of one service app: HTTP requests, retrieval, embedding and LLM latency, load.

Each app has its own ``CollectorRegistry`` (no process-global registry), so several apps can live in
one process, as they do in the tests. Retrieval, query-embedding and answer latency come from the
``QueryStats`` of each ``Answer`` (LlamaIndex replaces per-instance callback managers with its global
one, so callbacks on our own embedder and LLM would not stay attached).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipeline.models import Answer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """Every metric the service exports, registered in a registry of its own.

    Example:
        metrics = ServiceMetrics()
        metrics.requests.labels(route="/retrieve", method="POST", status="200").inc()
        body, content_type = metrics.render()
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "pipeline_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"], registry=reg
        )
        self.request_seconds = Histogram(
            "pipeline_http_request_duration_seconds",
            "HTTP request latency (to the last byte sent) by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge("pipeline_http_requests_in_flight", "HTTP requests being served", registry=reg)
        self.retrieval_seconds = Histogram(
            "pipeline_retrieval_duration_seconds", "Retrieval latency (query embedding, searches, parent lookup) by mode", ["mode"], buckets=LATENCY_BUCKETS, registry=reg
        )
        self.embedding_seconds = Histogram(
            "pipeline_embedding_duration_seconds", "Query embedding latency", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.llm_seconds = Histogram(
            "pipeline_llm_duration_seconds", "Answer generation latency (streamed: until the last token)", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.generations_in_flight = Gauge("pipeline_generations_in_flight", "LLM answers being generated", registry=reg)
        self.generations_rejected = Counter(
            "pipeline_generations_rejected", "Queries refused with 429 because every generation slot was busy", registry=reg
        )
        self.ingest_jobs = Counter("pipeline_ingest_jobs", "Ingest jobs finished, by final state", ["state"], registry=reg)

    def observe_answer(self, answer: Answer) -> None:
        """Record the latencies an answer measured: retrieval, its query embedding, and the LLM."""
        stats = answer.stats
        self.retrieval_seconds.labels(mode=answer.mode.value).observe(stats.retrieve_ms / 1000)
        if stats.embedded_queries:
            self.embedding_seconds.observe(stats.embed_ms / 1000)
        if answer.answer is not None:
            self.llm_seconds.observe(stats.answer_ms / 1000)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
