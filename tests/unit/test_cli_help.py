"""Help text reads right: flags take no value placeholder, arguments are named, every command has an example."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

COMMANDS = ["ingest", "enrich", "query", "status", "check", "serve"]


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


@pytest.mark.parametrize("top_k", ["0", "51", "-1"])
def test_top_k_out_of_range_is_refused_before_anything_opens(tmp_path: object, top_k: str) -> None:
    """Same rule and words as the API (check_top_k); no store is opened or created, no model loaded."""
    from pathlib import Path

    store = Path(str(tmp_path)) / "store"
    result = CliRunner().invoke(app, ["query", "What is S2ORC?", "--top-k", top_k, "--store", str(store)], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert f"InvalidQuery: top_k must be between 1 and 50, got {top_k}" in result.output
    assert not store.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "unsupported"])
def test_ingest_of_nothing_readable_exits_1_and_creates_no_store(tmp_path: object, case: str) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    target = base / "docs"
    if case != "missing":
        target.mkdir()
    if case == "unsupported":
        for name in ("a.docx", "b.docx", "c.png"):
            (target / name).touch()
    store = base / "store"
    result = CliRunner().invoke(app, ["ingest", str(target), "--store", str(store)], terminal_width=300)
    assert result.exit_code == 1, result.output
    assert "nothing to ingest" in result.output and not store.exists()
    if case == "unsupported":
        assert f"no supported files found under {target} (skipped: 2 .docx, 1 .png)" in result.output
