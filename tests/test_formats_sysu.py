import os
import random
import shutil
from pathlib import Path

import pytest
from fixtures_formats import make_sysu_tree, messages, write_image
from scipy.io import loadmat

from reidlab.data.formats import sysu_mm01
from reidlab.data.records import DataFormatError


def agw_gallery(data_path, mode, trial, shots=1):
    """The Python port's gallery draw (Ye et al., AGW ``data_manager.process_gallery_sysu``, with the
    multi-shot ``random.sample(new_files, k=10)`` of its forks), transcribed as the test oracle."""
    state = random.getstate()
    random.seed(trial)
    rgb_cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    with open(os.path.join(data_path, "exp/test_id.txt")) as file:
        ids = file.read().splitlines()
        ids = ["%04d" % int(y) for y in ids[0].split(",")]  # noqa: UP031 (the reference's own formatting)
    files_rgb = []
    for id_ in sorted(ids):
        for cam in rgb_cameras:
            img_dir = os.path.join(data_path, cam, id_)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if shots == 1:
                    files_rgb.append(random.choice(new_files))
                else:
                    files_rgb.extend(random.sample(new_files, k=shots))
    random.setstate(state)
    return sorted(os.path.relpath(f, data_path) for f in files_rgb)


def official_gallery(mat_path, mode, ids, trial, shots):
    """The MATLAB protocol's gallery as the Python ports read rand_perm_cam.mat (MCJA/MPANet)."""
    perm = loadmat(mat_path)["rand_perm_cam"]
    names = []
    for cam in ([1, 2] if mode == "indoor" else [1, 2, 4, 5]):
        cam_perm = perm[cam - 1][0].squeeze()
        for i in ids:
            if (i - 1) < len(cam_perm) and len(cam_perm[i - 1]) > 0:
                instance_id = cam_perm[i - 1][trial][:shots]
                names.extend([f"cam{cam}/{i:0>4d}/{ins:0>4d}.jpg" for ins in instance_id.tolist()])
    return sorted(names)


def test_train_and_query_follow_the_protocol(tmp_path):
    make_sysu_tree(tmp_path, train_ids=(1, 2), val_ids=(3,), test_ids=(4, 5, 6), images_per_camera=3,
                   missing=((5, 4), (6, 6)))
    split = sysu_mm01.load(tmp_path)
    assert split.protocol == "sysu_all" and split.modalities == ("rgb", "nir")
    assert split.info == {"mode": "all", "trial": 0, "shots": 1, "permutation": "python"}
    assert len(split.train) == 3 * 6 * 3, "train: train + val ids, all six cameras"
    assert {r.pid for r in split.train} == {1, 2, 3}
    assert {(r.camid, r.modality) for r in split.train} == {(1, "rgb"), (2, "rgb"), (3, "nir"), (4, "rgb"),
                                                            (5, "rgb"), (6, "nir")}
    assert {r.camid for r in split.query} == {3, 6} and {r.modality for r in split.query} == {"nir"}
    assert len(split.query) == (3 * 2 - 1) * 3, "query: every IR image of the test ids (6 has no cam6)"
    assert split.query[0].key == "cam3/0004/0001.jpg" and split.query[0].pid == 4


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_python_gallery_reproduces_the_reference_draw(mode, tmp_path):
    dataset = make_sysu_tree(tmp_path, images_per_camera=5)
    galleries = []
    for trial in range(10):
        split = sysu_mm01.load(tmp_path, mode=mode, trial=trial)
        keys = [r.key for r in split.gallery]
        assert keys == agw_gallery(str(dataset), mode, trial)
        galleries.append(keys)
        assert split.protocol == f"sysu_{mode}"
        assert {r.camid for r in split.query} == {3, 6}, "indoor search still queries cams 3 and 6"
    assert len({tuple(g) for g in galleries}) > 1, "trials draw different galleries"
    expected_cams = {1, 2, 4, 5} if mode == "all" else {1, 2}
    assert {r.camid for r in split.gallery} == expected_cams and {r.modality for r in split.gallery} == {"rgb"}


