"""reidlab.analysis.missing: recovery switch, missing-setting scores and tables, recovered-feature analysis."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import reidlab.analysis.missing as missing
from reidlab.analysis.missing import (
    missing_scores,
    modality_points,
    paper_setting_table,
    recovery,
    recovery_alignment,
    setting_label,
    setting_table,
)
from reidlab.engine.evaluation import COLUMNS
from reidlab.engine.features import FeatureSet
from reidlab.eval import RetrievalResult
from reidlab.papers import paper_results


def result(m_ap: float, rank1: float) -> RetrievalResult:
    cmc = np.full(50, 1.0)
    cmc[:4] = rank1
    return RetrievalResult(cmc, m_ap, 0.1, np.array([m_ap]), np.array([0.1]), np.array([0]), np.array([True]),
                           "market")


class StubRun:
    """A run whose score encodes the setting and the model's recovery switch: mAP 0.5 (+0.2 with recovery)."""

    def __init__(self) -> None:
        self.model = SimpleNamespace(recovery=True)
        self.recipe = SimpleNamespace(eval={"flip": False}, data={"test_batch_size": 7})
        self.split, self.transform = "split", "transform"
        self.calls: list = []

    def evaluate(self, *, missing=None, feature=None):
        self.calls.append((missing, feature, self.model.recovery))
        return result(0.5 + 0.2 * self.model.recovery, 0.25 if missing == "M(N)" else 0.75)


def test_recovery_switch_sets_and_restores_even_on_error():
    model = SimpleNamespace(recovery=True)
    with recovery(model, False) as inside:
        assert inside is model and model.recovery is False
    assert model.recovery is True
    with pytest.raises(RuntimeError), recovery(model, False):
        raise RuntimeError("boom")
    assert model.recovery is True
    with pytest.raises(ValueError, match="no recovery switch"), recovery(torch.nn.Linear(2, 2), False):
        pass


def test_setting_labels():
    assert setting_label("M(NT)") == "M(NT)"
    assert setting_label(0.25) == "η=0.25" and setting_label(0) == "η=0"
    with pytest.raises(ValueError, match="missing rate"):
        setting_label(True)


def test_missing_scores_rows_in_percent_and_recovery_switched_per_call():
    runs = {("DENet", 0): StubRun(), ("DENet", 1): StubRun()}
    frame = missing_scores(runs, ["complete", "M(N)"], recovery_enabled=False, feature="final")
    assert list(frame.columns) == ["row", "seed", "setting", *COLUMNS]
    assert frame[["seed", "setting"]].values.tolist() == [[0, "complete"], [0, "M(N)"], [1, "complete"], [1, "M(N)"]]
    assert frame["mAP"].tolist() == pytest.approx([50.0] * 4)          # zero-filled: no +20
    assert frame["R-1"].tolist() == pytest.approx([75.0, 25.0, 75.0, 25.0])
    assert runs["DENet", 0].calls == [("complete", "final", False), ("M(N)", "final", False)]
    assert runs["DENet", 0].model.recovery is True                       # restored
    unchanged = missing_scores({("B", 0): StubRun()}, ["M(N)"])
    assert unchanged["mAP"].item() == pytest.approx(70.0)


def test_missing_scores_rates_average_over_mask_seeds(monkeypatch):
    seen = {}

    def fake_rates(model, split, transform, rates, seeds, **kwargs):
        seen.update(recovery=model.recovery, rates=list(rates), seeds=list(seeds), kwargs=kwargs,
                    split=split, transform=transform)
        return pd.DataFrame([{c: 10.0 + i for i, c in enumerate(COLUMNS)} | {"mAP_std": 3.0}],
                            index=pd.Index(rates, name="rate"))

    monkeypatch.setattr(missing, "evaluate_missing_rates", fake_rates)
    frame = missing_scores({("DENet", 0): StubRun()}, [0.25], recovery_enabled=False, mask_seeds=(3, 4))
    assert frame["setting"].tolist() == ["η=0.25"] and frame["mAP"].item() == 10.0 and frame["mINP"].item() == 14.0
    assert seen["recovery"] is False and seen["rates"] == [0.25] and seen["seeds"] == [3, 4]
    assert seen["kwargs"] == {"flip": False, "progress": False, "feature": None, "batch_size": 7}
    with pytest.raises(ValueError, match="at least one"):
        missing_scores({}, ["M(N)"])


def scores_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"row": "DENet", "seed": 0, "setting": "complete", "mAP": 50.0, "R-1": 60.0},
        {"row": "DENet", "seed": 1, "setting": "complete", "mAP": 52.0, "R-1": 64.0},
        {"row": "DENet", "seed": 0, "setting": "M(N)", "mAP": 40.0, "R-1": 50.0},
        {"row": "DENet", "seed": 1, "setting": "M(N)", "mAP": 44.0, "R-1": 50.0},
        {"row": "baseline", "seed": 0, "setting": "complete", "mAP": 30.0, "R-1": 31.25},
    ])


