import pytest
from fixtures_formats import make_wmveid863_tree, messages, write_image

from reidlab.data.formats import wmveid863
from reidlab.data.records import DataFormatError


def test_load_reads_vehicle_folder_and_camera_and_pairs_by_name(tmp_path):
    dataset = make_wmveid863_tree(tmp_path, train_ids=(1, 2), test_ids=(3, 863), cams=(1, 4), shots=3)
    split = wmveid863.load(tmp_path)
    assert split.protocol == "market" and split.info == {}
    assert (len(split.train), len(split.query), len(split.gallery)) == (12, 4, 12)
    assert {r.pid for r in split.gallery} == {3, 863}
    assert {r.camid for r in split.train} == {1, 4}, "camid is the digit after 'v' as is"
    assert split.gallery[0].key == "test/0003/vis/v1_n0_s001_000.jpg"
    assert split.gallery[0].images["nir"].path == dataset / "test" / "0003" / "ni" / "v1_n0_s001_000.jpg"
    for record in split.train + split.query + split.gallery:
        assert len({ref.path.name for ref in record.images.values()}) == 1, "modalities are paired by file name"


def test_msvwild863_folder_name_is_accepted(tmp_path):
    make_wmveid863_tree(tmp_path).rename(tmp_path / "MSVWild863")
    assert len(wmveid863.load(tmp_path).query) == 4


def test_a_modality_file_missing_for_one_sample(tmp_path):
    # The official loader zips os.listdir() of vis/ni/th by position: here it would pair
    # v2_n0_s001_000.jpg (vis) with whatever comes next in th/. We refuse the tree instead.
    dataset = make_wmveid863_tree(tmp_path)
    (dataset / "train" / "0001" / "th" / "v1_n0_s001_000.jpg").unlink()
    with pytest.raises(DataFormatError, match="th/v1_n0_s001_000.jpg: missing; the sample is in vis/, ni/ but not"):
        wmveid863.load(tmp_path)


def test_a_flat_split_folder_is_explained(tmp_path):
    dataset = make_wmveid863_tree(tmp_path)
    for modality in ("vis", "ni", "th"):
        write_image(dataset / "query" / modality / "v1_n0_s001_000.jpg")
    problems = messages(wmveid863.layout_problems(tmp_path))
    assert problems == [f"{dataset / 'query'}: found ni/, th/, vis/ directly inside; expected one numeric folder "
                        "per identity, each holding vis/, ni/, th/"]


def test_a_name_without_camera_is_reported(tmp_path):
    dataset = make_wmveid863_tree(tmp_path)
    for modality in ("vis", "ni", "th"):
        write_image(dataset / "test" / "0004" / modality / "n0_s001_009.jpg")
    with pytest.raises(DataFormatError, match="n0_s001_009.jpg: file name does not match a .jpg name containing v"):
        wmveid863.load(tmp_path)


def test_an_empty_split_is_reported(tmp_path):
    dataset = make_wmveid863_tree(tmp_path)
    (dataset / "query").rename(tmp_path / "elsewhere")
    (dataset / "query").mkdir()
    assert messages(wmveid863.layout_problems(tmp_path)) == [
        f"{dataset / 'query'}: has no samples (empty split); expected <vid>/vis|ni|th/<name>.jpg "
        "(a .jpg name containing v<camera digit>)"]
