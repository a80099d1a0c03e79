"""train_many: worker processes train exactly what train() would, once per distinct recipe."""

import pytest
import torch

from reidlab.engine.experiment import run_dir, train
from reidlab.engine.parallel import default_workers, train_many
from reidlab.recipes import load_recipe


def smoke(seed: int):
    return load_recipe("baseline_multimodal", "smoke", {"train.seed": seed, "train.epochs": 1})


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: bit-equal weights need the same reduction order
    yield
    torch.set_num_threads(threads)


def test_workers_train_the_same_weights_as_this_process(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "pool"))
    recipes = {"b": smoke(1), "a": smoke(0), "again": smoke(0)}
    runs = train_many(recipes, workers=2, progress=False)
    assert list(runs) == ["b", "a", "again"]
    assert runs["a"].run_dir == runs["again"].run_dir != runs["b"].run_dir
    assert all((run_dir(r) / "DONE").exists() for r in recipes.values())

    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "here"))
    for key in ("a", "b"):
        here = train(recipes[key], progress=False).model.state_dict()
        there = runs[key].model.state_dict()
        assert all(torch.equal(here[name], there[name]) for name in here), key


def test_a_lone_run_trains_on_one_thread_like_a_worker(tmp_path, monkeypatch):
    """Its weights must not depend on how many runs were pending with it (float reductions follow the threads).
    The pool may have been started by an earlier test with other run and data folders: it must follow ours."""
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "alone"))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = train_many({"a": smoke(0)}, workers=2, device="cpu", progress=False)["a"]
        assert torch.get_num_threads() == 2, "the caller's thread count is restored"
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "pool"))
    pooled = train_many({"a": smoke(0), "b": smoke(1)}, workers=2, device="cpu", progress=False)["a"]
    here, there = alone.model.state_dict(), pooled.model.state_dict()
    assert all(torch.equal(here[name], there[name]) for name in here)


def test_finished_runs_are_loaded_without_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    first = train(smoke(0), progress=False)
    stamp = (first.run_dir / "DONE").stat().st_mtime_ns
    again = train_many({"x": smoke(0)}, workers=2, progress=False)["x"]
    assert (again.run_dir / "DONE").stat().st_mtime_ns == stamp


def test_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("REIDLAB_TRAIN_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("REIDLAB_TRAIN_WORKERS", "many")
    with pytest.raises(ValueError, match="positive integer"):
        default_workers()


def test_a_failing_run_raises_here_and_the_next_call_gets_a_fresh_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    broken = smoke(0).override({"model.backbone": "no_such_backbone"})
    with pytest.raises(Exception, match="no_such_backbone"):
        train_many({"bad": broken, "good": smoke(1)}, workers=2, progress=False)
    runs = train_many({"a": smoke(0), "b": smoke(1)}, workers=2, progress=False)
    assert set(runs) == {"a", "b"}
