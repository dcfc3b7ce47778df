"""Check a generated answer against its sources, sentence by sentence; replace what they do not support.

Why: a small model writes fluent claims its sources do not make ("S2ORC contains 28.9M papers" from a
paper that says 81.1M, with citations that say neither). An application cannot tell such a sentence
from a true one, so each sentence of an LLM answer must be supported by a source sentence:

- **numbers**: every number in the answer sentence appears in the supporting source sentence or its
  neighbours (same source). Numbers are compared normalised ("81,100" = "81100", "1.5" = "1.5").
  A number is the claim most often invented and the easiest to check exactly.
- **names**: acronyms and coded names ("GROBID", "KCL-19") in the answer appear in the sources.
- **words**: the supporting sentence (with neighbours) holds at least ``MIN_OVERLAP`` of the answer
  sentence's content words that are not in the question, and the cross-encoder scores the pair at
  least ``MIN_LOGIT`` (both: sharing topical words, or being relevant, is not support).

An answer with an unsupported sentence, or one that says the sources do not answer (a refusal), is
replaced by the extract; ``GroundingResult.reason`` says why, in words a reader understands.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.models import SourceRef
from pipeline.retrieve.sentences import split_clean

# Measured with benchmarks/eval_grounding.py (labelled answers, no LLM; docs/quality.md). A first rule
# (40 % of all content words OR a logit >= 2) let SmolLM2's "S2ORC is a tool for evaluating citation-based
# recommendations" through: topical words and relevance are not support. Now both are required, over the
# words the question does not already hold: wrong-source answers and changed numbers are all replaced,
# and 21 % of the sets' own (paraphrased, GPT-written) reference answers are kept. Strict on purpose: a
# replaced answer is the extract, which only quotes the sources.
MIN_OVERLAP = 0.4
MIN_LOGIT = 0.0

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_IDENTIFIER = re.compile(r"\b(?:[A-Z]{2,}[\w-]*|[A-Za-z]+-\d[\w-]*)")  # "GROBID", "KCL-19": names to find verbatim
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
_STOP = frozenset(
    "a an the of to in on for and or but is are was were be been being by with as at from that this these those it its "
    "which who whom whose when where why how does do did can could should would will may might than then there their "
    "they them he she his her we our you your i not no so such into about over under also has have had more most other "
    "some any each both all one context passage answer according text document documents paper".split()
)
_REFUSAL = re.compile(
    r"\b(?:(?:does|do) not (?:contain|provide|mention|say|include|specify)|(?:is|are) not (?:mentioned|provided|specified|stated)"
    r"|no (?:information|mention)|cannot (?:be )?(?:answer|determine|found)|not enough information|unable to (?:answer|determine))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Replaced:
    """A stream item: the LLM text already streamed is replaced by ``answer`` (the extract), because ``reason``."""

    reason: str
    answer: str


@dataclass(frozen=True)
class GroundingResult:
    """``ok``: every sentence supported. Else ``reason`` names the first failing sentence and the rule."""

    ok: bool
    reason: str = ""


def numbers(text: str) -> set[str]:
    """The numbers written in ``text``, normalised (thousands separators dropped, trailing ".0" kept as written)."""
    return {m.group().replace(",", "").rstrip(".") for m in _NUMBER.finditer(text)}


def content_words(text: str) -> set[str]:
    return {w.lower()[:6] for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 2}


def answer_sentences(text: str) -> list[str]:
    """The claims of a generated answer: its sentences without citation markers ("[1]", "[2, p. 3]"),
    those with a number or at least two content words. Split at . ! ? only: an answer is not a PDF,
    and a short one ("81.1M papers") is still a claim to check."""
    text = re.sub(r"\s*\[\d+(?:,[^\]]*)?\]", "", text)
    pieces = [p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])", " ".join(text.split())) if p.strip()]
    return [p for p in pieces if len(content_words(p)) >= 2 or numbers(p)]


def _windows(sources: Sequence[SourceRef]) -> list[str]:
    """Each source sentence joined with its neighbours: the text a claim may draw on."""
    out = []
    for src in sources:
        sents = [s for _, s in split_clean(src.text)]
        for i in range(len(sents)):
            out.append(" ".join(sents[max(0, i - 1) : i + 2]))
    return out


def check(
    answer: str, sources: Sequence[SourceRef], scorer: Callable[[str, list[str]], list[float]] | None = None, query: str = ""
) -> GroundingResult:
    """Whether every sentence of ``answer`` is supported by the ``sources`` (see the module docstring)."""
    if not answer or not answer.strip():
        return GroundingResult(False, "the LLM gave no answer")
    if _REFUSAL.search(answer):
        return GroundingResult(False, "the LLM said the sources do not answer this")
    windows = _windows(sources)
    if not windows:
        return GroundingResult(False, "no source text to check the answer against")
    source_text = " ".join(w.lower() for w in windows)
    win_words = [content_words(w) for w in windows]
    win_numbers = [numbers(w) for w in windows]
    claims = answer_sentences(answer)
    if not claims:
        return GroundingResult(False, "the LLM answer states nothing the sources could support")
    for sentence in claims:
        words, nums = content_words(sentence) - content_words(query), numbers(sentence)
        unknown = [n for n in _IDENTIFIER.findall(sentence) if n.lower() not in source_text and n.lower() not in query.lower()]
        if unknown:  # an invented name ("KCL-19") is as wrong as an invented number
            return GroundingResult(False, f"the name {unknown[0]} in \"{_short(sentence)}\" is not in the cited sources")
        # Only windows holding every number of the sentence can support it.
        fits = [i for i in range(len(windows)) if nums <= win_numbers[i]]
        if not fits:
            missing = sorted(nums - set().union(*win_numbers)) or sorted(nums)
            return GroundingResult(False, f"the number {missing[0]} in \"{_short(sentence)}\" is not in the cited sources")
        overlap = {i: len(words & win_words[i]) / len(words) if words else 1.0 for i in fits}
        best = max(fits, key=lambda i: overlap[i])
        if overlap[best] >= MIN_OVERLAP and (scorer is None or max(scorer(sentence, [windows[best]])) >= MIN_LOGIT):
            continue
        return GroundingResult(False, f"no source sentence supports \"{_short(sentence)}\"")
    return GroundingResult(True)


def _short(sentence: str, limit: int = 80) -> str:
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"
