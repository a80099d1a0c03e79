"""The leaderboard assembly (issue 17): rows, columns, the reuse of cached runs and the bring-your-own-features path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reidlab.data.records import DataFormatError
from reidlab.engine.experiment import train
from reidlab.recipes import load_recipe
from reidlab.studies.leaderboard import (
    EXTERNAL_SEED,
    export_features,
    features_scores,
    leaderboard,
    result_line,
    run_cost,
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REIDLAB_RUNS", str(tmp_path_factory.mktemp("runs")))
        yield train(load_recipe("baseline_crossmodal", profile="smoke"), progress=False)


def scores_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"row": "A", "seed": 0, "mAP": 10.0, "R-1": 20.0, "mINP": 5.0},
        {"row": "A", "seed": 1, "mAP": 14.0, "R-1": 22.0, "mINP": 7.0},
        {"row": "B", "seed": 0, "mAP": 30.0, "R-1": 40.0, "mINP": 9.0},
        {"row": "B", "seed": 1, "mAP": 32.0, "R-1": 44.0, "mINP": 11.0},
        {"row": "mine", "seed": EXTERNAL_SEED, "mAP": 20.0, "R-1": 25.0, "mINP": 8.0, "note": "features from x.npz"},
    ])


def test_leaderboard_orders_by_the_first_metric_with_mean_std_costs_and_notes():
    board = leaderboard(scores_frame(), costs={"B": {"parameters (M)": 1.234}}, notes={"A": "unsupervised"})
    assert list(board.index) == ["B", "mine", "A"]
    assert board.loc["A", "mAP"] == "12.0 ± 2.8" and board.loc["B", "R-1"] == "42.0 ± 2.8"
    assert board.loc["mine", "mAP"] == "20.0"  # one line: no spread to show
    assert board.loc["B", "seeds"] == 2 and board.loc["mine", "seeds"] == 0
    assert board.loc["B", "parameters (M)"] == 1.23 and np.isnan(board.loc["A", "parameters (M)"])
    assert board.loc["A", "note"] == "unsupervised" and board.loc["mine", "note"] == "features from x.npz"
    assert board.loc["B", "note"] == ""


def test_leaderboard_refuses_scores_without_a_metric():
    with pytest.raises(ValueError, match="mINP"):
        leaderboard(scores_frame().drop(columns="mINP"))


def test_exported_features_score_like_the_run(smoke_run, tmp_path):
    path = export_features(smoke_run, tmp_path / "mine.npz")
    ours = result_line("run", 0, smoke_run.evaluate())
    theirs = features_scores("mine", path, smoke_run.split.protocol).iloc[0]
    for metric in ("mAP", "R-1", "mINP"):
        assert theirs[metric] == pytest.approx(ours[metric], abs=1e-9)
    assert theirs["seed"] == EXTERNAL_SEED and theirs["note"] == "features from mine.npz"


def test_a_bad_features_file_names_the_missing_key(smoke_run, tmp_path):
    path = export_features(smoke_run, tmp_path / "mine.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "gallery_camids"}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataFormatError, match="bad.npz: missing key\\(s\\) gallery_camids"):
        features_scores("bad", tmp_path / "bad.npz", smoke_run.split.protocol)


def test_run_cost_counts_parameters_flops_and_throughput(smoke_run):
    cost = run_cost(smoke_run)
    assert cost["parameters (M)"] == pytest.approx(sum(p.numel() for p in smoke_run.model.parameters()) / 1e6)
    assert cost["GFLOPs / sample"] > 0 and cost["inference img/s"] > 0
    assert cost["training img/s"] == pytest.approx(smoke_run.history.to_frame()["images_per_s"].mean())


def test_a_finished_run_is_reused_not_retrained(smoke_run):
    again = train(smoke_run.recipe, progress=False)
    assert again.history.cached and again.run_dir == smoke_run.run_dir
