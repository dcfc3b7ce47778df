"""Extractive answer: the few sentences of the retrieved parents that best answer the query, each cited.

Why: a 135M-parameter model writes fluent nonsense ("SciBERT differs ... in that it is a pre-trained
model on a S2ORC-based corpus, not a pre-trained model on a S2ORC-based corpus"), while the retrieved
parents are right. Quoting their best sentences is never wrong about what the documents say, costs
no generation, and each sentence carries its document and page.

Flow: split the top parents into sentences (with character offsets, so each maps to its page) →
drop sentences that cannot answer (too short, mostly digits or symbols, a restatement of the
question) → a cheap lexical pass keeps the best candidates → a scorer ranks them (the cross-encoder
of ``pipeline/retrieve/rerank.py`` by default, lexical overlap when it is unavailable) → the best few,
close enough to the best one, in score order.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.models import Citation, SourceRef
from pipeline.retrieve.sentences import split_clean, split_sections

if TYPE_CHECKING:  # the engine imports this module
    from pipeline.config import Settings
    from pipeline.models import Answer
    from pipeline.retrieve.engine import Engine

logger = logging.getLogger(__name__)

# Scores (query, passages) → one float per passage, higher = more relevant (the reranker's contract).
Scorer = Callable[[str, list[str]], list[float]]

_QUANTITY = re.compile(r"(?:how (?:many|much|large|big|long|old|tall|far|often)|what (?:number|percentage|percent|share|fraction|size|amount|proportion))\b", re.IGNORECASE)
_WHEN = re.compile(r"(?:when\b|(?:what|which|in what) (?:year|decade|century|date)\b)", re.IGNORECASE)
_WHO = re.compile(r"(?:who\b|whom\b|(?:what|which) (?:person|people|company|city|country|team|group|organization|man|woman)\b)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![A-Za-z\d])\d[\d,.]*")  # not the 2 of "S2ORC"
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)s?\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d+(?:\.\d+)?")
STOPWORDS = frozenset(
    "a an the of to in on for and or but is are was were be been being by with as at from that this these those it its "
    "what which who whom whose when where why how does do did can could should would will may might than then there their "
    "they them he she his her we our you your i me my not no so such into about over under between also has have had "
    "more most other some any each both all one two".split()
)
# Score (and pre-select) each sentence under its section heading ("The S2ORC dataset: The resulting corpus
# consists of 81.1M papers" answers "How many papers are in S2ORC?"; alone it scores 0.6, with it 8.9).
# mini_squadv2 containment unchanged at 0.853 (its wiki titles are not used as headings, sentences.py).
HEADINGS = True
CONTEXT_WINDOWS = True
WANTS_BONUS = 3.0  # logits added to a sentence holding the kind of thing asked (a number, a year, a name)  # score anaphoric sentences with the sentence before them (docs/quality.md, containment)
_ANAPHOR = re.compile(r"(?:It|Its|This|These|That|Those|They|Their|He|She|His|Her|Such|The latter|The former)\b")
NO_SENTENCE = "No sentence of the retrieved passages answers this; see the sources below."
LEXICAL_CANDIDATES = 32  # sentences passed on to the scorer (the cross-encoder costs ~10 ms per pair)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a retrieved parent, with where it came from."""

    text: str
    source: int  # 0-based index into the sources
    start: int  # character offset in the parent text
    order: int  # position among all candidate sentences (ties keep document order)
    heading: str = ""  # the section it stands under: read with it by the scorer, not shown
    end: int = -1  # character offset after it in the parent text (its span covers what cleaning removed)

    @property
    def span(self) -> int:
        return self.end - self.start if self.end > self.start else len(self.text)

    @property
    def scored(self) -> str:
        """What the scorer reads: the heading, then the sentence ("The S2ORC dataset: The resulting corpus ...")."""
        return f"{self.heading}: {self.text}" if self.heading else self.text


# Sentences come cleaned from pipeline/retrieve/sentences.py (the old name, kept for callers).
split_sentences = split_clean


def terms(text: str) -> list[str]:
    """Lower-cased content words (stopwords dropped), for overlap and highlighting."""
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 1]


