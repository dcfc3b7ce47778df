"""Terminal output shared by the commands: the stdout/stderr consoles, logging setup, errors, JSON.

A module of its own so that feature commands (``pipeline/eval/command.py``, ``pipeline/service/command.py``)
and ``pipeline/cli.py``, which registers them, can both use it without importing each other.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from pipeline.config import Settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


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
        return Settings(store=store)
    except Exception as exc:  # pydantic ValidationError from env or config file
        fail(f"configuration error: {exc}")
        raise  # unreachable


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def emit_json(obj: object) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
