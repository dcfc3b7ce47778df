"""``python -m pipeline serve``: the service under uvicorn, with JSON-lines logs on stderr.

Heavy imports stay inside ``serve`` so that loading the CLI stays fast; nothing here imports
``pipeline.cli`` (which registers this command).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.config import Settings


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
    try:
        settings = Settings(store=store)
    except Exception as exc:  # pydantic ValidationError from env or config file
        typer.echo(f"error: configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if updates:
        settings = settings.with_overrides(service=settings.service.model_copy(update=updates))
    setup_service_logging(settings, log_level)

    import uvicorn

    from pipeline.service.app import create_app

    cfg = settings.service
    config = uvicorn.Config(
        create_app(settings),
        host=cfg.host,
        port=cfg.port,
        log_config=None,  # keep ours: JSON lines
        access_log=False,  # the app writes one JSON access line per request, with its id
        timeout_graceful_shutdown=cfg.shutdown_timeout,  # type: ignore[arg-type]  # uvicorn takes seconds as a number
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:  # startup failed (e.g. StoreLocked): the reason was logged
        raise typer.Exit(2)


if __name__ == "__main__":  # `python -m pipeline.service.command --store ...` (what `python -m pipeline serve` runs)
    typer.run(serve)
