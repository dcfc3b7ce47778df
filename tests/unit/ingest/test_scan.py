"""scan and the hardened loaders on real files: symlinks, FIFOs, sockets, caps, slow parses, odd path text,
swaps between scan and read, hard links, hostile .pipelineignore files, names that are not UTF-8."""

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
from pipeline.ingest.load import file_hash, load_document, read_file, read_source, with_timeout
from pipeline.ingest.scan import IGNORE_MAX_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES, ScanLimits, check_path_text, scan


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


def unblock_fifo(fifo: Path) -> None:
    """Open the FIFO for writing and close it, so a reader stuck in open() gets EOF (test cleanup)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody was waiting on it


def scan_within(seconds: float, paths: list[Path], lim: ScanLimits, fifo: Path | None = None) -> object:
    """``scan`` in a thread: the result, or a test failure (not a hung suite) when it takes longer."""
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.update(found=scan(paths, lim)), daemon=True)
    worker.start()
    worker.join(seconds)
    hung = worker.is_alive()
    if fifo is not None:
        unblock_fifo(fifo)
        worker.join(5)
    assert not hung, f"scan still running after {seconds} s"
    return box["found"]


class TestSwapsAndLinks:
    """Issue 21 point 2: what the scan checked is what is read, and nothing below a root is followed out."""

    def test_file_swapped_for_a_symlink_between_scan_and_read_is_not_read(self, root: Path) -> None:
        lim = limits(root)
        found = scan([root], lim)
        path = found.files[0]
        (root / "swap").symlink_to(root.parent / "secret.txt")  # the hook: swap after the scan, before the read
        os.replace(root / "swap", root / "good.txt")
        with pytest.raises(LoadError, match=r"good.txt: skipped: it is a symlink now") as caught:
            read_source(path, lim, found.identity[path])
        assert "secret" not in str(caught.value)

    def test_folder_on_the_way_swapped_for_a_symlink_is_not_followed(self, root: Path) -> None:
        (root / "sub").mkdir()
        (root / "sub" / "note.txt").write_text("harmless")
        outside = root.parent / "outside"
        outside.mkdir()
        (outside / "note.txt").write_text("root:x:0:0:secret")
        lim = limits(root)
        found = scan([root / "sub"], lim)
        path = found.files[0]
        os.rename(root / "sub", root / "old-sub")
        (root / "sub").symlink_to(outside)
        with pytest.raises(LoadError, match="a folder on its path is now a symlink or not a folder"):
            read_source(path, lim, found.identity[path])

    def test_file_replaced_by_another_inode_is_refused(self, root: Path) -> None:
        lim = limits(root)
        found = scan([root], lim)
        path = found.files[0]
        (root / "new.txt").write_text("other text")
        os.replace(root / "new.txt", root / "good.txt")
        with pytest.raises(LoadError, match="replaced between the scan and the read"):
            read_source(path, lim, found.identity[path])
        assert read_source(path, lim) == b"other text"  # without an expected inode: a regular file in the root

    def test_read_source_hashes_and_parses_one_read(self, root: Path) -> None:
        lim = limits(root, max_file_bytes=1024)
        found = scan([root], lim)
        data = read_source(found.files[0], lim, found.identity[found.files[0]])
        doc = load_document(found.files[0], data=data)
        assert data == b"good text" and doc.text.startswith("good text")

    def test_hard_link_to_a_file_outside_the_roots_is_refused_by_default(self, root: Path) -> None:
        os.link(root.parent / "secret.txt", root / "linked.txt")
        found = scan([root], limits(root))
        assert [f.name for f in found.files] == ["good.txt"]
        assert reasons(found)["linked.txt"] == (
            "skipped: hard link (2 names for one file; another may lie outside the ingest roots); "
            "set service.ingest_allow_hardlinks to allow"
        )
        allowed = limits(root, allow_hardlinks=True)
        found = scan([root], allowed)
        assert [f.name for f in found.files] == ["good.txt", "linked.txt"]
        assert read_source(root / "linked.txt", allowed).startswith(b"root:x")

    def test_hard_link_made_after_the_scan_is_refused_at_the_read(self, root: Path) -> None:
        lim = limits(root)
        found = scan([root], lim)
        os.link(root / "good.txt", root.parent / "elsewhere.txt")
        with pytest.raises(LoadError, match="hard link"):
            read_source(found.files[0], lim, found.identity[found.files[0]])

    def test_symlink_inside_the_root_is_still_read_by_its_real_path(self, root: Path) -> None:
        (root / "alias.txt").symlink_to(root / "good.txt")
        lim = limits(root)
        found = scan([root / "alias.txt"], lim)
        assert read_source(found.files[0], lim, found.identity[found.files[0]]) == b"good text"

    def test_without_roots_the_cli_still_follows_given_symlinks(self, root: Path) -> None:
        (root / "passwd.txt").symlink_to(root.parent / "secret.txt")
        assert read_source(root / "passwd.txt").startswith(b"root:x")


class TestIgnoreFile:
    """Issue 21 point 3: a .pipelineignore gets the rules of a document, and a bad one refuses its folder."""

    def test_fifo_pipelineignore_does_not_hang_the_scan(self, root: Path) -> None:
        fifo = root / ".pipelineignore"
        os.mkfifo(fifo)
        found = scan_within(5, [root], limits(root), fifo=fifo)
        assert found.files == []  # type: ignore[attr-defined]
        assert [s.reason for s in found.skipped] == [  # type: ignore[attr-defined]
            "skipped: its .pipelineignore is unusable: not a regular file (FIFO); the folder was not scanned "
            f"(a .pipelineignore must be a regular file, not a link, of at most {IGNORE_MAX_BYTES} bytes)"
        ]

    def test_pipelineignore_linked_to_dev_zero_is_not_read(self, root: Path) -> None:
        (root / ".pipelineignore").symlink_to("/dev/zero")
        for lim in (limits(root), ScanLimits()):
            found = scan_within(5, [root], lim)
            assert found.files == [] and "its .pipelineignore is unusable: a symlink (not followed)" in found.skipped[0].reason  # type: ignore[attr-defined]

    def test_pipelineignore_linked_out_of_the_root_is_not_read(self, root: Path) -> None:
        (root.parent / "patterns").write_text("nothing.txt\n")
        (root / ".pipelineignore").symlink_to(root.parent / "patterns")
        found = scan([root], limits(root))
        assert found.files == [] and "a symlink (not followed)" in found.skipped[0].reason

    def test_oversized_pipelineignore_refuses_the_folder(self, root: Path) -> None:
        (root / ".pipelineignore").write_text("#" * (IGNORE_MAX_BYTES + 1))
        found = scan([root])
        assert found.files == []
        assert f"over limit ({IGNORE_MAX_BYTES + 1} bytes, the limit is {IGNORE_MAX_BYTES} bytes per file)" in found.skipped[0].reason

    def test_small_regular_pipelineignore_still_works_under_roots(self, root: Path) -> None:
        (root / "LICENSE.md").write_text("licence")
        (root / ".pipelineignore").write_text("LICENSE.md\n")
        found = scan([root], limits(root))
        assert [f.name for f in found.files] == ["good.txt"] and not found.skipped


class TestFileNames:
    """Issue 21 point 6: a name that is not UTF-8 is one clear skip; the rest of the folder goes on."""

    def test_invalid_utf8_name_is_skipped_and_the_report_is_serialisable(self, root: Path) -> None:
        import json

        os.close(os.open(os.fsencode(root) + b"/\xff.txt", os.O_CREAT | os.O_WRONLY, 0o644))
        (root / "z.txt").write_text("after the bad name")
        for lim in (limits(root), ScanLimits()):
            found = scan([root], lim)
            assert [f.name for f in found.files] == ["good.txt", "z.txt"]
            assert [(s.path, s.reason) for s in found.skipped] == [
                (f"{root.resolve() if lim.roots else root}/\\xff.txt", "skipped: file name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8)")
            ]
            json.dumps([s.__dict__ for s in found.skipped]).encode("utf-8")

    def test_invalid_utf8_given_path_and_suffix_are_shown_escaped(self, tmp_path: Path) -> None:
        bad = os.fsdecode(os.fsencode(tmp_path) + b"/a.\xfe")
        Path(bad).touch()
        found = scan([Path(bad), tmp_path])
        assert found.skipped[0].reason.startswith("skipped: file name is not valid UTF-8")
        assert found.skipped[1].reason == f"no supported files found under {tmp_path} (skipped: 1 .\\xfe)"
        for s in found.skipped:
            (s.path + s.reason).encode("utf-8")
