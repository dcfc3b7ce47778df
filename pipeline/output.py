"""Terminal output shared by the commands: the stdout/stderr consoles, logging setup, errors, JSON.

A module of its own so that feature commands (``pipeline/eval/command.py``, ``pipeline/service/command.py``)
and ``pipeline/cli.py``, which registers them, can both use it without importing each other.

Errors take one path: ``fatal(exc)`` turns any exception into a ``PipelineError`` (``fatal_error`` maps
OS and SQLite errors: disk full, permission denied, damaged store) and ``fail`` prints it on stderr,
with ``--json`` also as ``{"error": {"type", "message"}}`` on stdout, then exits 2. Never a traceback
(``--verbose`` logs it, for bugs).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from pipeline.config import Settings
from pipeline.errors import StoreLocked, fatal_error

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
logger = logging.getLogger("pipeline")
_store_in_use: list[Path] = []  # the running command's store, for the lock hint in ``fatal``


def setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    """Plain log lines on stderr (``pipeline`` at INFO, the rest at WARNING), optionally JSON lines to a file."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "openai", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if log_file is not None:
        from pipeline.logs import JsonLinesHandler

        root.addHandler(JsonLinesHandler(log_file))


def settings_for(store: Path) -> Settings:
    """Build the settings once at the edge; a bad environment or config file exits 2 with the cause."""
    try:
        settings = Settings(store=store)
    except Exception as exc:  # pydantic ValidationError from env or config file
        fail(f"ConfigError: configuration error: {exc}")
        raise  # unreachable
    _store_in_use[:] = [settings.store]
    return settings


def json_requested() -> bool:
    """True when the command line asked for ``--json`` (errors then go to stdout as JSON too)."""
    return "--json" in sys.argv[1:]


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr (with --json also the error object on stdout) and exit with ``code``.

    A message that starts with an error class name ("StoreLocked: ...") gives the JSON ``type``.
    """
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    if json_requested():
        head, sep, rest = message.partition(": ")
        kind, text = (head, rest) if sep and head.isidentifier() and head[:1].isupper() else ("PipelineError", message)
        emit_json({"error": {"type": kind, "message": text}})
    raise typer.Exit(code)


def fatal(exc: BaseException) -> None:
    """Report a fatal error and exit 2: the PipelineError for ``exc`` (see ``fatal_error``), with the
    process that holds the store named for ``StoreLocked``. Anything else is a bug: one line, exit 2,
    the traceback only with --verbose."""
    error = fatal_error(exc, _store_in_use[0] if _store_in_use else "the store")
    if error is None:
        logger.debug("internal error", exc_info=exc)
        fail(f"InternalError: {type(exc).__name__}: {exc} (a bug: run again with --verbose for the traceback, and report it)")
        return
    message = str(error)
    if isinstance(error, StoreLocked):
        message = _lock_advice(message, _command())
        if _store_in_use:
            from pipeline.store.holder import describe_holders

            holders = describe_holders(_store_in_use[0])
            if holders:
                message = message.replace(" (a running `pipeline serve`?)", "") + f" Held by {holders}."
    fail(f"{type(error).__name__}: {message}")


# What to send to a running service instead, per command: the generic hint names POST /ingest,
# which is advice for an ingest only.
_SERVICE_ROUTE = {
    "query": "ask the service instead (POST /retrieve, POST /query)",
    "status": "ask the service instead (GET /status)",
    "check": "stop it first (check needs the store to itself)",
    "eval": "stop it first, or evaluate into another --store",
    "enrich": "stop it first",
}
_INGEST_HINT = "send the job to the service (POST /ingest)"


def _command() -> str:
    """The running subcommand's name (``query``...), or "" outside one."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name:
        return ctx.info_name
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return args[0] if args else ""


def _lock_advice(message: str, command: str) -> str:
    """The lock message with the advice that fits ``command``."""
    if command in _SERVICE_ROUTE and _INGEST_HINT in message:
        return message.replace(_INGEST_HINT, _SERVICE_ROUTE[command])
    return message


def emit_json(obj: object) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
