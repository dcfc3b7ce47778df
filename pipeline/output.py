"""Terminal output shared by the commands: the stdout/stderr consoles, logging setup, errors, JSON.

A module of its own so that feature commands (``pipeline/eval/command.py``, ``pipeline/service/command.py``)
and ``pipeline/cli.py``, which registers them, can both use it without importing each other.

Errors take one path: ``fatal(exc)`` turns any exception into a ``PipelineError`` (``fatal_error`` maps
OS and SQLite errors: disk full, permission denied, damaged store) and ``fail`` prints it on stderr,
with ``--json`` also as ``{"error": {"type", "message"}}`` on stdout, then exits 2. The type is passed
along with the message, never read back out of it. Never a traceback (``--verbose`` logs it, for bugs).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from pipeline.config import Settings
from pipeline.errors import PipelineError, StoreLocked, fatal_error

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
logger = logging.getLogger("pipeline")
_store_in_use: list[Path] = []  # the running command's store, for the lock hint in ``fatal``


def setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    """Plain log lines on stderr (``pipeline`` at INFO, the rest at WARNING), optionally JSON lines to a file.

    A log file that cannot be opened or written (``--log-file /dev/full``, a folder, no permission) is
    a usage error, exit 2, before the command does anything: a run whose log silently stays empty is
    worse than no run. A write that fails later is reported once and makes the exit status 2
    (``LogFileHandler``, ``log_file_failure``).
    """
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "openai", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _log_handlers.clear()
    if log_file is not None:
        try:
            handler = LogFileHandler(log_file)
        except OSError as exc:
            fail(f"--log-file {log_file}: cannot open it ({exc.strerror or exc}): choose a writable file", kind="ConfigError")
        try:
            handler.probe()
        except OSError as exc:
            handler.close()
            fail(f"--log-file {log_file}: cannot write it ({exc.strerror or exc}): choose a writable file", kind="ConfigError")
        root.addHandler(handler)
        _log_handlers.append(handler)


class LogFileHandler(logging.Handler):
    """JSON lines to ``--log-file``, failing visibly: a write error (disk full, I/O error) is kept instead
    of logging's "--- Logging error ---" traceback on stderr, reported once, the file is not written to
    again, and the command ends with exit 2 naming the cause (``log_file_failure``, ``pipeline.cli.main``).

    Text a terminal could not show either (a file name that is not UTF-8) is written backslash-escaped
    rather than failing the line.
    """

    def __init__(self, path: Path) -> None:
        from pipeline.logs import JsonFormatter

        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(path, "a", encoding="utf-8", errors="backslashreplace")
        self.setFormatter(JsonFormatter())
        self.error: OSError | None = None

    def probe(self) -> None:
        """Write the first line now (the command line), so a file that takes no bytes fails before the command starts.

        Raises:
            OSError: the file cannot be written (``/dev/full``: ENOSPC).
        """
        record = logging.LogRecord("pipeline", logging.INFO, __file__, 0, "log opened: %s", (" ".join(sys.argv[1:]),), None)
        self.stream.write(self.format(record) + "\n")
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is not None:
            return
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)  # a bad log call (wrong %-args) is a bug, reported as logging does
            return
        try:
            self.stream.write(line)
            self.stream.flush()
        except OSError as exc:
            self.error = exc
            err.print(f"[bold red]error:[/] --log-file {self.path}: cannot write it ({exc.strerror or exc}); the command exits 2", highlight=False)

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError as exc:
            self.error = self.error or exc
        super().close()


_log_handlers: list[LogFileHandler] = []


def log_file_failure() -> str | None:
    """Why the ``--log-file`` could not be written during the command, or None if it could."""
    for handler in _log_handlers:
        if handler.error is not None:
            return f"--log-file {handler.path}: cannot write it ({handler.error.strerror or handler.error})"
    return None


def settings_for(store: Path) -> Settings:
    """Build the settings once at the edge; a bad environment or config file exits 2 with the cause."""
    try:
        settings = Settings(store=store)
    except Exception as exc:  # pydantic ValidationError from env or config file
        fail(f"configuration error: {exc}", kind="ConfigError")
        raise  # unreachable
    _store_in_use[:] = [settings.store]
    return settings


def json_requested() -> bool:
    """True when the command line asked for ``--json`` (errors then go to stdout as JSON too)."""
    return "--json" in sys.argv[1:]


def fail(message: str, code: int = 2, kind: str | None = None) -> None:
    """Print ``error: [kind: ]message`` on stderr (with --json also the error object on stdout) and exit with ``code``.

    ``kind`` (an error class name, "StoreLocked") is the JSON ``type``; without one it is "PipelineError".
    It is passed, not parsed out of the message: a message may well start with "Something: ".
    """
    err.print(f"[bold red]error:[/] {kind + ': ' if kind else ''}{message}", highlight=False)
    if json_requested():
        emit_json({"error": {"type": kind or "PipelineError", "message": message}})
    raise typer.Exit(code)


def fatal(exc: BaseException) -> None:
    """Report a fatal error and exit 2: the PipelineError for ``exc`` (see ``fatal_error``), with the
    process that holds the store named for ``StoreLocked``. Anything else is a bug: one line, exit 2,
    the traceback only with --verbose."""
    error = fatal_error(exc, _store_in_use[0] if _store_in_use else "the store")
    if error is None:
        logger.debug("internal error", exc_info=exc)
        fail(f"{type(exc).__name__}: {exc} (a bug: run again with --verbose for the traceback, and report it)", kind="InternalError")
        return
    if isinstance(error, StoreLocked):
        command = _command()
        if command in _SERVICE_ROUTE:
            error = error.advise(_SERVICE_ROUTE[command])
        if _store_in_use:
            from pipeline.store.holder import describe_holders

            holders = describe_holders(_store_in_use[0])
            if holders:
                error = error.held_by(holders)
    fail(str(error), kind=type(error).__name__)


# What to send to a running service instead, per command: the generic hint names POST /ingest,
# which is advice for an ingest only.
_SERVICE_ROUTE = {
    "query": "ask the service instead (POST /retrieve, POST /query)",
    "status": "ask the service instead (GET /status)",
    "check": "stop it first (check needs the store to itself)",
    "eval": "stop it first, or evaluate into another --store",
    "enrich": "stop it first",
}


def _command() -> str:
    """The running subcommand's name (``query``...), or "" outside one."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name:
        return ctx.info_name
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return args[0] if args else ""


def emit_json(obj: object) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):  # a lone surrogate (undecodable argv or file name): \\u escapes
        text = json.dumps(obj, indent=2, ensure_ascii=True)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


T = TypeVar("T")


def call_and_emit(call: Callable[[], T], json_out: bool, show: Callable[[T], None], as_json: Callable[[T], object] | None = None) -> T:
    """The shape of a command that does one thing and reports it: run ``call``; a ``PipelineError``
    goes to ``fatal`` (exit 2, classified once for every command); then with ``--json`` print the
    result as one JSON object (``as_json``, else the model's dump), or ``show`` it to people.

    Example:
        call_and_emit(lambda: create_snapshot(settings, path), json_out, lambda m: _summary("snapshot", m))
    """
    try:
        result = call()
    except PipelineError as exc:
        fatal(exc)
        raise  # unreachable: fatal exits
    if json_out:
        emit_json(as_json(result) if as_json is not None else result.model_dump(mode="json"))  # type: ignore[attr-defined]
    else:
        show(result)
    return result
