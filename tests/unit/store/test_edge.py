"""The qdrant-edge backend through qdrant-client's API: a real engine on real files (no model weights)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from pipeline.errors import StoreDamaged, StoreLocked
from pipeline.store.edge import client as edge_client
from pipeline.store.edge import engine as edge_engine
from pipeline.store.edge import files as edge_files
from pipeline.store.edge import pagecache, shard, tuning
from pipeline.store.edge import SIDECAR, EdgeClient
from tests.conftest import ROOT

DIM = 8
NAME = "docs_children"
INDEXES = ("doc_id", "kind", "parent_id")


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")) for i in range(n)]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _sidecar(path: Path, name: str = NAME) -> dict:
    """The collection's sidecar as it is on disk."""
    return json.loads((path / name / SIDECAR).read_text())


def _create(client: QdrantClient, name: str = NAME) -> None:
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        metadata={"embed_model": "test-model", "embed_dim": DIM},
    )


def _fill(client: QdrantClient, n: int = 30, name: str = NAME) -> tuple[list[str], np.ndarray]:
    """Points with doc_id d0..d2; even points carry a BM25 vector with term 100 + i % 5, odd ones none."""
    ids, vecs = _ids(n), _vectors(n)
    points = []
    for i, (pid, v) in enumerate(zip(ids, vecs)):
        vector: dict = {"": v.tolist()}
        if i % 2 == 0:
            vector["bm25"] = models.SparseVector(indices=[7, 100 + i % 5], values=[1.0, 1.0])
        points.append(models.PointStruct(id=pid, vector=vector, payload={"doc_id": f"d{i % 3}", "kind": "chunk-128", "i": i}))
    client.upsert(name, points=points, wait=True)
    return ids, vecs


def _closed_store(tmp_path: Path) -> Path:
    """An edge store holding one empty collection (``NAME``), closed; its path."""
    path = tmp_path / "edge"
    c = EdgeClient(path, keyword_indexes=INDEXES)
    _create(c)
    c.close()
    return path


@pytest.fixture
def client(tmp_path: Path):
    c = EdgeClient(tmp_path / "edge", keyword_indexes=INDEXES)
    try:
        yield c
    finally:
        c.close()


