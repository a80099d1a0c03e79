"""`reidlab data verify`: every kind of problem is found, named and explained, all at once."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest
import yaml
from fixtures_formats import make_regdb_tree, make_rgbnt100_tree, make_rgbnt201_tree, make_sysu_tree
from PIL import Image

from reidlab.cli import main
from reidlab.data.manifests import format_statistics, load_manifest
from reidlab.data.records import DataFormatError, ImageRef, Record, Split
from reidlab.data.verify import verify

RGBNT201_COUNTS = {  # of the `tree` fixture
    "train": {"records": 6, "ids": 3, "cameras": 2, "images_rgb": 6, "images_nir": 6, "images_tir": 6},
    "query": {"records": 4, "ids": 2, "cameras": 2, "images_rgb": 4, "images_nir": 4, "images_tir": 4},
    "gallery": {"records": 4, "ids": 2, "cameras": 2, "images_rgb": 4, "images_nir": 4, "images_tir": 4},
}


def image_path(tree: Path, part: str, folder: str, pid: int, cam: int) -> Path:
    return tree / "RGBNT201" / part / folder / f"{pid:06d}_cam{cam}_0_00.jpg"


def noise_jpeg(width: int = 64, height: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def write_manifest(path: Path, benchmark: str = "rgbnt201", counts: dict | None = None, **fields) -> Path:
    manifest = {"benchmark": benchmark, "title": "fixture", "modalities": ["rgb", "nir", "tir"],
                "layout": "RGBNT201/{train_171,test}/{RGB,NI,TI}/<pid6>_cam<c>_<x>_<y>.jpg",
                "counts": RGBNT201_COUNTS if counts is None else counts,
                "protocol": {"name": "market", "description": "fixture"}, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_rgbnt201_tree(tmp_path / "data", train_ids=(1, 2, 3), test_ids=(7, 8), cams=(1, 2))
    return tmp_path / "data"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "manifests" / "rgbnt201.yaml")


def test_a_good_tree_passes(tree: Path, manifest: Path) -> None:
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    assert report.ok, report.render()
    text = report.render()
    assert text.splitlines()[-1] == f"OK: rgbnt201 at {tree} matches its manifest."
    assert "18 counts compared" in text
    assert "30 of 30 image files decoded" in text


def test_root_may_be_the_dataset_folder_itself(tree: Path, manifest: Path) -> None:
    assert verify("rgbnt201", tree / "RGBNT201", manifest=manifest, progress=False).ok


def test_a_missing_image_is_named(tree: Path, manifest: Path) -> None:
    image_path(tree, "test", "NI", 7, 2).unlink()
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    assert not report.ok
    assert report.problems["missing"][0].startswith("RGBNT201/test/NI/000007_cam2_0_00.jpg: missing")
    assert not report.problems["unloadable"], "the loader stops at the same problem: not reported twice"
    text = report.render()
    assert "split not loaded" in text and "Re-download the dataset" in text
    assert text.splitlines()[-1] == f"FAILED: 1 problem (1 missing) in rgbnt201 at {tree}."


def test_a_miscount_reports_expected_and_found(tree: Path, tmp_path: Path) -> None:
    counts = {part: dict(stats) for part, stats in RGBNT201_COUNTS.items()}
    counts["train"]["records"] = 8
    counts["gallery"]["ids"] = 3
    report = verify("rgbnt201", tree, manifest=write_manifest(tmp_path / "m.yaml", counts=counts), progress=False)
    assert report.problems["miscounted"] == ["train: records expected 8, found 6 (-2)",
                                             "gallery: ids expected 3, found 2 (-1)"]
    assert "Counts differ from the manifest" in report.render()


def test_null_counts_are_listed_as_unchecked(tree: Path, tmp_path: Path) -> None:
    counts = {"train": {"records": 6, "ids": None}, "query": {"records": 4, "ids": 2}}
    report = verify("rgbnt201", tree, manifest=write_manifest(tmp_path / "m.yaml", counts=counts), progress=False)
    assert report.ok
    text = report.render()
    assert "not checked (no published value in the manifest): train.ids, gallery (no counts" in text
    assert "3 counts compared" in text


def test_a_misnamed_folder_and_file_are_reported_with_the_rename(tree: Path, manifest: Path) -> None:
    (tree / "RGBNT201" / "train_171" / "NI").rename(tree / "RGBNT201" / "train_171" / "NIR")
    for folder in ("RGB", "NI", "TI"):
        shutil.copy(image_path(tree, "test", folder, 7, 1), tree / "RGBNT201" / "test" / folder / "person7_cam1.jpg")
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    misnamed = report.problems["misnamed"]
    assert misnamed[0] == ("RGBNT201/train_171/NI: missing nir modality folder 'NI/' "
                           "(found 'NIR/' instead; rename it to 'NI')")
    assert misnamed[1].startswith("RGBNT201/test/RGB/person7_cam1.jpg: file name does not match")
    text = report.render()
    assert "Expected layout (from the manifest):" in text and "<pid6>_cam<c>" in text


def test_unreadable_images_are_named(tree: Path, manifest: Path) -> None:
    image_path(tree, "train_171", "TI", 2, 1).write_bytes(noise_jpeg()[:400])  # truncated
    image_path(tree, "test", "RGB", 8, 2).write_bytes(b"this is not a JPEG at all")
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    unreadable = report.problems["unreadable"]
    assert len(unreadable) == 2
    assert unreadable[0].startswith("RGBNT201/test/RGB/000008_cam2_0_00.jpg: cannot decode")
    assert unreadable[1].startswith("RGBNT201/train_171/TI/000002_cam1_0_00.jpg: cannot decode")
    assert "28 of 30 image files decoded" in report.render()
    assert "re-download them" in report.render()


def test_quick_skips_decoding(tree: Path, manifest: Path) -> None:
    image_path(tree, "test", "RGB", 8, 2).write_bytes(b"garbage")
    report = verify("rgbnt201", tree, manifest=manifest, quick=True, progress=False)
    assert report.ok
    assert "images not decoded (--quick)" in report.render()


def test_problems_are_collected_across_checks(tree: Path, tmp_path: Path) -> None:
    (tree / "RGBNT201" / "test" / "NI").rename(tree / "RGBNT201" / "test" / "NIR")
    (tree / "RGBNT201" / "train_171" / "TI" / "stray.txt").write_text("x")
    manifest, copy = _official_setup(tmp_path, tree)
    copy.write_bytes(b"something else\r\n")
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    assert [kind for kind, messages in report.problems.items() if messages] == ["misnamed", "official"]
    assert len(report.problems["misnamed"]) == 2
    assert "counts and images not checked" in report.render()


def test_loader_options_the_loader_rejects_are_reported(tree: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", loader_options={"split": "999"})
    (problem,) = verify("rgbnt201", tree, manifest=manifest, progress=False).problems["unloadable"]
    assert problem.startswith(f"{manifest.resolve()}: loader_options {{'split': '999'}} rejected by the rgbnt201")


def _official_setup(tmp_path: Path, tree: Path, **fields) -> tuple[Path, Path]:
    """A manifest with one official split file, shipped beside it in <manifest dir>/rgbnt201/."""
    manifest = write_manifest(tmp_path / "ship" / "rgbnt201.yaml", official_files=["splits/ids.txt"], **fields)
    shipped = tmp_path / "ship" / "rgbnt201" / "splits" / "ids.txt"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"Visible/1/a.bmp 0\r\nVisible/1/b.bmp 0\r\n")
    copy = tree / "RGBNT201" / "splits" / "ids.txt"
    copy.parent.mkdir()
    return manifest, copy


def test_official_files_must_match_byte_for_byte(tree: Path, tmp_path: Path) -> None:
    manifest, copy = _official_setup(tmp_path, tree)
    copy.write_bytes(b"Visible/1/a.bmp 0\r\nVisible/1/b.bmp 0\r\n")
    report = verify("rgbnt201", tree, manifest=manifest, progress=False)
    assert report.ok and "1 official split files identical" in report.render()

    copy.write_bytes(b"Visible/1/a.bmp 0\r\nVisible/1/c.bmp 0\r\n")
    (problem,) = verify("rgbnt201", tree, manifest=manifest, progress=False).problems["official"]
    assert problem.startswith("RGBNT201/splits/ids.txt: differs from the official ")
    assert "line 2 first differs at column 11" in problem

    copy.write_bytes(b"Visible/1/a.bmp 0\nVisible/1/b.bmp 0\n")
    (problem,) = verify("rgbnt201", tree, manifest=manifest, progress=False).problems["official"]
    assert "only line endings or trailing whitespace differ" in problem

    copy.unlink()
    (problem,) = verify("rgbnt201", tree, manifest=manifest, progress=False).problems["official"]
    assert "official split file is missing" in problem and "ship/rgbnt201/splits/ids.txt" in problem


def _ship(tmp_path: Path, benchmark: str, dataset: Path, files: list[str], counts: dict, **fields) -> Path:
    """A manifest whose shipped official files are copies of ``dataset``'s own split files."""
    for rel in files:
        (tmp_path / "ship" / benchmark / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset / rel, tmp_path / "ship" / benchmark / rel)
    return write_manifest(tmp_path / "ship" / f"{benchmark}.yaml", benchmark=benchmark, counts=counts,
                          official_files=files, **fields)