def test_python_multi_shot_reproduces_the_reference_draw(tmp_path):
    dataset = make_sysu_tree(tmp_path, images_per_camera=11)
    for trial in (0, 7):
        split = sysu_mm01.load(tmp_path, trial=trial, shots=10)
        assert [r.key for r in split.gallery] == agw_gallery(str(dataset), "all", trial, shots=10)


def test_multi_shot_takes_every_image_of_a_small_folder(tmp_path):
    make_sysu_tree(tmp_path, images_per_camera=3, missing=())
    split = sysu_mm01.load(tmp_path, shots=10)
    assert len(split.gallery) == 3 * 4 * 3


@pytest.mark.parametrize(("mode", "shots"), [("all", 1), ("indoor", 1), ("all", 10)])
def test_official_permutation_takes_the_mat_files_draws(mode, shots, tmp_path):
    dataset = make_sysu_tree(tmp_path, images_per_camera=12, with_permutation=True)
    mat = dataset / "exp" / "rand_perm_cam.mat"
    for trial in (0, 9):
        split = sysu_mm01.load(tmp_path, mode=mode, trial=trial, shots=shots, permutation="official")
        assert [r.key for r in split.gallery] == official_gallery(mat, mode, [4, 5, 6], trial, shots)
        assert split.info["permutation"] == "official"
    python = sysu_mm01.load(tmp_path, mode=mode, trial=9, shots=shots)
    assert [r.key for r in python.gallery] != [r.key for r in split.gallery]


def test_official_permutation_needs_the_mat_file(tmp_path):
    make_sysu_tree(tmp_path)
    with pytest.raises(DataFormatError, match=r"rand_perm_cam.mat: missing; permutation='official' needs"):
        sysu_mm01.load(tmp_path, permutation="official")


def test_official_permutation_checks_trials_and_files(tmp_path):
    dataset = make_sysu_tree(tmp_path, with_permutation=True, num_trials=3)
    with pytest.raises(DataFormatError, match="has 3 trials; trial 3 was asked for"):
        sysu_mm01.load(tmp_path, trial=3, permutation="official")
    (dataset / "cam1" / "0004" / "0001.jpg").unlink()  # the .mat still draws image 1
    assert messages(sysu_mm01.layout_problems(tmp_path)) == [
        f"{dataset / 'exp' / 'rand_perm_cam.mat'}: trial 0 draws cam1/0004/0001.jpg, which is not in {dataset}"]
    with pytest.raises(DataFormatError, match="cam1/0004/0001.jpg, which is not in"):
        list(sysu_mm01.sysu_trials(tmp_path, shots=10, permutation="official", num_trials=3))


