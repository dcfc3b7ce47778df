"""Help text reads right: flags take no value placeholder, arguments are named, every command has an example."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

COMMANDS = ["ingest", "query", "status", "check", "serve"]


def help_of(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"}, terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_have_no_placeholder_and_there_is_an_example(command: str) -> None:
    text = help_of(command)
    assert "<bool>" not in text
    assert re.search(r"^\s+--help\s+Show this message", text, re.M)
    assert "Example:" in text and f"python -m pipeline {command}" in text


def test_arguments_are_named_for_what_they_take() -> None:
    assert "{PATHS}..." in help_of("ingest").splitlines()[0]
    assert "{QUESTION}" in help_of("query").splitlines()[0]
    assert re.search(r"^\s+--json\s+Print one JSON object", help_of("status"), re.M)