def repeats_question(sentence: str, query: str) -> bool:
    """True when ``sentence`` says little more than the question itself (never an answer)."""
    s, q = terms(sentence), set(terms(query))
    if not s:
        return True
    new = [w for w in s if w not in q]
    return len(new) < max(3, len(s) // 3) and len(set(s) & q) >= max(1, len(q) - 1)


def answerable(sentence: str) -> bool:
    """Sentences worth quoting: real words, not a table row, a reference entry or a page header."""
    words = sentence.split()
    if len(words) < 6 or len(words) > 90:
        return False
    if len(words) < 12 and not sentence.rstrip("\"')]").endswith((".", "!", "?", ":")):  # a title or heading
        return False
    letters = sum(c.isalpha() for c in sentence)
    if letters < 0.6 * len(sentence):
        return False
    return not re.search(r"\b(?:doi|arXiv|https?://|Proceedings of|Association for Computational Linguistics|pages \d+)|©|@", sentence)


def wants(query: str, sentence: str) -> float:
    """1.0 when the question asks for a kind of thing (a quantity, a date, a name) that the sentence
    states and the question does not already hold, else 0.0: "how many clusters were filtered" must
    prefer the sentence with the count over one that merely shares its words."""
    q = query.strip()
    if _QUANTITY.search(q):
        numbers = set(_NUMBER.findall(sentence)) - set(_NUMBER.findall(q))
        return 1.0 if numbers else 0.0
    if _WHEN.match(q):
        return 1.0 if set(_YEAR.findall(sentence)) - set(_YEAR.findall(q)) else 0.0
    if _WHO.match(q):
        asked = {w.lower() for w in re.findall(r"[A-Za-z]+", q)}
        names = {n for n in _NAME.findall(sentence) if not {w.lower() for w in n.split()} <= asked}
        return 1.0 if names else 0.0
    return 0.0


def lexical_scores(query: str, sentences: Sequence[str]) -> list[float]:
    """IDF-weighted share of the query's content words in each sentence (the fallback scorer)."""
    q = set(terms(query))
    docs = [set(terms(s)) for s in sentences]
    df = Counter(w for d in docs for w in d & q)
    n = len(docs) or 1
    out = []
    for d in docs:
        hit = sum(math.log(1 + n / df[w]) for w in d & q)
        out.append(hit / math.sqrt(len(d) + 4))
    return out


def page_of(source: SourceRef, parent_start: int | None, offsets: list[int] | None, start: int, length: int) -> list[int]:
    """The page(s) a sentence is on: exact from the document's page offsets, else estimated within the parent."""
    if offsets and parent_start is not None:
        first = bisect.bisect_right(offsets, parent_start + start)
        last = bisect.bisect_right(offsets, parent_start + start + max(0, length - 1))
        return list(range(first, last + 1))
    if not source.pages:
        return []
    share = start / max(1, len(source.text))
    return [source.pages[min(len(source.pages) - 1, int(share * len(source.pages)))]]


class ExtractiveAnswerer:
    """Pick and cite the best sentences of the retrieved parents.

    Example:
        answerer = ExtractiveAnswerer(scorer=CrossEncoderReranker().score, sentences=3)
        text, citations = answerer.answer("What is S2ORC?", sources, locate)
    """

    def __init__(self, scorer: Scorer | None = None, sentences: int = 3, max_sources: int = 3, margin: float = 4.0) -> None:
        """``margin``: with the cross-encoder, sentences scoring more than this below the best are left out."""
        self.scorer = scorer
        self.sentences = sentences
        self.max_sources = max_sources
        self.margin = margin

    def candidates(self, query: str, sources: Sequence[SourceRef]) -> list[Sentence]:
        out: list[Sentence] = []
        seen: set[str] = set()
        for i, src in enumerate(sources[: self.max_sources]):
            for start, text, heading, end in split_sections(src.text):  # cleaned: no ligatures, headings, footnotes, page debris
                key = re.sub(r"\W+", " ", text.lower()).strip()
                if key in seen:  # neighbouring parents overlap: quote a sentence once, from the better source
                    continue
                if answerable(text) and not repeats_question(text, query):
                    seen.add(key)
                    out.append(Sentence(text, i, start, len(out), heading, end))
        return out

    def _with_context(self, query: str, pool: list[Sentence], cands: list[Sentence], own: list[float]) -> tuple[list[float], set[int]]:
        """Re-score the sentences that lean on the one before them ("It", "This", "He" ...) with it in front.

        Alone, "It is considered a conservative and traditional troupe" does not match "What type of troupe
        is Jiangsu Province Kun Opera?"; with the sentence naming the opera before it, it does. Returns the
        scores (the better of alone and with context) and the pool indices whose context won.
        """
        idx = [i for i, c in enumerate(pool) if _ANAPHOR.match(c.text) and c.order > 0 and cands[c.order - 1].source == c.source]
        if not idx:
            return own, set()
        assert self.scorer is not None
        ctx = self.scorer(query, [f"{cands[pool[i].order - 1].text} {pool[i].text}" for i in idx])
        scores, joined = list(own), set()
        for i, value in zip(idx, ctx):
            if value > own[i]:
                scores[i], _ = float(value), joined.add(i)
        return scores, joined

    def answer(
        self,
        query: str,
        sources: Sequence[SourceRef],
        locate: Callable[[SourceRef], tuple[int | None, list[int] | None]] = lambda s: (None, None),
    ) -> tuple[str, list[Citation]]:
        """The answer text (sentences with ``[n, p. x]`` markers) and one citation per sentence.

        ``locate(source)`` gives the parent's start offset in its document and the document's page
        offsets, when the store has them; otherwise pages are estimated within the parent.
        """
        cands = self.candidates(query, sources)
        if not cands:
            return "", []
        lexical = lexical_scores(query, [c.scored if HEADINGS else c.text for c in cands])
        # Keep the lexically best, but always a few from the top source (it may paraphrase the query).
        ranked = sorted(range(len(cands)), key=lambda i: (-lexical[i], cands[i].order))
        keep = set(ranked[:LEXICAL_CANDIDATES]) | {i for i in range(len(cands)) if cands[i].source == 0 and i < 8}
        pool = [cands[i] for i in sorted(keep)]
        scores = [lexical[i] for i in sorted(keep)]
        margin = None
        joined: set[int] = set()  # pool indices best read with the sentence before them
        if self.scorer is not None:
            try:
                scores = [float(s) for s in self.scorer(query, [c.scored if HEADINGS else c.text for c in pool])]
                margin = self.margin
                if CONTEXT_WINDOWS:
                    scores, joined = self._with_context(query, pool, cands, scores)
            except Exception as exc:  # the reranker's weights are missing or broken: fall back, say so
                logger.warning("sentence scorer failed (%s: %s); using query-term overlap", type(exc).__name__, exc)
        # A little preference for the better-ranked source breaks near-ties the retriever already decided;
        # a question asking for a quantity, a date or a name prefers the sentences that state one.
        unit = 1.0 if margin is not None else 0.1
        adjusted = [s - 0.05 * c.source * unit + WANTS_BONUS * unit * wants(query, c.text) for s, c in zip(scores, pool)]
        order = sorted(range(len(pool)), key=lambda i: (-adjusted[i], pool[i].order))
        best = adjusted[order[0]]
        chosen = [i for i in order[: self.sentences] if margin is None or adjusted[i] >= best - margin]
        if margin is None:  # lexical: a sentence sharing no query word is no answer
            chosen = [i for i in chosen if adjusted[i] > 0] or order[:1]
        citations: list[Citation] = []
        parts: list[str] = []
        located: dict[int, tuple[int | None, list[int] | None]] = {}
        used: set[int] = set()
        chosen.sort(key=lambda i: (pool[i].source, pool[i].start))  # read in document order, source by source
        for i in chosen:
            c = pool[i]
            if c.order in used:
                continue
            used.add(c.order)
            text, length = c.text, c.span
            prev = cands[c.order - 1] if c.order > 0 else None
            if i in joined and prev is not None and prev.order not in used:
                # "It is considered a conservative troupe": quoted with the sentence that says what "it" is.
                text, length, c = f"{prev.text} {text}", c.start + c.span - prev.start, Sentence(c.text, c.source, prev.start, c.order)
                used.add(prev.order)
            nxt = cands[c.order + 1] if c.order + 1 < len(cands) else None
            if text.endswith(":") and nxt is not None and nxt.source == c.source:
                # "key differences ... are:" says nothing alone; the first item of its list is the answer.
                text, length = f"{text} {nxt.text}", nxt.start + nxt.span - c.start
                used.add(nxt.order)
            src = sources[c.source]
            if c.source not in located:
                located[c.source] = locate(src)
            parent_start, offsets = located[c.source]
            pages = page_of(src, parent_start, offsets, c.start, length)
            citations.append(Citation(text=text, doc_id=src.doc_id, pages=pages, parent_id=src.parent_id, source=c.source + 1, score=round(scores[i], 4),
                                      score_kind="term_overlap" if margin is None else "cross_encoder_logit"))
            where = f"p. {pages[0]}" if len(pages) == 1 else (f"pp. {pages[0]}-{pages[-1]}" if pages else "")
            parts.append(f"{text} [{c.source + 1}{', ' + where if where else ''}]")
        return " ".join(parts), citations


# --- the engine's hook: how ``query`` answers, and the Answer it returns --------------------------

def answer_mode_for(settings: "Settings", requested: str | None = None) -> str:
    """``extractive``, ``llm`` or ``none``: the request's choice, else ``answer.mode``; ``auto`` means
    ``llm`` only when a capable generator is configured (see ``llm_is_capable``)."""
    from pipeline.config import AnswerMode
    from pipeline.errors import InvalidQuery
    from pipeline.providers.llm import llm_is_capable

    try:
        mode = AnswerMode(requested or settings.answer.mode)
    except ValueError as exc:
        raise InvalidQuery(f"unknown answer mode {requested!r}: use auto, extractive, llm or none") from exc
    if mode is AnswerMode.AUTO:
        return AnswerMode.LLM.value if llm_is_capable(settings) else AnswerMode.EXTRACTIVE.value
    return mode.value


def _answerer(engine: "Engine") -> tuple[ExtractiveAnswerer, Callable[[SourceRef], tuple[int | None, list[int] | None]]]:
    def scorer(query: str, passages: list[str]) -> list[float]:
        return engine.reranker.score(query, passages)

    from pipeline.retrieve.read import node_data, parent_rows

    parents = engine.store.parents

    def locate(source: SourceRef) -> tuple[int | None, list[int] | None]:
        row = parent_rows(parents, [source.parent_id]).get(source.parent_id)  # the stored JSON: no LlamaIndex node
        return (node_data(row).get("start_char_idx") if row else None), parents.page_offsets(source.doc_id)

    return ExtractiveAnswerer(scorer=scorer, sentences=engine.settings.answer.sentences), locate


def answer_from_sources(engine: "Engine", result: "Answer", how: str) -> "Answer":
    """Fill ``result`` (a retrieval) with an extractive answer, or leave it as sources only (``none``)."""
    import time

    result.answer_mode = how
    if how != "extractive":
        return result
    started = time.perf_counter()
    answerer, locate = _answerer(engine)
    text, citations = answerer.answer(result.query, result.sources, locate)
    result.answer = text or NO_SENTENCE
    result.citations = citations
    result.stats.answer_ms = round((time.perf_counter() - started) * 1000, 2)
    return result


def cite_llm_answer(engine: "Engine", result: "Answer") -> "Answer":
    """An LLM answer gets the same citations and is checked against its sources (``grounding.check``);
    one that restates the question, refuses, or makes a claim no source sentence supports is replaced
    by the extract, with ``result.replaced`` saying why."""
    from pipeline.retrieve.grounding import check

    result.answer_mode = "llm"
    answerer, locate = _answerer(engine)
    text, citations = answerer.answer(result.query, result.sources, locate)
    result.citations = citations
    if not result.answer or repeats_question(result.answer, result.query):
        reason = "the LLM answer only restated the question"
    else:
        verdict = check(result.answer, result.sources, engine.reranker.score, result.query)
        reason = "" if verdict.ok else verdict.reason
    if reason:
        logger.warning("LLM answer replaced by the extract: %s", reason)
        result.answer = text or NO_SENTENCE
        result.answer_mode = "extractive"
        result.replaced = reason
    return result
