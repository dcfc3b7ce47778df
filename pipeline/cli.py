"""Command line: ``python -m pipeline ingest|query|status|...``; results on stdout, logs and progress on stderr.

Exit codes: 0 all good; 1 some input files failed (the rest were ingested); 2 fatal (nothing changed
that was not already committed: bad configuration, store locked or unreachable, model mismatch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from pipeline.errors import PipelineError
from pipeline.config import AnswerMode, EnrichPolicy
from pipeline.models import Answer, Mode
from pipeline.output import call_and_emit, emit_json, err, fail, fatal, log_file_failure, out, settings_for, setup_logging
from pipeline.ingest_output import IngestProgress, _enrich_line, interrupted, print_ingest_summary, replay

# Plain click help: the rich renderer of this typer shows a "<bool>" placeholder after every flag and
# "{paths}" for arguments, which reads as if they took values.
app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="Recursive retrieval with node references over PDFs."
)
logger = logging.getLogger("pipeline")


def _version(value: bool) -> None:
    """``--version``: the installed package's version (its metadata, so it cannot drift from pyproject.toml)."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("pipeline")
        except PackageNotFoundError:  # run from a checkout without `pip install -e .`
            shown = "unknown (not installed: pip install -e .)"
        typer.echo(f"pipeline {shown}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Recursive retrieval with node references over PDFs."""

def _store_path(text: str) -> Path:
    """``--store``: an empty value is refused here, before typer turns it into "." (the current folder)."""
    if not str(text).strip():
        raise typer.BadParameter("the store path is empty: name a folder, e.g. --store storage")
    return Path(text)


StoreOpt = Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", parser=_store_path, help="Store folder (cache, docstore, embedded Qdrant).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(metavar="PATHS", help="PDF, .txt or .md files, or folders (recursive).")],
    store: StoreOpt = Path("storage"),
    prune: Annotated[bool, typer.Option("--prune", "--sync", help="Also remove documents under the given folders whose files are gone.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be added, updated and removed; change nothing.")] = False,
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for another ingest to finish.")] = 0.0,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read and hash every file, also those whose size, times and inode are as last ingested.")] = False,
    enrich: Annotated[Optional[EnrichPolicy], typer.Option("--enrich", help="Summaries and questions: now, later (`pipeline enrich`), or auto (default: only with an LLM whose references help).")] = None,
    json_out: JsonOpt = False,
    log_file: Annotated[Optional[Path], typer.Option(help="Also write JSON-lines logs to this file.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Ingest files: each document is searchable once its chunks are written; summaries and questions follow.

    \b
    Example:
      python -m pipeline ingest samples/ --store storage
    """
    setup_logging(verbose, log_file)
    settings = settings_for(store)
    if enrich is not None:
        settings.ingest = settings.ingest.model_copy(update={"enrich": enrich})
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        err.print(f"[red]failed[/] {p}: no such file or folder", highlight=False)
    if dry_run:
        from pipeline.ingest.plan import plan_ingest

        plan = plan_ingest(settings, [p for p in paths if p.exists()], prune)
        if json_out:
            emit_json(plan.model_dump(mode="json"))
        else:
            for f in plan.files:
                extra = f" (parents: {f.parents_new} new, {f.parents_kept} kept, {f.parents_dropped} dropped)" if f.action in ("add", "update", "remove") else ""
                err.print(f"{f.action:<9} {f.path}{extra}{': ' + f.reason if f.reason else ''}", highlight=False)
            err.print("dry run, nothing changed: " + ", ".join(f"{k} {v}" for k, v in sorted(plan.counts.items())), highlight=False)
        raise typer.Exit(0)
    existing = [p for p in paths if p.exists()]
    if not prune:  # nothing readable at all: say why, exit 1, and create no store for it
        from pipeline.ingest.scan import scan

        found = scan(existing)
        if not found.files:
            for s in found.skipped:
                err.print(f"[red]failed[/] {s.path}: {s.reason}", highlight=False)
            fail("nothing to ingest: no supported file among the given paths (nothing was created)", code=1)
    from pipeline.ingest.quick import unchanged_report

    report = None if rehash else unchanged_report(settings, existing, prune)  # nothing to do: no models, no LlamaIndex
    if report is not None:
        with IngestProgress() as progress:
            replay(report, progress)
    else:
        from pipeline.ingest.run import Ingestor

        progress = None
        try:
            with IngestProgress() as progress:
                report = Ingestor(settings, progress=progress, lock_timeout=lock_timeout, rehash=rehash).run(existing, prune=prune)
        except PipelineError as exc:
            fatal(exc)
        except KeyboardInterrupt:
            interrupted(progress)  # what finished, and that the same command resumes; exit 130
    from pipeline.models import FileResult

    for p in missing:
        report.files.append(FileResult(path=str(p), status="failed", reason="no such file or folder"))
        report.stats.files_failed += 1
    if json_out:
        emit_json(report.model_dump(mode="json"))
    else:
        print_ingest_summary(report)
    raise typer.Exit(1 if report.stats.files_failed else 0)


def highlighted(text: str, query: str) -> Text:
    """``text`` with the query's content words in bold yellow (how a reader checks an extract at a glance)."""
    import re

    from pipeline.retrieve.extract import terms

    shown = Text(text)
    words = sorted(set(terms(query)), key=len, reverse=True)
    if words:
        shown.highlight_regex(re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\w*", re.IGNORECASE), "bold yellow")
    return shown


def print_answer(result: Answer) -> None:
    if not result.answerable:  # abstain: say so plainly, then the nearest sources, marked weak
        out.print(f"[bold]{result.message or 'The indexed documents do not seem to answer this.'}[/]", highlight=False)
        if result.confidence is not None:
            why = "the question's language is not the documents'" if result.reason == "language" else "below retrieval.min_confidence"
            out.print(f"[dim]confidence {result.confidence:.2f} ({why}); no answer was extracted or generated[/]", highlight=False)
        out.print()
    if result.replaced:
        out.print(f"[yellow]The LLM answer was replaced by the extract: {result.replaced}.[/]", highlight=False)
    if result.answer is not None:
        label = {"extractive": "Answer (extract: the best sentences of the sources, not generated)", "llm": "Answer (LLM)"}.get(result.answer_mode, "Answer")
        out.print(f"[bold]{label}[/]", highlight=False)
        if result.citations and result.answer_mode == "extractive":
            for c in result.citations:
                where = ("p. " + ", ".join(map(str, c.pages))) if c.pages else ""
                out.print(highlighted(f" • {c.text} ", result.query), end="")
                out.print(f"[dim][{c.source}] {Path(c.doc_id).name} {where}[/]", highlight=False)
        else:
            out.print(highlighted(result.answer, result.query))
        out.print()
    weak = "" if result.answerable else " [yellow]nearest, weak: they do not seem to answer this[/]"
    sure = f", confidence {result.confidence:.2f}" if result.confidence is not None else ""
    out.print(f"[bold]Sources[/] (mode {result.mode.value}, top {result.top_k}{sure}){weak}:", highlight=False)
    for i, s in enumerate(result.sources, 1):
        pages = ", ".join(map(str, s.pages))
        kinds = ", ".join(sorted({m.kind.value for m in s.matched}))
        out.print(f" [{i}] {' = '.join(s.names) or Path(s.doc_id).name} p. {pages}  rank score {s.score:.3f}  ({s.readable_id}; matched {kinds})", highlight=False)
    out.print(f"[dim]retrieve {result.stats.retrieve_ms:.0f} ms, answer {result.stats.answer_ms:.0f} ms, corpus texts embedded {result.stats.embedded_texts}[/]", highlight=False)


@app.command()
def query(
    text: Annotated[str, typer.Argument(metavar="QUESTION", help="The question.")],
    mode: Annotated[Mode, typer.Option(help="Which references to match: base, chunk, metadata or all.")] = Mode.ALL,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Distinct parents to return (default 3).")] = None,
    retrieve_only: Annotated[bool, typer.Option("--retrieve-only", help="Return parents without an answer (same as --answer none).")] = False,
    answer: Annotated[Optional[AnswerMode], typer.Option("--answer", help="extractive (cited sentences of the sources), llm, none, or auto (default: llm only with a capable generator).")] = None,
    doc_id: Annotated[Optional[str], typer.Option("--doc", "--doc-id", help="Only search this document: its name as `docs list` shows it (or its id; --doc-id is the older spelling).")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="Re-score the top candidates with the cross-encoder (default: retrieval.rerank, off).")] = None,
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", min=0.0, max=1.0, help="Answer only when the confidence is at least this (default retrieval.min_confidence); 0 always answers.")] = None,
    store: StoreOpt = Path("storage"),
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question from the store (rehydrated: only the query is embedded).

    \b
    Example:
      python -m pipeline query "What is S2ORC?" --top-k 3 --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    check_query_text(text, doc_id, settings.service.max_query_chars)  # before any store or model is opened
    from pipeline.retrieve.engine import Engine, check_top_k

    how = "none" if retrieve_only else (answer.value if answer else None)
    try:
        if top_k is not None:
            check_top_k(top_k)  # before anything is opened or loaded
        from pipeline.store.documents import name_sources, only_sample, query_scope

        catalog, filters = query_scope(settings, doc_id)  # "no store at …" or an unknown name: before models load
        with Engine(settings, load_llm=how != "none") as engine:
            result = engine.query(text, mode, top_k, filters, answer=how, rerank=rerank, min_confidence=min_confidence)
    except PipelineError as exc:
        fatal(exc)
    name_sources(result, catalog)
    if json_out:
        emit_json(result.model_dump(mode="json"))
    else:
        print_answer(result)
        if only_sample(catalog):  # the hint is for a first run on the bundled sample only
            err.print("[dim]next: ingest your own documents with[/] python -m pipeline ingest PATH_TO_PDFS"
                      + ("" if settings.store == Path("storage") else f" --store {settings.store}"), highlight=False)


def check_query_text(text: str, doc_id: str | None, max_chars: int) -> None:
    """Refuse (exit 2, ``InvalidQuery``) a query or ``--doc-id`` that is not UTF-8, and a query over
    ``service.max_query_chars``, before anything is loaded.

    Python hands undecodable argv bytes over as lone surrogates (``$'\\xff'`` becomes ``'\\udcff'``); the
    tokenizer and the store cannot take them, and no stored document has such an id. A query's cost
    grows with its length, so the service's cap applies here too.
    """
    for what, value in (("the query", text), ("--doc-id", doc_id)):
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            fail(f"{what} is not valid UTF-8 text ('{raw}'): pass it as UTF-8", kind="InvalidQuery")
    if len(text) > max_chars:
        fail(f"the query is {len(text)} characters, the limit is {max_chars} (service.max_query_chars)", kind="InvalidQuery")


@app.command()
def enrich(
    store: StoreOpt = Path("storage"),
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for a running ingest to finish.")] = 0.0,
    json_out: JsonOpt = False,
    log_file: Annotated[Optional[Path], typer.Option(help="Also write JSON-lines logs to this file.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write LLM summaries and questions for every searchable parent that has none yet.

    Resumable and idempotent: finished parents are skipped, LLM output is cached, Ctrl-C or a kill
    loses at most the parent in flight. Run it at low priority with `nice -n 10`.

    \b
    Example:
      nice -n 10 python -m pipeline enrich --store storage
    """
    setup_logging(verbose, log_file)
    settings = settings_for(store)
    from pipeline.ingest.run import Ingestor

    from pipeline.store.state import has_docstore

    if not has_docstore(settings):
        fail(f"no ingested data in {settings.store}: run `python -m pipeline ingest PATH` first")
    try:
        with IngestProgress() as progress:
            report = Ingestor(settings, progress=progress, lock_timeout=lock_timeout, enrich=True).enrich_store()
    except PipelineError as exc:
        fatal(exc)
    if json_out:
        emit_json(report.model_dump(mode="json"))
        return
    s = report.stats
    err.print(
        f"enrich → {report.store}: {_enrich_line(s)}; {s.llm_calls} LLM calls, {s.embedded_texts} texts embedded, {s.seconds:.1f} s",
        highlight=False,
    )


@app.command()
def status(store: StoreOpt = Path("storage"), json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Show the store: collections with point counts, parents, embedding model.

    \b
    Example:
      python -m pipeline status --json --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.store.status import store_status

    try:
        info = store_status(settings)
    except PipelineError as exc:
        fatal(exc)
    if json_out:
        emit_json(info)
        return
    table = Table(title=f"store {info['store']}", show_header=False)
    table.add_row("backend", info["backend"] + (f" ({info['backend_note']})" if info.get("backend_note") else ""))
    table.add_row("qdrant", info["qdrant"])
    for name, n in info["collections"].items():
        table.add_row(f"  {name}", f"{n} points")
    table.add_row("documents / parents", f"{info['documents']} / {info['parents']}")
    if "enriched_parents" in info:
        table.add_row("parents enriched (summary + questions)", f"{info['enriched_parents']} of {info['parents']}")
    table.add_row("embedding", f"{info['embed_model']} ({info['embed_dim']} dims)" if info["embed_model"] else "none yet (nothing ingested)")
    if info.get("hybrid"):
        table.add_row("BM25 (hybrid search)", info["hybrid"])
    out.print(table)


@app.command()
def check(
    repair: Annotated[bool, typer.Option("--repair", help="Register or delete stray references, rebuild damaged ones from the docstore and the cache.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Compare every stored vector with its cached embedding (default: a sample of parents).")] = False,
    store: StoreOpt = Path("storage"),
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Verify that references, parents and the ingest ledger agree (exit 1 if not).

    A damaged docstore or cache is reported; --repair moves it aside, salvages what it can read and
    repairs around the loss (then ingest the listed documents again: the cache makes that cheap).

    \b
    Example:
      python -m pipeline check --repair --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.ingest.repair import run_check
    from pipeline.store.documents import require_store

    try:
        require_store(settings)  # "no store at …", exit 2, before anything is opened or created
        report = run_check(settings, repair, deep)
    except PipelineError as exc:
        fatal(exc)
    if json_out:
        emit_json(report.model_dump(mode="json"))
    else:
        for p in report.problems:
            err.print(f"[yellow]{p.kind}[/] {p.doc_id} {p.detail}", highlight=False)
        for r in report.repaired:
            err.print(f"[green]repaired[/] {r}", highlight=False)
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        err.print(f"check: {state}; {report.documents} documents, {report.parents} parents, points {report.points}", highlight=False)
    raise typer.Exit(0 if report.ok or (repair and report.repaired) else 1)


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="edge (vectors, from a qdrant-client local-mode store); postgres / sqlite (docstore, cache and ledger into / out of database.url).")] = "edge",
    store: StoreOpt = Path("storage"),
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Copy a local-mode store into the embedded engine (edge), without re-embedding, and verify counts.

    The old folder is kept as <store>/qdrant.migrated-<timestamp> (delete it once happy). Stop a
    running `pipeline serve` on this store first.

    \b
    Example:
      python -m pipeline migrate --to edge --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    if to in ("postgres", "sqlite"):  # issue 25: the store's state into or out of PostgreSQL (store/statemove.py)
        from pipeline.store.statemove import move_state

        def moved(m: Any) -> None:
            total = sum(sum(c.values()) for c in m.rows.values())
            err.print(f"migrated to {to} in {m.seconds:.1f} s: {total} rows (counts and SHA-256 verified per collection)", highlight=False)

        call_and_emit(lambda: move_state(settings, to), json_out, moved)
        return
    if to != "edge":
        fail(f"--to {to}: expected edge, postgres or sqlite")
    from pipeline.store.convert import migrate_to_edge

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % 8192 < 512:
            err.print(f"{name}: {done}/{total} points", highlight=False)

    call_and_emit(
        lambda: migrate_to_edge(settings, progress),
        json_out,
        lambda r: err.print(
            f"migrated to edge in {r.seconds:.1f} s: {sum(r.collections.values())} points in {len(r.collections)} "
            f"collections (counts verified); old folder kept as {r.old_qdrant}",
            highlight=False,
        ),
    )


def _register_subcommands() -> None:
    """Commands whose modules live with their feature (service, eval), imported lazily by typer."""
    from pipeline.eval.command import eval_command
    from pipeline.service.command import serve

    app.command("serve")(serve)  # help: its docstring, with the example
    app.command("eval", help="Evaluate retrieval quality on a labelled dataset.")(eval_command)
    from pipeline.config_command import config_command
    from pipeline.docs_command import docs_app
    from pipeline.snapshot_command import snapshot_app

    app.add_typer(docs_app, name="docs")
    app.add_typer(snapshot_app, name="snapshot")
    app.command("config")(config_command)


_register_subcommands()


def main() -> None:
    """``python -m pipeline``: the typer app; any exception that escapes a command goes through ``fatal``
    (one message naming the file and the next step, exit 2), never a traceback. A command whose
    ``--log-file`` could not be written ends with exit 2 whatever it did (the failure was reported
    when it happened): a scheduled run must not look clean with an empty log."""
    try:
        app()
    except SystemExit as done:
        if done.code in (0, 1, None) and log_file_failure():
            raise SystemExit(2) from None
        raise
    except Exception as exc:
        try:
            fatal(exc)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
