"""``ingest --dry-run`` (``plan_ingest``) decides with the real run's rule, on a real docstore in a temp folder.

No model is loaded: the fingerprint needs only the embedder's name and dimension.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import Settings
from pipeline.ingest.fingerprint import fingerprint, phase1_transforms
from pipeline.ingest.load import load_document
from pipeline.ingest.plan import plan_ingest
from pipeline.ingest.split import ParentSplitter
from pipeline.providers.embeddings import build_embedder, embed_dim
from pipeline.store.docstore import ParentStore
from pipeline.store.layout import doc_id_for
from pipeline.store.ledger import LedgerEntry

TEXT = "Copper violins resonate at low frequencies. " * 200


def settings_for(store: Path, **ingest: object) -> Settings:
    return Settings(store=store, llm={"provider": "none"}, ingest={"enrich": False, **ingest})


def record(settings: Settings, path: Path) -> None:
    """A ledger entry as the real run writes it for ``path``."""
    embedder = build_embedder(settings)
    split, per_parent = phase1_transforms(settings, embedder, embed_dim(embedder))
    parents = ParentSplitter(chunk_size=settings.ingest.parent_chunk_size)([load_document(path)])
    store = ParentStore(settings.docstore_path)
    try:
        store.put_ledger(doc_id_for(path), LedgerEntry(
            content_hash=hashlib.sha256(path.read_bytes()).hexdigest(), fingerprint=fingerprint(split + per_parent),
            parents=[p.node_id for p in parents],
        ))
    finally:
        store.close()


def test_unchanged_changed_added_and_removed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXT)
    (docs / "b.txt").write_text(TEXT.replace("Copper", "Tin"))
    settings = settings_for(tmp_path / "store")
    settings.store.mkdir()
    record(settings, docs / "a.txt")
    record(settings, docs / "b.txt")
    gone = docs / "gone.txt"
    gone.write_text("x " * 50)
    record(settings, gone)
    gone.unlink()
    (docs / "b.txt").write_text(TEXT.replace("Copper", "Lead"))
    (docs / "c.txt").write_text("New text. " * 100)

    plan = plan_ingest(settings, [docs], prune=True)
    actions = {Path(f.path).name: f.action for f in plan.files}
    assert actions == {"a.txt": "unchanged", "b.txt": "update", "c.txt": "add", "gone.txt": "remove"}


def test_a_settings_change_is_an_update_as_in_the_real_run(tmp_path: Path) -> None:
    """The dry run once said "unchanged" here: it compared the bytes and not the settings."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXT)
    settings = settings_for(tmp_path / "store")
    settings.store.mkdir()
    record(settings, docs / "a.txt")
    assert plan_ingest(settings, [docs], prune=False).counts == {"unchanged": 1}
    other = settings_for(tmp_path / "store", chunk_overlap=30)
    assert plan_ingest(other, [docs], prune=False).counts == {"update": 1}
