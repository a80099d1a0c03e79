"""Run-cache keys (config hash + code digest) and atomic, weights-only checkpoint files."""

import logging
from pathlib import Path

import pytest
import torch

from reidlab.engine import cache
from reidlab.engine.cache import canonical_json, code_digest, config_hash, run_dir_for, runs_root
from reidlab.engine.checkpoint import load_checkpoint, save_checkpoint
from reidlab.engine.experiment import train
from reidlab.models import backbones
from reidlab.recipes import load_recipe

CONFIG = {"train": {"lr": 0.01, "milestones": (20, 50)}, "data_root": Path("/data/x"), "model": {"name": "vit"}}


def test_hash_is_canonical_and_stable():
    reordered = {"model": {"name": "vit"}, "data_root": "/data/x", "train": {"milestones": [20, 50], "lr": 0.01}}
    assert config_hash(CONFIG) == config_hash(reordered)
    assert len(config_hash(CONFIG)) == 16 and int(config_hash(CONFIG), 16) >= 0
    assert canonical_json(CONFIG) == ('{"data_root":"/data/x","model":{"name":"vit"},'
                                      '"train":{"lr":0.01,"milestones":[20,50]}}')


@pytest.mark.parametrize("change", [
    {"train": {"lr": 0.02, "milestones": (20, 50)}},
    {"train": {"lr": 0.01, "milestones": (20, 51)}},
    {"model": {"name": "vit", "extra": None}},
    {"data_root": None},
])
def test_hash_changes_with_any_value(change):
    assert config_hash({**CONFIG, **change}) != config_hash(CONFIG)


@pytest.fixture
def package(monkeypatch, tmp_path):
    """A stand-in reidlab tree: training code, plotting code, docs and a shipped weight file."""
    root = tmp_path / "pkg"
    for relative, text in {"models/net.py": "x = 1\n", "engine/loop.py": "y = 2\n", "viz/plot.py": "z = 3\n",
                           "studies/coen.py": "s = 4\n", "cli.py": "c = 5\n", "data/notes.txt": "not code",
                           "weights/tiny.pth": "weights v1"}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    monkeypatch.setattr(cache, "PACKAGE_DIR", root)
    code_digest.cache_clear()
    yield root
    code_digest.cache_clear()


def _after_edit(path, text):
    path.write_text(text)
    code_digest.cache_clear()
    return run_dir_for(CONFIG, name="run")


def test_editing_plots_analysis_cli_or_docs_keeps_a_cached_run(package, monkeypatch, tmp_path):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    cached = run_dir_for(CONFIG, name="run")
    for relative in ("viz/plot.py", "studies/coen.py", "cli.py", "data/notes.txt"):
        assert _after_edit(package / relative, "edited = True\n") == cached, relative


@pytest.mark.parametrize("relative", ["models/net.py", "engine/loop.py", "weights/tiny.pth"])
def test_editing_training_code_or_weights_retrains(package, monkeypatch, tmp_path, relative):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    cached = run_dir_for(CONFIG, name="run")
    assert _after_edit(package / relative, "edited = True\n") != cached
    assert config_hash(CONFIG, include_code=False) == config_hash(dict(CONFIG), include_code=False)


def test_the_real_digest_covers_the_training_subpackages_only():
    files = {p.relative_to(cache.PACKAGE_DIR).parts[0] for p in cache.training_files()}
    assert {"data", "models", "losses", "methods", "engine"} <= files
    assert not files & {"viz", "analysis", "studies", "reports", "cli.py", "papers"}


def test_unsupported_values_name_their_key():
    with pytest.raises(TypeError, match=r"train\.fn has unsupported type function"):
        config_hash({"train": {"fn": lambda: 0}})


def test_run_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path))
    assert runs_root() == tmp_path
    assert run_dir_for(CONFIG, name="baseline-tutorial") == tmp_path / f"baseline-tutorial-{config_hash(CONFIG)}"
    assert run_dir_for(CONFIG) == tmp_path / config_hash(CONFIG)
    with pytest.raises(ValueError, match="run name 'a/b'"):
        run_dir_for(CONFIG, name="a/b")
    monkeypatch.delenv("REIDLAB_RUNS")
    assert runs_root() == Path.home() / ".cache" / "reidlab" / "runs"


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "history": {"records": [{"loss": 1.5}]}}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["history"] == state["history"]


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "ckpt.pt")

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


class Arbitrary:
    pass


def test_only_weights_only_checkpoints_load(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"obj": Arbitrary()}, path)
    with pytest.raises(ValueError, match=r"unsafe\.pt cannot be loaded with weights_only=True"):
        load_checkpoint(path)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, expected a dict"):
        load_checkpoint(tmp_path / "list.pt")


def test_a_cached_run_builds_its_model_without_the_random_init_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    recipe = load_recipe("baseline_multimodal", "smoke", {"train.epochs": 1})

    def warnings(**options) -> list[str]:
        monkeypatch.setattr(backbones, "_RANDOM_INIT_WARNED", set())  # each call as in a fresh process
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="reidlab"):
            train(recipe, progress=False, **options)
        return [r.getMessage() for r in caplog.records if "randomly initialised" in r.getMessage()]

    assert len(warnings()) == 1, "training from scratch says so once"
    assert warnings() == [], "a cache hit replaces the weights: no warning"
    assert len(warnings(force=True)) == 1, "force retrains from random weights"
