"""CMC curves and hyper-parameter sweep curves (mean line, ± std band over seeds, markers)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reidlab.eval import RetrievalResult
from reidlab.viz.style import PANEL_SIZE, finish, new_figure, series_color, style

REFERENCE_COLOR = "0.35"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def plot_cmc(results: Mapping[str, RetrievalResult | Sequence[float] | np.ndarray], max_rank: int = 20, *,
             title: str | None = None, save: str | Path | None = None) -> Figure:
    """CMC curves (rank-k accuracy in %, k = 1..``max_rank``), one per ``{label: result}`` entry.

    Values are :class:`RetrievalResult` objects or CMC arrays of fractions in [0, 1] (``cmc[k-1]`` =
    rank-k). The legend gives each curve's rank-1.
    """
    if not results:
        raise ValueError("results must map at least one label to a RetrievalResult or CMC array")
    ranks = np.arange(1, max_rank + 1)
    with style():
        fig, axes = new_figure(1, 1, PANEL_SIZE)
        ax = axes[0, 0]
        for i, (label, result) in enumerate(results.items()):
            cmc = np.asarray(result.cmc if isinstance(result, RetrievalResult) else result, dtype=np.float64)
            if cmc.ndim != 1 or len(cmc) < max_rank:
                raise ValueError(f"{label!r}: CMC must be 1-D with at least max_rank={max_rank} ranks, "
                                 f"got shape {cmc.shape}")
            if cmc.min() < 0 or cmc.max() > 1:
                raise ValueError(f"{label!r}: CMC values must be fractions in [0, 1]")
            ax.plot(ranks, 100 * cmc[:max_rank], color=series_color(i), marker=MARKERS[i % len(MARKERS)],
                    markersize=4, label=f"{label} (R-1 {100 * cmc[0]:.1f}%)")
        ax.set_xlim(1, max_rank)
        ax.set_xticks(ranks[(ranks == 1) | (ranks % 5 == 0)])
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        ax.grid(True, color="0.9")
        ax.legend(loc="lower right")
        ax.set_title(title if title is not None else "CMC")
    return finish(fig, save)


def sweep_stats(data: pd.DataFrame | Mapping[object, Sequence[float]], param_name: str,
                metric: str = "mAP") -> pd.DataFrame:
    """Per parameter value: ``n``, ``mean`` and ``std`` (ddof=1; 0 for a single seed) of ``metric``.

    ``data`` is a frame with columns ``param_name`` and ``metric`` (one row per run) or a mapping
    ``{param value: [metric per seed]}``. Numeric parameter values are sorted; other values keep
    their first-appearance order.
    """
    if isinstance(data, pd.DataFrame):
        missing = [c for c in (param_name, metric) if c not in data.columns]
        if missing:
            raise ValueError(f"sweep frame lacks column(s) {', '.join(missing)}; "
                             f"has {', '.join(map(str, data.columns))}")
        groups = {value: group[metric].to_numpy(np.float64) for value, group in data.groupby(param_name, sort=False)}
    else:
        groups = {value: np.asarray(values, dtype=np.float64).ravel() for value, values in data.items()}
    if not groups or any(v.size == 0 for v in groups.values()):
        raise ValueError(f"sweep over {param_name!r} needs at least one {metric} value per parameter value")
    keys = list(groups)
    if all(isinstance(k, numbers.Real) for k in keys):
        keys = sorted(keys)
    rows = [(len(groups[k]), groups[k].mean(), groups[k].std(ddof=1) if len(groups[k]) > 1 else 0.0) for k in keys]
    return pd.DataFrame(rows, columns=["n", "mean", "std"], index=pd.Index(keys, name=param_name))


def plot_sweep(data: pd.DataFrame | Mapping[object, Sequence[float]], param_name: str, metric: str = "mAP", *,
               reference: float | Mapping[object, float] | None = None, reference_label: str = "paper",
               logx: bool = False, title: str | None = None, save: str | Path | None = None) -> Figure:
    """Sweep curve of ``metric`` against ``param_name``: mean line with markers and a ± std band over seeds.

    ``data`` as in :func:`sweep_stats`; values are plotted as given (percent in, percent out).
    ``reference`` adds a dashed line: a number (horizontal line, e.g. the paper's setting) or a
    ``{param value: metric}`` mapping (the paper's curve). Ticks sit at the swept values;
    non-numeric parameter values are placed at equal spacing.
    """
    stats = sweep_stats(data, param_name, metric)
    numeric = all(isinstance(k, numbers.Real) for k in stats.index)
    x = stats.index.to_numpy(np.float64) if numeric else np.arange(len(stats), dtype=np.float64)
    mean, std = stats["mean"].to_numpy(), stats["std"].to_numpy()
    with style():
        fig, axes = new_figure(1, 1, PANEL_SIZE)
        ax = axes[0, 0]
        ax.fill_between(x, mean - std, mean + std, color=series_color(0), alpha=0.2, linewidth=0,
                        label="± std" if (stats["n"] > 1).any() else None)
        ax.plot(x, mean, color=series_color(0), marker="o", markersize=5,
                label=f"{metric} (mean of {int(stats['n'].max())} seed(s))")
        if isinstance(reference, Mapping):
            positions = list(stats.index)
            ref_keys = sorted(reference) if numeric else list(reference)
            unknown = [k for k in ref_keys if not numeric and k not in positions]
            if unknown:
                raise ValueError(f"reference names {param_name} value(s) {unknown} absent from the sweep")
            ref_x = np.asarray(ref_keys if numeric else [positions.index(k) for k in ref_keys], dtype=np.float64)
            ax.plot(ref_x, [reference[k] for k in ref_keys], color=REFERENCE_COLOR, linestyle="--", marker="x",
                    label=reference_label)
        elif reference is not None:
            ax.axhline(float(reference), color=REFERENCE_COLOR, linestyle="--", label=reference_label)
        if logx:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(x, [f"{k:g}" if numeric else str(k) for k in stats.index])
        ax.set_xlabel(param_name)
        ax.set_ylabel(metric)
        ax.grid(True, color="0.9")
        ax.legend(loc="best")
        ax.set_title(title if title is not None else f"{metric} vs {param_name}")
    return finish(fig, save)
