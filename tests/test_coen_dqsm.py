"""reidlab.studies.coen_dqsm: DQSM's quality scores against the synthetic ground truth (hand-made cases)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reidlab.data.formats import load_split
from reidlab.data.synthetic import read_metadata, synthesize
from reidlab.data.transforms import build_test_transform
from reidlab.studies.coen_dqsm import (
    agreement_summary,
    condition,
    dqsm_scores,
    dqsm_summary,
    primary_by_degradation,
    rank_agreement,
    ranked_below,
    scores_frame,
    with_ground_truth,
)


def _frame(quality, truth, degradations):
    """Rows of scores + ground truth: quality [N, 3] (Q_R, Q_N, Q_T), truth [N, 3], degradations [N, 3]."""
    quality, truth = np.asarray(quality, float), np.asarray(truth, float)
    order = np.argsort(-quality, axis=1, kind="stable")
    records = [SimpleNamespace(key=f"k{i}", pid=i, camid=0) for i in range(len(quality))]
    frame = scores_frame(quality, order, records, "query")
    for j, m in enumerate(("rgb", "nir", "tir")):
        frame[f"{m}_degradation"] = [d[j] for d in degradations]
        frame[f"{m}_quality"] = truth[:, j]
        frame[f"{m}_severity"] = 1 - truth[:, j]
    return frame


def test_scores_frame_names_the_order():
    records = [SimpleNamespace(key="a", pid=3, camid=1), SimpleNamespace(key="b", pid=4, camid=2)]
    frame = scores_frame(np.array([[0.1, 0.2, 0.3], [0.9, 0.5, 0.1]]), np.array([[2, 1, 0], [0, 1, 2]]),
                         records, "gallery")
    assert list(frame.index) == ["a", "b"]
    assert frame.loc["a", ["primary", "second", "third"]].tolist() == ["tir", "nir", "rgb"]
    assert frame.loc["b", "primary"] == "rgb" and frame.loc["b", "q_rgb"] == pytest.approx(0.9)
    assert (frame["part"] == "gallery").all() and frame["pid"].tolist() == [3, 4]


def test_scores_frame_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        scores_frame(np.zeros((2, 3)), np.zeros((1, 3)), [SimpleNamespace(key="a", pid=0, camid=0)] * 2, "query")


def test_with_ground_truth_joins_and_names_missing_keys():
    frame = _frame([[0.1, 0.2, 0.3]], [[1, 1, 1]], [["none"] * 3])
    scores = frame[["q_rgb", "q_nir", "q_tir", "primary"]]
    metadata = frame.drop(columns=["q_rgb", "q_nir", "q_tir", "primary"]).assign(pid=7)
    joined = with_ground_truth(scores, metadata)
    assert joined.loc["k0", "rgb_degradation"] == "none" and joined.loc["k0", "tir_quality"] == 1.0
    with pytest.raises(ValueError, match="absent from the sidecar"):
        with_ground_truth(scores.rename(index={"k0": "other"}), metadata)


def test_condition_labels_degraded_modalities():
    frame = _frame([[0, 0, 0]] * 3, [[1, 1, 1]] * 3,
                   [["none"] * 3, ["flare", "none", "none"], ["flare", "flare", "noise"]])
    assert condition(frame).tolist() == ["clean", "rgb:flare", "rgb:flare+nir:flare+tir:noise"]


def test_primary_by_degradation_percentages():
    # primaries: tir, tir, rgb, nir; RGB flared on the first two
    frame = _frame([[0.1, 0.2, 0.9], [0.1, 0.5, 0.6], [0.9, 0.1, 0.2], [0.1, 0.9, 0.2]], [[1, 1, 1]] * 4,
                   [["flare", "none", "none"], ["flare", "none", "none"], ["none"] * 3, ["none"] * 3])
    table = primary_by_degradation(frame)
    assert table.loc[("rgb", "flare")].tolist() == [2, 0.0, 0.0, 100.0]
    assert table.loc[("rgb", "none")].tolist() == [2, 50.0, 50.0, 0.0]
    assert table.loc[("all", "all")].tolist() == [4, 25.0, 25.0, 50.0]
    assert table.loc[("tir", "none"), "n"] == 4
    np.testing.assert_allclose(table[["rgb", "nir", "tir"]].sum(axis=1), 100.0)


def test_rank_agreement_hand_computed():
    frame = _frame([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1], [0.3, 0.2, 0.1]],
                   [[0.2, 1.0, 1.0], [0.1, 0.5, 0.9], [1.0, 1.0, 1.0]],
                   [["flare", "none", "none"], ["flare", "flare", "noise"], ["none"] * 3])
    agreement = rank_agreement(frame)
    # ranks (1,2,3) vs (1,2.5,2.5): Pearson = 1.5 / sqrt(2 * 1.5); tau-b = 2 / sqrt(3 * 2)
    assert agreement["spearman"].iloc[0] == pytest.approx(1.5 / np.sqrt(3.0))
    assert agreement["kendall"].iloc[0] == pytest.approx(2 / np.sqrt(6.0))
    assert agreement["spearman"].iloc[1] == pytest.approx(-1.0) and agreement["kendall"].iloc[1] == pytest.approx(-1.0)
    assert np.isnan(agreement["spearman"].iloc[2]) and np.isnan(agreement["kendall"].iloc[2])
    assert agreement["primary_is_best"].tolist() == [True, False, True]     # tir among {nir, tir}; rgb is worst
    np.testing.assert_allclose(agreement["chance_best"], [2 / 3, 1 / 3, 1.0])


def test_agreement_summary_skips_tied_truth():
    frame = _frame([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1], [0.3, 0.2, 0.1]],
                   [[0.2, 1.0, 1.0], [0.1, 0.5, 0.9], [1.0, 1.0, 1.0]],
                   [["flare", "none", "none"], ["flare", "flare", "noise"], ["none"] * 3])
    summary = agreement_summary(frame)
    assert summary.loc["all", "n"] == 3 and summary.loc["all", "n_ranked"] == 2
    assert summary.loc["all", "spearman"] == pytest.approx((1.5 / np.sqrt(3.0) - 1) / 2)
    assert summary.loc["all", "primary_is_best"] == pytest.approx(200 / 3)
    assert summary.loc["all", "chance"] == pytest.approx(100 * (2 / 3 + 1 / 3 + 1) / 3)
    assert summary.loc["clean", "n_ranked"] == 0 and np.isnan(summary.loc["clean", "spearman"])


def test_ranked_below_rate_control_and_binomial_p():
    quality = [[0.1, 0, 0.5], [0.2, 0, 0.6], [0.3, 0, 0.7], [0.9, 0, 0.1],   # flare, tir clean: 3 of 4 below
               [0.1, 0, 0.9],                                                # flare but tir noisy: excluded
               [0.8, 0, 0.1], [0.2, 0, 0.4]]                                 # control: 1 of 2 below
    degradations = [["flare", "none", "none"]] * 4 + [["flare", "none", "noise"]] + [["none"] * 3] * 2
    table = ranked_below(_frame(quality, [[1, 1, 1]] * 7, degradations))
    assert table.loc["rgb flare", "n"] == 4 and table.loc["rgb flare", "rate"] == pytest.approx(75.0)
    assert table.loc["rgb flare", "p_value"] == pytest.approx(5 / 16)      # P(X >= 3 | n = 4, p = 1/2)
    assert table.loc["rgb clean", "n"] == 2 and table.loc["rgb clean", "rate"] == pytest.approx(50.0)
    assert (table["chance"] == 50.0).all()


def test_ranked_below_empty_subset_and_bad_modality():
    table = ranked_below(_frame([[0.1, 0.2, 0.3]], [[1, 1, 1]], [["none"] * 3]))
    assert table.loc["rgb flare", "n"] == 0 and np.isnan(table.loc["rgb flare", "rate"])
    with pytest.raises(ValueError, match="unknown modality"):
        ranked_below(_frame([[0.1, 0.2, 0.3]], [[1, 1, 1]], [["none"] * 3]), low="depth")


class _MeanQuality(nn.Module):
    """A stand-in for CoEN: Q_m = mean pixel of modality m, order = modalities by decreasing Q."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        quality = batch["images"].mean(dim=(2, 3, 4)) * self.scale
        return {"quality": quality, "order": quality.argsort(dim=1, descending=True)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmv")
    synthesize("wmveid863", root, num_ids=4, image_size=(32, 16), degradations="flare_heavy", progress=False)
    split = load_split("wmveid863", root)
    return SimpleNamespace(model=_MeanQuality().train(), split=split, transform=build_test_transform((32, 16))), root


def test_dqsm_scores_runs_the_model_over_parts(tiny_run):
    run, root = tiny_run
    scores = dqsm_scores(run, ("query", "gallery"), batch_size=3)
    assert len(scores) == len(run.split.query) + len(run.split.gallery)
    assert list(scores.index[:len(run.split.query)]) == [r.key for r in run.split.query]
    assert set(scores["part"]) == {"query", "gallery"}
    q = scores[["q_rgb", "q_nir", "q_tir"]].to_numpy()
    assert (scores["primary"].to_numpy() == np.array(["rgb", "nir", "tir"])[q.argmax(axis=1)]).all()
    assert run.model.training                                             # mode restored
    pd.testing.assert_frame_equal(scores, dqsm_scores(run, ("query", "gallery"), batch_size=5))
    joined = with_ground_truth(scores, read_metadata(root))
    assert joined["rgb_degradation"].isin(["none", "flare", "noise"]).all()


def test_dqsm_summary_one_row_per_model():
    quality = [[0.1, 0.2, 0.5], [0.3, 0.2, 0.1], [0.6, 0.2, 0.4], [-0.2, 0.1, 0.3]]
    truth = [[0.3, 1, 1], [1, 1, 1], [1, 1, 1], [0.4, 1, 1]]
    degradations = [["flare", "none", "none"], ["none"] * 3, ["none"] * 3, ["flare", "none", "none"]]
    summary = dqsm_summary(_frame(quality, truth, degradations))
    assert summary["Q_R"] == pytest.approx(0.2) and summary["Q_T"] == pytest.approx(0.325)
    assert summary["|Q|"] == pytest.approx(np.abs(quality).mean())
    assert summary["rgb flare below tir (%)"] == 100.0 and summary["rgb clean below tir (%)"] == 0.0
    assert summary["rgb primary | flare (%)"] == 0.0 and summary["rgb primary | clean (%)"] == 100.0
    assert summary["Spearman ρ"] == pytest.approx(1.5 / np.sqrt(3.0))   # both flare rows: (1,2,3) vs (1,2.5,2.5)
