"""The papers' own reported numbers, quoted exactly as printed, kept apart from our results.

One YAML file per paper (``reidlab/papers/<name>.yaml``): its tables, each with a caption, the
datasets and metrics it reports, and its rows as printed. :func:`paper_results` turns a file into
a tidy frame, one row per (table, dataset, setting), so a notebook can show the paper's numbers
*beside* ours — never merged into our tables, since ours are synthetic and the paper's are on the
real benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

PAPERS_DIR = Path(__file__).resolve().parent
#: Columns of :func:`paper_results` before the metrics.
LABEL_COLUMNS: tuple[str, ...] = ("table", "dataset", "setting", "group", "backbone", "ref", "detail")


def available_papers() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.yaml"))


def paper_spec(name: str) -> dict[str, Any]:
    """The raw YAML document of paper ``name`` (title, notes, tables)."""
    path = PAPERS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no reported numbers for paper {name!r}; available: {', '.join(available_papers())}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def paper_results(name: str, table: int | None = None) -> pd.DataFrame:
    """The numbers paper ``name`` reports, one row per (table, dataset, setting), metrics in percent.

    Columns: ``table``, ``dataset``, ``setting`` (the row label as printed), ``group``, ``backbone``,
    ``ref``, ``detail`` (empty where the table has none), one column per metric (NaN where that table
    does not report it) and ``note`` (a doubt about the row, else empty). ``table`` keeps one table.
    """
    rows = []
    for spec in paper_spec(name)["tables"]:
        if table is not None and spec["table"] != table:
            continue
        for row in spec["rows"]:
            for dataset in spec["datasets"]:
                values = row[dataset]
                if len(values) != len(spec["metrics"]):
                    raise ValueError(f"{name}.yaml table {spec['table']} row {row['setting']!r}: {len(values)} "
                                     f"values for metrics {spec['metrics']}")
                labels = {c: row.get(c, "") for c in LABEL_COLUMNS[2:]}
                rows.append({"table": spec["table"], "dataset": dataset, **labels,
                             **dict(zip(spec["metrics"], values, strict=True)), "note": row.get("note", "")})
    if not rows:
        raise ValueError(f"paper {name!r} has no table {table}")
    frame = pd.DataFrame(rows)
    metrics = [c for c in frame.columns if c not in (*LABEL_COLUMNS, "note")]
    return frame[[*LABEL_COLUMNS, *metrics, "note"]]
