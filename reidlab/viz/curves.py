"""CMC curves and hyper-parameter sweep curves (mean line, ± std band and one dot per seed; references off our axis)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
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


def _sweep_groups(data: pd.DataFrame | Mapping[object, Sequence[float]], param_name: str,
                 metric: str) -> dict[object, np.ndarray]:
    """``{parameter value: metric per run}``, numeric values sorted, others in first-appearance order."""
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
    return {k: groups[k] for k in keys}


def sweep_stats(data: pd.DataFrame | Mapping[object, Sequence[float]], param_name: str,
                metric: str = "mAP") -> pd.DataFrame:
    """Per parameter value: ``n``, ``mean`` and ``std`` (ddof=1; 0 for a single seed) of ``metric``.

    ``data`` is a frame with columns ``param_name`` and ``metric`` (one row per run) or a mapping
    ``{param value: [metric per seed]}``. Numeric parameter values are sorted; other values keep
    their first-appearance order.
    """
    groups = _sweep_groups(data, param_name, metric)
    rows = [(len(v), v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0) for v in groups.values()]
    return pd.DataFrame(rows, columns=["n", "mean", "std"], index=pd.Index(list(groups), name=param_name))


Sweep = pd.DataFrame | Mapping[object, Sequence[float]]


def _seed_words(counts: np.ndarray) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"{low} seed{'s' if high > 1 else ''}" if low == high else f"{low}–{high} seeds"


def _reference_text(reference: float | Mapping[object, float], param_name: str, label: str) -> str:
    if isinstance(reference, Mapping):
        values = ", ".join(f"{v:.1f} at {param_name} = {k:g}" if isinstance(k, numbers.Real) else f"{v:.1f} at {k}"
                           for k, v in reference.items())
    else:
        values = f"{float(reference):.1f}"
    return f"{label}: {values}"


def _positions(keys: Sequence[object], sweep_keys: Sequence[object], numeric: bool, what: str,
               param_name: str) -> np.ndarray:
    """x positions of ``keys``: their values (numeric sweep) or their index among the swept values."""
    if numeric:
        return np.asarray(keys, dtype=np.float64)
    unknown = [k for k in keys if k not in sweep_keys]
    if unknown:
        raise ValueError(f"{what} names {param_name} value(s) {unknown} absent from the sweep")
    return np.asarray([list(sweep_keys).index(k) for k in keys], dtype=np.float64)


def _draw_runs(ax: Axes, groups: dict[object, np.ndarray], x: np.ndarray, color: str, name: str,
               dots_label: str | None) -> np.ndarray:
    """Mean line, ± std band and one dot per seed of one sweep; returns the run counts per value."""
    stats = sweep_stats(groups, "value", "metric")
    mean, std, counts = stats["mean"].to_numpy(), stats["std"].to_numpy(), stats["n"].to_numpy()
    seeds = _seed_words(counts)
    if counts.max() > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        runs_x = np.concatenate([np.full(len(v), xi) for xi, v in zip(x, groups.values(), strict=True)])
        ax.scatter(runs_x, np.concatenate(list(groups.values())), s=12, color=color, alpha=0.4, linewidths=0,
                   label=dots_label, zorder=3)
    ax.plot(x, mean, color=color, marker="o", markersize=5, zorder=4,
            label=f"{name}: mean ± std, {seeds}" if counts.max() > 1 else f"{name}: {seeds}, no spread measured")
    return counts


def plot_sweep(data: Sweep, param_name: str, metric: str = "mAP", *,
               reference: float | Mapping[object, float] | None = None, reference_label: str = "paper",
               reference_axis: str = "auto", baseline: Sweep | None = None, baseline_label: str = "baseline",
               logx: bool = False, title: str | None = None, save: str | Path | None = None) -> Figure:
    """Sweep curve of ``metric`` against ``param_name``: mean over seeds with a ± std band and each seed as a dot.

    ``data`` as in :func:`sweep_stats`; values are plotted as given (percent in, percent out). With
    a single seed per value there is no band, and the legend and title say "1 seed" (a difference
    between two points may then be noise). Ticks sit at the swept values; non-numeric parameter
    values are placed at equal spacing.

    ``baseline`` (same form as ``data``) is a curve of ours measured the same way, e.g. the
    baseline model at each missing rate: it shares the axis and gets its own band and dots.

    ``reference`` is a number or a ``{param value: metric}`` mapping measured elsewhere (the paper's
    value(s) on real data). It never shares our axis, so it cannot flatten our curve; ``reference_axis``:

    - ``"title"``: quoted in the title, not drawn;
    - ``"twin"``: dashed, on a secondary y-axis with its own scale, labelled ``reference_label``;
    - ``"auto"`` (default): ``"title"`` for a single value, ``"twin"`` for a curve.
    """
    if reference_axis not in ("auto", "title", "twin"):
        raise ValueError(f"reference_axis must be 'auto', 'title' or 'twin', got {reference_axis!r}; a curve "
                         "of ours measured like `data` goes in `baseline`")
    groups = _sweep_groups(data, param_name, metric)
    keys = list(groups)
    numeric = all(isinstance(k, numbers.Real) for k in keys)
    x = np.asarray(keys, dtype=np.float64) if numeric else np.arange(len(keys), dtype=np.float64)
    ref_points = None
    if isinstance(reference, Mapping):
        ref_points = {k: float(reference[k]) for k in (sorted(reference) if numeric else list(reference))}
        ref_x = _positions(list(ref_points), keys, numeric, "reference", param_name)
    if reference_axis == "auto":
        reference_axis = "twin" if ref_points is not None and len(ref_points) > 1 else "title"
    with style():
        fig, axes = new_figure(1, 1, PANEL_SIZE)
        ax = legend_ax = axes[0, 0]
        counts = _draw_runs(ax, groups, x, series_color(0), metric if baseline is None else "ours", "one seed")
        if baseline is not None:
            base = _sweep_groups(baseline, param_name, metric)
            _draw_runs(ax, base, _positions(list(base), keys, numeric, "baseline", param_name), series_color(1),
                       baseline_label, None if counts.max() > 1 else "one seed")
        handles, labels = ax.get_legend_handles_labels()
        heading = title if title is not None else f"{metric} vs {param_name}"
        if counts.max() == 1:
            heading += "\n1 seed per value: differences may be noise"
        if reference is not None and reference_axis == "title":
            heading += "\n" + _reference_text(reference if ref_points is None else ref_points, param_name,
                                              reference_label)
        elif reference is not None:
            legend_ax = ax.twinx()
            if ref_points is not None:
                legend_ax.plot(ref_x, list(ref_points.values()), color=REFERENCE_COLOR, linestyle="--", marker="x",
                               label=reference_label)
            else:
                legend_ax.axhline(float(reference), color=REFERENCE_COLOR, linestyle="--", label=reference_label)
            legend_ax.set_ylabel(f"{reference_label} ({metric}, own scale)", color=REFERENCE_COLOR)
            legend_ax.tick_params(axis="y", colors=REFERENCE_COLOR)
            extra_handles, extra_labels = legend_ax.get_legend_handles_labels()
            handles, labels = handles + extra_handles, labels + extra_labels
        if logx:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(x, [f"{k:g}" if numeric else str(k) for k in keys])
        ax.set_xlabel(param_name)
        ax.set_ylabel(metric)
        ax.grid(True, color="0.9")
        legend_ax.legend(handles, labels, loc="best")  # on the top axis, so no twin curve covers it
        ax.set_title(heading)
    return finish(fig, save)


def plot_curves(scores: pd.DataFrame, x: str, metric: str = "mAP", *, panel: str | None = None, line: str = "row",
                panel_titles: Mapping[object, str] | None = None, xlabel: str | None = None,
                title: str | None = None, save: str | Path | None = None) -> Figure:
    """``metric`` against ``x`` with one line per value of ``line`` (e.g. a method; mean over seeds, ± std band,
    a dot per seed) and one panel per value of ``panel`` (e.g. a degradation), sharing the y axis.

    ``scores`` holds one row per run and x value (the robustness curves of :mod:`reidlab.studies.robustness`).
    """
    missing = [c for c in (x, metric, line, *([panel] if panel else [])) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {', '.join(missing)}; has {', '.join(map(str, scores.columns))}")
    panels = list(scores[panel].unique()) if panel else [None]
    lines = list(scores[line].unique())
    with style():
        width = PANEL_SIZE[0] * (0.8 if len(panels) > 1 else 1.3)
        fig, axes = new_figure(1, len(panels), (width, PANEL_SIZE[1]))
        for ax, key in zip(axes[0], panels, strict=True):
            frame = scores if key is None else scores[scores[panel] == key]
            counts = np.zeros(1)
            for position, name in enumerate(lines):
                groups = _sweep_groups(frame[frame[line] == name], x, metric)
                counts = _draw_runs(ax, groups, np.asarray(list(groups), dtype=np.float64), series_color(position),
                                    str(name), None)
            ax.set_xticks(sorted(frame[x].unique()))
            ax.set_xlabel(xlabel or x)
            ax.grid(True, color="0.9")
            ax.set_title((panel_titles or {}).get(key, "" if key is None else str(key)))
        axes[0, 0].set_ylabel(metric)
        lows, highs = zip(*(ax.get_ylim() for ax in axes[0]), strict=True)
        for ax in axes[0]:   # one y scale for every panel, so the panels compare at a glance
            ax.set_ylim(min(lows), max(highs))
        for ax in axes[0, 1:]:
            ax.tick_params(labelleft=False)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(lines), 2 * len(panels)))
        heading = title or f"{metric} vs {x}"
        if counts.max() == 1:
            heading += "\n1 seed per point: differences may be noise"
        fig.suptitle(heading)
    return finish(fig, save)
