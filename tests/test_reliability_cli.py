"""Issue 13: every hostile input ends in one `error:` block naming the culprit, exit 2 (1 for a failed
run), no traceback; `--debug` shows it. One test per failure class, driven through `reidlab.cli.main`."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures_formats import make_rgbnt201_tree, make_wmveid863_tree

from reidlab import cli
from reidlab.data.synthetic import synthesize
from reidlab.errors import TrainingFailed
from reidlab.recipes import load_recipe


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], code: int, *culprits: str) -> str:
    got, _, err = result
    assert got == code, err
    assert err.startswith("error: ") and "Traceback" not in err
    for culprit in culprits:
        assert culprit in err, err
    return err


# --- data loss: synth --overwrite --------------------------------------------------------------------

def test_overwrite_never_deletes_a_folder_the_old_synthetic_tree_did_not_write(tmp_path, capsys):
    root = tmp_path / "root"
    synthesize("rgbnt100", root, num_ids=4, image_size=(32, 16), progress=False)
    mine = root / "RGBNT201" / "my_data.txt"
    mine.parent.mkdir()
    mine.write_text("precious")
    err = assert_error(run(capsys, "data", "synth", "--like", "rgbnt201", "--root", str(root), "--overwrite",
                           "--no-progress"), 2, str(root / "RGBNT201"), "refusing")
    assert "did not write it" in err
    assert mine.read_text() == "precious" and (root / "RGBNT100").is_dir()


def test_overwrite_replaces_only_what_the_manifest_says_it_wrote(tmp_path):
    root = tmp_path / "root"
    synthesize("rgbnt100", root, num_ids=4, image_size=(32, 16), progress=False)
    (root / "notes.txt").write_text("keep")
    synthesize("rgbnt201", root, num_ids=4, image_size=(32, 16), overwrite=True, progress=False)
    assert not (root / "RGBNT100").exists() and (root / "RGBNT201").is_dir()
    assert (root / "notes.txt").read_text() == "keep"


# --- configuration: typed overrides and loader options --------------------------------------------------

def test_override_values_are_yaml_and_typed_by_the_recipe():
    assert cli._recipe_override("model.shared=false") == ("model.shared", False)
    assert cli._recipe_override("train.lr=1.0e-3") == ("train.lr", 1e-3)
    assert cli._recipe_override("model.checkpoint=null") == ("model.checkpoint", None)
    recipe = load_recipe("baseline_multimodal", "smoke", dict([cli._recipe_override("model.shared=false")]))
    assert recipe.model["shared"] is False
    assert load_recipe("baseline_multimodal", "smoke", {"model.drop_rate": 0.1}).model["drop_rate"] == 0.1  # timm


@pytest.mark.parametrize("override, culprit", [
    ("model.shared=maybe", "model.shared: expected a bool"),
    ("loss.margin=abc", "loss.margin: expected a number or null"),
    ("train=5", "'train' is a section"),
    ("train.epochs=abc", "train.epochs: expected an integer"),
    ("train.lr=1e-3", "write 1.0e-3"),
    ("loss.marign=0.2", "loss.marign: unknown key"),
    ("eval.flip=3", "eval.flip: expected a bool"),
    ("dataset_options.split=[1]", "dataset_options.split"),
    ("data.size=64", "data.size: expected a list"),
    ("trian.epochs=1", "unknown recipe field 'trian'"),
])
def test_bad_overrides_are_refused_before_anything_is_loaded(capsys, monkeypatch, override, culprit):
    import reidlab.engine.experiment as experiment

    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("train() reached"))
    assert_error(run(capsys, "train", "baseline_multimodal", "--profile", "smoke", "-o", override), 2, culprit)


@pytest.mark.parametrize("option, culprit", [("foo=1", "-o foo: unknown key; known keys: split"),
                                             ("split=[1, 2]", "-o split: expected")])
def test_bad_loader_options_are_refused(tmp_path, capsys, option, culprit):
    make_rgbnt201_tree(tmp_path)
    assert_error(run(capsys, "data", "info", "rgbnt201", str(tmp_path), "-o", option), 2, culprit)


# --- evaluate: degenerate features and unreadable files -------------------------------------------------

def _features(**changes: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"query_feats": rng.standard_normal((10, 8)).astype(np.float32),
              "gallery_feats": rng.standard_normal((30, 8)).astype(np.float32),
              "query_pids": rng.integers(0, 3, 10), "gallery_pids": rng.integers(0, 3, 30),
              "query_camids": np.zeros(10, int), "gallery_camids": np.ones(30, int)}
    return {**arrays, **changes}


@pytest.mark.parametrize("changes, culprit", [
    ({"query_feats": np.zeros((10, 8), np.float32), "gallery_feats": np.zeros((30, 8), np.float32)},
     "query_feats: all 10 rows are zero"),
    ({"gallery_feats": np.full((30, 8), 2.0, np.float32)}, "gallery_feats: all 30 rows are the same vector"),
    ({"gallery_feats": np.full((30, 8), 3e30, np.float32) * np.arange(1, 31, dtype=np.float32)[:, None]},
     "gallery_feats: the L2 norm of 30 of 30 rows overflows float32"),
])
def test_degenerate_features_are_refused(tmp_path, capsys, changes, culprit):
    path = tmp_path / "f.npz"
    np.savez(path, **_features(**changes))
    assert_error(run(capsys, "evaluate", "--features", str(path), "--protocol", "market"), 2, str(path), culprit)


def test_some_zero_query_rows_are_scored_with_a_warning_and_the_count(tmp_path, capsys):
    feats = _features()["query_feats"]
    feats[:5] = 0
    path = tmp_path / "f.npz"
    np.savez(path, **_features(query_feats=feats))
    code, out, err = run(capsys, "evaluate", "--features", str(path), "--protocol", "market", "--json")
    assert code == 0 and '"mAP"' in out
    assert "warning: " in err and "query_feats: 5 of 10 rows are zero" in err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_an_empty_or_truncated_npz_is_named(tmp_path, capsys, content):
    path = tmp_path / "f.npz"
    path.write_bytes(content)
    assert_error(run(capsys, "evaluate", "--features", str(path), "--protocol", "market"), 2, str(path),
                 "not a readable .npz")


# --- operating-system failures ----------------------------------------------------------------------

def test_a_symlink_loop_in_a_modality_folder_is_named_by_verify_and_info(tmp_path, capsys):
    dataset = make_rgbnt201_tree(tmp_path)
    loop = dataset / "test" / "NI" / "loop.jpg"
    os.symlink(loop, loop)
    code, out, _ = run(capsys, "data", "verify", "rgbnt201", str(tmp_path), "--no-progress")
    assert code == 1 and "[INACCESSIBLE]" in out and "loop.jpg: cannot be examined: symbolic link loop" in out
    assert_error(run(capsys, "data", "info", "rgbnt201", str(tmp_path)), 2, "loop.jpg", "symbolic link loop")


def test_a_modality_folder_that_is_a_link_loop_is_inaccessible_not_missing(tmp_path, capsys):
    dataset = make_rgbnt201_tree(tmp_path)
    import shutil

    shutil.rmtree(dataset / "test" / "TI")
    os.symlink(dataset / "test" / "TI", dataset / "test" / "TI")
    code, out, _ = run(capsys, "data", "verify", "rgbnt201", str(tmp_path), "--no-progress", "--quick")
    assert code == 1 and "[INACCESSIBLE]" in out and "TI: tir modality folder cannot be opened" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_an_unlistable_modality_folder_is_named(tmp_path, capsys):
    dataset = make_rgbnt201_tree(tmp_path)
    folder = dataset / "test" / "RGB"
    folder.chmod(0)
    try:
        assert_error(run(capsys, "data", "info", "rgbnt201", str(tmp_path)), 2, str(folder), "permission denied")
    finally:
        folder.chmod(0o755)


def test_an_unreadable_image_is_inaccessible_not_corrupt(tmp_path, capsys, monkeypatch):
    from PIL import Image

    make_rgbnt201_tree(tmp_path)
    real_open = Image.open

    def deny(path, *args, **kwargs):
        if str(path).endswith("000005_cam1_0_00.jpg") and "/RGB/" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", deny)
    code, out, _ = run(capsys, "data", "verify", "rgbnt201", str(tmp_path), "--no-progress")
    assert code == 1 and "[INACCESSIBLE]" in out and "permission denied; make it readable" in out
    assert "[UNREADABLE]" not in out


def test_a_root_that_is_a_file_and_a_manifest_that_is_a_folder(tmp_path, capsys):
    root = tmp_path / "file"
    root.write_text("x")
    assert_error(run(capsys, "data", "info", "rgbnt201", str(root)), 2, str(root), "not a folder")
    make_rgbnt201_tree(tmp_path / "data")
    assert_error(run(capsys, "data", "verify", "rgbnt201", str(tmp_path / "data"), "--manifest", str(tmp_path)),
                 2, str(tmp_path), "is a folder, expected a file")


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_a_decompression_bomb_is_named_not_raised(tmp_path, capsys):
    from reidlab.data.images import read_image
    from reidlab.data.records import DataFormatError, ImageRef

    dataset = make_rgbnt201_tree(tmp_path)
    bomb = dataset / "test" / "TI" / "000005_cam1_0_00.jpg"
    bomb.write_bytes(bomb_png())
    code, out, _ = run(capsys, "data", "verify", "rgbnt201", str(tmp_path), "--no-progress")
    assert code == 1 and "[UNREADABLE]" in out and "000005_cam1_0_00.jpg: the header claims more pixels" in out
    with pytest.raises(DataFormatError, match="decompression bomb"):  # what training's loader meets
        read_image(ImageRef(bomb))


# --- stray files ------------------------------------------------------------------------------------------

def test_a_windows_copy_is_not_loaded_and_verify_names_it(tmp_path, capsys):
    dataset = make_wmveid863_tree(tmp_path)
    before = cli.main(["data", "info", "wmveid863", str(tmp_path)]), capsys.readouterr().out
    folder = dataset / "test" / "0003"
    for modality in ("vis", "ni", "th"):
        original = folder / modality / "v1_n0_s001_000.jpg"
        (folder / modality / "v1_n0_s001_000 - Copy.jpg").write_bytes(original.read_bytes())
    (folder / "vis" / "photo.jpg").mkdir()  # a folder named like an image
    assert (cli.main(["data", "info", "wmveid863", str(tmp_path)]), capsys.readouterr().out) != before  # the folder
    (folder / "vis" / "photo.jpg").rmdir()
    assert (cli.main(["data", "info", "wmveid863", str(tmp_path)]), capsys.readouterr().out) == before
    (folder / "vis" / "photo.jpg").mkdir()
    code, out, _ = run(capsys, "data", "verify", "wmveid863", str(tmp_path), "--no-progress", "--quick",
                       "--manifest", str(_wmveid_manifest(tmp_path)))
    assert code == 1 and "[STRAY]" in out
    assert "v1_n0_s001_000 - Copy.jpg: skipped, not loaded: a file-manager copy" in out
    assert "photo.jpg: is a folder named like an image file" in out


def _wmveid_manifest(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"benchmark": "wmveid863", "title": "fixture", "modalities": ["rgb", "nir", "tir"],
                                    "layout": "x", "protocol": {"name": "market", "description": "f"},
                                    "counts": {part: {"records": None, "ids": None}
                                               for part in ("train", "query", "gallery")}}))
    return path


# --- failed runs, refused checkpoints, --debug --------------------------------------------------------------

@pytest.mark.parametrize("error, code, culprit", [
    (TrainingFailed("non-finite loss at epoch 2 (index 1), iteration 0: tri (tri=nan)"), 1, "non-finite loss"),
    (pickle.UnpicklingError("Weights only load failed"), 2, "refused by torch.load(weights_only=True)"),
])
def test_failures_inside_a_run_are_one_error_block(capsys, monkeypatch, error, code, culprit):
    import reidlab.engine.experiment as experiment

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(experiment, "train", fail)
    assert_error(run(capsys, "train", "baseline_multimodal", "--profile", "smoke"), code, culprit)


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    path = tmp_path / "f.npz"
    path.write_bytes(b"")
    with pytest.raises(Exception, match="not a readable .npz"):
        cli.main(["--debug", "evaluate", "--features", str(path), "--protocol", "market"])
    monkeypatch.setenv("REIDLAB_DEBUG", "1")
    with pytest.raises(Exception, match="not a readable .npz"):
        cli.main(["evaluate", "--features", str(path), "--protocol", "market"])


def test_an_unexpected_error_is_not_hidden(capsys, monkeypatch):
    import reidlab.engine.experiment as experiment

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(experiment, "train", bug)
    with pytest.raises(KeyError):
        cli.main(["train", "baseline_multimodal", "--profile", "smoke"])
