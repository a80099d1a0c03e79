"""The contract every format module keeps, checked on a fixture tree of each benchmark."""

import pytest
from fixtures_formats import (
    make_msvr310_tree,
    make_regdb_tree,
    make_rgbnt100_tree,
    make_rgbnt201_tree,
    make_sysu_tree,
    make_wmveid863_tree,
    messages,
)

from reidlab.data.formats import BENCHMARKS, get_format, load_split
from reidlab.data.formats._common import LayoutError, LayoutProblem, Problems
from reidlab.data.records import MODALITIES, DataFormatError

BUILDERS = {
    "rgbnt201": make_rgbnt201_tree,
    "rgbnt100": make_rgbnt100_tree,
    "msvr310": make_msvr310_tree,
    "wmveid863": make_wmveid863_tree,
    "sysu_mm01": make_sysu_tree,
    "regdb": make_regdb_tree,
}


def test_every_benchmark_has_a_builder():
    assert set(BUILDERS) == set(BENCHMARKS)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_module_exposes_the_contract(benchmark):
    module = get_format(benchmark)
    assert module.NAME == benchmark
    assert set(module.MODALITIES) <= set(MODALITIES)
    assert module.PROTOCOL in ("market", "msvr310", "sysu_all", "regdb")
    assert isinstance(module.DATASET_DIR, str) and module.DATASET_DIR
    assert callable(module.load) and callable(module.layout_problems)


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_fixture_tree_is_valid_and_loads_through_load_split(benchmark, tmp_path):
    dataset = BUILDERS[benchmark](tmp_path)
    module = get_format(benchmark)
    assert dataset.name.lower() == module.DATASET_DIR.lower()
    assert messages(module.layout_problems(tmp_path)) == []
    split = load_split(benchmark, tmp_path)
    assert split.benchmark == benchmark and split.root == dataset
    assert split.modalities == module.MODALITIES
    for part, records in split.parts().items():
        assert records, part
        assert [r.key for r in records] == sorted(r.key for r in records), f"{part} is not sorted by key"
        for record in records:
            first = record.images[record.modalities[0]]
            assert (dataset / record.key) == first.path, "key is the first modality's path relative to the dataset"
            assert all(ref.path.is_file() for ref in record.images.values())


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_root_may_be_the_dataset_folder_itself(benchmark, tmp_path):
    dataset = BUILDERS[benchmark](tmp_path)
    module = get_format(benchmark)
    from_parent, from_itself = module.load(tmp_path), module.load(dataset)
    assert [r.key for r in from_parent.train] == [r.key for r in from_itself.train]
    assert messages(module.layout_problems(dataset)) == []


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_a_root_without_the_dataset_is_reported(benchmark, tmp_path):
    (tmp_path / "unrelated").mkdir()
    module = get_format(benchmark)
    with pytest.raises(DataFormatError, match=module.DATASET_DIR):
        module.load(tmp_path)
    problems = messages(module.layout_problems(tmp_path))
    assert len(problems) == 1 and module.DATASET_DIR in problems[0]


def test_a_misspelled_dataset_folder_is_named(tmp_path):
    make_rgbnt201_tree(tmp_path).rename(tmp_path / "RGBNT-201")
    with pytest.raises(LayoutError, match="found 'RGBNT-201/'") as raised:
        get_format("rgbnt201").load(tmp_path)
    assert raised.value.problem == LayoutProblem("misnamed", tmp_path, raised.value.problem.message)
    assert get_format("rgbnt201").layout_problems(tmp_path) == [raised.value.problem], "one scan, two modes"
    (tmp_path / "RGBNT-201").rename(tmp_path / "other")
    assert [p.kind for p in get_format("rgbnt201").layout_problems(tmp_path)] == ["missing"], "no near miss"


def test_layout_problems_are_typed_and_read_like_the_loader_errors(tmp_path):
    problem = LayoutProblem("misnamed", tmp_path / "idx.txt", "listed twice", line=3)
    assert str(problem) == f"{tmp_path / 'idx.txt'}:3: listed twice"
    assert str(LayoutProblem("missing", tmp_path, "gone")) == f"{tmp_path}: gone"
    with pytest.raises(ValueError, match="expected one of missing, misnamed"):
        LayoutProblem("absent", tmp_path, "x")
    collecting, failing = Problems(fail_fast=False), Problems(fail_fast=True)
    collecting.add("missing", tmp_path, "gone")
    assert collecting.items == [LayoutProblem("missing", tmp_path, "gone")]
    with pytest.raises(LayoutError, match="gone") as raised:
        failing.add("missing", tmp_path, "gone")
    assert isinstance(raised.value, DataFormatError) and raised.value.problem == collecting.items[0]


def test_dataset_folder_name_is_matched_case_insensitively(tmp_path):
    make_msvr310_tree(tmp_path).rename(tmp_path / "msvr310")  # TOP-ReID spells it this way
    assert len(get_format("msvr310").load(tmp_path).train) == 4


def test_unknown_benchmark_is_a_data_format_error():
    with pytest.raises(DataFormatError, match="unknown benchmark 'market1501'"):
        get_format("market1501")


def test_benchmark_names_are_case_and_dash_insensitive():
    assert get_format("SYSU-MM01").NAME == "sysu_mm01"


def test_missing_root_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        load_split("regdb", tmp_path / "absent")
    (problem,) = get_format("regdb").layout_problems(tmp_path / "absent")
    assert problem.kind == "missing" and problem.path == tmp_path / "absent" and "does not exist" in problem.message


def test_hidden_files_and_os_clutter_are_skipped_and_named_as_stray(tmp_path):
    dataset = make_rgbnt201_tree(tmp_path)
    fmt = get_format("rgbnt201")
    before = fmt.load(tmp_path).statistics()
    (dataset / "test" / "RGB" / ".DS_Store").write_bytes(b"")
    (dataset / "test" / "NI" / "Thumbs.db").write_bytes(b"")
    problems = fmt.layout_problems(tmp_path)
    assert {(p.kind, p.path.name) for p in problems} == {("stray", ".DS_Store"), ("stray", "Thumbs.db")}
    assert fmt.load(tmp_path).statistics() == before  # skipped by the loader, never loaded
