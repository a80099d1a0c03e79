import numpy as np
import pytest
from fixtures_formats import TILE_COLORS, make_rgbnt100_tree, messages, write_image

from reidlab.data.formats import rgbnt100
from reidlab.data.images import read_image
from reidlab.data.records import DataFormatError


def test_load_reads_ids_cameras_and_three_tiles_per_file(tmp_path):
    dataset = make_rgbnt100_tree(tmp_path, train_ids=(1, 2), test_ids=(502, 600), cams=(1, 8), shots=2)
    split = rgbnt100.load(tmp_path)
    assert split.protocol == "market" and split.info == {}
    assert (len(split.train), len(split.query), len(split.gallery)) == (8, 4, 8)
    assert {r.pid for r in split.gallery} == {502, 600}
    assert {r.camid for r in split.train} == {0, 7}, "camid is the number after 'c' minus one"
    record = split.query[0]
    assert record.key == "rgbir/query/0502_c0001_000.jpg"
    path = dataset / "rgbir" / "query" / "0502_c0001_000.jpg"
    assert [(ref.path, ref.tile, ref.num_tiles) for ref in record.images.values()] == [
        (path, 0, 3), (path, 1, 3), (path, 2, 3)]
    for modality, color in zip(("rgb", "nir", "tir"), TILE_COLORS, strict=True):
        mean = np.asarray(read_image(record.images[modality])).reshape(-1, 3).mean(axis=0)
        assert np.allclose(mean, color, atol=40), f"{modality} tile has colour {mean}"


def test_an_empty_query_is_reported(tmp_path):
    dataset = make_rgbnt100_tree(tmp_path)
    for image in (dataset / "rgbir" / "query").iterdir():
        image.unlink()
    with pytest.raises(DataFormatError, match="query: has no samples"):
        rgbnt100.load(tmp_path)


def test_a_badly_named_file_is_named(tmp_path):
    dataset = make_rgbnt100_tree(tmp_path)
    bad = write_image(dataset / "rgbir" / "bounding_box_test" / "0003_cam1_000.jpg")
    with pytest.raises(DataFormatError, match=f"{bad}: file name does not match <pid>_c<cam>_<n>.jpg"):
        rgbnt100.load(tmp_path)


def test_missing_image_folder_and_misnamed_split_are_all_reported(tmp_path):
    dataset = make_rgbnt100_tree(tmp_path)
    (dataset / "rgbir" / "bounding_box_test").rename(dataset / "rgbir" / "bounding_box_tests")
    (dataset / "rgbir" / "query").rename(dataset / "rgbir" / "querys")
    problems = messages(rgbnt100.layout_problems(tmp_path))
    assert len(problems) == 2
    assert "'query/' (found 'querys/' instead" in problems[0]
    assert "'bounding_box_test/' (found 'bounding_box_tests/' instead" in problems[1]
    (dataset / "rgbir").rename(dataset / "RGBIR")
    assert messages(rgbnt100.layout_problems(tmp_path)) == [
        f"{dataset / 'rgbir'}: missing image folder 'rgbir/' (found 'RGBIR/' instead; rename it to 'rgbir')"]