def _exact_top(vecs: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return list(np.argsort(-(normed @ (q / np.linalg.norm(q))))[:k])


def _resident(path: Path) -> float:
    """Share of ``path``'s pages in the page cache (mincore on a private mapping of it)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if not size:
        return 1.0
    with open(path, "rb") as fh:
        mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)
    try:
        buf = (ctypes.c_char * size).from_buffer(mapped)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        assert libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec) == 0, ctypes.get_errno()
        del buf
        return sum(v & 1 for v in vec) / pages
    finally:
        mapped.close()


class TestCollections:
    def test_create_load_reopen_keeps_points_config_and_metadata(self, tmp_path: Path) -> None:
        path = tmp_path / "edge"
        c = EdgeClient(path, keyword_indexes=INDEXES)
        _create(c)
        ids, _ = _fill(c, 20)
        c.close()
        assert (path / NAME / SIDECAR).is_file()

        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.collection_exists(NAME) and not c.collection_exists("docs_parents")
            assert [d.name for d in c.get_collections().collections] == [NAME]
            info = c.get_collection(NAME)
            assert info.points_count == 20
            assert info.config.params.vectors == models.VectorParams(size=DIM, distance=models.Distance.COSINE)
            assert info.config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF
            assert info.config.metadata == {"embed_model": "test-model", "embed_dim": DIM}
            assert set(INDEXES) <= set(info.payload_schema)  # payload indexes made at create time
            assert {str(r.id) for r in c.retrieve(NAME, ids[:3])} == set(ids[:3])
        finally:
            c.close()

    def test_a_collection_empty_at_close_is_loaded_only_when_written(self, tmp_path: Path) -> None:
        path = tmp_path / "edge"
        c = EdgeClient(path, keyword_indexes=INDEXES)
        _create(c)
        _create(c, "docs_parents")
        _fill(c, 10, name="docs_parents")
        empty_info = c.get_collection(NAME)
        c.close()
        assert _sidecar(path)[tuning.EMPTY_MARK]
        assert tuning.EMPTY_MARK not in _sidecar(path, "docs_parents")

        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            coll = c.store._collections[NAME]
            assert not coll.loaded and c.store._collections["docs_parents"].loaded
            info = c.get_collection(NAME)  # answered from the sidecar, as the shard said at close
            assert (info.points_count, info.payload_schema, info.config) == (0, empty_info.payload_schema, empty_info.config)
            assert c.count(NAME).count == 0
            assert c.store.search_hits(NAME, [(None, [1.0] * DIM)], None, 5, []) == [[]]
            c.flush()
            c.optimize()
            assert not coll.loaded
            ids, _ = _fill(c, 12)  # the first write drops the mark on disk, then loads the shard
            assert coll.loaded and tuning.EMPTY_MARK not in _sidecar(path)
            assert c.count(NAME).count == 12
        finally:
            c.close()
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.store._collections[NAME].loaded and c.count(NAME).count == 12
            assert tuning.EMPTY_MARK not in _sidecar(path)
        finally:
            c.close()

    def test_a_write_by_other_code_voids_the_empty_mark(self, tmp_path: Path) -> None:
        path = _closed_store(tmp_path)
        assert _sidecar(path)[tuning.EMPTY_MARK]
        shard = tuning.qe.EdgeShard.load(str(path / NAME))  # e.g. an older version of this package, which keeps no mark
        shard.update(tuning.qe.UpdateOperation.upsert_points([tuning.qe.Point(_ids(1)[0], {"": [1.0] * DIM}, {"doc_id": "d0"})]))
        shard.flush()
        shard.close()
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.store._collections[NAME].loaded
            assert c.count(NAME).count == 1 and c.get_collection(NAME).points_count == 1
        finally:
            c.close()
        assert tuning.EMPTY_MARK not in _sidecar(path)  # a void mark is dropped at close

    def test_a_write_to_an_empty_collection_survives_a_crash_before_close(self, tmp_path: Path) -> None:
        path = _closed_store(tmp_path)
        script = textwrap.dedent(
            """
            import os, sys
            from pathlib import Path
            from pipeline.store.edge import EdgeClient
            from tests.unit.store.test_edge import INDEXES, NAME, _fill
            c = EdgeClient(Path(sys.argv[1]), keyword_indexes=INDEXES)
            _fill(c, 7)
            os._exit(0)  # no flush, no close: the sidecar must not still say empty
            """
        )
        done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.store._collections[NAME].loaded
            assert c.count(NAME).count == 7
        finally:
            c.close()

    def test_metadata_sidecar_is_json_and_update_rewrites_it_atomically(self, client: EdgeClient, tmp_path: Path) -> None:
        _create(client)
        client.update_collection(NAME, metadata={"note": "x"})
        sidecar = json.loads((tmp_path / "edge" / NAME / SIDECAR).read_text())
        assert sidecar["metadata"] == {"embed_model": "test-model", "embed_dim": DIM, "note": "x"}
        assert not list((tmp_path / "edge" / NAME).glob(".*.tmp"))  # temp file replaced, not left behind

    def test_create_twice_fails_and_delete_removes_the_folder(self, client: EdgeClient, tmp_path: Path) -> None:
        _create(client)
        with pytest.raises(ValueError, match="already exists"):
            _create(client)
        assert client.delete_collection(NAME) is True
        assert not (tmp_path / "edge" / NAME).exists() and not client.collection_exists(NAME)

    def test_half_created_collection_is_removed_on_open(self, tmp_path: Path) -> None:
        """A crash while creating leaves only the temp folder: never visible, cleaned up."""
        path = tmp_path / "edge"
        leftover = path / f".{NAME}.creating-12345"
        (leftover / "segments").mkdir(parents=True)
        c = EdgeClient(path)
        try:
            assert not leftover.exists() and not c.collection_exists(NAME)
            _create(c)  # and the name is free
        finally:
            c.close()

    def test_collection_folder_without_sidecar_is_reported_damaged(self, tmp_path: Path) -> None:
        path = tmp_path / "edge"
        c = EdgeClient(path)
        _create(c)
        c.close()
        (path / NAME / SIDECAR).unlink()
        with pytest.raises(StoreDamaged, match=f"{NAME}.*no {SIDECAR}"):
            EdgeClient(path)

    def test_unused_methods_fail_naming_themselves(self, client: EdgeClient) -> None:
        with pytest.raises(NotImplementedError, match="create_snapshot"):
            client.create_snapshot(NAME)


class TestSearch:
    def test_dense_query_finds_the_exact_nearest(self, client: EdgeClient) -> None:
        _create(client)
        ids, vecs = _fill(client, 40)
        q = _vectors(1, seed=9)[0]
        hits = client.query_points(NAME, query=q.tolist(), limit=5, with_payload=True).points
        assert [h.id for h in hits] == [ids[i] for i in _exact_top(vecs, q, 5)]
        expected = float(vecs[int(hits[0].payload["i"])] @ q / np.linalg.norm(vecs[int(hits[0].payload["i"])]) / np.linalg.norm(q))
        assert hits[0].score == pytest.approx(expected, abs=1e-5)

    def test_sparse_query_applies_idf(self, client: EdgeClient) -> None:
        """Term 7 is in every sparse point, term 100 in a fifth of them: the rare term must weigh more."""
        _create(client)
        _fill(client, 30)
        hits = client.query_points(NAME, query=models.SparseVector(indices=[7, 100], values=[1.0, 1.0]), using="bm25", limit=30).points
        assert len(hits) == 15  # only points with a BM25 vector
        with_rare = {h.id for h in hits if h.payload["i"] % 5 == 0}
        assert {h.id for h in hits[: len(with_rare)]} == with_rare
        assert hits[0].score > hits[-1].score * 1.5

    def test_prefetch_with_rrf_and_dbsf_fusion(self, client: EdgeClient) -> None:
        _create(client)
        _fill(client, 30)
        # two dense lists (no ties, so ranks are unambiguous): RRF by hand must agree exactly
        q1, q2 = _vectors(2, seed=3).tolist()
        prefetch = [models.Prefetch(query=q1, limit=10), models.Prefetch(query=q2, limit=10)]
        rrf = client.query_points(NAME, prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF), limit=5).points
        expected: dict[str, float] = {}
        for q in (q1, q2):  # Qdrant's RRF: 1 / (60 + rank), rank counted from 0
            for rank, hit in enumerate(client.query_points(NAME, query=q, limit=10).points):
                expected[hit.id] = expected.get(hit.id, 0.0) + 1 / (60 + rank)
        assert [h.score for h in rrf] == pytest.approx(sorted(expected.values(), reverse=True)[:5], abs=1e-6)
        assert all(expected[h.id] == pytest.approx(h.score, abs=1e-6) for h in rrf)
        # dense + BM25, as hybrid search sends it: points from both lists, best first
        hybrid = [models.Prefetch(query=q1, limit=10), models.Prefetch(query=models.SparseVector(indices=[101], values=[1.0]), using="bm25", limit=10)]
        for fusion in (models.Fusion.RRF, models.Fusion.DBSF):
            fused = client.query_points(NAME, prefetch=hybrid, query=models.FusionQuery(fusion=fusion), limit=30, with_payload=True).points
            scores = [h.score for h in fused]
            assert scores == sorted(scores, reverse=True)
            assert any(h.payload["i"] % 10 == 6 for h in fused)  # 101 = term of even i with i % 5 == 1
            assert len(fused) > 10  # more than one list's worth: both prefetches contributed

    def test_query_batch_as_llama_index_sends_it(self, client: EdgeClient) -> None:
        _create(client)
        ids, vecs = _fill(client, 20)
        q = _vectors(1, seed=5)[0].tolist()
        dense, sparse = client.query_batch_points(
            NAME,
            requests=[
                models.QueryRequest(query=q, using="", limit=3, with_payload=True),
                models.QueryRequest(query=models.SparseVector(indices=[102], values=[1.0]), using="bm25", limit=3, with_payload=True),
            ],
        )
        assert [h.id for h in dense.points] == [ids[i] for i in _exact_top(vecs, np.array(q), 3)]
        assert sparse.points and all(h.payload["i"] % 5 == 2 for h in sparse.points)

    def test_search_hits_are_what_query_batch_points_returns(self, client: EdgeClient, tmp_path: Path) -> None:
        """The retriever's lean path (no qdrant-client models) gives the same ids, scores and payload keys,
        as does ``store.qdrant.search`` over qdrant-client's local mode for the same points."""
        from pipeline.store.qdrant import search

        _create(client)
        ids, vecs = _fill(client, 30)
        q = _vectors(1, seed=5)[0].tolist()
        sparse = models.SparseVector(indices=[7, 102], values=[1.0, 1.0])
        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=["d0", "d1"]))])
        queries = [(None, q), ("bm25", sparse)]
        lean = search(client, NAME, queries, flt, 6, ["i", "doc_id"])
        full = client.query_batch_points(
            NAME, requests=[models.QueryRequest(query=v, using=u, filter=flt, limit=6, with_payload=["i", "doc_id"]) for u, v in queries]
        )
        assert [[(h[0], round(h[1], 5), h[2]) for h in side] for side in lean] == [
            [(str(p.id), round(p.score, 5), p.payload) for p in r.points] for r in full
        ]
        assert [h[0] for h in lean[0]][:3] == [ids[i] for i in _exact_top(vecs, np.array(q), 30) if i % 3 != 2][:3]
        local = QdrantClient(path=str(tmp_path / "local"))
        try:
            local.create_collection(
                NAME,
                vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            local.upsert(NAME, points=client.scroll(NAME, limit=100, with_vectors=True, with_payload=True)[0], wait=True)
            dense_local = search(local, NAME, queries[:1], flt, 6, ["i", "doc_id"])
        finally:
            local.close()
        assert [h[0] for h in dense_local[0]] == [h[0] for h in lean[0]]
        assert [h[1] for h in dense_local[0]] == pytest.approx([h[1] for h in lean[0]], abs=1e-5)

    def test_an_empty_collection_answers_without_searching_until_written(self, client: EdgeClient, monkeypatch: pytest.MonkeyPatch) -> None:
        _create(client)
        store = client._client
        assert store.search_hits(NAME, [(None, [0.1] * DIM)], None, 5, ["i"]) == [[]]
        calls: list[str] = []
        coll = store._collections[NAME]

        class Spy:
            def __getattr__(self, name: str):
                calls.append(name)
                return getattr(real, name)

        real, coll.shard = coll.shard, Spy()
        assert store.search_hits(NAME, [(None, [0.1] * DIM)], None, 5, ["i"]) == [[]]
        assert "query" not in calls and "count" not in calls  # the count of 0 was kept
        ids, _ = _fill(client, 10)  # the write forgets it
        hits = store.search_hits(NAME, [(None, [0.1] * DIM)], None, 5, ["i"])[0]
        assert len(hits) == 5 and {h[0] for h in hits} <= set(ids) and "query" in calls
        coll.shard = real

    def test_filters_match_has_id_and_missing_vector(self, client: EdgeClient) -> None:
        _create(client)
        ids, _ = _fill(client, 30)
        by_doc = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d1"))])
        assert client.count(NAME, count_filter=by_doc).count == 10
        hits = client.query_points(NAME, query=_vectors(1)[0].tolist(), query_filter=by_doc, limit=30, with_payload=True).points
        assert len(hits) == 10 and {h.payload["doc_id"] for h in hits} == {"d1"}
        has_id = models.Filter(must=[models.HasIdCondition(has_id=ids[:4])])
        assert client.count(NAME, count_filter=has_id).count == 4
        no_bm25 = models.Filter(must_not=[models.HasVectorCondition(has_vector="bm25")])
        assert client.count(NAME, count_filter=no_bm25).count == 15
        any_of = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=["d0", "d2"]))])
        assert client.count(NAME, count_filter=any_of).count == 20

    def test_scroll_pages_cover_every_point_once(self, client: EdgeClient) -> None:
        _create(client)
        ids, _ = _fill(client, 25)
        seen, offset, pages = [], None, 0
        while True:
            points, offset = client.scroll(NAME, limit=7, offset=offset, with_payload=["doc_id"], with_vectors=False)
            seen += [p.id for p in points]
            pages += 1
            assert all(set(p.payload) == {"doc_id"} and p.vector is None for p in points)
            if offset is None:
                break
        assert pages == 4 and sorted(seen) == sorted(ids)

    def test_vectors_come_back_like_local_mode(self, client: EdgeClient) -> None:
        _create(client)
        ids, vecs = _fill(client, 4)
        both, only_dense = client.retrieve(NAME, [ids[0], ids[1]], with_vectors=True)
        assert set(both.vector) == {"", "bm25"} and isinstance(both.vector["bm25"], models.SparseVector)
        assert isinstance(only_dense.vector, list) and len(only_dense.vector) == DIM  # lone unnamed vector: a list


