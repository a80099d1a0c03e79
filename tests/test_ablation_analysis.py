"""reidlab.analysis.ablation: differences between ablation rows against the pooled seed-to-seed noise."""

import numpy as np
import pandas as pd
import pytest

from reidlab.analysis.ablation import effect_table, pooled_std


def _scores(values):
    return pd.DataFrame([{"row": row, "seed": s, "mAP": v} for row, vs in values.items() for s, v in enumerate(vs)])


def test_pooled_std_is_root_mean_variance():
    scores = _scores({"a": [10, 12], "b": [20, 26], "c": [5]})      # variances 2 and 18, "c" has none
    assert pooled_std(scores) == pytest.approx(np.sqrt(10))


def test_effect_table_hand_computed():
    scores = _scores({"base": [10, 12], "big": [20, 26], "small": [12, 13]})   # variances 2, 18, 0.5
    table = effect_table(scores, "base")
    s = np.sqrt((2 + 18 + 0.5) / 3)
    assert list(table.index) == ["base", "big", "small"]
    assert table.loc["big", "delta"] == pytest.approx(12.0)
    assert table.loc["big", "se"] == pytest.approx(s * np.sqrt(2 / 2))
    assert table.loc["big", "verdict"] == "beyond noise"                  # 12 > 2 * 2.61
    assert table.loc["small", "delta"] == pytest.approx(1.5) and table.loc["small", "verdict"] == "within noise"
    assert table.loc["base", "verdict"] == "reference" and table.loc["base", "n"] == 2


def test_effect_table_single_seed_and_unknown_reference():
    table = effect_table(_scores({"base": [10], "x": [30]}), "base")
    assert table.loc["x", "verdict"] == "one seed: no spread measured" and np.isnan(table.loc["x", "se"])
    with pytest.raises(ValueError, match="reference row"):
        effect_table(_scores({"base": [10]}), "missing")
