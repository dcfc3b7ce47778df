"""What ``ingest`` shows while it runs and after: progress, the summary table, and what an interrupt leaves.

Out of ``cli.py`` (which keeps the commands) so that module stays readable; nothing here writes a store.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rich.table import Table

from pipeline.models import IngestReport, IngestStats
from pipeline.output import err, fail
from pipeline.progress import TerminalProgress

logger = logging.getLogger("pipeline")


class IngestProgress(TerminalProgress):
    """Two bars on a terminal, documents searchable and parents enriched (plus the parents of the
    file in hand); plain log lines otherwise."""

    def __init__(self) -> None:
        super().__init__(err)
        self.files = None
        self.parents = None
        self.enriched = None
        self.total: int | None = None  # documents this run reads (from the first "file" event)
        self.finished: list[str] = []  # paths written and searchable, for the message after Ctrl-C

    def __call__(self, event: str, detail: dict) -> None:
        name = Path(detail.get("path", "")).name
        if event == "file":
            self.total = detail.get("total", self.total)
            if self.tty:
                if self.files is None:
                    self.files = self.progress.add_task("documents searchable", total=detail["total"])
                if self.parents is not None:
                    self.progress.remove_task(self.parents)
                self.parents = self.progress.add_task(f"  {name}", total=None)
            else:
                logger.info("ingesting %s", detail["path"])
        elif event == "parent":
            if self.tty and self.parents is not None:
                self.progress.update(self.parents, total=detail["total"], completed=detail["done"])
            elif not self.tty and (detail["done"] % 10 == 0 or detail["done"] == detail["total"]):
                logger.info("  %s: %d/%d parents", name, detail["done"], detail["total"])
        elif event == "done":
            if detail["status"] in ("added", "updated", "unchanged"):
                self.finished.append(str(detail["path"]))
            if self.tty and self.files is not None:
                self.progress.advance(self.files)
            if detail["status"] == "failed":
                err.print(f"[red]failed[/] {detail['path']}: {detail['reason']}", highlight=False)
            elif detail["status"] == "skipped":
                err.print(f"[yellow]skipped[/] {detail['path']}: {detail['reason'].removeprefix('skipped: ')}", highlight=False)
            elif not self.tty:
                logger.info("searchable: %s (%s)", detail["path"], detail["status"])
        elif event == "enrich":
            if self.tty:
                if self.parents is not None:
                    self.progress.remove_task(self.parents)
                    self.parents = None
                if self.enriched is None:
                    self.enriched = self.progress.add_task("parents enriched (summary + questions)", total=detail["total"])
                self.progress.update(self.enriched, total=detail["total"], completed=detail["done"])
            elif detail["done"] % 10 == 0 or detail["done"] == detail["total"]:
                logger.info("enrichment: %d/%d parents done", detail["done"], detail["total"])


def replay(report: IngestReport, progress: IngestProgress) -> None:
    """The events a full run would have sent for a report made without one (``ingest/quick.py``), so
    a run with nothing to do logs the same lines (each file searchable, each failed or skipped one)."""
    total = sum(1 for f in report.files if f.status == "unchanged")
    for f in report.files:
        if f.status == "unchanged":
            progress("file", {"path": f.path, "total": total})
        progress("done", {"path": f.path, "status": f.status, "reason": f.reason})


def _skipped_line(report: IngestReport) -> str:
    """How many files of the given folders were not read for their type, and which (the first few)."""
    names = [Path(f.path).name for f in report.files if f.status == "skipped"]
    shown = ", ".join(names[:5]) + (f", … ({len(names) - 5} more: --json lists all)" if len(names) > 5 else "")
    return f"{len(names)}: {shown}" if names else "0"


def _enrich_line(s: IngestStats) -> str:
    """The second phase in one line: what was written, or why nothing was and how to get it."""
    if s.enrich == "done" and s.parents_enriched:
        per = f" ({s.questions / s.parents_enriched:.1f} per parent)" if s.parents_enriched else ""
        left = f"; {s.parents_unenriched} parents still without (failed: run `enrich` again)" if s.parents_unenriched else ""
        return f"{s.parents_enriched} parents enriched: {s.summaries} summaries, {s.questions} questions{per}{left}"
    if not s.parents_unenriched:
        return "every parent enriched already" if s.documents else "-"
    if s.enrich == "skipped":
        return (f"skipped for {s.parents_unenriched} parents: SmolLM2's do not improve retrieval (docs/quality.md); "
                "`python -m pipeline enrich` writes them anyway, or configure a stronger LLM")
    if s.enrich == "later":
        return f"later: {s.parents_unenriched} parents wait for `python -m pipeline enrich`"
    return "none (no LLM configured)"


def print_ingest_summary(report: IngestReport) -> None:
    s = report.stats
    table = Table(title=f"ingest → {report.store}", show_header=False)
    rows = [
        ("files added / updated / unchanged", f"{s.files_added} / {s.files_updated} / {s.files_unchanged}"),
        ("files removed / failed", f"{s.files_removed} / {s.files_failed}"),
        ("files skipped (unsupported type)", _skipped_line(report)),
        ("documents / parents", f"{s.documents} / {s.parents}"),
        ("references", ", ".join(f"{k} {v}" for k, v in s.references.items()) or "0"),
        ("parents rebuilt / reused from cache", f"{s.parents_rebuilt} / {s.parents_reused}"),
        ("LLM calls / texts embedded", f"{s.llm_calls} / {s.embedded_texts}"),
        ("summaries and questions", _enrich_line(s)),
        ("cache hits / misses", f"{s.cache_hits} / {s.cache_misses}"),
        ("seconds (of which Qdrant writes)", f"{s.seconds:.1f} ({s.store_seconds:.1f})"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    err.print(table)
    if s.llm_calls == 0 and s.embedded_texts == 0 and s.files_failed == 0:
        err.print("nothing to do: 0 LLM calls and 0 embedding calls (input unchanged)")


def interrupted(progress: IngestProgress | None) -> None:
    """Ctrl-C during ``ingest``: say which documents were written (searchable now) and that the same
    command resumes, then exit 130 (128 + SIGINT, what a shell reports for an interrupted command).

    Why it is safe to say so: each document is committed through the ledger protocol before the next
    one starts, so a finished document is "unchanged" on the next run and a half-written one is
    redone; embeddings and LLM output already computed come from the cache.
    """
    done = progress.finished if progress is not None else []
    total = progress.total if progress is not None else None
    names = ", ".join(Path(p).name for p in done[:10]) + (f", … ({len(done) - 10} more)" if len(done) > 10 else "")
    of = f" of {total}" if total else ""
    fail(
        f"stopped by Ctrl-C: {len(done)}{of} documents finished and searchable{': ' + names if names else ''}; "
        "run the same command again to resume (finished documents are skipped as unchanged, computed embeddings come from the cache)",
        code=130,
        kind="Interrupted",
    )
