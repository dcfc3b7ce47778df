"""Unknown settings are errors naming the closest valid one; `pipeline config` says where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from tests.e2e.conftest import run_cli


class TestUnknownSettings:
    def test_misspelt_env_var_names_the_right_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PIPELINE_RETRIEVAL__TOPK", "5")
        with pytest.raises(ValueError, match="PIPELINE_RETRIEVAL__TOPK names no setting: did you mean PIPELINE_RETRIEVAL__TOP_K"):
            Settings()

    def test_misspelt_toml_key_names_the_right_one(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        toml = tmp_path / "pipeline.toml"
        toml.write_text("[retrieval]\ntopk = 5\n")
        monkeypatch.setenv("PIPELINE_CONFIG", str(toml))
        with pytest.raises(ValueError, match="retrieval.topk names no setting: did you mean retrieval.top_k"):
            Settings()

    def test_variables_the_product_reads_and_open_mappings_are_allowed(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        for var in ("PIPELINE_FAULT_PAUSE", "PIPELINE_API_TOKEN", "PIPELINE_STORE"):
            monkeypatch.setenv(var, "x")
        monkeypatch.setenv("PIPELINE_INGEST__PDF_PASSWORDS__SECRET.PDF", "pw")
        monkeypatch.setenv("PIPELINE_RETRIEVAL__TOP_K", "5")
        toml = tmp_path / "pipeline.toml"
        toml.write_text('[ingest.pdf_passwords]\n"a.pdf" = "pw"\n[retrieval]\ntop_k = 4\n')
        monkeypatch.setenv("PIPELINE_CONFIG", str(toml))
        assert Settings().retrieval.top_k == 5


def test_cli_exits_2_before_anything_and_config_shows_sources(tmp_path: Path) -> None:
    bad = run_cli("status", "--store", str(tmp_path / "s"), env={"PIPELINE_RETRIEVAL__TOPK": "5"})
    assert bad.code == 2 and "did you mean PIPELINE_RETRIEVAL__TOP_K" in bad.stderr
    shown = run_cli("config", "--json", env={"PIPELINE_RETRIEVAL__TOP_K": "5", "OPENAI_API_KEY": "sk-not-shown"})
    assert shown.code == 0, shown.stderr
    rows = {r["key"]: r for r in shown.json["settings"]}
    assert rows["retrieval.top_k"] == {"key": "retrieval.top_k", "value": 5, "source": "environment (PIPELINE_RETRIEVAL__TOP_K)"}
    assert rows["openai_api_key"]["value"] == "**********" and "sk-not-shown" not in shown.stdout
    assert rows["retrieval.overfetch"]["source"] == "default"
