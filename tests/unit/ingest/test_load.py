import os
from pathlib import Path

import pytest

from pipeline.errors import LoadError
from pipeline.ingest.load import discover, load_document
from tests.conftest import SAMPLE_PDF, shared_path


class TestLoadDocument:
    def test_pdf_has_pages_hash_and_normalised_id(self) -> None:
        doc = load_document(SAMPLE_PDF)
        assert doc.doc_id == SAMPLE_PDF.resolve().as_posix()
        assert len(doc.metadata["page_offsets"]) == 15
        assert len(doc.metadata["content_hash"]) == 64
        assert "S2ORC" in doc.text
        # bookkeeping never reaches the embedding text
        assert "content_hash" not in doc.get_metadata_str(mode="embed")

    def test_text_file(self, tmp_path: Path) -> None:
        f = tmp_path / "note.md"
        f.write_text("# Title\n\nSome text.")
        doc = load_document(f)
        assert doc.text.startswith("# Title") and doc.metadata["page_offsets"] == [0]

    @pytest.mark.parametrize(
        ("content", "reason"),
        [(b"", "empty file"), (b"hello, I am not a PDF", "not a PDF")],
    )
    def test_bad_bytes_name_the_file(self, tmp_path: Path, content: bytes, reason: str) -> None:
        f = tmp_path / "bad.pdf"
        f.write_bytes(content)
        with pytest.raises(LoadError, match=reason) as info:
            load_document(f)
        assert str(f) in str(info.value)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
    def test_unreadable(self, tmp_path: Path) -> None:
        f = tmp_path / "locked.pdf"
        f.write_bytes(SAMPLE_PDF.read_bytes())
        f.chmod(0)
        with pytest.raises(LoadError, match="permission denied"):
            load_document(f)

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("no_text_layer_image_only_17p.pdf", "17 page\\(s\\), no extractable text"),
            ("blank_100_pages.pdf", "100 page\\(s\\), no extractable text"),
            ("encrypted_aes256_userpw_foo.pdf", "encrypted PDF"),
            ("encrypted_rc4_40_userpw_foo.pdf", "encrypted PDF"),
            ("encrypted_aes256_r6_userpw_usersecret.pdf", "encrypted PDF"),
            ("malformed_circular_xobjects_no_startxref.pdf", "malformed PDF"),
        ],
    )
    def test_hostile_pdfs(self, name: str, reason: str) -> None:
        path = shared_path("corpus", "hostile", name)
        with pytest.raises(LoadError, match=reason):
            load_document(path)

    def test_corrupt_stream_still_yields_text(self) -> None:
        doc = load_document(shared_path("corpus", "hostile", "corrupted_zlib_stream.pdf"))
        assert len(doc.text.strip()) > 500

    @pytest.mark.parametrize(
        ("name", "password", "text"),
        [
            ("encrypted_aes256_userpw_foo.pdf", "foo", None),
            ("encrypted_rc4_40_userpw_foo.pdf", "foo", None),
            ("encrypted_aes256_r6_userpw_usersecret.pdf", "usersecret", None),
        ],
    )
    def test_passwords_by_file_name(self, name: str, password: str, text: str | None) -> None:
        doc = load_document(shared_path("corpus", "hostile", name), {name: password})
        assert doc.text.strip()

    def test_wrong_password(self) -> None:
        name = "encrypted_rc4_40_userpw_foo.pdf"
        with pytest.raises(LoadError, match="password is wrong"):
            load_document(shared_path("corpus", "hostile", name), {name: "nope"})


def test_discover_expands_folders_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for rel in ("b/z.pdf", "a.txt", "skip.docx", "b/c.md"):
        (tmp_path / rel).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["a.txt", "b/c.md", "b/z.pdf"]


def test_lone_surrogates_from_pypdf_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """papers/iop_conference_paper_cc_by_3.pdf makes pypdf return lone surrogates; they must not crash hashing."""
    import importlib

    # importlib: the attribute `pipeline.ingest` is the public ingest() function, not the subpackage
    module = importlib.import_module("pipeline.ingest.load")
    monkeypatch.setattr(module, "_pdf_pages", lambda path, data, passwords: ["broken \ud835 glyph"])
    doc = load_document(SAMPLE_PDF)
    assert "\ud835" not in doc.text and "broken ? glyph" in doc.text
    doc.text.encode("utf-8")  # what the cache key and docstore need
