import shutil
from pathlib import Path

import pytest
from fixtures_formats import make_regdb_tree, messages, write_image

from reidlab.data.formats import regdb
from reidlab.data.formats._common import Problems
from reidlab.data.records import DataFormatError

SHIPPED_IDX = Path(__file__).resolve().parents[1] / "data_manifests" / "regdb" / "idx"


def listed(path: Path) -> list[str]:
    return sorted(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def test_load_builds_train_query_gallery_from_the_idx_lists(tmp_path):
    dataset = make_regdb_tree(tmp_path, num_ids=6, images_per_id=3)
    split = regdb.load(tmp_path, trial=2)
    idx = dataset / "idx"
    assert split.protocol == "regdb" and split.modalities == ("rgb", "tir")
    assert split.info == {"trial": 2, "direction": "visible_to_thermal"}
    assert sorted(r.key for r in split.train) == sorted(listed(idx / "train_visible_2.txt")
                                                        + listed(idx / "train_thermal_2.txt"))
    assert [r.key for r in split.query] == listed(idx / "test_visible_2.txt")
    assert [r.key for r in split.gallery] == listed(idx / "test_thermal_2.txt")
    assert {(r.modality, r.camid) for r in split.query} == {("rgb", 1)}
    assert {(r.modality, r.camid) for r in split.gallery} == {("tir", 2)}
    record = split.query[0]
    assert record.pid == int(record.key.split("/")[1]), "pid is the identity folder, not the idx label"
    assert {r.pid for r in split.train}.isdisjoint({r.pid for r in split.query})
    assert len({r.pid for r in split.train}) == 3 and len(split.train) == 3 * 3 * 2


def test_thermal_to_visible_swaps_query_and_gallery(tmp_path):
    make_regdb_tree(tmp_path)
    v2t = regdb.load(tmp_path, trial=5)
    t2v = regdb.load(tmp_path, trial=5, direction="thermal_to_visible")
    assert [r.key for r in t2v.query] == [r.key for r in v2t.gallery]
    assert [r.key for r in t2v.gallery] == [r.key for r in v2t.query]
    assert t2v.info["direction"] == "thermal_to_visible"


def test_trials_differ(tmp_path):
    make_regdb_tree(tmp_path, num_ids=8)
    trains = {tuple(sorted({r.pid for r in regdb.load(tmp_path, trial=t).train})) for t in range(1, 11)}
    assert len(trains) > 1


def test_the_shipped_reference_lists_parse_with_the_published_counts(tmp_path):
    # 8240 image files would take seconds to write; the lists are checked against their own paths.
    listed_paths = {line.split()[0] for f in SHIPPED_IDX.glob("*.txt") for line in f.read_text().splitlines() if line}
    assert len(listed_paths) == 412 * 10 * 2
    existing = {m: {p for p in listed_paths if p.startswith(d + "/")} for m, d in regdb.MODALITY_DIRS.items()}
    problems = Problems(fail_fast=False)
    for trial in regdb.TRIALS:
        lists = regdb._read_trial(tmp_path, SHIPPED_IDX, trial, existing, problems)
        assert {k: len(v) for k, v in lists.items()} == {(part, m): 2060 for part in ("train", "test")
                                                         for m in ("rgb", "tir")}
        train_ids = {p.split("/")[1] for p in lists["train", "rgb"]}
        assert len(train_ids) == 206 and train_ids == {p.split("/")[1] for p in lists["train", "tir"]}
    assert problems.items == []


def test_a_corrupt_idx_line(tmp_path):
    dataset = make_regdb_tree(tmp_path)
    path = dataset / "idx" / "test_visible_1.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].split()[0], *lines[2:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"visible_1.txt:2: expected '<image path> <label>'.*, got 'Visible/"):
        regdb.load(tmp_path, trial=1)
    path.write_text("\n".join([lines[0], lines[1].replace(" ", " x"), *lines[2:]]) + "\n")
    with pytest.raises(DataFormatError, match="test_visible_1.txt:2: expected '<image path> <label>'"):
        regdb.load(tmp_path, trial=1)


def test_idx_entries_must_name_images_of_the_right_modality_that_exist(tmp_path):
    dataset = make_regdb_tree(tmp_path)
    path = dataset / "idx" / "train_thermal_3.txt"
    first, *rest = path.read_text().splitlines()
    path.write_text("\n".join([first.replace("Thermal", "Visible").replace("_t_", "_v_"), *rest]))
    with pytest.raises(DataFormatError, match="train_thermal_3.txt:1: image path 'Visible/.*' is not Thermal/<id>/"):
        regdb.load(tmp_path, trial=3)
    path.write_text("\n".join([first.replace(".bmp", "9.bmp"), *rest]))
    with pytest.raises(DataFormatError, match=r"train_thermal_3.txt:1: .*9.bmp is not a well-named image of the tree"):
        regdb.load(tmp_path, trial=3)


def test_labels_must_be_consistent(tmp_path):
    dataset = make_regdb_tree(tmp_path, num_ids=4, images_per_id=2)
    path = dataset / "idx" / "train_visible_1.txt"
    lines = path.read_text().splitlines()  # ids a, a, b, b labelled 0, 0, 1, 1
    path.write_text("\n".join([lines[0], lines[1][:-1] + "1", *lines[2:]]))
    with pytest.raises(DataFormatError, match="train_visible_1.txt:2: id .* has label 1 here but 0 on 1 other line;"):
        regdb.load(tmp_path)
    path.write_text("\n".join([*lines[:2], lines[2][:-1] + "0", lines[3][:-1] + "0"]))
    with pytest.raises(DataFormatError, match="train_visible_1.txt:3: label 0 is used for ids"):
        regdb.load(tmp_path)
    path.write_text("\n".join([*lines[:2], lines[2][:-1] + "5", lines[3][:-1] + "5"]))
    with pytest.raises(DataFormatError, match="train_visible_1.txt and train_thermal_1.txt disagree"):
        regdb.load(tmp_path)


def test_train_and_test_identities_must_not_overlap(tmp_path):
    dataset = make_regdb_tree(tmp_path)
    train, test = dataset / "idx" / "train_visible_4.txt", dataset / "idx" / "test_visible_4.txt"
    test.write_text(test.read_text() + train.read_text().splitlines()[0] + "\n")
    problems = messages(regdb.layout_problems(tmp_path))
    assert any("trial 4 has ids" in p and "in both train and test lists" in p for p in problems)


def test_missing_idx_folder_points_at_the_shipped_copies(tmp_path):
    dataset = make_regdb_tree(tmp_path / "data")
    shutil.move(dataset / "idx", tmp_path / "lists")
    with pytest.raises(DataFormatError, match="data_manifests/regdb/idx; pass split_dir"):
        regdb.load(tmp_path / "data")
    assert len(regdb.load(tmp_path / "data", split_dir=tmp_path / "lists").query) == 4
    assert messages(regdb.layout_problems(tmp_path / "data", split_dir=tmp_path / "lists")) == []


def test_layout_problems_checks_every_trial_and_the_image_tree(tmp_path):
    dataset = make_regdb_tree(tmp_path)
    (dataset / "idx" / "test_thermal_7.txt").unlink()
    (dataset / "Thermal").rename(dataset / "thermal")
    write_image(dataset / "Visible" / "2" / "male_front_v_00999_3.bmp", fmt="BMP")
    problems = messages(regdb.layout_problems(tmp_path))
    assert "male_front_v_00999_3.bmp: identity 3 in the file name differs from its folder 2/" in problems[0]
    assert "missing thermal image folder 'Thermal/' (found 'thermal/' instead" in problems[1]
    assert any(p.endswith("test_thermal_7.txt: idx list is missing") for p in problems)
    with pytest.raises(DataFormatError, match="differs from its folder 2/"):
        regdb.load(tmp_path)


@pytest.mark.parametrize(("option", "message"), [
    ({"trial": 0}, "trial must be one of 1..10"),
    ({"direction": "rgb_to_ir"}, "direction must be one of"),
])
def test_bad_options_are_refused(option, message, tmp_path):
    make_regdb_tree(tmp_path)
    with pytest.raises(ValueError, match=message):
        regdb.load(tmp_path, **option)