def test_sysu_split_files_are_compared(tmp_path: Path) -> None:
    dataset = make_sysu_tree(tmp_path / "data")
    files = [f"exp/{name}_id.txt" for name in ("available", "test", "train", "val")]
    # 3 images per (id, camera); test ids 4, 5, 6, and no folder for (5, cam 4) and (6, cam 6).
    counts = {"train": {"records": 3 * 6 * 3, "ids": 3}, "query": {"records": 3 * 2 + 3 * 2 + 3, "ids": 3},
              "gallery": {"records": 4 + 3 + 4, "ids": 3, "cameras": 4}}
    manifest = _ship(tmp_path, "sysu_mm01", dataset, files, counts, modalities=["rgb", "nir"],
                     loader_options={"mode": "all", "trial": 0}, protocol={"name": "sysu_all"})
    report = verify("sysu_mm01", tmp_path / "data", manifest=manifest, progress=False)
    assert report.ok, report.render()
    (dataset / "exp" / "test_id.txt").write_text("4,5,7\n")
    report = verify("sysu_mm01", tmp_path / "data", manifest=manifest, quick=True, progress=False)
    assert report.problems["official"][0].startswith("SYSU-MM01/exp/test_id.txt: differs from the official")


def test_regdb_split_files_are_compared(tmp_path: Path) -> None:
    dataset = make_regdb_tree(tmp_path / "data")
    files = [f"idx/{part}_{m}_{t}.txt" for part in ("train", "test") for m in ("visible", "thermal")
             for t in range(1, 11)]
    counts = {"train": {"records": 8, "ids": 2, "images_rgb": 4, "images_tir": 4},
              "query": {"records": 4, "images_rgb": 4}, "gallery": {"records": 4, "images_tir": 4}}
    manifest = _ship(tmp_path, "regdb", dataset, files, counts, modalities=["rgb", "tir"],
                     loader_options={"trial": 1, "direction": "visible_to_thermal"}, protocol={"name": "regdb"})
    report = verify("regdb", tmp_path / "data", manifest=manifest, progress=False)
    assert report.ok, report.render()
    data = (dataset / "idx" / "test_thermal_1.txt").read_bytes()
    (dataset / "idx" / "test_thermal_1.txt").write_bytes(data.replace(b"\r\n", b"\n"))
    (problem,) = verify("regdb", tmp_path / "data", manifest=manifest, progress=False).problems["official"]
    assert problem.startswith("RegDB/idx/test_thermal_1.txt: differs from the official")
    assert "only line endings" in problem

    (dataset / "idx" / "test_thermal_1.txt").unlink()  # the loader's layout check misses it too: one report
    report = verify("regdb", tmp_path / "data", manifest=manifest, progress=False)
    assert report.problems["official"] == [f"RegDB/idx/test_thermal_1.txt: official split file is missing "
                                           f"(expected a copy of {tmp_path / 'ship/regdb/idx/test_thermal_1.txt'})"]
    assert not report.problems["missing"]