def test_a_corrupt_mat_file_is_reported(tmp_path):
    dataset = make_sysu_tree(tmp_path)
    (dataset / "exp" / "rand_perm_cam.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(DataFormatError, match="cannot read the MATLAB file"):
        sysu_mm01.load(tmp_path, permutation="official")
    assert "cannot read the MATLAB file" in messages(sysu_mm01.layout_problems(tmp_path))[0]


def test_sysu_trials_scans_once_and_matches_load(tmp_path, monkeypatch):
    make_sysu_tree(tmp_path)
    scans = []
    real_scan = sysu_mm01._scan
    monkeypatch.setattr(sysu_mm01, "_scan", lambda *a: scans.append(a) or real_scan(*a))
    splits = list(sysu_mm01.sysu_trials(tmp_path, mode="indoor", num_trials=4))
    assert len(scans) == 1
    assert [s.info["trial"] for s in splits] == [0, 1, 2, 3]
    for trial, split in enumerate(splits):
        single = sysu_mm01.load(tmp_path, mode="indoor", trial=trial)
        assert [r.key for r in split.gallery] == [r.key for r in single.gallery]
        assert [r.key for r in split.query] == [r.key for r in single.query]
        assert split.train is not splits[0].train or trial == 0, "each split owns its lists"


def test_a_corrupt_split_file_line(tmp_path):
    dataset = make_sysu_tree(tmp_path)
    (dataset / "exp" / "test_id.txt").write_text("4,5,six\n")
    with pytest.raises(DataFormatError, match=r"test_id.txt:1: entry 3 is 'six', expected a positive integer id"):
        sysu_mm01.load(tmp_path)
    (dataset / "exp" / "test_id.txt").write_text("4,5\n6\n")
    with pytest.raises(DataFormatError, match="expected one line of comma-separated ids, found 2"):
        sysu_mm01.load(tmp_path)
    (dataset / "exp" / "test_id.txt").write_text("")
    with pytest.raises(DataFormatError, match="found 0 non-empty lines"):
        sysu_mm01.load(tmp_path)


def test_split_files_can_come_from_another_folder(tmp_path):
    dataset = make_sysu_tree(tmp_path / "data")
    shutil.move(dataset / "exp", tmp_path / "official_exp")
    with pytest.raises(DataFormatError, match="data_manifests/sysu_mm01/exp"):
        sysu_mm01.load(tmp_path / "data")
    split = sysu_mm01.load(tmp_path / "data", split_dir=tmp_path / "official_exp")
    assert {r.pid for r in split.query} == {4, 5, 6}
    assert messages(sysu_mm01.layout_problems(tmp_path / "data", split_dir=tmp_path / "official_exp")) == []


def test_layout_problems_lists_every_problem_at_once(tmp_path):
    dataset = make_sysu_tree(tmp_path)
    (dataset / "cam3").rename(dataset / "Cam3")
    write_image(dataset / "cam1" / "0004" / "4.jpg")
    write_image(dataset / "cam2" / "person9" / "0001.jpg")
    (dataset / "exp" / "val_id.txt").write_text("3,4\n")
    (dataset / "exp" / "train_id.txt").write_text("1,2,77\n")
    problems = messages(sysu_mm01.layout_problems(tmp_path))
    expected = [
        "ids [4] are in both val_id.txt and test_id.txt",
        "cam1/0004/4.jpg: file name does not match <n %04d>.jpg",
        "cam2/person9: folder name is not a 4-digit identity",
        "missing camera folder 'cam3/' (found 'Cam3/' instead; rename it to 'cam3')",
        "train_id.txt: id 77 has no images in any camera folder",
    ]
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_an_empty_query_is_reported(tmp_path):
    dataset = make_sysu_tree(tmp_path)
    for cam in ("cam3", "cam6"):
        for folder in (dataset / cam).iterdir():
            if folder.name in ("0004", "0005", "0006"):
                shutil.rmtree(folder)
    with pytest.raises(DataFormatError, match="empty query"):
        sysu_mm01.load(tmp_path)


@pytest.mark.parametrize(("option", "message"), [
    ({"mode": "outdoor"}, "mode must be one of"),
    ({"shots": 0}, "shots must be a positive integer"),
    ({"permutation": "matlab"}, "permutation must be one of"),
    ({"trial": -1}, "trial must be >= 0"),
])
def test_bad_options_are_refused(option, message, tmp_path):
    make_sysu_tree(tmp_path)
    with pytest.raises(ValueError, match=message):
        sysu_mm01.load(tmp_path, **option)


SHIPPED_EXP = Path(__file__).resolve().parents[1] / "data_manifests" / "sysu_mm01" / "exp"


@pytest.mark.skipif(not SHIPPED_EXP.is_dir(), reason="data_manifests/sysu_mm01/exp is not in this checkout")
def test_the_shipped_official_split_files_give_the_published_identity_counts(tmp_path):
    dataset = tmp_path / "SYSU-MM01"
    shutil.copytree(SHIPPED_EXP, dataset / "exp")
    ids = [int(i) for part in ("train", "val", "test") for i in (SHIPPED_EXP / f"{part}_id.txt").read_text().split(",")]
    for pid in ids:
        for cam in (1, 3):
            write_image(dataset / f"cam{cam}" / f"{pid:04d}" / "0001.jpg")
    for cam in (2, 4, 5, 6):
        (dataset / f"cam{cam}").mkdir()
    stats = sysu_mm01.load(tmp_path).statistics()
    assert (stats["train"]["ids"], stats["query"]["ids"], stats["gallery"]["ids"]) == (395, 96, 96)
