"""`python -m pipeline --help` must answer fast: it imports neither LlamaIndex nor qdrant-client."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("llama_index", "qdrant_client", "onnxruntime", "xllamacpp", "pypdf")


def test_help_imports_no_heavy_library() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ingest" in proc.stdout and "serve" in proc.stdout and "eval" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_public_api_still_exports_the_lazy_names() -> None:
    import pipeline
    from pipeline import eval as evaluation

    assert pipeline.open_engine is pipeline.Engine and callable(pipeline.ingest) and pipeline.Ingestor
    assert evaluation.EvalRunner and evaluation.load_dataset
