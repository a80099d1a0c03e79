"""The one noise rule: is a difference between two variants larger than the seed-to-seed noise?

Every verdict in the tables and the prose of the notebooks comes from :func:`paired_effect`.

**The test.** Two rows (variants) of a study are trained with the same seeds, and a seed fixes the data
order and the initialisation of the parts both variants share, so the runs of one seed are a *pair*.
For each seed s that both rows have, d_s = score(row, s) − score(reference, s). With n pairs,

    Δ = mean(d_s),   se = std(d_s, ddof=1) / √n,   t = Δ / se,

and the difference is **"beyond noise"** when |t| exceeds the two-sided 95 % critical value of Student's
t with n − 1 degrees of freedom (12.71 for n = 2, 4.30 for n = 3, 2.78 for n = 5), else **"within noise"**.
With one pair (or none) there is no spread to judge by: **"one seed"**. This is a paired t-test at
α = 0.05; with three seeds it needs a consistent effect, which is the point: a tutorial should not call
a 1-point wobble a finding. Rows evaluated in several ways from the same model (a recovery switch, a test
feature) are paired the same way, by the seed of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

#: The three verdict words, used verbatim in tables and prose.
BEYOND, WITHIN, ONE_SEED = "beyond noise", "within noise", "one seed"


def critical_t(pairs: int) -> float:
    """Two-sided 95 % critical value of Student's t with ``pairs - 1`` degrees of freedom (NaN below 2 pairs)."""
    return float(stats.t.ppf(0.975, pairs - 1)) if pairs >= 2 else float("nan")


def verdict(delta: float, se: float, pairs: int) -> str:
    """The verdict word for a paired difference ``delta`` with standard error ``se`` over ``pairs`` seeds."""
    if pairs < 2 or not np.isfinite(se):
        return ONE_SEED
    if se == 0:
        return WITHIN if delta == 0 else BEYOND
    return BEYOND if abs(delta) > critical_t(pairs) * se else WITHIN


def paired_differences(scores: pd.DataFrame, row: str, reference: str, metric: str = "mAP", *,
                       by: Sequence[str] = (), row_column: str = "row", seed_column: str = "seed") -> pd.DataFrame:
    """The per-seed differences d_s = ``row`` − ``reference`` of the rule above: one line per (by..., seed) that
    both rows have, with columns ``by``, ``seed`` and ``metric`` (e.g. for a sweep plot of Δ with a band)."""
    keys = [*by, seed_column]
    for column in (row_column, metric, *keys):
        if column not in scores.columns:
            raise ValueError(f"scores have no column {column!r}; columns: {', '.join(map(str, scores.columns))}")
    rows = set(scores[row_column])
    absent = [r for r in (row, reference) if r not in rows]
    if absent:
        raise ValueError(f"scores have no row(s) {absent}; rows: {sorted(map(str, rows))}")
    wide = scores[scores[row_column].isin([row, reference])].pivot_table(
        index=keys, columns=row_column, values=metric, sort=False)
    return (wide[row] - wide[reference]).dropna().rename(metric).reset_index()


def paired_effect(scores: pd.DataFrame, row: str, reference: str, metric: str = "mAP", *,
                  by: Sequence[str] = (), row_column: str = "row", seed_column: str = "seed") -> pd.DataFrame:
    """``row`` minus ``reference`` on ``metric``, paired by seed (the rule of this module's docstring).

    ``scores`` is a long frame with one line per (row, seed[, by...]) (e.g. :func:`reidlab.studies.score_runs`
    or :func:`reidlab.analysis.missing.missing_scores`); ``by`` names extra columns (e.g. ``"setting"``) to
    compare within. Returns one line per group (a single line indexed ``metric`` when ``by`` is empty) with
    ``delta``, ``se``, ``seeds`` (the number of pairs) and ``verdict``.
    """
    differences = paired_differences(scores, row, reference, metric, by=by, row_column=row_column,
                                     seed_column=seed_column)
    groups = differences.groupby(list(by), sort=False)[metric] if by else {metric: differences[metric]}.items()
    lines = {}
    for key, values in groups:
        n = len(values)
        se = float(values.std(ddof=1) / np.sqrt(n)) if n >= 2 else float("nan")
        delta = float(values.mean()) if n else float("nan")
        lines[key[0] if isinstance(key, tuple) and len(key) == 1 else key] = {
            "delta": delta, "se": se, "seeds": n, "verdict": verdict(delta, se, n)}
    frame = pd.DataFrame.from_dict(lines, orient="index")
    frame.index.name = by[0] if len(by) == 1 else None
    return frame


def describe(effect: pd.Series, unit: str = "mAP") -> str:
    """``"+2.1 mAP (se 0.4, 3 seeds): beyond noise"`` — a line of :func:`paired_effect` as prose."""
    if effect["seeds"] < 2:
        return f"{effect['delta']:+.1f} {unit} (one seed)"
    return f"{effect['delta']:+.1f} {unit} (se {effect['se']:.1f}, {effect['seeds']} seeds): {effect['verdict']}"
