"""/docs works offline: the Swagger UI page loads its assets from the service, not from a CDN."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.config import Settings
from pipeline.service.app import create_app


def client(tmp_path: Path, **service: object) -> TestClient:
    # No lifespan (no `with`): nothing is loaded or opened, the docs need neither.
    return TestClient(create_app(Settings(store=tmp_path / "store", llm={"provider": "none"}, service=service)))


def test_docs_page_references_only_local_assets(tmp_path: Path) -> None:
    c = client(tmp_path)
    page = c.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/docs/assets/swagger-ui.css" in page.text
    assert "cdn.jsdelivr.net" not in page.text and "https://" not in page.text.split("<body>")[0]
    js = c.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text[:2000]
    assert c.get("/docs/assets/swagger-ui.css").status_code == 200


@pytest.mark.parametrize(("public_docs", "status"), [(False, 401), (True, 200)])
def test_with_a_token_the_page_needs_public_docs_and_the_assets_are_public(tmp_path: Path, public_docs: bool, status: int) -> None:
    c = client(tmp_path, api_token="t0ken-for-docs", public_docs=public_docs)
    assert c.get("/docs").status_code == status
    assert c.get("/openapi.json").status_code == status
    assert c.get("/docs/assets/swagger-ui-bundle.js").status_code == 200  # the library holds no data
    assert c.get("/status").status_code == 401  # the API itself still needs the token
