"""A query process imports only what its work needs (issue 26): `query --retrieve-only` and the default
extractive `query` never import LlamaIndex, qdrant-client, torch, SQLAlchemy or pandas.

Each runs as a new process under ``python -X importtime``, which logs every module the process
imports, at start-up or later, to stderr; the test reads the top-level package of each. Why it
matters: LlamaIndex's package ``__init__`` alone took ~1.0 s of CPU and qdrant-client's ~0.6 s, three
quarters of a 4 s retrieve-only query on the bundled sample. ``tests/unit/test_cli_startup.py`` guards
``--help`` the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, text_store

HEAVY = ("llama_index", "qdrant_client", "torch", "sqlalchemy", "pandas")
TEXT = (
    "AlexNet was trained on two NVIDIA GTX 580 GPUs for five to six days. The network was split across the two GPUs, "
    "which communicated only in certain layers. It won the ImageNet challenge in 2012 with a top-5 error of 15.3 percent.\n\n"
    "Bitcoin mining uses a great deal of electricity. Miners compete to find a block hash below a target, and the "
    "difficulty adjusts every 2016 blocks so that a block is found about every ten minutes.\n"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_store(tmp_path_factory.mktemp("lean"), TEXT * 4).store


def imported_by(*args: str) -> tuple[set[str], dict]:
    """The top-level packages a new ``python -m pipeline ARGS`` process imported, and its JSON output."""
    env = {**os.environ, "PIPELINE_LLM__PROVIDER": "none"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 100  # the log is there (an interpreter that ignored -X importtime would pass anything)
    return {line.split("|")[-1].strip().split(".")[0] for line in lines}, json.loads(proc.stdout)


def test_retrieve_only_query_imports_no_heavy_library(store: Path) -> None:
    imported, result = imported_by("query", "--retrieve-only", "--json", "How many GPUs was AlexNet trained on?", "--store", str(store))
    assert result["sources"] and result["stats"]["embedded_texts"] == 0
    assert "onnxruntime" in imported  # the query was embedded in this process
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_extractive_query_imports_no_heavy_library(store: Path) -> None:
    imported, result = imported_by("query", "--json", "--answer", "extractive", "--min-confidence", "0", "How many GPUs was AlexNet trained on?", "--store", str(store))
    assert result["answer_mode"] == "extractive" and result["citations"], result
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_the_default_query_is_the_extract(store: Path) -> None:
    imported, result = imported_by("query", "--json", "How many GPUs was AlexNet trained on?", "--store", str(store))
    assert result["answer_mode"] in ("extractive", "none")  # "none": not answerable, sources only
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
