"""``ingest --dry-run`` (``plan_ingest``) decides with the real run's rule, on a real docstore in a temp folder.

No model is loaded: the fingerprint needs only the embedder's name and dimension.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.config import Settings
from pipeline.ingest.fingerprint import fingerprint, phase1_transforms
from pipeline.ingest.load import load_document
from pipeline.ingest.plan import plan_ingest
from pipeline.ingest.scan import file_stat
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


def recorded_file(tmp_path: Path, text: str = TEXT) -> tuple[Settings, Path]:
    """``docs/a.txt`` holding ``text``, ingested (its ledger entry recorded) into a new store."""
    docs = tmp_path / "docs"
    docs.mkdir()
    a = docs / "a.txt"
    a.write_text(text)
    settings = settings_for(tmp_path / "store")
    settings.store.mkdir()
    record(settings, a)
    return settings, a


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
    settings, a = recorded_file(tmp_path)
    assert plan_ingest(settings, [a.parent], prune=False).counts == {"unchanged": 1}
    other = settings_for(tmp_path / "store", chunk_overlap=30)
    assert plan_ingest(other, [a.parent], prune=False).counts == {"update": 1}


def parent_ids(settings: Settings, path: Path) -> list[str]:
    return [p.node_id for p in ParentSplitter(chunk_size=settings.ingest.parent_chunk_size)([load_document(path)])]


def test_an_edit_counts_the_parents_kept_new_and_dropped(tmp_path: Path) -> None:
    """Parent ids are content-addressed: the counts are those the real run would redo."""
    settings, a = recorded_file(tmp_path, TEXT + "Brass flutes sound bright. " * 200)
    before = parent_ids(settings, a)
    a.write_text(TEXT + "Wooden oboes sound warm. " * 120)
    after = parent_ids(settings, a)
    assert len(before) >= 2 and before[0] == after[0]  # the unchanged opening keeps its parent

    (f,) = plan_ingest(settings, [a.parent], prune=False).files
    assert f.action == "update"
    assert f.parents_kept == len(set(after) & set(before)) >= 1
    assert f.parents_new == len(set(after) - set(before)) >= 1
    assert f.parents_dropped == len(set(before) - set(after)) >= 1


def test_a_file_that_cannot_be_read_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really a pdf\n")
    (docs / "a.txt").write_text(TEXT)
    plan = plan_ingest(settings_for(tmp_path / "store"), [docs], prune=False)
    by_name = {Path(f.path).name: f for f in plan.files}
    assert by_name["broken.pdf"].action == "fail" and by_name["broken.pdf"].reason
    assert plan.counts == {"fail": 1, "add": 1}


def test_without_a_store_everything_is_added_and_nothing_is_written(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXT)
    settings = settings_for(tmp_path / "store")
    plan = plan_ingest(settings, [docs], prune=True)
    assert [(Path(f.path).name, f.action) for f in plan.files] == [("a.txt", "add")]
    assert plan.files[0].parents_new == len(parent_ids(settings, docs / "a.txt")) and plan.files[0].parents_kept == 0
    assert not settings.store.exists()


def test_removal_is_planned_only_with_prune_and_only_under_the_folders_given(tmp_path: Path) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    settings = settings_for(tmp_path / "store")
    settings.store.mkdir()
    for folder in (docs, other):
        gone = folder / "gone.txt"
        gone.write_text(TEXT)
        record(settings, gone)
        n = len(parent_ids(settings, gone))
        gone.unlink()
    assert plan_ingest(settings, [docs], prune=False).files == []
    plan = plan_ingest(settings, [docs], prune=True)
    assert [(f.path, f.action) for f in plan.files] == [(doc_id_for(docs / "gone.txt"), "remove")]
    assert plan.files[0].parents_dropped == n > 1


def test_the_same_bytes_written_again_are_unchanged(tmp_path: Path) -> None:
    """A file copied over with the same bytes (new mtime, maybe a new inode) is not redone."""
    settings, a = recorded_file(tmp_path)
    a.unlink()
    a.write_text(TEXT)
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 5_000_000_000))
    assert plan_ingest(settings, [a.parent], prune=False).counts == {"unchanged": 1}


def test_other_bytes_of_the_same_size_and_mtime_are_an_update(tmp_path: Path) -> None:
    """Depends on hashing the bytes: same size, same mtime, same inode, other content. A shortcut on
    (size, mtime, inode) alone would call this unchanged; the real run's rule does not."""
    settings, a = recorded_file(tmp_path)
    st = a.stat()
    with open(a, "r+") as f:  # same inode, same length
        f.write("Silver")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns, a.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert plan_ingest(settings, [a.parent], prune=False).counts == {"update": 1}


def test_a_file_as_last_seen_is_not_read_and_any_change_to_it_is(tmp_path: Path) -> None:
    """The shortcut the real run takes: size, mtime, inode and ctime as recorded → the recorded hash
    is trusted without reading the file (here a hash no bytes have, so only the shortcut says
    unchanged); once the file is touched (ctime moves even when mtime is put back) the bytes decide."""
    settings, a = recorded_file(tmp_path)
    store = ParentStore(settings.docstore_path)
    try:
        entry = store.ledger_entry(doc_id_for(a))
        assert entry is not None
        store.put_ledger(doc_id_for(a), entry.model_copy(update={"content_hash": "not the bytes", "file_stat": file_stat(a.stat())}))
    finally:
        store.close()
    assert plan_ingest(settings, [a.parent], prune=False).counts == {"unchanged": 1}
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # same bytes, same mtime: only ctime moves
    assert plan_ingest(settings, [a.parent], prune=False).counts == {"update": 1}
