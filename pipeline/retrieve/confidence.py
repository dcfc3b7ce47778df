"""How sure a retrieval is that its top sources hold the answer: ``confidence`` in [0, 1] and ``answerable``.

Why: source scores are relative (min-max fused over the query's own candidates, so the best source
is always 1.000) and say nothing about whether the documents answer the question at all; "What is
the capital of France?" got three S2ORC sentences with score 1.000. An application needs one number
it can threshold.

Signals (``Signals``), each cheap and each measured (benchmarks/fit_confidence.py, docs/quality.md):
- ``dense_top``: the best dense cosine of any matched reference (absolute: MiniLM cosine);
- ``dense_margin``: the top parent's best cosine minus the second parent's;
- ``bm25_top``: log(1 + the best BM25 score of a matched reference);
- ``coverage``: the share of the query's content words found in one of the top parents;
- ``ce_max`` / ``ce_top1``: the cross-encoder's logit (ms-marco MiniLM) for the query against the best
  passage of the top three parents (their best-matching chunk reference, and the rank-1 parent's
  best lexical window), and against the rank-1 parent's best passage. Four pairs at most: ~0.1-0.3 s.

``confidence`` is a logistic regression over these, fitted on the labelled sets (positives: a set's
questions against its own store with the right parent in the top k; negatives: the same questions
against every other set's store and general-knowledge questions) with both classes weighted equally,
so 0.5 means "as likely as not" when answerable and unanswerable questions are equally common. The
fitted parameters live in ``confidence.json`` beside this module, written by the fit script. A
question in another language than the top sources (``pipeline/retrieve/language.py``) is not
answerable whatever the score (reason ``language``): the models here are English-only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.models import SourceRef
from pipeline.retrieve import language

logger = logging.getLogger(__name__)

MODEL_FILE = Path(__file__).with_name("confidence.json")
PASSAGE_WORDS = 110  # a lexical window of the parent: about a chunk-128 reference
TOP_PARENTS = 3
# Where the model without the cross-encoder is unsure, the one with it decides (Engine.assess, setting
# retrieval.confidence_cross_encoder=auto). Replayed on benchmarks/results/confidence/signals.jsonl,
# held out per set (benchmarks/replay_cascade.py): band (0.05, 0.95) gives
# pooled AUROC 0.9964, answered 0.972, refused 0.982 — the full model's rates — asking the
# cross-encoder for 11.2 % of the rows; never asking it: 0.9955 / 0.961 / 0.982.
CASCADE = (0.05, 0.95)


def unsure(confidence: float) -> bool:
    """Whether the cheap model's ``confidence`` is inside ``CASCADE`` (the cross-encoder then decides)."""
    return CASCADE[0] < confidence < CASCADE[1]

# Reasons a result is not answerable (``Answer.reason``).
LOW_CONFIDENCE = "low_confidence"
LANGUAGE = "language"
NO_SOURCES = "no_sources"

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d+(?:\.\d+)?")
_STOP = frozenset(
    "a an the of to in on for and or but is are was were be been being by with as at from that this these those it its "
    "what which who whom whose when where why how does do did can could should would will may might than then there their "
    "they them he she his her we our you your i me my not no so such into about over under also has have had many much "
    "describe explain discuss according mentioned author paper document text".split()
)


@dataclass(frozen=True)
class Signals:
    """The measured inputs of ``confidence``, reported with each result (``Answer.signals``)."""

    dense_top: float = 0.0
    dense_margin: float = 0.0
    bm25_top: float = 0.0
    coverage: float = 0.0
    ce_max: float = -12.0
    ce_top1: float = -12.0
    query_language: str | None = None
    documents_language: str | None = None

    def vector(self, names: Sequence[str]) -> list[float]:
        values = asdict(self)
        return [float(values[n]) for n in names]


def _terms(text: str) -> list[str]:
    """Content words, lower-cased and cut to 6 letters (a poor man's stemmer: "papers" ~ "paper")."""
    return [w.lower()[:6] for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1]


def coverage(query: str, texts: Sequence[str]) -> float:
    """The best share, over ``texts``, of the query's distinct content words that the text contains."""
    wanted = set(_terms(query))
    if not wanted or not texts:
        return 0.0
    return max(len(wanted & set(_terms(t))) / len(wanted) for t in texts)


