"""Leaderboards as pictures: one bar per method and benchmark (mean over seeds, ± std, a dot per seed), and our
order of the methods beside the papers' order (a slope chart per benchmark)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reidlab.viz.style import PANEL_SIZE, finish, new_figure, series_color, style

#: Columns :func:`plot_rank_comparison` reads (``reidlab.studies.benchmark.paper_ranking``).
RANKS = ("ours rank", "paper rank")


def _grid(count: int, max_columns: int) -> tuple[int, int]:
    columns = min(max_columns, count)
    return math.ceil(count / columns), columns


def plot_leaderboard(scores: pd.DataFrame, metric: str = "mAP", *, labels: Mapping[str, str] | None = None,
                     max_columns: int = 4, title: str | None = None, save: str | Path | None = None) -> Figure:
    """One panel per ``benchmark`` of ``scores`` (one line per benchmark, row and seed): a bar per row at its mean
    ``metric`` (best on top), its ± std over seeds as an error bar and each seed as a dot. A row keeps its colour
    in every panel; ``labels`` adds a word to a row's name (e.g. "unsupervised")."""
    missing = [c for c in ("benchmark", "row", "seed", metric) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {', '.join(missing)}; has {', '.join(map(str, scores.columns))}")
    benchmarks, rows = list(scores["benchmark"].unique()), list(scores["row"].unique())
    height = 0.42 * max(scores.groupby("benchmark")["row"].nunique()) + 1.3
    with style():
        fig, axes = new_figure(*_grid(len(benchmarks), max_columns), (PANEL_SIZE[0], height))
        for ax, benchmark in zip(axes.flat, benchmarks, strict=False):
            frame = scores[scores["benchmark"] == benchmark]
            stats = frame.groupby("row")[metric].agg(["mean", "std", "count"]).sort_values("mean")
            y = np.arange(len(stats))
            ax.barh(y, stats["mean"], xerr=stats["std"].fillna(0.0), height=0.7, alpha=0.85, capsize=3,
                    color=[series_color(rows.index(row)) for row in stats.index])
            for position, row in zip(y, stats.index, strict=True):
                values = frame.loc[frame["row"] == row, metric]
                ax.scatter(values, np.full(len(values), position), s=10, color="0.15", zorder=3)
                mean = stats.loc[row, "mean"]
                inside = mean >= 12   # the value on the bar's root, in white; after a short bar, in black
                ax.text(1.5 if inside else mean + np.nan_to_num(stats.loc[row, "std"]) + 1.5, position, f"{mean:.1f}",
                        va="center", fontsize=8, color="white" if inside else "0.15",
                        fontweight="bold" if inside else "normal")
            ax.set_yticks(y, [f"{row} ({labels[row]})" if labels and row in labels else row for row in stats.index])
            seeds = int(stats["count"].max())
            ax.set_title(f"{benchmark} · {seeds} seed{'s' if seeds > 1 else ''}")
            ax.set_xlim(0, 105)
            ax.set_xlabel(metric)
            ax.grid(True, axis="x", color="0.9")
            ax.set_axisbelow(True)
        for ax in axes.flat[len(benchmarks):]:
            ax.set_visible(False)
        fig.suptitle(title or f"{metric} per benchmark (mean ± std over seeds, a dot per seed)")
    return finish(fig, save)


def plot_rank_comparison(ranking: pd.DataFrame, *, left: str = "ours (synthetic)", right: str = "paper (real)",
                         max_columns: int = 4, title: str | None = None, save: str | Path | None = None) -> Figure:
    """Per benchmark of ``ranking`` (index ``(benchmark, method)``, columns :data:`RANKS`): each method's rank on
    our leaderboard (left) joined to its rank in the papers (right); a crossing line is a pair in the other order."""
    missing = [c for c in RANKS if c not in ranking.columns]
    if missing:
        raise ValueError(f"ranking lacks column(s) {', '.join(missing)}; has {', '.join(map(str, ranking.columns))}")
    benchmarks = list(ranking.index.get_level_values(0).unique())
    methods = list(ranking.index.get_level_values(1).unique())
    with style():
        fig, axes = new_figure(*_grid(len(benchmarks), max_columns), (PANEL_SIZE[0] * 0.75, PANEL_SIZE[1] * 0.7))
        for ax, benchmark in zip(axes.flat, benchmarks, strict=False):
            frame = ranking.loc[benchmark]
            for method, line in frame.iterrows():
                colour = series_color(methods.index(method))
                ax.plot([0, 1], [line[RANKS[0]], line[RANKS[1]]], color=colour, marker="o", linewidth=2)
                ax.text(-0.06, line[RANKS[0]], method, ha="right", va="center", fontsize=8, color=colour)
                ax.text(1.06, line[RANKS[1]], method, ha="left", va="center", fontsize=8, color=colour)
            ax.set_xlim(-0.6, 1.6)
            ax.set_ylim(len(frame) + 0.5, 0.5)
            ax.set_yticks(range(1, len(frame) + 1))
            ax.set_xticks([0, 1], [left, right])
            ax.set_ylabel("rank (1 = best)")
            ax.set_title(benchmark)
        for ax in axes.flat[len(benchmarks):]:
            ax.set_visible(False)
        fig.suptitle(title or "Our order of the methods beside the papers' order")
    return finish(fig, save)
