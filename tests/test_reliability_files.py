"""Issue 13: split files (BOM, non-ASCII digits, the right line blamed), stale temporary files,
truncated checkpoints, and the provenance of a notebook outside the repository."""

from __future__ import annotations

import subprocess

import pytest
import torch
from fixtures_formats import make_regdb_tree, make_sysu_tree

from reidlab.data.formats import regdb, sysu_mm01
from reidlab.data.records import DataFormatError
from reidlab.engine.checkpoint import load_checkpoint, save_checkpoint
from reidlab.fileio import remove_stale_temporaries, write_atomic
from reidlab.reports.provenance import git_state


def test_a_utf8_bom_in_a_sysu_split_file_is_recognised(tmp_path):
    dataset = make_sysu_tree(tmp_path)
    expected = sysu_mm01.load(tmp_path).statistics()
    path = dataset / "exp" / "test_id.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert sysu_mm01.load(tmp_path).statistics() == expected


@pytest.mark.parametrize("text", ["4,\u00b2\n", "4,\uff15\n"])  # superscript two, fullwidth five
def test_non_ascii_digits_in_a_sysu_split_file_name_file_and_line(tmp_path, text):
    dataset = make_sysu_tree(tmp_path)
    (dataset / "exp" / "test_id.txt").write_text("\n" + text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"exp/test_id.txt:2: entry 2 is .*ASCII digits"):
        sysu_mm01.load(tmp_path)


def test_a_regdb_label_in_unicode_digits_names_the_line(tmp_path):
    dataset = make_regdb_tree(tmp_path)
    path = dataset / "idx" / "train_visible_1.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1] + "\u00b2"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"train_visible_1.txt:3: expected '<image path> <label>'"):
        regdb.load(tmp_path)


def test_a_wrong_regdb_label_on_line_1_is_blamed_on_line_1_only(tmp_path):
    dataset = make_regdb_tree(tmp_path, num_ids=4, images_per_id=4)
    path = dataset / "idx" / "train_visible_1.txt"
    lines = path.read_text().splitlines()  # the first id's four lines all say label 0
    lines[0] = lines[0][:-1] + "7"
    path.write_text("\n".join(lines) + "\n")
    problems = regdb.layout_problems(tmp_path)
    blamed = [p for p in problems if p.path == path]
    assert [p.line for p in blamed] == [1], [str(p) for p in problems]
    assert "has label 7 here but 0 on 3 other lines" in blamed[0].message


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    write_atomic(tmp_path / "checkpoint.pt", b"ok")
    stale = tmp_path / ".checkpoint.pt.0123abcd.tmp"  # what write_atomic leaves when killed mid-write
    stale.write_bytes(b"partial")
    user = tmp_path / ".notes.tmp"  # not a name write_atomic makes
    user.write_text("mine")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and user.exists() and (tmp_path / "checkpoint.pt").read_bytes() == b"ok"


def test_a_truncated_checkpoint_says_how_to_recover(tmp_path):
    path = save_checkpoint({"w": torch.zeros(3)}, tmp_path / "checkpoint.pt")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"checkpoint.pt cannot be loaded.*--force"):
        load_checkpoint(path)


def test_provenance_is_the_notebook_repository_not_the_working_directory(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert git_state(repo=outside) == {"commit": None, "dirty": None, "repository": None}
    repo = tmp_path / "project"
    (repo / "notebooks").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notebooks" / "a.ipynb").write_text("{}")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    state = git_state(repo=repo / "notebooks")  # the notebook's folder, inside the repository
    assert state["repository"] == str(repo.resolve()) and state["dirty"] is False
    (repo / "other.py").write_text("x = 1\n")  # dirtiness is the whole repository's, not the folder's
    assert git_state(repo=repo / "notebooks")["dirty"] is True
