"""scan and the hardened loaders on real files: symlinks, FIFOs, sockets, caps, slow parses, odd path text."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import LoadError
from pipeline.ingest import load
from pipeline.ingest.load import file_hash, load_document, read_file, with_timeout
from pipeline.ingest.scan import MAX_NAME_BYTES, MAX_PATH_BYTES, ScanLimits, check_path_text, scan


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """An allowed root with one good file, next to a secret outside it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("good text")
    (tmp_path / "secret.txt").write_text("root:x:0:0:secret")
    return docs


def limits(root: Path, **kw: object) -> ScanLimits:
    return ScanLimits(roots=(root.resolve(),), **kw)  # type: ignore[arg-type]


def reasons(found: object) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in found.skipped}  # type: ignore[attr-defined]


class TestRoots:
    def test_file_symlink_escaping_the_root_is_skipped(self, root: Path) -> None:
        (root / "passwd.txt").symlink_to(root.parent / "secret.txt")
        found = scan([root], limits(root))
        assert found.files == [(root / "good.txt").resolve()]
        assert reasons(found)["passwd.txt"] == "skipped: it is a symlink that resolves outside the ingest roots"

    def test_folder_symlink_escaping_the_root_is_not_entered(self, root: Path) -> None:
        outside = root.parent / "outside"
        outside.mkdir()
        (outside / "leak.txt").write_text("leak")
        (root / "sub").symlink_to(outside)
        found = scan([root], limits(root))
        assert [f.name for f in found.files] == ["good.txt"]
        assert "outside the ingest roots" in reasons(found)["sub"]

    def test_symlink_inside_the_root_is_read_once_by_its_real_path(self, root: Path) -> None:
        (root / "alias.txt").symlink_to(root / "good.txt")
        found = scan([root], limits(root))
        assert found.files == [(root / "good.txt").resolve()] and not found.skipped

    def test_given_path_through_a_symlinked_folder_is_resolved_first(self, root: Path) -> None:
        (root / "up").symlink_to(root.parent)
        found = scan([root / "up" / "secret.txt"], limits(root))
        assert found.files == [] and "outside the ingest roots" in found.skipped[0].reason

    def test_without_roots_the_cli_keeps_the_given_paths(self, root: Path) -> None:
        (root / "passwd.txt").symlink_to(root.parent / "secret.txt")
        assert [f.name for f in scan([root]).files] == ["good.txt", "passwd.txt"]


class TestFileKinds:
    def test_fifo_is_skipped_without_opening_it(self, root: Path) -> None:
        fifo = root / "pipe.pdf"
        os.mkfifo(fifo)
        found = scan([root, fifo], limits(root))
        assert [f.name for f in found.files] == ["good.txt"]
        assert all(s.reason == "skipped: not a regular file (FIFO); only regular files are read" for s in found.skipped)
        assert len(found.skipped) == 2

    def test_socket_and_device_are_skipped(self, root: Path) -> None:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(root / "s.txt"))
            found = scan([root, Path("/dev/null")], ScanLimits())
        finally:
            sock.close()
        assert reasons(found) == {
            "s.txt": "skipped: not a regular file (socket); only regular files are read",
            "null": "skipped: not a regular file (character device); only regular files are read",
        }

    def test_dangling_symlink_says_so(self, root: Path) -> None:
        (root / "gone.pdf").symlink_to(root / "nowhere.pdf")
        assert reasons(scan([root], limits(root)))["gone.pdf"] == "skipped: dangling symlink"

    def test_loaders_never_block_on_a_fifo(self, root: Path) -> None:
        fifo = root / "pipe.txt"
        os.mkfifo(fifo)
        started = time.monotonic()
        assert file_hash(fifo) is None
        with pytest.raises(LoadError, match=r"pipe.txt: skipped: not a regular file \(FIFO\)"):
            load_document(fifo)
        assert time.monotonic() - started < 2


