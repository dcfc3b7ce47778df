"""Leases and their fencing token on the real server (issue 25, piece 2), in one process: claims are
exclusive, an expired claim goes to the next worker with a new token, and the stale holder's ledger
write is refused inside its own transaction while the new holder's goes through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import StoreLocked
from tests.pgdb import pg_url  # noqa: F401  (fixture)


def settings(tmp_path: Path, url: str, lease: float) -> Settings:
    return Settings(store=tmp_path / "store", database={"url": url, "namespace": "leases", "lease_seconds": lease})


def test_a_stale_holder_cannot_commit_after_takeover(tmp_path: Path, pg_url: str) -> None:
    from llama_index.core.schema import TextNode

    from pipeline.ingest.fleet import Leases
    from pipeline.store.ledger import LedgerEntry
    from pipeline.store.state import open_parents

    s = settings(tmp_path, pg_url, lease=1.0)
    a, b = Leases(s), Leases(s)
    b.owner = b.owner + "-b"  # two workers (same process here: the owner names them apart)
    a.register(["doc"])
    assert a.claim(["doc"]) == "doc"
    assert b.claim(["doc"]) is None  # held and not expired: nobody else gets it
    parents = open_parents(s)
    with a.fenced("doc", "doc"):  # still the holder: the write goes through
        parents.put_ledger("doc", LedgerEntry(content_hash="from-a"))
    time.sleep(1.5)  # a stalls past its lease (no heartbeat here)
    assert b.claim(["doc"]) == "doc" and b.tokens["doc"] == a.tokens["doc"] + 1
    with a.fenced("doc", "doc"), pytest.raises(StoreLocked, match="lease expired"):
        parents.put_ledger("doc", LedgerEntry(content_hash="stale-a"))
    with a.fenced("doc", "doc"), pytest.raises(StoreLocked):
        parents.delete_ledger("doc")  # a removal's last step is fenced too
    with a.fenced("doc", "doc"), pytest.raises(StoreLocked):
        parents.put([TextNode(id_="stale-parent", text="written after the takeover")])  # and the parents (step 2)
    assert parents.ledger_entry("doc").content_hash == "from-a" and parents.get("stale-parent") is None  # nothing left
    with b.fenced("doc", "doc"):
        parents.put_ledger("doc", LedgerEntry(content_hash="from-b"))
    assert parents.ledger_entry("doc").content_hash == "from-b"
    a.finish("doc")  # not a's claim any more: must not free b's
    assert a.claim(["doc"]) is None
    b.finish("doc")
    assert b.outstanding(["doc"]) == 0


def test_document_lock_serialises_commits_of_one_document(tmp_path: Path, pg_url: str) -> None:
    import threading

    from pipeline.ingest.fleet import Leases

    s = settings(tmp_path, pg_url, lease=30)
    a, b = Leases(s, "enrich"), Leases(s, "enrich")
    order: list[str] = []

    def commit_b() -> None:
        with b.document_lock("doc"):
            order.append("b")

    with a.document_lock("doc"):
        t = threading.Thread(target=commit_b)
        t.start()
        time.sleep(0.5)
        order.append("a-done")  # b is still waiting for the lock
    t.join(10)
    assert order == ["a-done", "b"]
    with a.document_lock("other"):  # another document's lock is independent
        pass
    a.stop(), b.stop()
