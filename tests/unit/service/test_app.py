from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.errors import ConfigError, InvalidQuery, LoadError, ModelMismatch, PipelineError, QueryError, StoreLocked, StoreUnavailable
from pipeline.service.app import status_for
from pipeline.service.schemas import IngestRequest, QueryRequest, RetrieveRequest


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidQuery("empty"), 422),
        (QueryError("bad"), 400),
        (LoadError("a.pdf", "encrypted"), 422),
        (StoreUnavailable("down"), 503),
        (StoreLocked("held"), 503),
        (ModelMismatch("c", "a/1", "b/2"), 503),
        (ConfigError("no llm"), 503),
        (PipelineError("?"), 500),
    ],
)
def test_error_tree_maps_to_status(exc: PipelineError, status: int) -> None:
    assert status_for(exc) == status


class TestSchemas:
    def test_filters_become_the_engine_mapping(self) -> None:
        assert RetrieveRequest(query="q").filter_dict() is None
        assert RetrieveRequest(query="q", filters={"doc_id": "/a.pdf"}).filter_dict() == {"doc_id": "/a.pdf"}

    def test_blank_query_and_unknown_fields_are_refused(self) -> None:
        with pytest.raises(ValidationError, match="blank"):
            RetrieveRequest(query=" \t")
        with pytest.raises(ValidationError, match="Extra inputs"):
            QueryRequest(query="q", streaming=True)

    def test_ingest_paths_must_be_absolute(self) -> None:
        assert IngestRequest(paths=["/data/./a.pdf"]).path_list() == [Path("/data/a.pdf")]
        with pytest.raises(ValidationError, match=r"paths\[0\]: path must be absolute on the server"):
            IngestRequest(paths=["a.pdf"])
        with pytest.raises(ValidationError):
            IngestRequest(paths=[])

    @pytest.mark.parametrize(
        ("path", "needle"),
        [
            ("/data/a\x00.pdf", "NUL or control character"),
            ("/data/\ud800.pdf", "lone surrogate"),
            ("/" + "a" * 5000, "path is 5001 bytes, the limit is 4095"),
            ("/data/" + "a" * 300, "a path component is over 255 bytes"),
            ("/" + "/".join(["b" * 200] * 100), "bytes, the limit is 4095"),
            ("", "empty path"),
        ],
    )
    def test_ingest_paths_are_checked_as_text(self, path: str, needle: str) -> None:
        with pytest.raises(ValidationError, match=needle):
            IngestRequest(paths=[path])


class TestStrictTypes:
    """JSON types are taken as sent: no "3" → 3, no true → 1, no "yes" → true."""

    @pytest.mark.parametrize("top_k", ["3", True, 3.0, False])
    def test_top_k_must_be_an_integer(self, top_k: object) -> None:
        with pytest.raises(ValidationError, match="valid integer"):
            RetrieveRequest.model_validate({"query": "q", "top_k": top_k})

    @pytest.mark.parametrize("flag", ["yes", "true", 1, 0, None])
    def test_flags_must_be_booleans(self, flag: object) -> None:
        with pytest.raises(ValidationError, match="valid boolean"):
            IngestRequest.model_validate({"paths": ["/data"], "prune": flag})
        with pytest.raises(ValidationError, match="valid boolean"):
            QueryRequest.model_validate({"query": "q", "stream": flag})

    def test_strings_stay_strings_and_enums_take_their_values(self) -> None:
        with pytest.raises(ValidationError, match="valid string"):
            RetrieveRequest.model_validate({"query": 42})
        with pytest.raises(ValidationError, match="valid string"):
            RetrieveRequest.model_validate({"query": "q", "filters": {"doc_id": 7}})
        with pytest.raises(ValidationError, match="valid string"):
            IngestRequest.model_validate({"paths": [7]})
        ok = RetrieveRequest.model_validate({"query": "q", "mode": "chunk", "top_k": 3})
        assert ok.mode.value == "chunk" and ok.top_k == 3
