"""Hyper-parameter sweeps: one recipe key over a list of values, every value trained with the same seeds."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd

from reidlab.recipes import Recipe
from reidlab.studies.variants import score_runs, train_groups

S = TypeVar("S", bound=Hashable)


def sweep_many(recipe: Recipe, grid: Mapping[S, tuple[str, Sequence[Any]]], seeds: Sequence[int], *,
               evaluate: dict | None = None, **train_options: Any) -> dict[S, pd.DataFrame]:
    """Several sweeps of ``recipe`` trained together: ``grid`` maps a name (a symbol, e.g. ``"λ"``) to the dotted
    recipe key it sets and the values to try; ``{name: scores}``, one line per (value, seed) with the value in column
    ``name``, ``seed`` and the metrics — the input of :func:`reidlab.viz.plot_sweep` (mean ± std band over seeds).

    All points of all sweeps go to the worker pool in one call (:func:`~reidlab.studies.variants.train_groups`):
    single-seed sweeps of two or three points would otherwise leave a core idle at the end of each sweep.
    """
    runs = train_groups({name: ({value: recipe.override({key: value}) for value in values}, seeds)
                         for name, (key, values) in grid.items()}, **train_options)
    return {name: score_runs(runs[name], **(evaluate or {})).rename(columns={"row": name}) for name in grid}


def sweep(recipe: Recipe, key: str, values: Sequence[Any], seeds: Sequence[int], *, name: str | None = None,
          evaluate: dict | None = None, **train_options: Any) -> pd.DataFrame:
    """One sweep: ``key`` (a dotted recipe key, e.g. ``"loss.lambda"``) set to each of ``values``, once per seed;
    the scores of :func:`sweep_many`, with the value in column ``name`` (default ``key``)."""
    name = name or key
    return sweep_many(recipe, {name: (key, values)}, seeds, evaluate=evaluate, **train_options)[name]


def paired_sweep(variants: Mapping[str, Recipe], key: str, values: Sequence[Any], seeds: Sequence[int], *,
                 name: str | None = None, evaluate: dict | None = None, **train_options: Any) -> pd.DataFrame:
    """Every variant (e.g. a method and its matched baseline) at each of ``key``'s ``values``, once per seed, so a
    comparison can be paired at every value: one line per (value, row, seed) with the value in column ``name``
    (default ``key``) — the input of ``paired_effect(scores, method, baseline, by=[name])``. E.g. ``key =
    "synthetic.num_ids"`` asks whether a verdict holds on larger trees of the same generator. One pool call."""
    name = name or key
    runs = train_groups({value: ({row: recipe.override({key: value}) for row, recipe in variants.items()}, seeds)
                         for value in values}, **train_options)
    return pd.concat([score_runs(runs[value], **(evaluate or {})).assign(**{name: value}) for value in values],
                     ignore_index=True)