def best_window(query: str, text: str, words: int = PASSAGE_WORDS) -> str:
    """The ``words``-word window of ``text`` (half-overlapping) holding most of the query's content words."""
    tokens = text.split()
    if len(tokens) <= words:
        return " ".join(tokens)
    wanted = set(_terms(query))
    best, best_hits = 0, -1
    for start in range(0, max(1, len(tokens) - words // 2), words // 2):
        hits = len(wanted & set(_terms(" ".join(tokens[start : start + words]))))
        if hits > best_hits:
            best, best_hits = start, hits
    return " ".join(tokens[best : best + words])


def _best_by_via(source: SourceRef, via: str) -> float | None:
    scores = [m.score for m in source.matched if m.via == via]
    if via == "bm25":  # a reference both searches found carries its BM25 score beside its cosine
        scores += [m.bm25_score for m in source.matched if m.bm25_score is not None]
    return max(scores) if scores else None


def cross_encoder_signals(
    query: str, sources: Sequence[SourceRef], scorer: Callable[[str, list[str]], list[float]], chunk_texts: dict[str, str] | None = None
) -> dict[str, float]:
    """``ce_max`` and ``ce_top1`` of a retrieval: the cross-encoder's logits for the best window of the
    first parent and the best chunk (or window) of each top parent. Apart from ``signals`` so a caller
    that already has the cheap signals adds these alone (``Engine.assess``)."""
    top = sources[:TOP_PARENTS]
    if not top:
        return {}
    passages: list[tuple[int, str]] = [(0, best_window(query, top[0].text))]
    for i, s in enumerate(top):
        text = (chunk_texts or {}).get(s.parent_id) or (best_window(query, s.text) if i else "")
        if text:
            passages.append((i, text))
    logits = scorer(query, [p for _, p in passages])
    return {"ce_max": round(float(max(logits)), 4), "ce_top1": round(float(max(l for (i, _), l in zip(passages, logits) if i == 0)), 4)}


def signals(
    query: str,
    sources: Sequence[SourceRef],
    scorer: Callable[[str, list[str]], list[float]] | None,
    chunk_texts: dict[str, str] | None = None,
) -> Signals:
    """Measure the signals of one retrieval.

    Args:
        query: the question.
        sources: the retrieved parents, best first.
        scorer: the cross-encoder's ``score`` (None: the cross-encoder signals stay at their floor).
        chunk_texts: parent id → text of its best-matching chunk reference, when the caller has it.
    """
    if not sources:
        return Signals(query_language=language.detect(query))
    top = sources[:TOP_PARENTS]
    dense = [_best_by_via(s, "dense") for s in top]
    dense_vals = [d for d in dense if d is not None]
    bm25 = [b for b in (_best_by_via(s, "bm25") for s in top) if b is not None]
    d1 = dense[0] if dense[0] is not None else 0.0
    d2 = dense[1] if len(dense) > 1 and dense[1] is not None else 0.0
    ce = cross_encoder_signals(query, top, scorer, chunk_texts) if scorer is not None else {}
    ce_max, ce_top1 = ce.get("ce_max", Signals.ce_max), ce.get("ce_top1", Signals.ce_top1)
    return Signals(
        dense_top=round(max(dense_vals, default=0.0), 6),
        dense_margin=round(d1 - d2, 6),
        bm25_top=round(math.log1p(max(bm25, default=0.0)), 6),
        coverage=round(coverage(query, [s.text for s in top]), 6),
        ce_max=round(float(ce_max), 4),
        ce_top1=round(float(ce_top1), 4),
        query_language=language.detect(query),
        documents_language=language.detect(" ".join(s.text[:1500] for s in top), min_words=5),
    )


@dataclass(frozen=True)
class LogisticModel:
    """``sigmoid(bias + Σ weight·(x − mean)/scale)`` over named signals (see benchmarks/fit_confidence.py)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def probability(self, s: Signals) -> float:
        z = self.bias + sum(w * (x - m) / (sd or 1.0) for w, x, m, sd in zip(self.weights, s.vector(self.features), self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "LogisticModel":
        return cls(tuple(data["features"]), tuple(data["mean"]), tuple(data["scale"]), tuple(data["weights"]), float(data["bias"]))


# Used only if confidence.json is missing (a broken install): a hand-set rule on the cross-encoder alone.
_FALLBACK = {"features": ["ce_max"], "mean": [0.0], "scale": [1.0], "weights": [0.8], "bias": 0.0}


@lru_cache(maxsize=4)
def load_models(path: Path = MODEL_FILE) -> dict[str, LogisticModel]:
    """``{"full": ..., "no_cross_encoder": ...}`` from the fitted file (the second when the reranker fails)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: LogisticModel.from_dict(data["models"][name]) for name in ("full", "no_cross_encoder")}
    except (OSError, KeyError, ValueError) as exc:
        logger.warning("confidence model %s unreadable (%s); using the cross-encoder logit alone", path, exc)
        model = LogisticModel.from_dict(_FALLBACK)
        return {"full": model, "no_cross_encoder": LogisticModel(("coverage",), (0.5,), (0.25,), (2.0,), 0.0)}


@dataclass(frozen=True)
class Judgement:
    """The verdict on one retrieval: ``answerable`` is ``confidence >= threshold`` unless the language differs."""

    confidence: float
    answerable: bool
    reason: str  # "" when answerable, else LOW_CONFIDENCE | LANGUAGE | NO_SOURCES
    signals: Signals


def judge(s: Signals, threshold: float, has_sources: bool, cross_encoder: bool = True) -> Judgement:
    """Turn signals into a confidence and a verdict (pure: the unit tests call it directly)."""
    if not has_sources:
        return Judgement(0.0, False, NO_SOURCES, s)
    model = load_models()["full" if cross_encoder else "no_cross_encoder"]
    conf = round(model.probability(s), 4)
    if s.query_language and s.documents_language and s.query_language != s.documents_language:
        return Judgement(conf, False, LANGUAGE, s)
    if conf < threshold:
        return Judgement(conf, False, LOW_CONFIDENCE, s)
    return Judgement(conf, True, "", s)


def explain(reason: str, s: Signals) -> str:
    """The sentence a person reads when a result is not answerable."""
    if reason == LANGUAGE:
        return (
            f"The question seems to be in {language.name(s.query_language)}, the documents in "
            f"{language.name(s.documents_language)}: ask in {language.name(s.documents_language)}."
        )
    if reason == NO_SOURCES:
        return "Nothing in the store matches this question."
    return "The indexed documents do not seem to answer this."
