"""``pipeline docs list|show|rm``: the documents of a store as objects people can see, name and remove.

``list`` and ``show`` only read (nothing is created; a missing store is "no store at …", exit 2);
``rm`` writes through the ledger protocol under the ingest lock (``pipeline/ingest/remove.py``).
It lives above store/ and ingest/ (like ``cli.py``) because it calls both, and store/ must not
import ingest/ (``tests/unit/test_structure.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pipeline.output import call_and_emit, err, out, settings_for, setup_logging

if TYPE_CHECKING:
    from pipeline.store.documents import DocumentDetail, DocumentInfo, Removed

docs_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="List, show and remove ingested documents by name.")

StoreOpt = Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", help="Store folder (cache, docstore, embedded Qdrant).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@docs_app.command("list")
def list_docs(store: StoreOpt = Path("storage"), json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Every document: name, pages, parents, enriched parents, ingested at, size, content hash.

    \b
    Example:
      python -m pipeline docs list --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.store.documents import Catalog

    def as_json(rows: list[DocumentInfo]) -> object:
        return {"store": str(settings.store), "documents": [r.model_dump(mode="json") for r in rows]}

    call_and_emit(lambda: Catalog.read(settings).documents(), json_out, lambda rows: _table(rows, settings.store), as_json)


def _table(rows: list[DocumentInfo], store: Path) -> None:
    table = Table(title=f"{len(rows)} documents in {store}")
    for col in ("name", "pages", "parents", "enriched", "ingested at", "size", "content hash", "id"):
        table.add_column(col, overflow="fold")
    for r in rows:
        name = r.name + (f" (= {r.alias_of})" if r.alias_of else "") + (f" [{r.state}]" if r.state != "ok" else "")
        table.add_row(name, str(r.pages), str(r.parents), str(r.enriched_parents), r.ingested_at or "-", _size(r.size), (r.content_hash or "-")[:12], r.doc_id)
    out.print(table)


@docs_app.command("show")
def show_doc(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The document's name (as `docs list` shows it), or its id.")],
    store: StoreOpt = Path("storage"),
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """One document: its parents in order with their pages, and their summaries and questions when present.

    \b
    Example:
      python -m pipeline docs show acl2020.acl-main.447.pdf --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.store.documents import Catalog, document_detail

    def read() -> DocumentDetail:
        from pipeline.store import qdrant as qstore
        from pipeline.store.state import open_parents

        catalog = Catalog.read(settings)
        doc_id = catalog.resolve(name)
        client = qstore.open_client(settings)
        parents = open_parents(settings)
        try:
            return document_detail(catalog, doc_id, parents, client, qstore.names(settings))
        finally:
            parents.close()
            client.close()

    call_and_emit(read, json_out, _show)


def _show(detail: DocumentDetail) -> None:
    aka = f" (same content as {detail.alias_of})" if detail.alias_of else (f" (also named {', '.join(detail.aliases)})" if detail.aliases else "")
    out.print(f"[bold]{detail.name}[/]{aka}  {detail.pages} pages, {detail.parents} parents, {detail.enriched_parents} enriched", highlight=False)
    out.print(f"[dim]{detail.doc_id}  sha256 {detail.content_hash or '-'}  ingested {detail.ingested_at or '-'}[/]", highlight=False)
    for p in detail.parent_details:
        pages = ", ".join(map(str, p.pages))
        text = " ".join(p.text.split())
        out.print(f"\n[bold]{p.readable_id}[/] p. {pages}: {text[:200]}{'…' if len(text) > 200 else ''}", highlight=False)
        if p.summary:
            out.print(f"  summary: {p.summary}", highlight=False)
        for q in p.questions:
            out.print(f"  question: {q}", highlight=False)


@docs_app.command("rm")
def remove_docs(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Names (as `docs list` shows them) or ids of the documents to remove.")],
    store: StoreOpt = Path("storage"),
    lock_timeout: Annotated[float, typer.Option(help="Seconds to wait for a running ingest to finish.")] = 0.0,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Remove documents: their parents and every reference (content another name shares stays).

    Crash-safe: a run killed midway leaves a removal `check` accepts; this command, `ingest` or
    `check --repair` finishes it. Cache rows stay (keyed by text: re-adding the file embeds nothing).
    The file itself is untouched: ingesting its folder again adds it back (.pipelineignore leaves it out).

    \b
    Example:
      python -m pipeline docs rm papers/old.pdf --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.ingest.remove import remove_names

    def show(done: list[Removed]) -> None:
        for r in done:
            err.print(f"removed {r.name}" + ("" if r.content == "removed" else f" (its content is {r.content})"), highlight=False)

    call_and_emit(lambda: remove_names(settings, names, lock_timeout=lock_timeout), json_out, show, lambda done: {"removed": [r.model_dump(mode="json") for r in done]})
