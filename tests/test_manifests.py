"""The shipped manifests are valid, consistent with the loaders and the official split files."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

import reidlab
from reidlab.data.formats import BENCHMARKS, get_format
from reidlab.data.manifests import STATISTICS, load_manifest, manifest_path, manifests_dir
from reidlab.data.records import MODALITIES, DataFormatError
from reidlab.eval.protocols import PROTOCOLS

REPO = Path(__file__).resolve().parents[1]
#: CI checks the repository out with the shared folder beside it.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_shipped_manifest_is_complete_and_matches_its_loader(benchmark: str) -> None:
    manifest = load_manifest(benchmark)
    fmt = get_format(benchmark)
    assert manifest.source == manifest_path(benchmark) == REPO / "data_manifests" / f"{benchmark}.yaml"
    assert manifest.benchmark == benchmark and not manifest.synthetic
    assert manifest.citation.lstrip().startswith("@") and manifest.obtain.strip() and manifest.title
    assert fmt.DATASET_DIR.lower() in manifest.layout.lower()
    assert manifest.protocol in PROTOCOLS and manifest.protocol == fmt.PROTOCOL
    assert manifest.protocol_description.strip()
    assert "model selection" in manifest.protocol_description.lower()
    assert manifest.modalities == fmt.MODALITIES
    inspect.signature(fmt.load).bind("root", **manifest.loader_options)  # options the loader accepts
    assert set(manifest.counts) == {"train", "query", "gallery"}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_shipped_counts_are_internally_consistent(benchmark: str) -> None:
    manifest = load_manifest(benchmark)
    cross_modal = len(manifest.modalities) == 2
    for part, stats in manifest.counts.items():
        records = stats.get("records")
        images = {m: stats.get(f"images_{m}") for m in MODALITIES}
        for m in set(MODALITIES) - set(manifest.modalities):
            assert images[m] in (0, None), f"{benchmark} {part}: {m} is not a modality of the benchmark"
        known = [images[m] for m in manifest.modalities if images[m] is not None]
        if records is None or not known:
            continue
        if cross_modal:  # one image per record
            assert len(known) < len(manifest.modalities) or sum(known) == records, (benchmark, part)
        else:  # complete triplets
            assert all(n == records for n in known), (benchmark, part)
        if stats.get("ids") is not None:
            assert stats["ids"] <= records


def _idx_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_regdb_counts_agree_with_the_shipped_split_files() -> None:
    manifest = load_manifest("regdb")
    trial = manifest.loader_options["trial"]
    idx = manifest.files_dir / "idx"
    part_files = {"train": ["visible", "thermal"], "query": ["visible"], "gallery": ["thermal"]}
    assert manifest.loader_options["direction"] == "visible_to_thermal"
    for part, modalities in part_files.items():
        split = "train" if part == "train" else "test"
        lines = [line for m in modalities for line in _idx_lines(idx / f"{split}_{m}_{trial}.txt")]
        expected = manifest.counts[part]
        assert expected["records"] == len(lines)
        assert expected["ids"] == len({line[0].split("/")[1] for line in lines})
        assert expected["images_rgb"] == sum(line[0].startswith("Visible/") for line in lines)
        assert expected["images_tir"] == sum(line[0].startswith("Thermal/") for line in lines)


def test_sysu_id_counts_agree_with_the_shipped_split_files() -> None:
    manifest = load_manifest("sysu_mm01")

    def ids(name: str) -> set[int]:
        return {int(i) for i in (manifest.files_dir / "exp" / name).read_text().strip().split(",")}

    assert manifest.counts["train"]["ids"] == len(ids("train_id.txt") | ids("val_id.txt"))
    assert manifest.counts["query"]["ids"] == manifest.counts["gallery"]["ids"] == len(ids("test_id.txt"))
    assert ids("train_id.txt") | ids("val_id.txt") | ids("test_id.txt") == ids("available_id.txt")


@pytest.mark.parametrize("benchmark", ["sysu_mm01", "regdb"])
def test_official_files_are_listed_and_shipped(benchmark: str) -> None:
    manifest = load_manifest(benchmark)
    shipped = {p.relative_to(manifest.files_dir).as_posix() for p in manifest.files_dir.rglob("*.txt")}
    assert shipped == set(manifest.official_files)
    assert len(shipped) == {"sysu_mm01": 4, "regdb": 40}[benchmark]


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="../shared/datasets is not beside the repository")
@pytest.mark.parametrize("benchmark", ["sysu_mm01", "regdb"])
def test_shipped_official_files_equal_the_shared_originals(benchmark: str) -> None:
    manifest = load_manifest(benchmark)
    for rel in manifest.official_files:
        original = SHARED_DATASETS / benchmark / rel
        assert (manifest.files_dir / rel).read_bytes() == original.read_bytes(), rel


def test_regdb_split_files_keep_their_crlf_line_endings() -> None:
    data = (load_manifest("regdb").files_dir / "idx" / "train_visible_1.txt").read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") == 2060


def test_manifest_paths_and_names() -> None:
    assert load_manifest("SYSU-MM01") == load_manifest(manifest_path("sysu_mm01"))
    assert load_manifest(str(manifest_path("regdb"))).benchmark == "regdb"
    with pytest.raises(DataFormatError, match="unknown benchmark 'market1501'"):
        manifest_path("market1501")
    with pytest.raises(DataFormatError, match="manifest file does not exist"):
        load_manifest("market1501")


def test_missing_data_manifests_folder_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(reidlab, "__file__", str(tmp_path / "site-packages" / "reidlab" / "__init__.py"))
    with pytest.raises(DataFormatError, match=r"pip install -e \.`, or pass an explicit manifest file"):
        manifests_dir()


# --- schema validation -------------------------------------------------------------------------

VALID = {"benchmark": "rgbnt201", "modalities": ["rgb", "nir", "tir"],
         "counts": {"train": {"records": 3, "ids": None}}, "protocol": {"name": "market"}}


def write(tmp_path: Path, data: object, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_a_minimal_manifest_loads_with_defaults(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID))
    assert manifest.counts == {"train": {"records": 3, "ids": None}}
    assert manifest.loader_options == {} and manifest.official_files == () and not manifest.synthetic


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"benchmark": "market1501"}, "benchmark", "is not one of rgbnt201"),
    ({"modalities": ["rgb", "depth"]}, "modalities", "non-empty list of distinct modalities"),
    ({"counts": {"train": {"records": -1}}}, "counts.train.records", "non-negative integer or null"),
    ({"counts": {"train": {"records": "3951"}}}, "counts.train.records", "non-negative integer or null"),
    ({"counts": {"train": {"images": 3}}}, "counts.train.images", "unknown statistic"),
    ({"counts": {"validation": {"records": 3}}}, "counts.validation", "unknown part"),
    ({"protocol": {"name": "market1501"}}, "protocol.name", "is not an evaluation protocol"),
    ({"protocol": "market"}, "protocol", "expected a mapping with 'name'"),
    ({"synthetic": "yes"}, "synthetic", "expected true or false"),
    ({"citation": ["@article"]}, "citation", "expected text"),
    ({"loader_options": ["trial"]}, "loader_options", "mapping of option names"),
    ({"official_files": ["../secret.txt"]}, "official_files", "not a relative path inside"),
    ({"official_files": ["exp/test_id.txt"]}, "official_files", "its shipped copy"),
    ({"sede": 3}, "sede", "unknown key"),
])
def test_schema_errors_name_the_file_and_key(tmp_path: Path, change: dict, key: str, message: str) -> None:
    path = write(tmp_path, {**VALID, **change})
    with pytest.raises(DataFormatError) as error:
        load_manifest(path)
    text = str(error.value)
    assert text.startswith(f"{path}: invalid manifest")
    assert f"key {key!r}: " in text and message in text


def test_every_schema_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, {"benchmark": "rgbnt201", "counts": {"train": {"records": -1, "ids": 1.5}}})
    with pytest.raises(DataFormatError) as error:
        load_manifest(path)
    for key in ("modalities", "protocol", "counts.train.records", "counts.train.ids"):
        assert f"key {key!r}" in str(error.value)


def test_synthetic_manifests_may_carry_generator_settings(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, {**VALID, "synthetic": True, "seed": 7,
                                              "official_files": ["exp/test_id.txt"]}))
    assert manifest.extra == {"seed": 7}
    assert manifest.official_files == ("exp/test_id.txt",), "synthetic trees need no shipped copies"


@pytest.mark.parametrize(("text", "message"), [("benchmark: [rgbnt201\n", "not valid YAML"),
                                               ("- rgbnt201\n", "expected a YAML mapping")])
def test_unparsable_manifests_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError, match=message) as error:
        load_manifest(path)
    assert str(error.value).startswith(str(path))


def test_statistics_keys_match_split_statistics() -> None:
    from reidlab.data.records import record_statistics

    assert set(STATISTICS) == set(record_statistics([]))
