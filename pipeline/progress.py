"""Progress for long commands: rich bars on a terminal (stderr), nothing when output is not a TTY.

Callers log plain lines themselves when ``tty`` is False, so cron logs stay readable.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TerminalProgress:
    """Context manager owning one rich ``Progress`` that only starts on a terminal."""

    def __init__(self, console: Console, eta: bool = False) -> None:
        self.tty = console.is_terminal
        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if eta:
            columns.append(TimeRemainingColumn())
        self.progress = Progress(*columns, console=console, transient=True)

    def __enter__(self) -> "TerminalProgress":
        if self.tty:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty:
            self.progress.stop()
