"""Answer-side metrics of ``eval``: answerability (does ``confidence`` tell answerable from not?) and
answer containment (does the printed extract hold the labelled answer?).

Answerability. Positives are the dataset's questions against its own store whose right parent is in
the top k (only those can be answered); negatives are questions the store cannot answer: other
labelled sets' questions (``--negatives``) and the bundled general-knowledge questions
(``data/general_questions.txt``: capitals, cooking, sport...). Reported: AUROC of ``confidence``
(positives vs negatives), and at the threshold in force the share of positives answered and the
share of negatives refused. Questions of this set whose right parent was not retrieved count in
neither (the issue's definition: "answered where the right parent is in the top k").

Containment. Among the questions whose top-3 parents contain the labelled answer string
(normalised: lower case, punctuation and articles dropped, whitespace collapsed), the share whose
printed extract contains it. Only meaningful for short labelled answers (``mini_squadv2``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from pipeline.eval.datasets import EvalDataset
from pipeline.eval.matcher import RelevanceMatcher

GENERAL_QUESTIONS = Path(__file__).with_name("data") / "general_questions.txt"


def general_questions(path: Path = GENERAL_QUESTIONS) -> list[str]:
    """The bundled out-of-domain questions, one a line (# comments and blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def dataset_questions(path: Path, limit: int | None = None) -> list[str]:
    """The questions of a dataset folder or JSON (LabelledRagDataset ``examples[].query`` or EmbeddingQA
    ``queries``), first ``limit``; as negatives they need no reference contexts (mini_covidqa has none)."""
    import json

    from pipeline.errors import ConfigError

    file = path / "rag_dataset.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot read its questions ({exc})") from exc
    if isinstance(data, dict) and "examples" in data:
        questions = [(ex.get("query") or "").strip() for ex in data["examples"]]
    elif isinstance(data, dict) and "queries" in data:
        questions = [str(q).strip() for q in data["queries"].values()]
    else:
        raise ConfigError(f"{file}: no questions (expected 'examples' or 'queries')")
    return [q for q in questions if q][:limit]


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = 0.0
    neg = sorted(negatives)
    import bisect

    for p in positives:
        lo, hi = bisect.bisect_left(neg, p), bisect.bisect_right(neg, p)
        wins += lo + 0.5 * (hi - lo)
    return wins / (len(positives) * len(negatives))


def normalise_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().replace("\u2019", "'")
    text = "".join(ch if ch not in string.punctuation + "–—“”‘’" else " " for ch in text)
    text = re.sub(r"\b(?:a|an|the)\b", " ", text)
    return " ".join(text.split())


class Answerability(BaseModel):
    """What ``eval`` reports about ``confidence`` on one store."""

    threshold: float
    positives: int  # this set's questions with the right parent in the top k
    negatives: int  # other sets' and general questions
    missed: int  # this set's questions whose right parent was not retrieved (in neither group)
    auroc: float
    answered: float  # share of positives answerable
    refused: float  # share of negatives not answerable
    refused_language: int = 0  # negatives refused for their language

    def flat(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.model_dump().items()}


class Containment(BaseModel):
    """Answer containment of the printed extract (see the module docstring)."""

    eligible: int  # questions with a labelled answer found in the top-3 parents
    contained: int  # of those, extracts that hold it
    share: float

    def flat(self) -> dict[str, float]:
        return {"eligible": self.eligible, "contained": self.contained, "share": round(self.share, 4)}


def answerability(
    engine: object,
    dataset: EvalDataset,
    negatives: Sequence[str],
    k: int,
    threshold: float,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Answerability:
    """Ask the dataset's questions and the ``negatives`` of ``engine``'s store; see the module docstring."""
    pos: list[float] = []
    pos_ok: list[bool] = []
    neg: list[float] = []
    neg_refused: list[bool] = []
    by_language = 0
    missed = 0
    total = len(dataset.examples) + len(negatives)
    done = 0
    for ex in dataset.examples:
        result = engine.retrieve(ex.query, top_k=k, min_confidence=threshold)  # type: ignore[attr-defined]
        matcher = RelevanceMatcher(ex.reference_contexts)
        if any(matcher.matches(s.text) for s in result.sources):
            pos.append(result.confidence or 0.0)
            pos_ok.append(result.answerable)
        else:
            missed += 1
        done += 1
        progress(done, total)
    for question in negatives:
        result = engine.retrieve(question, top_k=k, min_confidence=threshold)  # type: ignore[attr-defined]
        neg.append(result.confidence or 0.0)
        neg_refused.append(not result.answerable)
        by_language += result.reason == "language"
        done += 1
        progress(done, total)
    return Answerability(
        threshold=threshold,
        positives=len(pos),
        negatives=len(neg),
        missed=missed,
        auroc=auroc(pos, neg),
        answered=sum(pos_ok) / len(pos_ok) if pos_ok else float("nan"),
        refused=sum(neg_refused) / len(neg_refused) if neg_refused else float("nan"),
        refused_language=by_language,
    )


def containment(
    engine: object, dataset: EvalDataset, progress: Callable[[int, int], None] = lambda done, total: None
) -> Containment:
    """Extractive answers (as ``query`` prints them) checked for the labelled answer; see the module docstring."""
    eligible = contained = 0
    examples = [ex for ex in dataset.examples if ex.reference_answer]
    for i, ex in enumerate(examples, 1):
        gold = normalise_answer(ex.reference_answer)
        result = engine.retrieve(ex.query, top_k=3, judge=False)  # type: ignore[attr-defined]
        if gold and gold in normalise_answer(" ".join(s.text for s in result.sources)):
            eligible += 1
            answered = engine.answer_extract(result)  # type: ignore[attr-defined]
            contained += gold in normalise_answer(answered.answer or "")
        progress(i, len(examples))
    return Containment(eligible=eligible, contained=contained, share=contained / eligible if eligible else float("nan"))
