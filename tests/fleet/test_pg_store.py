"""The docstore, cache, ledger, schema and writer lock on the real PostgreSQL server (issue 25, piece 1)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import Timeout

from pipeline.config import Settings
from pipeline.errors import ConfigError
from tests.pgdb import pg_url  # noqa: F401  (fixture)


def fleet_settings(tmp_path: Path, url: str, **db: object) -> Settings:
    return Settings(store=tmp_path / "store", database={"url": url, **db})


def test_parents_and_ledger_change_in_one_transaction(tmp_path: Path, pg_url: str) -> None:
    from llama_index.core.schema import TextNode

    from pipeline.store.ledger import LedgerEntry
    from pipeline.store.state import open_ledger_reader, open_parents

    settings = fleet_settings(tmp_path, pg_url)
    parents = open_parents(settings)
    parents.put([TextNode(id_="p1", text="one"), TextNode(id_="p2", text="two")])
    with pytest.raises(RuntimeError):
        with parents.kv.transaction():
            parents.put([TextNode(id_="p3", text="three")])
            parents.put_ledger("doc", LedgerEntry(content_hash="h", parents=["p3"]))
            raise RuntimeError("killed between steps")
    assert parents.get("p3") is None and parents.ledger_entry("doc") is None  # both rolled back
    parents.put_ledger("doc", LedgerEntry(content_hash="h", parents=["p1", "p2"]))
    assert {p: n.get_content() for p, n in parents.get_many(["p1", "p2", "zz"]).items()} == {"p1": "one", "p2": "two"}
    assert parents.parents_of_self_refs(list(parents.kv.keys("parents/self_refs")))  # retrieval's one-query lookup
    reader = open_ledger_reader(settings)
    assert reader.count() == 2 and reader.ledger()["doc"].parents == ["p1", "p2"]
    assert not (tmp_path / "store" / "docstore.sqlite").exists()  # nothing went to SQLite


def test_stores_sharing_a_database_are_apart(tmp_path: Path, pg_url: str) -> None:
    from llama_index.core.schema import TextNode

    from pipeline.store.state import has_docstore, open_parents

    a = open_parents(fleet_settings(tmp_path, pg_url, namespace="a"))
    a.put([TextNode(id_="p1", text="one")])
    b_settings = fleet_settings(tmp_path, pg_url, namespace="b")
    assert not has_docstore(b_settings) and open_parents(b_settings).count() == 0


def test_cache_round_trip(tmp_path: Path, pg_url: str) -> None:
    from llama_index.core.schema import TextNode

    from pipeline.ingest.cache import CountingCache

    cache = CountingCache.for_settings(fleet_settings(tmp_path, pg_url))
    cache.put("k", [TextNode(id_="n", text="cached")])
    assert cache.get("k")[0].get_content() == "cached" and cache.get("missing") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_schema_newer_than_this_version_is_refused(pg_url: str) -> None:
    import psycopg

    from pipeline.store import postgres

    postgres.pool(pg_url)  # creates version 1
    postgres.close_pools()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == postgres.SCHEMA_VERSION
        conn.execute("INSERT INTO schema_version VALUES (%s)", (postgres.SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="newer than this pipeline"):
        postgres.pool(pg_url)


def test_password_is_masked() -> None:
    from pipeline.store.postgres import masked

    assert masked("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert "s3cret" not in repr(Settings(database={"url": "postgresql://u:s3cret@db/x"}))


def test_config_command_masks_the_url(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PIPELINE_DATABASE__URL": "postgresql://u:s3cret@db/x", "PIPELINE_CONFIG": str(Path(__file__).parents[1] / "no-config.toml")}
    out = subprocess.run([sys.executable, "-m", "pipeline", "config"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert "database.url" in out.stdout + out.stderr and "s3cret" not in out.stdout + out.stderr


def test_writer_lock_exclusive_shared_and_released_by_a_killed_process(tmp_path: Path, pg_url: str) -> None:
    from pipeline.store.lock import store_lock

    settings = fleet_settings(tmp_path, pg_url)
    w1, w2 = store_lock(settings, 0, shared=True), store_lock(settings, 0, shared=True)
    w1.acquire(), w2.acquire()  # two ingest workers at once
    with pytest.raises(Timeout):
        store_lock(settings, 0).acquire()  # check --repair / snapshot: not while workers run
    w1.release(), w2.release()
    # A process that holds it and is killed -9: the session ends, the lock is free at once.
    code = ("import time,sys; from pipeline.config import Settings; from pipeline.store.lock import store_lock; "
            f"l = store_lock(Settings(database={{'url': {pg_url!r}}}), 0); l.acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Timeout):
            store_lock(settings, 0).acquire()
    finally:
        proc.kill()
        proc.wait()
    lock = store_lock(settings, 5)
    start = time.monotonic()
    lock.acquire()
    assert time.monotonic() - start < 5
    lock.release()


def test_connections_the_server_closed_are_replaced_without_an_error(tmp_path: Path, pg_url: str) -> None:
    """No check per checkout (it cost a round trip per query): a pooled connection the server ended
    (restart, failover, idle timeout) fails at its next use and that read, or that transaction's BEGIN,
    is retried once on a new connection: the caller sees no error."""
    import psycopg
    from llama_index.core.schema import TextNode

    from pipeline.store.state import open_parents
    from tests.pgdb import ADMIN_URL

    parents = open_parents(fleet_settings(tmp_path, pg_url))
    parents.put([TextNode(id_="p1", text="one")])
    name = pg_url.rsplit("/", 1)[1]

    def end_sessions() -> int:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name <> 'pipeline-readyz'",
                                    (name,)).fetchall())

    assert end_sessions() >= 1  # the pool's idle connection(s)
    assert parents.get("p1").get_content() == "one"  # a read
    assert end_sessions() >= 1
    parents.put([TextNode(id_="p2", text="two")])  # a transaction
    assert parents.kv.count("parents/data") == 2


def test_text_with_nul_characters_round_trips(tmp_path: Path, pg_url: str) -> None:
    """PDF text may hold NUL (U+0000); jsonb refuses it, so values are stored as JSON text (schema 3)."""
    from llama_index.core.schema import TextNode

    from pipeline.store.state import open_parents

    parents = open_parents(fleet_settings(tmp_path, pg_url))
    parents.put([TextNode(id_="p1", text="before\x00after \u201a\U0001d43f")])
    assert parents.get("p1").get_content() == "before\x00after \u201a\U0001d43f"
    assert parents.get_many(["p1"])["p1"].get_content().count("\x00") == 1