class TestWrites:
    def test_delete_by_ids_and_by_filter(self, client: EdgeClient) -> None:
        _create(client)
        ids, _ = _fill(client, 30)
        client.delete(NAME, points_selector=models.PointIdsList(points=ids[:5]), wait=True)
        assert client.count(NAME).count == 25 and not client.retrieve(NAME, ids[:5])
        # LlamaIndex deletes a document by a filter on doc_id
        client.delete(NAME, points_selector=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d0"))]))
        assert client.count(NAME).count == 25 - 8  # d0 had i = 0,3,...,27 (10), 2 of them deleted above
        client.delete(NAME, points_selector=models.FilterSelector(filter=models.Filter(must=[models.HasIdCondition(has_id=ids[5:7])])))
        assert client.count(NAME).count == 16  # i = 5 went; i = 6 was a d0 point, gone already

    def test_update_vectors_adds_bm25_to_points_without(self, client: EdgeClient) -> None:
        _create(client)
        ids, _ = _fill(client, 6)
        missing = models.Filter(must_not=[models.HasVectorCondition(has_vector="bm25")])
        client.update_vectors(NAME, points=[models.PointVectors(id=ids[1], vector={"bm25": models.SparseVector(indices=[1], values=[1.0])})])
        assert client.count(NAME, count_filter=missing).count == 2
        assert client.retrieve(NAME, [ids[1]], with_vectors=["bm25"])[0].vector["bm25"].indices == [1]

    def test_create_vector_name_for_sparse_on_an_old_collection(self, client: EdgeClient) -> None:
        client.create_collection(NAME, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        assert not client.get_collection(NAME).config.params.sparse_vectors
        client.create_vector_name(NAME, "bm25", models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)))
        assert client.get_collection(NAME).config.params.sparse_vectors["bm25"].modifier == models.Modifier.IDF


