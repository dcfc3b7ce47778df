"""Second ingest phase: summary and question references for parents that are already searchable.

``ingest`` first commits each document's parents, chunk and self references (searchable within
seconds); this phase then asks the LLM, one parent at a time, for a summary and five questions and
adds them as references. Each parent is finished (refs upserted, ledger updated) before the next is
started, so the phase is resumable: an interrupted run (Ctrl-C, SIGKILL) loses at most the parent in
flight, whose LLM output is in the ingest cache already, and never a searchable document.

Own prompts rather than LlamaIndex's extractors: their long prompts make 135M–1.5B models loop, and
their output lands in the metadata of every node (and so in every embedding). Here the summary and
each question are nodes of their own that embed only their text. Both prompts open with the same
``Passage:`` block so llama.cpp reuses the processed passage for the second call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.llms import LLM, ChatMessage
from llama_index.core.schema import BaseNode, IndexNode, TransformComponent
from pydantic import PrivateAttr
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.errors import EnrichError
from pipeline.ingest.embed import ReferenceEmbedder
from pipeline.ingest.fingerprint import fingerprint
from pipeline.ingest.reference import is_parent, make_ref
from pipeline.ingest.write import DocumentWriter
from pipeline.models import RefKind
from pipeline.providers.llm import llm_calls
from pipeline.store import layout
from pipeline.store.layout import KIND_TO_COLLECTION, Collection
from pipeline.store.ledger import ENRICH_COLLECTIONS, ENRICH_KINDS, Change, LedgerEntry, Op, checkpoint

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.ingest.fleet import Leases

logger = logging.getLogger(__name__)

SUMMARY_PROMPT = "Passage:\n{context_str}\n\nWrite a summary of the passage in 2 to 4 sentences."
QUESTIONS_PROMPT = (
    "Passage:\n{context_str}\n\nWrite {num_questions} different questions that the passage answers, "
    "as a numbered list from 1 to {num_questions}, one question per line. Each question must name a "
    "specific term, number or method from the passage."
)
# Sent once more when the first answer held fewer questions than asked (135M models stop early).
QUESTIONS_RETRY_PROMPT = (
    "Passage:\n{context_str}\n\nList {num_questions} more questions about other facts in the passage, "
    "numbered 1 to {num_questions}, one per line. Do not repeat these: {previous}"
)

_MARKER = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,2}\s*[.):\]-]|Q\d*\s*[.:)-]|Question\s*\d*\s*[.:)-])\s*", re.IGNORECASE)
_INLINE_NUMBER = re.compile(r"(?:(?<=\s)|^)\(?\d{1,2}[.)]\s+")
_QUESTION_WORD = re.compile(r"^(what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|should|would|will|in what|on what|according)\b", re.IGNORECASE)


def parse_questions(text: str, limit: int) -> list[str]:
    """LLM output → at most ``limit`` distinct questions, numbering stripped.

    Accepts a numbered or bulleted list, several numbered questions on one line, and questions whose
    question mark the model forgot (when they start with a question word). Lines that are neither
    (preambles such as "Here are 5 questions:") are dropped.
    """
    candidates: list[str] = []
    for line in text.splitlines():
        parts = [p for p in _INLINE_NUMBER.split(line) if p.strip()] if len(_INLINE_NUMBER.findall(line)) > 1 else [line]
        candidates.extend(parts)
    seen: list[str] = []
    for raw in candidates:
        q = raw
        while (stripped := _MARKER.sub("", q).strip().strip('"*').strip()) != q:  # "- 5. What ..."
            q = stripped
        if not q.endswith("?"):
            if "?" in q:  # "What is X? (answer: ...)"
                q = q[: q.index("?") + 1]
            elif _QUESTION_WORD.match(q) and not q.endswith(":"):
                q = q.rstrip(".") + "?"
            else:
                continue
        if len(q) < 8 or len(q.split()) < 3:
            continue
        if q.lower() not in (s.lower() for s in seen):
            seen.append(q)
        if len(seen) == limit:
            break
    return seen


class ParentEnricher(TransformComponent):
    """Ask the LLM for one summary and ``num_questions`` questions per parent; add them as references.

    Two calls per parent: the summary, then all questions as one numbered list; when the list is
    short, one more call asks for the missing ones. ``llm_name`` and the prompts are public fields
    so the ingest cache key changes when they do.

    Example:
        nodes = ParentEnricher(llm_name="smollm2", num_questions=5).with_llm(llm)(parents)
    """

    llm_name: str
    num_questions: int = 5
    summary_prompt: str = SUMMARY_PROMPT
    questions_prompt: str = QUESTIONS_PROMPT
    questions_retry_prompt: str = QUESTIONS_RETRY_PROMPT
    max_attempts: int = 3

    _llm: LLM | None = PrivateAttr(default=None)

    def with_llm(self, llm: LLM) -> "ParentEnricher":
        self._llm = llm
        return self

    def _ask(self, prompt: str) -> str:
        assert self._llm is not None, "ParentEnricher needs with_llm(llm) before use"

        @retry(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=1, max=20),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        def call() -> str:
            return self._llm.chat([ChatMessage(role="user", content=prompt)]).message.content or ""

        try:
            return call().strip()
        except Exception as exc:
            raise EnrichError(f"LLM failed after {self.max_attempts} attempts: {type(exc).__name__}: {exc}") from exc

    def questions_for(self, text: str) -> list[str]:
        """``num_questions`` questions in one call, plus one retry for the missing ones if needed."""
        n = self.num_questions
        questions = parse_questions(self._ask(self.questions_prompt.format(context_str=text, num_questions=n)), n)
        if len(questions) < n:
            missing = n - len(questions)
            previous = " ".join(questions) or "(none)"
            more = parse_questions(self._ask(self.questions_retry_prompt.format(context_str=text, num_questions=missing, previous=previous)), n)
            questions += [q for q in more if q.lower() not in {x.lower() for x in questions}][:missing]
        return questions

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = list(nodes)
        for parent in nodes:
            if not is_parent(parent):
                continue
            text = parent.get_content()
            summary = self._ask(self.summary_prompt.format(context_str=text))
            if summary:
                out.append(make_ref(parent, RefKind.SUMMARY, 0, summary))
            questions = self.questions_for(text)
            if len(questions) < self.num_questions:
                logger.info("%s: LLM wrote %d of %d questions", parent.metadata.get(layout.READABLE_ID, parent.node_id), len(questions), self.num_questions)
            for i, q in enumerate(questions):
                out.append(make_ref(parent, RefKind.QUESTION, i, q))
        return out


# Called with (event, detail): "enrich" after each parent with {"done", "total", "path"}.
ProgressFn = Callable[[str, dict], None]


@dataclass
class EnrichStats:
    """What one enrichment pass did; ``parents_skipped`` were finished by an earlier pass (or, in
    fleet mode, by another worker during this one)."""

    parents_enriched: int = 0
    parents_skipped: int = 0
    parents_total: int = 0
    questions: int = 0
    summaries: int = 0
    llm_calls: int = 0
    failed: int = 0


def enriched_count(entries: Iterable[LedgerEntry]) -> int:
    """Parents with summary/question references, over ledger entries (for ``status``)."""
    return sum(len(e.enriched) for e in entries)


class EnrichmentPhase:
    """Adds summary and question references to the searchable parents of a store, parent by parent.

    Per parent: LLM + embedding through an ``IngestionPipeline`` with the persistent cache (so a
    parent interrupted after its LLM calls costs no call the next time), then one ``Change`` of the
    document through the ledger protocol (``store/ledger.py``): intent, upserts, the parent's older
    summary/question references deleted, flush, the entry with ``enriched[parent_id]``.
    A parent whose ``enriched`` fingerprint matches is skipped without touching the LLM or the cache.

    Fleet mode (``settings`` with ``database.url``): several ``pipeline enrich`` processes share the
    work per parent. Each parent is claimed with a lease (ingest/fleet.py, as ``ingest`` claims
    documents); its commit is fenced by the claim's token and serialised per document, since every
    parent's commit rewrites its document's one ledger entry. Still the one write protocol.

    Example:
        phase = EnrichmentPhase(llm, embedder, dim, cache, writer, num_questions=5)
        stats = phase.run(parents.ledger())
    """

    def __init__(
        self,
        llm: LLM,
        embedder: BaseEmbedding,
        dim: int,
        cache: IngestionCache,
        writer: DocumentWriter,
        num_questions: int = 5,
        progress: ProgressFn | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.llm = llm
        self.settings = settings if settings is not None and settings.database.url is not None else None
        self.leases: Leases | None = None
        self.writer = writer
        self.parents = writer.parents
        self.progress = progress or (lambda event, detail: None)
        enricher = ParentEnricher(llm_name=llm.metadata.model_name, num_questions=num_questions).with_llm(llm)
        embed = ReferenceEmbedder(model_name=embedder.model_name, dim=dim).with_model(embedder)
        self.transforms: list[TransformComponent] = [enricher, embed]
        self.pipe = IngestionPipeline(transformations=self.transforms, cache=cache)
        self.fingerprint = fingerprint(self.transforms)

    def todo(self, doc_ids: Iterable[str]) -> tuple[list[tuple[str, str]], int]:
        """(doc_id, parent_id) pairs still to enrich, in document order, and how many are done already.

        Documents whose first phase is unfinished (a crashed ``ingest``) are left to the next ``ingest``.
        """
        todo: list[tuple[str, str]] = []
        done = 0
        for doc_id in doc_ids:
            entry = self.parents.ledger_entry(doc_id)
            if entry is None or entry.interrupted_write:
                continue
            finished = entry.enriched_with(self.fingerprint)
            for pid in entry.parents:
                if pid in finished:
                    done += 1
                else:
                    todo.append((doc_id, pid))
        return todo, done

    def run(self, doc_ids: Iterable[str]) -> EnrichStats:
        """Enrich every parent of ``doc_ids`` not enriched with this LLM and prompt yet."""
        calls_before = llm_calls(self.llm)
        todo, done = self.todo(list(doc_ids))
        stats = EnrichStats(parents_skipped=done, parents_total=done + len(todo))
        tried = 0
        for doc_id, pid in self._mine(todo):
            tried += 1
            try:
                summaries, questions = self._enrich_parent(doc_id, pid)
            except EnrichError as exc:
                # The parent stays searchable through its chunks; the next pass tries it again.
                logger.warning("enrichment of %s in %s failed: %s", pid, doc_id, exc)
                stats.failed += 1
                continue
            finally:
                self.progress("enrich", {"path": doc_id, "done": done + tried, "total": stats.parents_total})
            stats.parents_enriched += 1
            stats.summaries += summaries
            stats.questions += questions
            checkpoint("after-enrich-parent")
        stats.parents_skipped += len(todo) - tried  # fleet: finished by other workers
        stats.llm_calls = llm_calls(self.llm) - calls_before
        return stats

    def _mine(self, todo: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """The (doc_id, parent_id) pairs of ``todo`` this process enriches: all of them, or in fleet
        mode those it claims (the others are other workers'). A parent another worker finished after
        this run listed it (its claim expired and came back) is passed over without an LLM call."""
        if self.settings is None:
            yield from todo
            return
        from pipeline.ingest.fleet import Leases, claimed_ids

        doc_of = {pid: doc_id for doc_id, pid in todo}
        self.leases = Leases(self.settings, "enrich")
        try:
            for pid in claimed_ids(self.leases, list(doc_of), ledger_key=doc_of.__getitem__):
                entry = self.parents.ledger_entry(doc_of[pid])
                if entry is not None and pid in entry.enriched_with(self.fingerprint):
                    continue
                yield doc_of[pid], pid
        finally:
            self.leases = None

    def _enrich_parent(self, doc_id: str, pid: str) -> tuple[int, int]:
        """LLM + embedding (cached), then one ``Change`` of the document through the ledger protocol:
        the parent's new summary/question references replace its older ones (and whatever a run
        killed on this document left pending)."""
        parent = self.parents.get(pid)
        if parent is None:  # replaced by a newer ingest since the list was made
            return 0, 0
        nodes = self.pipe.run(nodes=[parent])
        refs = [n for n in nodes if isinstance(n, IndexNode) and n.embedding is not None and n.metadata.get(layout.KIND) in {k.value for k in ENRICH_KINDS}]
        new_ids: dict[str, list[str]] = {c.value: [] for c in ENRICH_COLLECTIONS}
        for ref in refs:
            new_ids[KIND_TO_COLLECTION[RefKind(ref.metadata[layout.KIND])].value].append(ref.node_id)
        with self.leases.document_lock(doc_id) if self.leases is not None else nullcontext():
            entry = self.parents.ledger_entry(doc_id)  # read under the lock: another parent's commit may have changed it
            if entry is None or entry.interrupted_write or pid not in entry.parents:
                return 0, 0
            final = entry.committed().with_enrichment(pid, self.fingerprint, new_ids)
            self.writer.apply(doc_id, Change(Op.ENRICH, final, refs=refs, enrich=pid))
        return len(new_ids[Collection.SUMMARIES.value]), len(new_ids[Collection.QUESTIONS.value])
