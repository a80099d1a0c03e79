import pytest
from fixtures_formats import make_msvr310_tree, messages, write_image

from reidlab.data.formats import msvr310
from reidlab.data.records import DataFormatError


def test_load_reads_vehicle_scene_and_view(tmp_path):
    dataset = make_msvr310_tree(tmp_path, train_ids=(1, 2), test_ids=(2, 310), cams=(0, 3), scenes=(5, 7), shots=2)
    split = msvr310.load(tmp_path)
    assert split.protocol == "msvr310" and split.info == {}
    assert (len(split.train), len(split.query), len(split.gallery)) == (8, 4, 8)
    record = split.query[0]
    assert record.key == "query3/0002/vis/0002_s005_v0_000.jpg"
    assert (record.pid, record.camid, record.sceneid) == (2, 0, 5), "camid is the v digit as is (views count from 0)"
    assert {r.camid for r in split.gallery} == {0, 3} and {r.sceneid for r in split.gallery} == {5, 7}
    assert record.images["tir"].path == dataset / "query3" / "0002" / "th" / "0002_s005_v0_000.jpg"


def test_a_modality_file_missing_for_one_sample(tmp_path):
    dataset = make_msvr310_tree(tmp_path)
    (dataset / "bounding_box_test" / "0004" / "ni" / "0004_s002_v1_000.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"0004/ni/0004_s002_v1_000.jpg: missing; the sample is in vis/, th/"):
        msvr310.load(tmp_path)


def test_file_vehicle_id_must_match_its_folder(tmp_path):
    dataset = make_msvr310_tree(tmp_path)
    for modality in ("vis", "ni", "th"):
        write_image(dataset / "bounding_box_train" / "0001" / modality / "0009_s001_v0_005.jpg")
    with pytest.raises(DataFormatError, match="vehicle id 9 in the file name differs from its folder 0001/"):
        msvr310.load(tmp_path)


def test_layout_problems_lists_every_problem_at_once(tmp_path):
    dataset = make_msvr310_tree(tmp_path)
    (dataset / "query3").rename(dataset / "query")
    (dataset / "bounding_box_train" / "0002" / "th").rename(dataset / "bounding_box_train" / "0002" / "thermal")
    write_image(dataset / "bounding_box_test" / "car7" / "vis" / "x.jpg")
    problems = messages(msvr310.layout_problems(tmp_path))
    assert len(problems) == 3
    assert "missing tir modality folder 'th/'" in problems[0]
    assert "missing split folder 'query3/' (found 'query/' instead" in problems[1]
    assert "car7: folder name is not a numeric identity" in problems[2]
    kinds = [(p.kind, p.path.relative_to(dataset).as_posix()) for p in msvr310.layout_problems(tmp_path)]
    assert kinds == [("missing", "bounding_box_train/0002/th"), ("misnamed", "query3"),
                     ("misnamed", "bounding_box_test/car7")]
