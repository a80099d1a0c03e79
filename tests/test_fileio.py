"""The one atomic-write helper: temp file then rename, nothing left on error, ordinary permissions."""

import os
import stat
from pathlib import Path

import pytest

from reidlab import fileio
from reidlab.fileio import make_unique_dir, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_text_or_a_writer_and_creates_parents(tmp_path):
    assert write_atomic(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_atomic(tmp_path / "t.txt", "é\n").read_bytes() == "é\n".encode()
    assert write_atomic(tmp_path / "w.bin", lambda handle: handle.write(b"xyz")).read_bytes() == b"xyz"
    write_atomic(tmp_path / "t.txt", "second")
    assert (tmp_path / "t.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "t.txt", "w.bin"], "no temporary file left"


def test_writes_a_temporary_file_then_renames_it(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(source, target):
        renames.append((Path(source), Path(target), Path(source).read_bytes()))
        real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", spy)
    write_atomic(tmp_path / "f.json", b"{}")
    ((source, target, content),) = renames
    assert target == tmp_path / "f.json" and source.parent == tmp_path and source != target
    assert source.name.startswith(".f.json.") and source.name.endswith(".tmp") and content == b"{}"


def test_an_error_leaves_the_old_file_and_no_partial_file(tmp_path):
    target = write_atomic(tmp_path / "f.txt", "old")

    def broken(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "new.txt", lambda handle: int("x"))
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"], "a failed first write leaves nothing"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask_like_an_ordinary_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        (tmp_path / "plain.txt").write_text("x")
        os.mkdir(tmp_path / "plain_dir")
        written = write_atomic(tmp_path / "atomic.txt", "x")
        folder = make_unique_dir(tmp_path, ".staging-")
    finally:
        os.umask(previous)
    assert _mode(written) == _mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert _mode(folder) == _mode(tmp_path / "plain_dir") == 0o777 & ~umask


def test_unique_dirs_do_not_collide(tmp_path):
    folders = {make_unique_dir(tmp_path / "p", "x-") for _ in range(20)}
    assert len(folders) == 20 and all(f.is_dir() and f.parent == tmp_path / "p" for f in folders)
