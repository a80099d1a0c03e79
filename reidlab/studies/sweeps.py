"""Hyper-parameter sweeps: one recipe key over a list of values, every value trained with the same seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from reidlab.recipes import Recipe
from reidlab.studies.variants import score_runs, train_variants


def sweep(recipe: Recipe, key: str, values: Sequence[Any], seeds: Sequence[int], *, name: str | None = None,
          evaluate: dict | None = None, **train_options: Any) -> pd.DataFrame:
    """Train ``recipe`` with ``key`` (a dotted recipe key, e.g. ``"loss.lambda"``) set to each of ``values``, once
    per seed, and score every run; one line per (value, seed) with the value in column ``name`` (default ``key``),
    ``seed`` and the metrics — the input of :func:`reidlab.viz.plot_sweep` (mean ± std band over seeds)."""
    runs = train_variants({value: recipe.override({key: value}) for value in values}, seeds, **train_options)
    return score_runs(runs, **(evaluate or {})).rename(columns={"row": name or key})
