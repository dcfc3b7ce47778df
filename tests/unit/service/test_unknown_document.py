"""``GET /documents/{name}`` answers 422 for a name several documents answer to and 404 for one nobody does.

The status comes from ``UnknownDocument.ambiguous``, set where the catalog resolves the name, not from
the message's words: a name that matches nothing but whose closest names contain "ambiguous" was a
422 while the service looked for that word. The store is a real docstore holding only ledger entries
(the route resolves the name before it opens anything else); no engine, no models.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.config import Settings
from pipeline.errors import InvalidQuery, UnknownDocument
from pipeline.service.app import create_app
from pipeline.store.docstore import ParentStore
from pipeline.store.documents import DOCSTORE, Catalog
from pipeline.store.ledger import LedgerEntry

NAMES = ["x/paper.pdf", "y/paper.pdf", "ambiguous-1.pdf", "ambiguous-2.pdf"]


def ledger() -> dict[str, LedgerEntry]:
    return {f"/docs/{n}": LedgerEntry(content_hash=f"h{i}", name=n) for i, n in enumerate(NAMES)}


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    store = tmp_path / "store"
    store.mkdir()
    parents = ParentStore(store / DOCSTORE)
    try:
        for doc_id, entry in ledger().items():
            parents.put_ledger(doc_id, entry)
    finally:
        parents.close()
    # No lifespan (no `with`): nothing but the docstore is read before the name is resolved.
    return TestClient(create_app(Settings(store=store, llm={"provider": "none"})))


def test_the_catalog_says_which_kind_of_unknown_with_the_same_messages() -> None:
    catalog = Catalog(ledger())
    with pytest.raises(UnknownDocument) as two:
        catalog.resolve("paper.pdf")
    assert two.value.ambiguous and two.value.closest == ["x/paper.pdf", "y/paper.pdf"]
    assert str(two.value) == "document name 'paper.pdf' is ambiguous: it could be x/paper.pdf, y/paper.pdf; give the whole name"
    with pytest.raises(UnknownDocument) as none:
        catalog.resolve("ambiguous.pdf")
    assert not none.value.ambiguous and len(none.value.closest) > 1 and "ambiguous" in str(none.value)
    assert str(none.value).startswith("no document named 'ambiguous.pdf' (closest: ambiguous-")
    with pytest.raises(UnknownDocument) as empty:
        Catalog({}).resolve("paper.pdf")
    assert not empty.value.ambiguous and str(empty.value) == "no document named 'paper.pdf': the store holds no documents"
    assert isinstance(empty.value, InvalidQuery)  # still a bad request to every caller that maps the tree


def test_ambiguous_is_422_and_unknown_is_404_even_when_the_closest_names_say_ambiguous(client: TestClient) -> None:
    two = client.get("/documents/paper.pdf")
    assert two.status_code == 422, two.text
    assert "could be x/paper.pdf, y/paper.pdf" in two.json()["detail"]
    none = client.get("/documents/ambiguous.pdf")
    assert none.status_code == 404, none.text
    assert "closest: ambiguous-" in none.json()["detail"]
    assert client.delete("/documents/paper.pdf").status_code == 422
    assert client.delete("/documents/ambiguous.pdf").status_code == 404
