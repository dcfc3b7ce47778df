"""``python -m pipeline serve``: the service under uvicorn, with JSON-lines logs on stderr.

Heavy imports stay inside ``serve`` so that loading the CLI stays fast; nothing here imports
``pipeline.cli`` (which registers this command).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from pipeline.config import Settings

if TYPE_CHECKING:
    import uvicorn


def setup_service_logging(settings: Settings, level: str = "info") -> None:
    """JSON lines on stderr, each with the request id while a request is served; the token is redacted."""
    from pipeline.logs import JsonFormatter
    from pipeline.service.middleware import RedactFilter, RequestIdFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    token = settings.service.api_token
    handler.addFilter(RedactFilter([token.get_secret_value()] if token else []))
    handler.addFilter(lambda record: record.__dict__.pop("color_message", None) or True)  # uvicorn's ANSI copy
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("pipeline", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to bind (default: service.host, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="TCP port (default: service.port, 8000).")] = None,
    store: Annotated[Path, typer.Option("--store", envvar="PIPELINE_STORE", help="Store folder (cache, docstore, embedded Qdrant).")] = Path("storage"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve /retrieve, /query, /ingest and the probes over HTTP (FastAPI under uvicorn).

    In embedded mode the service owns the store folder: ingest through POST /ingest while it runs.
    SIGTERM or Ctrl-C: stop accepting, let in-flight requests finish (service.shutdown_timeout), stop
    ingest jobs at their next file or parent, close the store.

    \b
    Example:
      PIPELINE_SERVICE__INGEST_ROOTS='["/srv/docs"]' python -m pipeline serve --store storage --port 8000
    """
    from pipeline.output import fail, settings_for

    settings = settings_for(store)  # a bad environment or config file: exit 2 with the cause
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if updates:
        settings = settings.with_overrides(service=settings.service.model_copy(update=updates))
    problem = store_problem(settings.store)
    if problem:
        fail(problem, kind="StoreUnavailable")
    setup_service_logging(settings, log_level)

    import uvicorn

    from pipeline.service.app import create_app

    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 3 when startup fails (port in use, store locked)
        raise typer.Exit(2 if exc.code else 0) from None
    if not server.started:  # startup failed: the reason was logged, in one line
        raise typer.Exit(2)


def store_problem(store: Path) -> str | None:
    """Why the service cannot own this store folder (it writes its lock, the docstore and the engine
    there), or None: checked before uvicorn starts, so the answer is one line and exit 2 rather than a
    failed startup. Anything subtler (a damaged file) is caught at startup, also in one line."""
    import os

    if store.exists() and not store.is_dir():
        return f"--store {store} is not a folder: give the store folder (it is created if missing)"
    existing = next((p for p in (store, *store.absolute().parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        which = "the store folder" if existing == store else f"{existing}, where the store folder would be created,"
        return f"--store {store}: {which} is not writable by this user: the service writes its lock, docstore and index there"
    return None


def uvicorn_config(app: object, settings: Settings) -> "uvicorn.Config":
    """How ``serve`` runs the app: our JSON logs, our access lines, the shutdown grace, and connections
    that must send each request's head within ``service.header_timeout`` (``GuardedH11Protocol``)."""
    import uvicorn

    from pipeline.service.protocol import guarded_protocol

    cfg = settings.service
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=cfg.host,
        port=cfg.port,
        http=guarded_protocol(cfg.header_timeout),
        log_config=None,  # keep ours: JSON lines
        access_log=False,  # the app writes one JSON access line per request, with its id
        timeout_graceful_shutdown=cfg.shutdown_timeout,  # type: ignore[arg-type]  # uvicorn takes seconds as a number
        lifespan="on",
        server_header=False,
    )


if __name__ == "__main__":  # `python -m pipeline.service.command --store ...` (what `python -m pipeline serve` runs)
    typer.run(serve)
