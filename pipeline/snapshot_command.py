"""``pipeline snapshot create PATH`` / ``restore PATH``: a consistent backup of a store, and putting one back.

The work is in ``pipeline/store/snapshot.py``; this is the command line. A running service holds an
embedded store open (one process at a time): snapshot it with ``POST /snapshots`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.output import call_and_emit, err, settings_for, setup_logging

snapshot_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Back up a store (snapshot create) and put a backup back (snapshot restore).")

StoreOpt = Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", help="Store folder (cache, docstore, embedded Qdrant).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]
LockOpt = Annotated[float, typer.Option(help="Seconds to wait for a running ingest to finish.")]


def _summary(verb: str, m: object) -> None:
    from pipeline.store.snapshot import Manifest

    assert isinstance(m, Manifest)
    points = ", ".join(f"{k} {v}" for k, v in m.collections.items()) or "none"
    err.print(f"{verb} {m.path}: {m.documents} documents, {m.parents} parents, points: {points}; model {m.embed_model or '-'}", highlight=False)
    if m.server_snapshots:
        err.print("on the Qdrant server: " + ", ".join(f"{c} → {n}" for c, n in m.server_snapshots.items()), highlight=False)


@snapshot_app.command("create")
def create(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A new folder for the snapshot (outside the store).")],
    store: StoreOpt = Path("storage"),
    lock_timeout: LockOpt = 0.0,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Copy every collection, the docstore and the cache into PATH, with a manifest (counts, model, sha256).

    Takes the ingest lock (no writer runs meanwhile); with QDRANT_URL the collections are snapshotted
    on the server (their names go into the manifest).

    \b
    Example:
      python -m pipeline snapshot create backups/2024-06-01 --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.store.snapshot import create_snapshot

    call_and_emit(lambda: create_snapshot(settings, path, lock_timeout=lock_timeout), json_out, lambda m: _summary("snapshot", m))


@snapshot_app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A folder made by `snapshot create`.")],
    store: StoreOpt = Path("storage"),
    force: Annotated[bool, typer.Option("--force", help="Replace a store that holds documents.")] = False,
    lock_timeout: LockOpt = 0.0,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Put the snapshot at PATH in place of the store, then check its counts against the manifest.

    Refuses a snapshot of another embedding model than the store's, and a store holding documents
    unless --force. Stop a service using the store first.

    \b
    Example:
      python -m pipeline snapshot restore backups/2024-06-01 --store storage
    """
    setup_logging(verbose)
    settings = settings_for(store)
    from pipeline.store.snapshot import restore_snapshot

    call_and_emit(
        lambda: restore_snapshot(settings, path, force=force, lock_timeout=lock_timeout), json_out, lambda m: _summary(f"restored into {settings.store} from", m)
    )
