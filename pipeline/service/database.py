"""``/readyz``'s database check in fleet mode (``database.url``): reachable, schema usable, this store present.

A fresh connection per probe rather than the pool's: a pool whose server went away waits for its
timeout before answering, and a probe must answer in a second or two so the balancer takes this
replica out (and back in by itself once the database returns: the next probe simply succeeds).
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Settings
from pipeline.store.postgres import masked
from pipeline.store.state import DOCSTORE_KV, db_url, namespace


def database_check(settings: Settings, checks: dict[str, str], fail: Callable[[str, str], None]) -> None:
    """Set ``checks["database"]`` and ``checks["docstore"]`` ("ok", or a reason passed to ``fail``)."""
    import psycopg

    url = db_url(settings)
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True, application_name="pipeline-readyz") as conn:
            conn.execute("SET statement_timeout = 2000")
            has_table = conn.execute("SELECT to_regclass('kv') IS NOT NULL").fetchone()[0]
            present = has_table and conn.execute(
                "SELECT EXISTS (SELECT 1 FROM kv WHERE namespace = %s)", (f"{namespace(settings)}/{DOCSTORE_KV}",)
            ).fetchone()[0]
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail("database", f"database {masked(url)} unreachable: {first}")
        return
    checks["database"] = "ok"
    if present:
        checks["docstore"] = "ok"
    else:
        fail("docstore", f"no store named {namespace(settings)!r} in the database: nothing ingested yet (POST /ingest or `python -m pipeline ingest`)")
