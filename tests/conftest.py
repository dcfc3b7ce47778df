"""Shared fixtures: a clean environment for every test, paths to the bundled sample and ../shared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pipeline.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PDF = ROOT / "samples" / "acl2020.acl-main.447.pdf"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of rewritten models (providers/gather_first.py) for the run, not the user's own."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    """A developer's shell must not change results: drop our variables and the OpenAI/Qdrant ones."""
    for key in list(os.environ):
        if key.startswith(("PIPELINE_", "QDRANT_", "OPENAI_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIPELINE_CONFIG", str(ROOT / "tests" / "no-config.toml"))
    monkeypatch.setenv("PIPELINE_MODEL_CACHE", str(model_cache))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only on the team's machines)")
    return path


def text_store(folder: Path, text: str) -> Settings:
    """Settings of a store in ``folder`` holding one text file ingested with MiniLM and no LLM: the
    small real store unit tests share (seconds to build)."""
    from pipeline.config import Settings
    from pipeline.ingest.run import ingest

    doc = folder / "notes.txt"
    doc.write_text(text, encoding="utf-8")
    settings = Settings(store=folder / "store", llm={"provider": "none"}, ingest={"enrich": "later"})
    report = ingest(settings, [doc])
    assert report.stats.files_failed == 0 and report.stats.parents >= 1
    return settings
