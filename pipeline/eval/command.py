"""``python -m pipeline eval DATASET``: the typer command over ``EvalRunner`` (table or --json on stdout, progress on stderr).

Registered in ``pipeline/cli.py`` as ``app.command("eval")(eval_command)``; the output helpers come from
``pipeline/output.py``, so nothing here imports ``pipeline.cli``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.console import Console

from pipeline.models import Mode
from pipeline.progress import TerminalProgress

logger = logging.getLogger("pipeline.eval")


def _parse_modes(text: str) -> list[Mode]:
    modes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            modes.append(Mode(part))
        except ValueError:
            raise typer.BadParameter(f"unknown mode {part!r}: use base, chunk, metadata, all", param_hint="--modes") from None
    if not modes:
        raise typer.BadParameter("give at least one mode", param_hint="--modes")
    return modes


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--top-k") from None
    if not ks or any(not 1 <= k <= 50 for k in ks):
        raise typer.BadParameter(f"every k must be between 1 and 50, got {text!r}", param_hint="--top-k")
    return ks


class _EvalProgress(TerminalProgress):
    """A rich bar on a terminal (ingest parents, then queries); sparse log lines otherwise."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, eta=True)
        self.task = None
        self.label = ""

    def _show(self, label: str, done: int, total: int) -> None:
        if self.tty:
            if self.task is None or label != self.label:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task(label, total=total)
                self.label = label
            self.progress.update(self.task, completed=done, total=total)
        elif done == total or done % max(1, total // 10) == 0:
            logger.info("%s %d/%d", label, done, total)

    def __call__(self, event: str, detail: dict) -> None:
        if event == "parent":
            self._show(f"ingest {Path(detail.get('path', '')).name}", detail["done"], detail["total"])
        elif event == "done" and detail.get("status") == "failed":
            logger.warning("source failed: %s: %s", detail["path"], detail["reason"])
        elif event == "query":
            self._show(f"queries ({detail['mode']}, k={detail['k']})", detail["done"], detail["total"])


def eval_command(
    dataset: Annotated[Path, typer.Argument(help="LabelledRagDataset folder (rag_dataset.json + source_files/) or JSON; EmbeddingQAFinetuneDataset JSON; the output folder with --generate.")],
    modes: Annotated[str, typer.Option("--modes", help="Comma-separated modes: base, chunk, metadata, all.")] = "base,chunk,metadata,all",
    top_k: Annotated[str, typer.Option("--top-k", help="Comma-separated k values; each is a separate retrieval, as `query --top-k k`.")] = "2,10",
    store: Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", help="Store folder; eval stores go to <store>/eval/<dataset>-<fingerprint>.")] = Path("storage"),
    eval_store: Annotated[Optional[Path], typer.Option("--eval-store", help="Use exactly this store folder for the dataset.")] = None,
    sources: Annotated[Optional[Path], typer.Option("--sources", help="Files to ingest (default: source_files/ beside the dataset JSON).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N examples.")] = None,
    generate: Annotated[Optional[Path], typer.Option("--generate", help="First write a question set from this folder into DATASET with the configured LLM.")] = None,
    questions_per_parent: Annotated[int, typer.Option("--questions-per-parent", min=1, max=10, help="Questions per parent with --generate.")] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --generate, replace an existing rag_dataset.json.")] = False,
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated retrieval stages measured side by side per mode: default (the settings), dense, hybrid, dense+rerank, hybrid+rerank; results keyed mode/variant.")] = "default",
    no_ingest: Annotated[bool, typer.Option("--no-ingest", help="Use the eval store as it is (retrieval-only settings changes).")] = False,
    negatives: Annotated[Optional[str], typer.Option("--negatives", help="Measure answerability: comma-separated dataset folders whose questions this store cannot answer, and/or `general` (bundled general-knowledge questions).")] = None,
    answers: Annotated[bool, typer.Option("--answers", help="Also measure answer containment: the labelled answer in the printed extract (short-answer sets such as mini_squadv2).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the JSON report to this file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")] = False,
) -> None:
    """Measure hit rate and MRR of every mode on a labelled question set (ingested into its own store)."""
    from rich.table import Table

    from pipeline.output import emit_json, err, fail, out as stdout, settings_for, setup_logging
    from pipeline.errors import PipelineError
    from pipeline.eval.datasets import RAG_DATASET_FILE, load_dataset
    from pipeline.eval.run import EvalRunner

    setup_logging(verbose)
    mode_list = _parse_modes(modes)
    ks = _parse_ks(top_k)
    settings = settings_for(store)
    try:
        with _EvalProgress(err) as progress:
            if generate is not None:
                target = dataset / RAG_DATASET_FILE
                if target.exists() and not overwrite:
                    logger.info("question set %s exists: reusing it (--overwrite to write a new one)", target)
                else:
                    from pipeline.eval.generate import QuestionGenerator
                    from pipeline.providers.llm import build_llm

                    if not generate.exists():
                        fail(f"{generate}: no such file or folder")
                    QuestionGenerator(
                        build_llm(settings),  # type: ignore[arg-type]
                        questions_per_parent=questions_per_parent,
                        parent_chunk_size=settings.ingest.parent_chunk_size,
                        progress=lambda e, d: progress("parent", d),
                    ).generate(generate, dataset)
            data = load_dataset(dataset, sources).limited(limit)
            negative_questions = _negative_questions(negatives, limit) if negatives else None
            report = EvalRunner(
                settings, modes=mode_list, ks=ks, store=eval_store, progress=progress, ingest=not no_ingest,
                variants=[v.strip() for v in variants.split(",") if v.strip()], negatives=negative_questions, answers=answers,
            ).run(data)
    except PipelineError as exc:
        fail(str(exc), kind=type(exc).__name__)
        raise  # unreachable
    result = report.to_json()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if json_out:
        emit_json(result)
        return
    table = Table(title=f"eval {report.dataset}: {report.examples} questions")
    table.add_column("mode")
    for k in report.ks:
        table.add_column(f"hit@{k}", justify="right")
        table.add_column(f"MRR@{k}", justify="right")
    table.add_column("parents", justify="right")
    table.add_column("p50 ms", justify="right")
    for mode, r in report.results.items():
        cells = []
        for k in report.ks:
            cells += [f"{r.hit[k]:.3f}", f"{r.mrr[k]:.3f}"]
        table.add_row(mode, *cells, f"{r.parents_returned[max(report.ks)]:.1f}", f"{r.latency_ms_p50:.0f}")
    stdout.print(table)
    if report.answerability:
        a = report.answerability
        stdout.print(
            f"answerability at min_confidence {a.threshold:g}: AUROC {a.auroc:.3f}, answered {a.answered:.3f} of {a.positives} answerable "
            f"(right parent in the top {max(report.ks)}; {a.missed} not retrieved), refused {a.refused:.3f} of {a.negatives} negatives",
            highlight=False,
        )
    if report.containment:
        c = report.containment
        stdout.print(f"answer containment {c.share:.3f}: the labelled answer in {c.contained} of {c.eligible} extracts (questions whose top-3 parents hold it)", highlight=False)
    cfg = report.config
    stdout.print(
        f"oracle coverage {report.oracle_coverage:.3f} (share of questions whose reference is in some parent); "
        f"llm {cfg['llm']}, fusion {cfg['fusion']}; store {report.store}",
        highlight=False,
    )


def _negative_questions(spec: str, limit: int | None) -> list[str]:
    """The questions of ``--negatives``: each dataset's (first ``limit``), and the bundled general ones for ``general``."""
    from pipeline.eval.answers import dataset_questions, general_questions

    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "general":
            out += general_questions()
        else:
            out += dataset_questions(Path(part), limit)
    return out
