"""pipeline/output.py: the helpers every command shares, and no import cycle through pipeline.cli."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from pipeline.output import emit_json, fail


def test_feature_commands_import_without_the_cli() -> None:
    """eval and serve are registered by pipeline.cli; importing them must not import it back."""
    code = (
        "import sys, pipeline.eval.command, pipeline.service.command\n"
        "assert 'pipeline.cli' not in sys.modules, sorted(m for m in sys.modules if m.startswith('pipeline'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_fail_exits_with_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        fail("store locked", code=2)
    assert info.value.exit_code == 2


def test_emit_json_writes_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json({"answer": "é", "n": 1})
    assert capsys.readouterr().out == '{\n  "answer": "é",\n  "n": 1\n}\n'