WRITER = textwrap.dedent(
    """
    import sys, uuid
    from pathlib import Path
    from qdrant_client import models
    from pipeline.store.edge import EdgeClient
    c = EdgeClient(Path(sys.argv[1]))
    if not c.collection_exists("t"):
        c.create_collection("t", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    print("open", flush=True)
    i = 0
    while True:  # batches of 100 until killed; never flushed
        c.upsert("t", [models.PointStruct(id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(i + j))), vector=[1.0, j, 0.5, i], payload={"n": i + j}) for j in range(100)])
        i += 100
        print(i, flush=True)
    """
)


def _start_writer(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "open", proc.stderr.read() if proc.stderr else ""
    return proc


class TestProcesses:
    def test_second_process_gets_store_locked(self, tmp_path: Path) -> None:
        path = tmp_path / "edge"
        proc = _start_writer(path)
        try:
            with pytest.raises(StoreLocked, match="open in another process"):
                EdgeClient(path)
            probe = subprocess.run(
                [sys.executable, "-c", f"from pathlib import Path; from pipeline.store.edge import EdgeClient; EdgeClient(Path({str(path)!r}))"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
            assert probe.returncode != 0 and "StoreLocked" in probe.stderr
        finally:
            proc.kill()
            proc.wait()

    def test_kill_9_mid_write_loses_nothing_acknowledged(self, tmp_path: Path) -> None:
        path = tmp_path / "edge"
        proc = _start_writer(path)
        assert proc.stdout is not None
        acknowledged = 0
        deadline = time.monotonic() + 60
        while acknowledged < 3000 and time.monotonic() < deadline:
            acknowledged = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert acknowledged >= 3000
        c = EdgeClient(path)  # the lock died with the process; the WAL is replayed
        try:
            n = c.count("t").count
            assert n >= acknowledged  # every upsert that returned is there (a later one may be too)
            assert n % 100 == 0  # whole batches only: no torn write
            ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))) for i in range(0, acknowledged, 97)]
            assert len(c.retrieve("t", ids)) == len(ids)
            hits = c.query_points("t", query=[1.0, 0.0, 0.5, 0.0], limit=3).points
            assert len(hits) == 3
            c.upsert("t", [models.PointStruct(id=str(uuid.uuid4()), vector=[1, 1, 1, 1], payload={})])  # still writable
            assert c.count("t").count == n + 1
        finally:
            c.close()


