"""The ``reports/README.md`` index: one table per profile of every report's status and headline results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reidlab.fileio import write_atomic

#: How many results the index shows when a notebook marked no headline metric.
INDEX_RESULTS = 3


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``3 min 52 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


_INDEX_HEADER = """# Reports

Executed notebooks and what they recorded, one folder per `<profile>/<notebook>/`: the executed
notebook, `figures/` (PNG), `tables/` (CSV + Markdown) and `metrics.json` (results and provenance:
git commit, profile, dataset, device, seeds, package versions, wall time). This file is rewritten by
`reidlab report` (`make report`); do not edit it. Results on the synthetic default datasets are
synthetic and are not comparable with the papers' numbers.
"""


def _format_value(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def _headline(document: Mapping[str, Any]) -> str:
    results = document.get("results", {})
    names = [n for n in document.get("headline", []) if n in results]
    if not names:
        names = [n for n, v in results.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
        names = names[:INDEX_RESULTS]
    return "; ".join(f"{n} = {_format_value(results[n])}" for n in names).replace("|", "\\|")


def _dataset_label(document: Mapping[str, Any]) -> str:
    described = document.get("notes", {}).get("dataset")
    if described:
        return str(described)
    return str(document["dataset"]) if document.get("dataset") else "synthetic (notebook default)"


def _commit_label(git: Mapping[str, Any] | None) -> str:
    if not git or not git.get("commit"):
        return "not in a repository" if git and "repository" in git else "unknown"
    return git["commit"][:10] + ("-dirty" if git.get("dirty") else "")


def _read_report(folder: Path) -> dict[str, Any]:
    try:
        document = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        return {"status": "unreadable", "error": f"metrics.json: {e}"}
    return document if isinstance(document, dict) else {"status": "unreadable", "error": "metrics.json: not an object"}


def render_index(reports_root: str | Path = "reports") -> str:
    """The Markdown index of every ``<profile>/<notebook>/metrics.json`` under ``reports_root``.

    One table per profile (profiles and notebooks in name order), then per report the links to the
    executed notebook, figures and tables, and the error of a failed run. Deterministic: it depends
    only on the files present.
    """
    root = Path(reports_root)
    folders = sorted(p.parent for p in root.glob("*/*/metrics.json")
                     if not p.parent.name.startswith(".") and not p.parent.parent.name.startswith("."))
    if not folders:
        return _INDEX_HEADER + "\nNo reports yet: run `make report`.\n"
    lines = [_INDEX_HEADER]
    for profile in sorted({f.parent.name for f in folders}):
        lines += [f"## Profile `{profile}`", "",
                  "| notebook | status | dataset | wall time | commit | started (UTC) | headline results |",
                  "|---|---|---|---:|---|---|---|"]
        details = []
        for folder in (f for f in folders if f.parent.name == profile):
            doc = _read_report(folder)
            rel = folder.relative_to(root).as_posix()
            status = doc.get("status", "unknown")
            executed = folder / str(doc.get("notebook") or f"{folder.name}.ipynb")
            name = f"[{folder.name}]({rel}/{executed.name})" if executed.exists() else folder.name
            wall = doc.get("wall_time_s")
            lines.append(" | ".join([
                f"| {name}", "ok" if status == "ok" else f"**{status.upper()}**", _dataset_label(doc),
                format_duration(wall) if isinstance(wall, (int, float)) else "", _commit_label(doc.get("git")),
                str(doc.get("started_utc", "")).replace("T", " ")[:16], _headline(doc) + " |"]))
            details += [f"### {profile} / {folder.name}", ""]
            if status != "ok":
                details += [f"**{status.upper()}**: {doc.get('error') or 'no error recorded'}", ""]
            links = [f"[executed notebook]({rel}/{executed.name})"] if executed.exists() else []
            links.append(f"[metrics.json]({rel}/metrics.json)")
            details += ["- " + " · ".join(links)]
            figures = sorted(p.name for p in (folder / "figures").glob("*.png"))
            if figures:
                details.append("- figures: " + ", ".join(f"[{Path(n).stem}]({rel}/figures/{n})" for n in figures))
            tables = sorted(p.stem for p in (folder / "tables").glob("*.md"))
            if tables:
                details.append("- tables: " + ", ".join(
                    f"[{t}]({rel}/tables/{t}.md) ([csv]({rel}/tables/{t}.csv))" for t in tables))
            details.append("")
        lines += ["", *details]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_index(reports_root: str | Path = "reports") -> Path:
    """Rewrite ``reports_root/README.md`` with :func:`render_index` (atomically) and return its path."""
    return write_atomic(Path(reports_root) / "README.md", render_index(reports_root))