def test_synthetic_trees_skip_official_files_and_carry_their_manifest(tree: Path) -> None:
    write_manifest(tree / "manifest.yaml", synthetic=True, official_files=["splits/ids.txt"], seed=3)
    report = verify("rgbnt201", tree, progress=False)  # manifest=None: the tree's own manifest.yaml
    assert report.ok, report.render()
    assert report.manifest.source == (tree / "manifest.yaml").resolve()
    assert "official split files not compared: synthetic tree" in report.render()
    assert "[synthetic tree]" in report.render()
    assert verify("rgbnt201", tree / "RGBNT201", progress=False).manifest.synthetic


def test_manifest_of_another_benchmark_is_refused(tree: Path, tmp_path: Path) -> None:
    other = write_manifest(tmp_path / "m.yaml", benchmark="rgbnt100")
    with pytest.raises(DataFormatError, match="describes 'rgbnt100', not 'rgbnt201'"):
        verify("rgbnt201", tree, manifest=other, progress=False)


def test_missing_root_is_a_problem(tmp_path: Path, manifest: Path) -> None:
    report = verify("rgbnt201", tmp_path / "nowhere", manifest=manifest, progress=False)
    assert report.problems["missing"] == [f"{tmp_path / 'nowhere'}: dataset root does not exist or is not a folder"]


