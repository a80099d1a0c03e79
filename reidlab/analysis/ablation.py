"""Is an ablation's difference larger than the seed-to-seed noise?

An ablation table compares rows (model variants) trained with a few seeds each. A difference of
means says little unless it is compared with how much one variant moves between seeds.
:func:`effect_table` takes the long score frame of :func:`reidlab.engine.experiment.score_table`
(one row per (row, seed) run) and reports, per row, the mean, the difference to a reference row
and that difference's standard error, with a plain verdict.

Choice: the seed-to-seed standard deviation is *pooled* over all rows of the table (the square
root of the mean per-row variance, each with ddof = 1): with two or three seeds a per-row std is
itself very noisy, and the variants of one table share data, schedule and model size. The standard
error of a difference of two means of n seeds each is then s_pooled · √(2 / n). A difference is
called "beyond noise" when it exceeds twice its standard error (roughly a 95 % two-sided
interval), "within noise" otherwise; with one seed per row there is no spread to judge by and the
verdict says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pooled_std(scores: pd.DataFrame, metric: str = "mAP", *, row: str = "row") -> float:
    """Seed-to-seed std of ``metric`` pooled over the rows of ``scores`` (NaN when no row has two seeds)."""
    variances = scores.groupby(row, sort=False)[metric].var(ddof=1).dropna()
    return float(np.sqrt(variances.mean())) if len(variances) else float("nan")


def effect_table(scores: pd.DataFrame, reference: str, metric: str = "mAP", *, row: str = "row") -> pd.DataFrame:
    """Per row of ``scores``: ``n`` seeds, ``mean`` and ``std`` of ``metric``, ``delta`` = mean − reference mean,
    its standard error ``se`` (pooled std · √(1/n_row + 1/n_ref)) and a ``verdict``: "reference", "beyond noise",
    "within noise" or "one seed: no spread measured". Rows keep their order of appearance."""
    stats = scores.groupby(row, sort=False)[metric].agg(["count", "mean", "std"]).rename(columns={"count": "n"})
    if reference not in stats.index:
        raise ValueError(f"reference row {reference!r} is not in the scores; rows: {', '.join(map(str, stats.index))}")
    spread = pooled_std(scores, metric, row=row)
    ref = stats.loc[reference]
    stats["delta"] = stats["mean"] - ref["mean"]
    stats["se"] = spread * np.sqrt(1 / stats["n"] + 1 / ref["n"])
    stats["verdict"] = [_verdict(name == reference, delta, se)
                        for name, delta, se in zip(stats.index, stats["delta"], stats["se"], strict=True)]
    return stats


def _verdict(is_reference: bool, delta: float, se: float) -> str:
    if is_reference:
        return "reference"
    if np.isnan(se):
        return "one seed: no spread measured"
    return "beyond noise" if abs(delta) > 2 * se else "within noise"
