"""Train a set of variants × seeds through the run cache, score them, and lay them out as an ablation table.

    runs = train_variants({"baseline": base, "CoEN": coen}, seeds=[0, 1, 2])   # {(row, seed): Run}
    scores = score_runs(runs)                                                   # one line per (row, seed)
    ablation_table(scores, reference="baseline")                                # mean ± std, paired Δ, verdict

Variants of one study share the seeds, so the runs of a seed form a pair (same data order, same initial
weights of the shared parts) and :func:`reidlab.studies.noise.paired_effect` judges each difference.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import pandas as pd

from reidlab.engine.evaluation import results_frame
from reidlab.engine.experiment import Run
from reidlab.engine.parallel import train_many
from reidlab.recipes import Recipe
from reidlab.studies.noise import paired_effect
from reidlab.viz.tables import ablation_table as mean_std_table

DEFAULT_METRICS = ("mAP", "R-1", "R-5", "R-10")

G = TypeVar("G", bound=Hashable)


def seeded(variants: Mapping[str, Recipe], seeds: Sequence[int],
           row_seeds: Mapping[str, Sequence[int]] | None = None) -> dict[tuple[str, int], Recipe]:
    """``{(row, seed): recipe with train.seed = seed}`` for every variant and seed.

    ``row_seeds``: other seeds for some rows (``{row: seeds}``), e.g. a notebook's lecture trains the rows it compares
    over three seeds and its ablation rows over one; the other rows use ``seeds``.
    """
    row_seeds = dict(row_seeds or {})
    unknown = sorted(set(row_seeds) - set(variants))
    if unknown:
        raise ValueError(f"row_seeds names rows that are not variants: {', '.join(unknown)}")
    if not seeds or not all(row_seeds.values()):
        raise ValueError("seeds must name at least one training seed for every row")
    return {(row, s): recipe.override({"train.seed": s}) for row, recipe in variants.items()
            for s in row_seeds.get(row, seeds)}


def train_variants(variants: Mapping[str, Recipe], seeds: Sequence[int], *, force: bool = False,
                   device: str = "auto", progress: bool = False, workers: int | None = None,
                   row_seeds: Mapping[str, Sequence[int]] | None = None) -> dict[tuple[str, int], Run]:
    """Train (or load from the run cache) every variant once per seed; ``{(row, seed): Run}``.

    On a CPU the missing runs are trained in parallel single-threaded processes
    (:func:`reidlab.engine.parallel.train_many`); equal recipes are trained once. ``row_seeds`` gives some rows
    other seeds (:func:`seeded`); pairs of rows are then judged on the seeds they share.
    """
    return train_many(seeded(variants, seeds, row_seeds), force=force, device=device, progress=progress,
                      workers=workers)


def train_groups(groups: Mapping[G, tuple[Mapping[str, Recipe], Sequence[int]]], *, force: bool = False,
                 device: str = "auto", progress: bool = False,
                 workers: int | None = None) -> dict[G, dict[tuple[str, int], Run]]:
    """Several :func:`train_variants` calls as one: ``{group: (variants, seeds)}`` -> ``{group: {(row, seed): Run}}``.

    Every missing run of every group goes to the worker pool at once, so no core waits at the end of a group with an
    odd number of runs (each sweep of a notebook, each benchmark of notebook 06). The runs are the ones the separate
    calls would give: a run's weights do not depend on what it is trained with.
    """
    flat = {(group, key): recipe for group, (variants, seeds) in groups.items()
            for key, recipe in seeded(variants, seeds).items()}
    runs = train_many(flat, force=force, device=device, progress=progress, workers=workers)
    grouped: dict[G, dict[tuple[str, int], Run]] = {group: {} for group in groups}
    for (group, key), run in runs.items():
        grouped[group][key] = run
    return grouped


def score_runs(runs: Mapping[tuple[str, int], Run], **evaluate_options) -> pd.DataFrame:
    """One line per ``(row, seed)`` run: ``row``, ``seed`` and the metrics in percent (``Run.evaluate`` options,
    e.g. ``feature="rgb"`` or ``missing="M(N)"``)."""
    frame = results_frame({key: run.evaluate(**evaluate_options) for key, run in runs.items()})
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["row", "seed"])
    return frame.reset_index()


def runs_of(runs: Mapping[tuple[str, int], Run], row: str) -> dict[tuple[str, int], Run]:
    """The ``{(row, seed): Run}`` entries of one row of ``runs``."""
    return {key: run for key, run in runs.items() if key[0] == row}


def rename_rows(scores: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """``scores`` with rows renamed (``{old: new}``) and only those rows kept, in the order of ``names``."""
    kept = scores[scores["row"].isin(list(names))].copy()
    kept["row"] = pd.Categorical(kept["row"].map(names), categories=list(dict.fromkeys(names.values())))
    return kept.sort_values(["row", "seed"], kind="stable").assign(row=lambda f: f["row"].astype(str))


def ablation_table(scores: pd.DataFrame, reference: str | None = None, *,
                   metrics: Sequence[str] = DEFAULT_METRICS, metric: str = "mAP", decimals: int = 1) -> pd.DataFrame:
    """Rows in first-appearance order, ``mean ± std`` over seeds per metric (``decimals`` places throughout);
    with a ``reference`` row also ``Δ <metric>`` (paired by seed), its ``se`` and the noise ``verdict``."""
    table = mean_std_table(scores, metrics=list(metrics), decimals=decimals)
    if reference is None:
        return table
    effects = pd.DataFrame({row: paired_effect(scores, row, reference, metric).iloc[0]
                            for row in table.index if row != reference}).T
    table[f"Δ {metric}"] = [f"{effects.loc[r, 'delta']:+.{decimals}f}" if r in effects.index else "reference"
                            for r in table.index]
    table["se"] = [f"{effects.loc[r, 'se']:.{decimals}f}" if r in effects.index and effects.loc[r, "seeds"] > 1
                   else "" for r in table.index]
    table["verdict"] = [effects.loc[r, "verdict"] if r in effects.index else "" for r in table.index]
    return table
