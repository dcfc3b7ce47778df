"""Which backend a store opens with, and `migrate --to edge` on a small local-mode store (no model weights)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from pipeline.config import QdrantBackend, Settings
from pipeline.errors import ConfigError, StoreError
from pipeline.store import qdrant as qstore
from pipeline.store.convert import migrate_to_edge
from pipeline.store.edge import EdgeClient, EdgeEngine

DIM = 8


def _local_store(store: Path, n: int = 1300) -> dict[str, models.Record]:
    """A local-mode store: two collections, one with BM25 vectors on half its points, one dense-only."""
    client = QdrantClient(path=str(store / "qdrant"))
    try:
        rng = np.random.default_rng(1)
        client.create_collection(
            "docs_children",
            vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embed_model": "m", "embed_dim": DIM},
        )
        client.create_collection("docs_parents", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        points = []
        for i in range(n):
            vector: dict = {"": rng.normal(size=DIM).tolist()}
            if i % 2:
                vector["bm25"] = models.SparseVector(indices=[i % 7, 50 + i % 3], values=[0.5, 1.5])
            points.append(models.PointStruct(id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))), vector=vector, payload={"doc_id": f"d{i % 4}", "i": i, "nested": {"a": [1, 2]}}))
        client.upsert("docs_children", points=points)
        client.upsert("docs_parents", points=[models.PointStruct(id=1, vector=[1.0] * DIM, payload={"kind": "parent"})])
        records, _ = client.scroll("docs_children", limit=10_000, with_payload=True, with_vectors=True)
        return {str(r.id): r for r in records}
    finally:
        client.close()


class TestBackendChoice:
    def test_new_store_is_edge_and_url_means_server(self, tmp_path: Path) -> None:
        assert qstore.backend(Settings(store=tmp_path / "s")) is QdrantBackend.EDGE
        assert qstore.backend(Settings(store=tmp_path / "s", qdrant={"url": "http://q:6333"})) is QdrantBackend.SERVER
        assert qstore.backend(Settings(store=tmp_path / "s", qdrant={"backend": "local"})) is QdrantBackend.LOCAL

    def test_server_without_url_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="needs a URL"):
            qstore.backend(Settings(store=tmp_path, qdrant={"backend": "server"}))

    def test_a_local_mode_store_opens_in_local_mode_until_migrated(self, tmp_path: Path) -> None:
        settings = Settings(store=tmp_path / "s")
        _local_store(settings.store, n=3)
        assert qstore.backend(settings) is QdrantBackend.LOCAL and qstore.legacy_local(settings)
        client = qstore.open_client(settings)
        try:
            assert not isinstance(client, (EdgeClient, EdgeEngine)) and client.count("docs_children").count == 3
        finally:
            client.close()
        assert not settings.edge_path.exists()  # nothing created beside it
        migrate_to_edge(settings)
        assert qstore.backend(settings) is QdrantBackend.EDGE and not qstore.legacy_local(settings)
        client = qstore.open_client(settings)
        try:
            assert isinstance(client, EdgeEngine) and client.count("docs_children").count == 3
        finally:
            client.close()


class TestMigrateToEdge:
    def test_copies_ids_payloads_vectors_and_metadata_in_pages(self, tmp_path: Path) -> None:
        settings = Settings(store=tmp_path / "s")
        before = _local_store(settings.store)
        seen: list[tuple[str, int, int]] = []
        report = migrate_to_edge(settings, lambda name, done, total: seen.append((name, done, total)))
        assert report.collections == {"docs_children": 1300, "docs_parents": 1}
        assert [s for s in seen if s[0] == "docs_children"] == [("docs_children", 512, 1300), ("docs_children", 1024, 1300), ("docs_children", 1300, 1300)]
        assert not settings.qdrant_path.exists() and Path(report.old_qdrant).name.startswith("qdrant.migrated-")
        assert not list(settings.store.glob(".edge.migrating-*"))
        client = EdgeClient(settings.edge_path)
        try:
            info = client.get_collection("docs_children")
            assert info.config.metadata == {"embed_model": "m", "embed_dim": DIM}
            assert info.config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
            assert not client.get_collection("docs_parents").config.params.sparse_vectors
            after = {str(r.id): r for r in client.scroll("docs_children", limit=10_000, with_payload=True, with_vectors=True)[0]}
            assert after.keys() == before.keys()
            for pid, old in before.items():
                new = after[pid]
                assert new.payload == old.payload
                old_v, new_v = (old.vector, new.vector) if isinstance(old.vector, dict) else ({"": old.vector}, {"": new.vector})
                assert set(new_v) == set(old_v)
                assert np.allclose(new_v[""], old_v[""], atol=1e-6)
                if "bm25" in old_v:
                    assert new_v["bm25"] == old_v["bm25"]
            assert client.retrieve("docs_parents", [1])[0].payload == {"kind": "parent"}  # integer ids too
        finally:
            client.close()

    def test_refuses_when_edge_exists_or_nothing_to_migrate(self, tmp_path: Path) -> None:
        empty = Settings(store=tmp_path / "empty")
        empty.store.mkdir()
        with pytest.raises(StoreError, match="nothing to migrate"):
            migrate_to_edge(empty)
        settings = Settings(store=tmp_path / "s")
        _local_store(settings.store, n=2)
        settings.edge_path.mkdir()
        with pytest.raises(StoreError, match="exists already"):
            migrate_to_edge(settings)
        assert settings.qdrant_path.is_dir()  # untouched

    def test_a_failed_copy_leaves_the_local_store_as_it_was(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = Settings(store=tmp_path / "s")
        _local_store(settings.store, n=10)

        def short_count(self: EdgeClient, name: str, **kwargs: object) -> models.CountResult:
            return models.CountResult(count=3)

        monkeypatch.setattr(EdgeClient, "count", short_count)
        with pytest.raises(StoreError, match="10 points in local mode.*3 in edge; nothing was changed"):
            migrate_to_edge(settings)
        assert settings.qdrant_path.is_dir() and not settings.edge_path.exists()
        assert not list(settings.store.glob(".edge.migrating-*"))