def test_long_problem_lists_are_truncated(tree: Path, manifest: Path) -> None:
    for path in sorted((tree / "RGBNT201").rglob("*.jpg"))[:15]:
        path.write_bytes(b"garbage")
    text = verify("rgbnt201", tree, manifest=manifest, progress=False).render(max_items=12)
    assert "... and 3 more" in text
    assert text.splitlines()[-1] == f"FAILED: 15 problems (15 unreadable) in rgbnt201 at {tree}."


def test_side_by_side_files_are_decoded_once(tmp_path: Path) -> None:
    make_rgbnt100_tree(tmp_path, train_ids=(1, 2), test_ids=(3,), cams=(1, 2), shots=2)
    counts = {"train": {"records": 8, "ids": 2, "images_rgb": 8, "images_tir": 8},
              "query": {"records": 2}, "gallery": {"records": 4}}
    manifest = write_manifest(tmp_path / "m.yaml", benchmark="rgbnt100", counts=counts)
    report = verify("rgbnt100", tmp_path, manifest=manifest, progress=False)
    assert report.ok, report.render()
    assert "14 of 14 image files decoded" in report.render()  # 14 records x 3 tiles = 42 refs, 14 files


def test_cli_verify_exit_codes_and_report(tree: Path, manifest: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["data", "verify", "rgbnt201", str(tree), "--manifest", str(manifest), "--no-progress"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("OK: rgbnt201")
    image_path(tree, "test", "RGB", 8, 2).write_bytes(b"garbage")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "000008_cam2_0_00.jpg" in out and out.strip().splitlines()[-1].startswith("FAILED: 1 problem ")
    assert main([*args, "--quick"]) == 0


def test_cli_verify_bad_manifest_exits_2(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmark: rgbnt201\n")
    assert main(["data", "verify", "rgbnt201", str(tree), "--manifest", str(bad), "--no-progress"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_format_statistics_is_an_aligned_table(tmp_path: Path) -> None:
    ref = ImageRef(tmp_path / "x.jpg")
    records = [Record({"rgb": ref}, pid=p, camid=c, key=f"k{p}{c}") for p, c in [(1, 1), (1, 2), (22, 1)]]
    split = Split("sysu_mm01", tmp_path, records, records[:1], records, "sysu_all", ("rgb", "nir"),
                  {"mode": "all", "trial": 3, "val": records * 4})
    lines = format_statistics(split).splitlines()
    assert lines[0] == f"sysu_mm01 at {tmp_path}"
    assert lines[1] == "protocol: sysu_all    loader options: mode=all, trial=3, val=<12 items>"
    header, rule, train, query, gallery = lines[3:]
    assert header.split() == ["part", "records", "ids", "cameras", "rgb", "nir"]
    assert train.split() == ["train", "3", "2", "2", "3", "0"]
    assert query.split() == ["query", "1", "1", "1", "1", "0"]
    assert len({len(header), len(rule), len(train), len(query), len(gallery)}) == 1, "columns are aligned"


def test_cli_info_prints_the_table(tree: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "rgbnt201", str(tree)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "protocol: market    loader options: split=171"
    assert lines[5].split() == ["train", "6", "3", "2", "6", "6", "6"]


def test_the_shipped_manifest_is_the_default(tree: Path) -> None:
    report = verify("rgbnt201", tree, quick=True, progress=False)
    assert report.manifest == load_manifest("rgbnt201")
    assert report.problems["miscounted"][0] == "train: records expected 3951, found 6 (-3945)"


def test_an_in_memory_manifest_is_accepted(tree: Path) -> None:
    manifest = dataclasses.replace(load_manifest("rgbnt201"), counts=RGBNT201_COUNTS)
    assert verify("rgbnt201", tree, manifest=manifest, progress=False).ok