def test_a_nearly_full_disk_is_disk_full_before_the_engine_writes(client: EdgeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine writes through mmap: on a full disk it would die of SIGBUS, so writes check space first."""
    from pipeline.errors import DiskFull

    _create(client)
    _fill(client, 5)
    monkeypatch.setattr(edge_files, "MIN_FREE_BYTES", 1 << 60)
    with pytest.raises(DiskFull, match="free disk space"):
        _fill(client, 6)
    assert client.optimize() is False  # skipped with a warning: nothing lost, nothing raised
    monkeypatch.undo()
    assert client.count(NAME).count == 5  # the refused write changed nothing


def test_the_store_default_hnsw_ef_fills_requests_without_one() -> None:
    from pipeline.store.edge.convert import _search_params

    assert _search_params(None, None).hnsw_ef is None
    assert _search_params(None, 256).hnsw_ef == 256
    assert _search_params(models.SearchParams(hnsw_ef=32), 256).hnsw_ef == 32  # the request's own wins
    exact = _search_params(models.SearchParams(exact=True), 256)
    assert exact.exact and exact.hnsw_ef == 256


def test_quantized_vectors_are_rescored_unless_the_search_is_exact() -> None:
    from pipeline.store.edge.convert import _search_params
    from pipeline.store.edge.tuning import OVERSAMPLING

    default = _search_params(None, 256).quantization
    assert not default.ignore and default.rescore and default.oversampling == OVERSAMPLING
    assert _search_params(models.SearchParams(exact=True), 256).quantization.ignore  # exact = original vectors
    own = _search_params(models.SearchParams(quantization=models.QuantizationSearchParams(rescore=False, oversampling=1.0)), 256).quantization
    assert own.rescore is False and own.oversampling == 1.0


def test_auto_ef_grows_with_the_collection_within_bounds() -> None:
    from pipeline.store.edge import auto_ef

    assert auto_ef(0) == auto_ef(94_000) == 512  # measured: 512 finds 0.996 of the exact top-30 at 100k
    assert auto_ef(283_367) == 1600  # measured: 1536 finds 0.996 at 283k, 512 only 0.962
    assert auto_ef(10**8) == 4096
    assert all(auto_ef(n) % 64 == 0 for n in (1, 100_000, 200_001, 999_999))


def test_unset_hnsw_ef_is_recounted_after_writes(client: EdgeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tuning, "EF_MIN", 1)
    monkeypatch.setattr(tuning, "POINTS_PER_EF", 1)
    _create(client)
    _fill(client, 5)
    coll = client._client._collections[NAME]
    assert client._client.hnsw_ef is None and coll.search_ef() == 64
    client.upsert(NAME, points=[models.PointStruct(id=str(uuid.uuid4()), vector=[0.1] * DIM, payload={}) for _ in range(100)], wait=True)
    assert coll.search_ef() == 128  # 105 points: the next multiple of 64
    assert client.query_points(NAME, query=[0.1] * DIM, limit=3).points  # searches run with it


class TestLayout:
    """The on-disk layout of new collections (cold, int8-quantized) and the upgrade of older ones."""

    BIG = 8000  # 384-dim points: past the engine's indexing threshold, so optimize() builds HNSW + int8

    def _fill_big(self, client: EdgeClient, name: str = NAME) -> np.ndarray:
        vecs = np.random.default_rng(1).normal(size=(self.BIG, 384)).astype(np.float32)
        client.create_collection(name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
        client.upsert(name, [models.PointStruct(id=pid, vector=v.tolist(), payload={"i": i, "doc_id": f"d{i % 7}"})
                             for i, (pid, v) in enumerate(zip(_ids(self.BIG), vecs))])
        assert client.optimize()
        return vecs

    def test_new_collections_keep_every_part_on_disk_and_quantize_dense_vectors(self, client: EdgeClient) -> None:
        _create(client)
        config = json.loads((client.store.path / NAME / "edge_config.json").read_text())
        assert config["vectors"][""]["memory"] == "cold"
        assert config["vectors"][""]["quantization_config"]["scalar"]["type"] == "int8"
        assert config["sparse_vectors"]["bm25"]["memory"] == "cold"
        assert config["hnsw_config"]["memory"] == "cold"
        assert config["payload_memory"] == config["id_tracker_memory"] == "cold"
        index = json.loads(next((client.store.path / NAME / "segments").glob("*/payload_index/config.json")).read_text())
        assert {f: v["memory"] for f, v in index["indexed_fields"].items()} == dict.fromkeys(INDEXES, "cold")
        assert client.store.outdated() == []

    def test_shards_search_with_one_thread_also_those_written_before_the_setting(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "edge"
        with monkeypatch.context() as m:  # a store written before SEARCH_THREADS: the engine's default pool
            m.setattr(shard, "SEARCH_THREADS", None)
            c = EdgeClient(path, keyword_indexes=INDEXES)
            _create(c)
            ids, _ = _fill(c)
            c.close()
        assert json.loads((path / NAME / "edge_config.json").read_text()).get("max_search_threads") is None
        segments = sorted(p.name for p in (path / NAME / "segments").iterdir())
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            config = json.loads((path / NAME / "edge_config.json").read_text())
            assert config["max_search_threads"] == tuning.SEARCH_THREADS == 1
            assert config["vectors"][""]["quantization_config"]["scalar"]["quantile"] == tuning.QUANTIZATION["quantile"]
            assert sorted(p.name for p in (path / NAME / "segments").iterdir()) == segments  # loaded, not rebuilt
            assert c.count(NAME).count == len(ids)
            assert len(c.query_points(NAME, query=_vectors(1, seed=5)[0].tolist(), limit=5).points) == 5
        finally:
            c.close()

    def test_the_write_ahead_log_keeps_small_segments_also_for_shards_written_before(self, tmp_path: Path) -> None:
        path = _closed_store(tmp_path)
        config = path / NAME / tuning.ENGINE_CONFIG
        old = json.loads(config.read_text())
        assert old["wal_options"] == tuning.WAL_OPTIONS
        del old["wal_options"]  # as a shard written before WAL_OPTIONS
        config.write_text(json.dumps(old))
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            text = "x" * 20_000
            for start in range(0, 4500, 150):  # ~90 MB of log: past the two 32 MiB segments a new shard starts with
                c.upsert(NAME, [models.PointStruct(id=i, vector={"": _vectors(1, seed=i)[0].tolist()}, payload={"text": text})
                                for i in range(start, start + 150)])
            assert json.loads(config.read_text())["wal_options"] == tuning.WAL_OPTIONS  # set when the shard was loaded
            c.flush()
            assert c.count(NAME).count == 4500
        finally:
            c.close()
        sizes = {f.name: f.stat().st_size for f in (path / NAME / "wal").iterdir() if "-" in f.name}
        # The engine keeps its last closed segment and the open ones: at its default capacity that was
        # 32 MiB each; a write larger than the capacity (here ~3 MB) gets a segment of its own size.
        assert sizes and max(sizes.values()) <= 2 * tuning.WAL_OPTIONS["segment_capacity"], sizes
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.count(NAME).count == 4500
            assert c.retrieve(NAME, [4499], with_payload=True)[0].payload["text"] == text
        finally:
            c.close()

    def test_a_sidecar_that_disagrees_with_its_shard_still_opens(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        path = tmp_path / "edge"
        c = EdgeClient(path, keyword_indexes=INDEXES)
        _create(c)
        ids, _ = _fill(c)
        c.close()
        meta = json.loads((path / NAME / SIDECAR).read_text())
        meta["vectors"][""]["size"] = DIM * 2  # as if a run stopped between the shard's write and the sidecar's
        (path / NAME / SIDECAR).write_text(json.dumps(meta))
        with caplog.at_level("WARNING", logger="pipeline.store.edge"):
            c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.count(NAME).count == len(ids)
            assert "loaded as it is" in caplog.text and "expected vector size" in caplog.text
        finally:
            c.close()

    def test_closing_leaves_the_files_first_searches_read_in_the_page_cache(self, tmp_path: Path) -> None:
        c = EdgeClient(tmp_path / "edge", keyword_indexes=INDEXES)
        self._fill_big(c)
        files = pagecache._warm_files(tmp_path / "edge" / NAME)
        assert any(f.name.startswith("quantized") for f in files)
        c.close()  # qdrant-edge drops a closed shard's pages; close() asks the kernel to read them back
        deadline = time.monotonic() + 5
        while min(map(_resident, files)) < 0.9 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(map(_resident, files)) >= 0.9, {f.name: _resident(f) for f in files}

    def test_quantized_search_returns_the_exact_nearest_with_exact_scores(self, tmp_path: Path) -> None:
        """HNSW walks int8 vectors; rescoring with the originals must give float scores and order."""
        c = EdgeClient(tmp_path / "edge", keyword_indexes=INDEXES)
        try:
            vecs = self._fill_big(c)
            assert list((tmp_path / "edge" / NAME / "segments").glob("*/vector_storage/quantized.data"))
            normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
            for seed in range(5):
                q = np.random.default_rng(100 + seed).normal(size=384).astype(np.float32)
                hits = c.query_points(NAME, query=q.tolist(), limit=5, with_payload=True).points
                exact = _exact_top(vecs, q, 5)
                assert [h.payload["i"] for h in hits] == exact
                assert [h.score for h in hits] == pytest.approx([float(normed[i] @ (q / np.linalg.norm(q))) for i in exact], abs=1e-5)
        finally:
            c.close()
        # reopened: the warm-up thread reads the quantized vectors and the HNSW links, and stops at close
        c = EdgeClient(tmp_path / "edge", keyword_indexes=INDEXES)
        try:
            c.store._warmer.join(timeout=30)
            assert c.store.warmed_bytes >= self.BIG * 384  # at least the int8 vectors
        finally:
            c.close()
        assert not c.store._warmer.is_alive()

    def test_check_repair_upgrades_a_collection_of_the_older_layout(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "edge"
        with monkeypatch.context() as m:  # what create_collection wrote before this layout
            m.setattr(edge_engine, "_shard_config", lambda dense, sparse: tuning.qe.EdgeConfig(
                hnsw_config=tuning.qe.HnswIndexConfig(**tuning.HNSW),
                vectors={n: tuning.qe.EdgeVectorParams(size=p["size"], distance=tuning.qe.Distance.Cosine) for n, p in dense.items()}))
            m.setattr(edge_client, "_index_params", lambda schema: tuning.qe.PayloadSchemaType.Keyword)
            m.setattr(shard, "_index_params", lambda schema: tuning.qe.PayloadSchemaType.Keyword)
            c = EdgeClient(path, keyword_indexes=INDEXES)
            vecs = self._fill_big(c)
            c.store._collections[NAME].meta.pop("quantization")
            c.store._collections[NAME].save_meta()
            c.close()
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.outdated() == [NAME]
            assert not list((path / NAME / "segments").glob("*/vector_storage/quantized.data"))
            assert c.upgrade() == [NAME]
            assert c.count(NAME).count == self.BIG
            q = vecs[17] + 0.01
            assert c.query_points(NAME, query=q.tolist(), limit=1, with_payload=True).points[0].payload["i"] == 17
            assert c.count(NAME, count_filter=models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value="d3"))])).count == len(range(3, self.BIG, 7))
        finally:
            c.close()
        c = EdgeClient(path, keyword_indexes=INDEXES)
        try:
            assert c.outdated() == []
            assert list((path / NAME / "segments").glob("*/vector_storage/quantized.data"))
            assert json.loads((path / NAME / "edge_config.json").read_text())["vectors"][""]["quantization_config"]
        finally:
            c.close()
