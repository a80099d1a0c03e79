"""Ablation tables with mean ± std over seeds, and a dependency-free Markdown formatter.

Input is a long frame with one row per (table row, seed) run: a row-label column, a seed column
and one numeric column per metric (in percent). Rows keep their first-appearance order (an
ablation's order is meaningful); std is the sample standard deviation (ddof=1), as in
:func:`reidlab.eval.mean_std`; a cell from a single seed shows the mean alone (no spread was
measured) and a cell with no value shows "—".

One numeric format per table: :func:`ablation_table` writes every cell with the same number of
decimals, and :func:`to_markdown` formats every float with one fixed-point format
(:data:`FLOATFMT` unless told otherwise), never a significant-digits one such as ``.4g`` that
prints ``2``, ``1.593`` and ``0.1805`` in one column.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

EMPTY_CELL = "—"
#: Float format of a Markdown table: fixed-point, so a table has one precision (percent tables: ``.1f``).
FLOATFMT = ".2f"
#: A formatted number, optionally "± spread" (ablation cells): right-aligned like numbers.
_NUMBER_CELL = re.compile(r"[-+]?\d+(\.\d+)?( ± \d+(\.\d+)?)?")


def _metric_columns(records: pd.DataFrame, row: str, seed: str, metrics: Sequence[str] | None) -> list[str]:
    missing = [c for c in (row, seed, *(metrics or ())) if c not in records.columns]
    if missing:
        raise ValueError(f"records lack column(s) {', '.join(map(str, missing))}; "
                         f"have {', '.join(map(str, records.columns))}")
    if metrics is None:
        metrics = [c for c in records.columns if c not in (row, seed) and pd.api.types.is_numeric_dtype(records[c])]
    non_numeric = [c for c in metrics if not pd.api.types.is_numeric_dtype(records[c])]
    if not metrics or non_numeric:
        raise ValueError(f"need numeric metric columns; non-numeric: {non_numeric or 'none given'}")
    duplicated = records.duplicated([row, seed])
    if duplicated.any():
        first = records.loc[duplicated, [row, seed]].iloc[0].tolist()
        raise ValueError(f"records hold (row, seed) = {tuple(first)} more than once; expected one run per seed")
    return list(metrics)


def mean_std_frame(records: pd.DataFrame, *, row: str = "row", seed: str = "seed",
                   metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Numeric summary: index = row labels, columns = (metric, ``mean`` | ``std`` | ``n``).

    ``metrics`` defaults to every numeric column other than ``row`` and ``seed``. NaN values are
    skipped; ``std`` is NaN where fewer than two values exist.
    """
    metrics = _metric_columns(records, row, seed, metrics)
    grouped = records.groupby(row, sort=False)[metrics]
    parts = {"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}
    frame = pd.concat(parts, axis=1).swaplevel(axis=1)
    return frame[[(m, stat) for m in metrics for stat in ("mean", "std", "n")]]


def ablation_table(records: pd.DataFrame, *, row: str = "row", seed: str = "seed",
                   metrics: Sequence[str] | None = None, decimals: int = 1) -> pd.DataFrame:
    """Formatted table: index = row labels, one column per metric, cells ``"mean ± std"`` (``decimals`` places)."""
    stats = mean_std_frame(records, row=row, seed=seed, metrics=metrics)
    out = pd.DataFrame(index=stats.index)
    for metric in dict.fromkeys(stats.columns.get_level_values(0)):
        cells = []
        for mean, std, n in stats[metric][["mean", "std", "n"]].itertuples(index=False):
            if n == 0:
                cells.append(EMPTY_CELL)
            elif n == 1:
                cells.append(f"{mean:.{decimals}f}")
            else:
                cells.append(f"{mean:.{decimals}f} ± {std:.{decimals}f}")
        out[metric] = cells
    return out


def _cell(value: object, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        text = EMPTY_CELL if np.isnan(value) else format(value, floatfmt)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _right_aligned(column: pd.Series) -> bool:
    """Numbers, and text columns of formatted numbers ("71.0 ± 1.4", "—"), align right."""
    def number(cell: object) -> bool:
        if isinstance(cell, str):
            return cell == EMPTY_CELL or _NUMBER_CELL.fullmatch(cell) is not None
        return isinstance(cell, numbers.Real) and not isinstance(cell, (bool, np.bool_))

    return len(column) > 0 and all(number(c) for c in column)


def to_markdown(frame: pd.DataFrame, *, index: bool = True, floatfmt: str = FLOATFMT) -> str:
    """GitHub-flavoured Markdown pipe table of ``frame`` (no ``tabulate`` needed).

    Floats use ``floatfmt`` (NaN → "—"); pass a fixed-point format (``.1f``, ``.2f``) so the table
    has one precision. MultiIndex column levels are joined with a space; ``|`` in cells is escaped.
    Numeric columns and columns of formatted numbers (:func:`ablation_table` cells) are
    right-aligned. The index becomes the first column (headed by its name) unless ``index=False``.
    """
    headers = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame.columns]
    rows = [[_cell(v, floatfmt) for v in values] for values in frame.itertuples(index=False, name=None)]
    if index:
        headers = [str(frame.index.name or "")] + headers
        labels = [" ".join(map(str, i)) if isinstance(i, tuple) else i for i in frame.index]
        rows = [[_cell(label, floatfmt)] + r for label, r in zip(labels, rows, strict=True)]
    numeric = [_right_aligned(frame.iloc[:, i]) for i in range(frame.shape[1])]
    aligns = ([False] if index else []) + numeric
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |",
             "|" + "|".join("---:" if right else "---" for right in aligns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
