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
        assert IngestRequest(paths=[Path("/data/a.pdf")]).paths == [Path("/data/a.pdf")]
        with pytest.raises(ValidationError, match="absolute on the server: a.pdf"):
            IngestRequest(paths=[Path("a.pdf")])
        with pytest.raises(ValidationError):
            IngestRequest(paths=[])
