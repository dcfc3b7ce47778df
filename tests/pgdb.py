"""A fresh PostgreSQL database per test, dropped after: the real server at 127.0.0.1:5432 (TEST_PG_ADMIN_URL).

Tests that need it skip with the reason only when no server answers; everything else is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin():  # noqa: ANN202
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e .[dev])")
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {ADMIN_URL}: {str(exc).strip().splitlines()[0]}")


def url_for(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a new, empty database; the process's pools are closed and the database dropped after."""
    name = f"pipeline_test_{uuid.uuid4().hex[:10]}"
    create(name)
    try:
        yield url_for(name)
    finally:
        from pipeline.store.postgres import close_pools

        close_pools()
        drop(name)
