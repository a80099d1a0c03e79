"""The notebook side of a report: :class:`Report` records figures, tables, metrics and notes.

Inside a notebook (DESIGN §5)::

    report = Report(output_dir, notebook="00_getting_started")   # output_dir: the parameters cell
    report.figure(fig, "tsne")                    # figures/tsne.png
    report.table(ablation, "ablation")            # tables/ablation.csv + tables/ablation.md
    report.metric("mAP/fused", 0.61, headline=True)
    report.note("dataset", "synthetic rgbnt201 (seed 0)")

``output_dir=None`` (the stored default) writes into a fresh temporary directory, so JupyterLab and
nbval runs never touch ``reports/``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reidlab.fileio import write_atomic
from reidlab.viz.tables import FLOATFMT

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def write_json(path: Path, document: Mapping) -> Path:
    """``document`` as indented JSON (NaN refused), written atomically."""
    return write_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON: NumPy/torch scalars and arrays via ``item``/``tolist``; NaN and ±inf → None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, what) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return jsonable(value.item(), what)
    if hasattr(value, "tolist"):
        return jsonable(value.tolist(), what)
    raise TypeError(f"{what}: cannot store a {type(value).__name__} in metrics.json; "
                    "expected a number, string, bool, None, list or dict")


def check_name(name: str, what: str) -> str:
    """``name`` if it is a plain file or folder name (letters, digits, ``_``, ``-``); else a ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} name {name!r}: expected letters, digits, '_' or '-' (no extension, no folder)")
    return name


class Report:
    """Where a notebook records figures, tables, metrics and provenance notes.

    Files go under ``output_dir``: ``figures/<name>.png``, ``tables/<name>.csv`` and ``.md``, and
    ``metrics.json`` (``results``, ``headline``, ``notes``), rewritten atomically after every call.
    ``output_dir=None`` → a fresh temporary directory (never cleaned up; it lives in the OS temp dir).
    An existing ``metrics.json`` in ``output_dir`` is loaded and extended, so re-running cells in
    JupyterLab accumulates (the latest value of a name wins); ``reidlab report`` always starts from
    an empty folder, so reports never carry stale entries.
    """

    def __init__(self, output_dir: str | Path | None, notebook: str | None = None) -> None:
        if output_dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="reidlab-report-"))
        else:
            self.dir = Path(output_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
        self.notebook = notebook
        self._results: dict[str, Any] = {}
        self._headline: list[str] = []
        self._notes: dict[str, Any] = {}
        if self.metrics_path.exists():
            previous = json.loads(self.metrics_path.read_text())
            self._results.update(previous.get("results", {}))
            self._headline.extend(previous.get("headline", []))
            self._notes.update(previous.get("notes", {}))

    def __repr__(self) -> str:
        return f"Report({str(self.dir)!r}, notebook={self.notebook!r})"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def results(self) -> dict[str, Any]:
        """A copy of the recorded metrics."""
        return dict(self._results)

    @property
    def notes(self) -> dict[str, Any]:
        """A copy of the recorded provenance notes."""
        return dict(self._notes)

    def figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` (deterministic bytes) and return the path.

        Uses :func:`reidlab.viz.style.save_figure` (fixed dpi, no ``Software`` metadata, atomic).
        """
        from reidlab.viz.style import save_figure

        return save_figure(fig, self.dir / "figures" / f"{check_name(name, 'figure')}.png")

    def table(self, df: Any, name: str, caption: str | None = None, floatfmt: str = FLOATFMT) -> tuple[Path, Path]:
        """Save a DataFrame as ``tables/<name>.csv`` (full precision) and ``tables/<name>.md``.

        The Markdown comes from :func:`reidlab.viz.tables.to_markdown` (``DataFrame.to_markdown`` needs
        ``tabulate``) with floats as ``floatfmt`` and the caption as a bold line above the table. The
        index is written unless it is the default unnamed ``0..n-1`` range. A Series is saved as a
        one-column table. Returns ``(csv_path, markdown_path)``.
        """
        import pandas as pd

        from reidlab.viz.tables import to_markdown

        check_name(name, "table")
        if isinstance(df, pd.Series):
            df = df.to_frame()
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"table {name!r}: expected a pandas DataFrame or Series, got {type(df).__name__}")
        index = not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
                     and df.index.name is None)
        markdown = to_markdown(df, index=index, floatfmt=floatfmt)
        if caption:
            markdown = f"**{caption}**\n\n{markdown}"
        csv = df.to_csv(index=index, lineterminator="\n")
        folder = self.dir / "tables"
        return write_atomic(folder / f"{name}.csv", csv), write_atomic(folder / f"{name}.md", markdown)

    def metric(self, name: str, value: Any, *, headline: bool = False) -> None:
        """Record one result; ``headline=True`` also shows it in the ``reports/README.md`` index."""
        self.metrics({name: value}, headline=headline)

    def metrics(self, values: Mapping[str, Any], *, headline: bool = False) -> None:
        """Record several results (see :meth:`metric`); NaN and ±inf are stored as null."""
        for name, value in values.items():
            self._results[str(name)] = jsonable(value, f"metric {name!r}")
            if headline and str(name) not in self._headline:
                self._headline.append(str(name))
        self._save()

    def note(self, key: str, value: Any) -> None:
        """Record a provenance extra (seeds, dataset description, device actually used, ...)."""
        self._notes[str(key)] = jsonable(value, f"note {key!r}")
        self._save()

    def _save(self) -> None:
        write_json(self.metrics_path, {"notebook": self.notebook, "results": self._results,
                                       "headline": self._headline, "notes": self._notes})