class TestCaps:
    def test_ten_thousand_files_stop_at_the_cap(self, root: Path) -> None:
        many = root / "many"
        many.mkdir()
        for i in range(10_000):
            (many / f"{i:05d}.txt").touch()
        started = time.monotonic()
        found = scan([many], limits(root, max_files=1000))
        assert len(found.files) == 1000 and found.over_limit
        assert [s.reason for s in found.skipped] == ["skipped: over limit (more than 1000 files in one ingest); the walk stopped here"]
        assert time.monotonic() - started < 10

    def test_big_file_is_skipped_over_limit(self, root: Path) -> None:
        (root / "big.txt").write_bytes(b"x" * 2048)
        found = scan([root], limits(root, max_file_bytes=1024))
        assert reasons(found)["big.txt"] == "skipped: over limit (2048 bytes, the limit is 1024 bytes per file)"
        with pytest.raises(LoadError, match="over limit"):
            read_file(root / "big.txt", max_bytes=1024)  # a file that grew after the scan
        assert read_file(root / "big.txt", max_bytes=2048) == b"x" * 2048

    def test_slow_parse_times_out_and_names_the_file(self, root: Path) -> None:
        release = threading.Event()
        try:
            with pytest.raises(LoadError, match=r"good.txt: skipped: reading and parsing took longer than 0.2 s"):
                with_timeout(lambda: release.wait(30), 0.2, root / "good.txt")
        finally:
            release.set()

    def test_timeout_passes_results_and_errors_through(self, root: Path) -> None:
        assert load_document(root / "good.txt", timeout=30).text.startswith("good text")
        with pytest.raises(LoadError, match="empty file"):
            (root / "empty.txt").touch()
            load_document(root / "empty.txt", timeout=30)


# Text a JSON client can send: any code point, lone surrogates included, NULs, long runs of "/".
path_text = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=300),
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(st.text(max_size=300), max_size=30)),
)


class TestPathText:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(path_text)
    def test_accepted_text_is_safe_for_the_file_system(self, text: str) -> None:
        """Either a clear ValueError, or a path every os call takes (OSError at most, never ValueError)."""
        try:
            path = check_path_text(text)
        except ValueError as exc:
            assert str(exc)
            return
        raw = os.fsencode(path)
        assert b"\0" not in raw and len(raw) <= MAX_PATH_BYTES and path.is_absolute()
        assert all(len(part) <= MAX_NAME_BYTES for part in raw.split(b"/"))
        try:
            os.lstat(path)
            os.path.realpath(path)
        except OSError:
            pass
        scan([path], ScanLimits(roots=(Path("/nonexistent-root"),)))  # never raises

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=2048), st.sampled_from([".pdf", ".txt", ".md", ".docx"]))
    def test_loader_fails_only_with_load_error(self, tmp_path_factory: pytest.TempPathFactory, data: bytes, suffix: str) -> None:
        path = tmp_path_factory.mktemp("bytes") / f"f{suffix}"
        path.write_bytes(data)
        try:
            doc = load.load_document(path, timeout=30)
        except LoadError as exc:
            assert str(exc).startswith(str(path))
        else:
            assert doc.text.strip() and doc.metadata["content_hash"]


class TestFolders:
    def test_pipelineignore_leaves_matching_files_out_quietly(self, tmp_path: Path) -> None:
        docs = tmp_path / "docs"
        (docs / "drafts").mkdir(parents=True)
        for name in ("paper.pdf", "ATTRIBUTION.md", "drafts/old.pdf", "notes.txt"):
            (docs / name).write_text("x")
        (docs / ".pipelineignore").write_text("# licences and drafts are not documents\nATTRIBUTION.md\ndrafts/\n")
        found = scan([docs])
        assert [f.name for f in found.files] == ["notes.txt", "paper.pdf"] and not found.skipped

    def test_the_bundled_samples_folder_holds_only_the_paper(self) -> None:
        from tests.conftest import ROOT

        assert [f.name for f in scan([ROOT / "samples"]).files] == ["acl2020.acl-main.447.pdf"]

    def test_folder_without_supported_files_says_what_it_saw(self, tmp_path: Path) -> None:
        for name in ("a.docx", "b.docx", "c.png", ".hidden"):
            (tmp_path / name).touch()
        empty = tmp_path / "empty"
        empty.mkdir()
        found = scan([tmp_path, empty])
        assert [s.reason for s in found.skipped] == [
            f"no supported files found under {tmp_path} (skipped: 2 .docx, 1 .png)",
            f"no supported files found under {empty} (empty)",
        ]