def test_setting_table_mean_std_layout():
    table = setting_table(scores_frame())
    assert list(table.index) == ["DENet", "baseline"]
    assert list(table.columns) == [("complete", "mAP"), ("complete", "R-1"), ("M(N)", "mAP"), ("M(N)", "R-1")]
    # std with ddof=1: mAP (50, 52) -> 1.41; (40, 44) -> 2.83; R-1 (60, 64) -> 2.83
    assert table.loc["DENet"].tolist() == ["51.0 ± 1.4", "62.0 ± 2.8", "42.0 ± 2.8", "50.0 ± 0.0"]
    assert table.loc["baseline"].tolist() == ["30.0", "31.2", "—", "—"]   # one seed: mean only; no run: dash


def test_setting_table_errors():
    with pytest.raises(ValueError, match="lack column"):
        setting_table(scores_frame().drop(columns="R-1"))
    with pytest.raises(ValueError, match="more than once"):
        setting_table(pd.concat([scores_frame(), scores_frame().iloc[:1]]))


def feature_set(real: dict, recovered: dict, pids, camids) -> FeatureSet:
    names = {f"real_{m}": torch.tensor(v, dtype=torch.float32) for m, v in real.items()}
    names |= {f"recovered_{m}": torch.tensor(v, dtype=torch.float32) for m, v in recovered.items()}
    n = len(pids)
    return FeatureSet(names, np.array(pids), np.array(camids), np.full(n, -1), np.ones((n, 3), bool), np.arange(n),
                      ("rgb", "nir", "tir"))


def test_modality_points_stacks_modality_major():
    fs = feature_set({"rgb": [[1, 0], [2, 0]], "nir": [[3, 0], [4, 0]], "tir": [[5, 0], [6, 0]]},
                     {"rgb": [[0, 1], [0, 2]], "nir": [[0, 3], [0, 4]], "tir": [[0, 5], [0, 6]]}, [7, 8], [0, 1])
    feats, pids, names = modality_points(fs, "recovered")
    assert feats[:, 1].tolist() == [1, 2, 3, 4, 5, 6] and pids.tolist() == [7, 8] * 3
    assert names == ["rgb", "rgb", "nir", "nir", "tir", "tir"]
    feats, _, names = modality_points(fs, "real", modalities=("nir",))
    assert feats[:, 0].tolist() == [3, 4] and names == ["nir", "nir"]
    with pytest.raises(ValueError, match="kind"):
        modality_points(fs, "fake")


def test_recovery_alignment_hand_computed():
    # two identities (0, 1), two cameras each; real NIR points along x for id 0 and y for id 1
    real = [[1, 0], [1, 0.2], [0, 1], [0.2, 1]]
    faithful = feature_set({"nir": real}, {"nir": real}, [0, 0, 1, 1], [0, 1, 0, 1])
    frame = recovery_alignment(faithful, "market", modalities=("nir",))
    row = frame.loc["nir"]
    assert row["cos same sample"] == pytest.approx(1.0)
    assert row["mAP recovered→real"] == pytest.approx(row["mAP real→real"]) == pytest.approx(100.0)
    assert row["cos same id"] == pytest.approx(1 / np.sqrt(1.04))        # cos([1, 0], [1, 0.2])
    # swapped recovery: each sample recovers the other identity's direction
    swapped = feature_set({"nir": real}, {"nir": [real[2], real[3], real[0], real[1]]}, [0, 0, 1, 1], [0, 1, 0, 1])
    row = recovery_alignment(swapped, "market", modalities=("nir",)).loc["nir"]
    # the one true match (same id, other camera) ranks third of three: AP = 1/3 for every query
    assert row["cos other id"] > row["cos same id"] and row["mAP recovered→real"] == pytest.approx(100 / 3)


def test_recovery_alignment_reads_recovered_features_from_another_extraction():
    real = [[1, 0], [1, 0.2], [0, 1], [0.2, 1]]
    complete = feature_set({"nir": real}, {"nir": [[0, 1]] * 4}, [0, 0, 1, 1], [0, 1, 0, 1])
    from_rgb = feature_set({"nir": [[5, 5]] * 4}, {"nir": real}, [0, 0, 1, 1], [0, 1, 0, 1])
    row = recovery_alignment(complete, "market", modalities=("nir",), recovered=from_rgb).loc["nir"]
    assert row["cos same sample"] == pytest.approx(1.0) and row["mAP recovered→real"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="same samples"):
        recovery_alignment(complete, "market", recovered=feature_set({"nir": real[:2]}, {"nir": real[:2]}, [0, 1],
                                                                     [0, 0]))


def test_paper_setting_table_lays_out_the_printed_numbers():
    table = paper_setting_table(paper_results("denet", table=1).query("setting in ['PFNet', 'DENet']"))
    assert list(table.index) == ["PFNet", "DENet"]
    assert list(table.columns.get_level_values(0)[::2]) == ["complete", "M(N)", "M(T)", "M(NT)"]
    assert table.loc["DENet"].tolist() == [42.41, 42.23, 35.40, 36.82, 33.00, 35.40, 32.42, 29.20]
    seven = paper_setting_table(paper_results("denet", table=7), ["mAP", "R-10"])
    assert list(seven.index) == ["Fixed", "Ours", "single-direction"]
    assert seven.loc["Ours", ("complete", "R-10")] == 64.52 and np.isnan(seven.loc["single-direction", ("M(N)", "mAP")])
    with pytest.raises(ValueError, match="unknown missing-state"):
        paper_setting_table(paper_results("denet", table=2))
