import pytest
from fixtures_formats import make_rgbnt201_tree, messages

from reidlab.data.formats import rgbnt201
from reidlab.data.images import read_image
from reidlab.data.records import DataFormatError


def test_load_reads_ids_cameras_and_pairs_modalities_by_name(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path, train_ids=(1, 2, 3), test_ids=(7, 9), cams=(1, 3), shots=2)
    split = rgbnt201.load(tmp_path)
    assert split.protocol == "market" and split.info == {"split": "171"}
    assert len(split.train) == 3 * 2 * 2 and len(split.query) == len(split.gallery) == 2 * 2 * 2
    assert {r.pid for r in split.train} == {1, 2, 3} and {r.pid for r in split.query} == {7, 9}
    assert {r.camid for r in split.train} == {0, 2}, "camid is the digit after 'cam' minus one"
    assert [r.key for r in split.query] == [r.key for r in split.gallery], "query = gallery = test"
    first = split.train[0]
    assert first.key == "train_171/RGB/000001_cam1_0_00.jpg"
    assert first.images["nir"].path == dataset / "train_171" / "NI" / "000001_cam1_0_00.jpg"
    assert first.images["tir"].path == dataset / "train_171" / "TI" / "000001_cam1_0_00.jpg"
    assert read_image(first.images["tir"]).size == (8, 4)
    assert split.statistics()["train"] == {"records": 12, "ids": 3, "cameras": 2, "images_rgb": 12,
                                           "images_nir": 12, "images_tir": 12}


def test_split_141_holds_out_30_identities_deterministically(tmp_path):
    make_rgbnt201_tree(tmp_path, train_ids=range(1, 36), test_ids=(40,))
    split = rgbnt201.load(tmp_path, split="141")
    val_pids = split.info["val_pids"]
    assert len(val_pids) == 30 and val_pids == sorted(val_pids)
    assert {r.pid for r in split.info["val"]} == set(val_pids)
    assert {r.pid for r in split.train} == set(range(1, 36)) - set(val_pids)
    again = rgbnt201.load(tmp_path, split=141)  # the CLI turns "-o split=141" into an int
    assert again.info["val_pids"] == val_pids
    assert val_pids != list(range(1, 31)) and val_pids != list(range(6, 36)), "a seeded draw, not a block of ids"


def test_validation_split_evaluates_on_the_held_out_identities(tmp_path):
    make_rgbnt201_tree(tmp_path, train_ids=range(1, 33), test_ids=(40,))
    split = rgbnt201.load(tmp_path, split="141")
    val = rgbnt201.validation_split(split)
    assert [r.key for r in val.query] == [r.key for r in val.gallery] == [r.key for r in split.info["val"]]
    assert val.train is split.train and val.info["evaluated_on"] == "val" and "val" not in val.info
    with pytest.raises(ValueError, match="split='141'"):
        rgbnt201.validation_split(rgbnt201.load(tmp_path))


def test_split_141_needs_more_than_30_identities(tmp_path):
    make_rgbnt201_tree(tmp_path)
    with pytest.raises(DataFormatError, match="needs more than 30"):
        rgbnt201.load(tmp_path, split="141")


def test_unknown_split_option_is_refused(tmp_path):
    make_rgbnt201_tree(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        rgbnt201.load(tmp_path, split="201")


def test_a_modality_file_missing_for_one_sample(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    missing = dataset / "train_171" / "TI" / "000002_cam1_0_00.jpg"
    missing.unlink()
    with pytest.raises(DataFormatError, match="000002_cam1_0_00.jpg: missing; the sample is in RGB/, NI/ but not in"):
        rgbnt201.load(tmp_path)
    assert messages(rgbnt201.layout_problems(tmp_path)) == [
        f"{missing}: missing; the sample is in RGB/, NI/ but not in TI/ "
        "(every sample needs the same file name in RGB/, NI/, TI/)"]


def test_names_that_disagree_across_modality_folders(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    ni = dataset / "test" / "NI"
    (ni / "000005_cam1_0_00.jpg").rename(ni / "000005_cam2_0_00.jpg.jpg")
    (ni / "000006_cam1_0_00.jpg").rename(ni / "000006_cam1_0_01.jpg")
    problems = messages(rgbnt201.layout_problems(tmp_path))
    assert any("000005_cam2_0_00.jpg.jpg: file name does not match <pid 6 digits>_cam<c>_<x>_<y>.jpg" in p
               for p in problems)
    assert any("NI/000006_cam1_0_00.jpg: missing; the sample is in RGB/, TI/ but not in NI/" in p for p in problems)
    assert any("000006_cam1_0_01.jpg: missing; the sample is in NI/ but not in RGB/, TI/" in p for p in problems)
    with pytest.raises(DataFormatError):
        rgbnt201.load(tmp_path)


def test_a_wrong_modality_folder_name_is_named(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    (dataset / "test" / "NI").rename(dataset / "test" / "NIR")
    with pytest.raises(DataFormatError, match=r"missing nir modality folder 'NI/' \(found 'NIR/' instead"):
        rgbnt201.load(tmp_path)


def test_an_empty_split_is_reported(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    for modality in ("RGB", "NI", "TI"):
        for image in (dataset / "test" / modality).iterdir():
            image.unlink()
    with pytest.raises(DataFormatError, match="test: has no samples"):
        rgbnt201.load(tmp_path)


def test_layout_problems_lists_every_problem_at_once(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    (dataset / "test").rename(dataset / "Test")
    (dataset / "train_171" / "RGB" / "000001_cam1_0_00.jpg").unlink()
    (dataset / "train_171" / "TI" / "readme.txt").write_text("")
    problems = messages(rgbnt201.layout_problems(tmp_path))
    assert len(problems) == 3
    assert "missing split folder 'test/' (found 'Test/' instead" in problems[2]
