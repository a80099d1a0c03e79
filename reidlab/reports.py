"""Reports: what a notebook records, how ``reidlab report`` executes notebooks, and the index.

Inside a notebook (DESIGN §5)::

    report = Report(output_dir, notebook="00_getting_started")   # output_dir: the parameters cell
    report.figure(fig, "tsne")                    # figures/tsne.png
    report.table(ablation, "ablation")            # tables/ablation.csv + tables/ablation.md
    report.metric("mAP/fused", 0.61, headline=True)
    report.note("dataset", "synthetic rgbnt201 (seed 0)")

``output_dir=None`` (the stored default) writes into a fresh temporary directory, so JupyterLab and
nbval runs never touch ``reports/``. :func:`run_notebooks` executes notebooks with papermill into
``reports/<profile>/<notebook stem>/`` — the executed notebook, ``figures/``, ``tables/`` and
``metrics.json`` completed with provenance (git commit, profile, dataset, device, seeds, package
versions, wall time, status) — and rewrites ``reports/README.md`` (:func:`write_index`).

Choices:

- A run executes into a hidden staging folder beside its report folder and then replaces the report
  folder (rename old away, rename staging in, delete old), so a report is never half-written. The
  staging path is rewritten to the final path in the executed notebook and ``metrics.json``.
- A **failed** run also replaces the report folder: ``reports/`` always shows the last run of the
  current code (a stale success would claim results the code no longer produces; git keeps the old
  one). Its ``metrics.json`` says ``"status": "failed"`` with the error, the executed notebook shows
  the failing cell, and the index marks it **FAILED**.
- Notebooks run in their own folder as working directory (as in JupyterLab and nbval) on the kernel
  ``python3`` resolved to *this* interpreter (what nbval's ``--nbval-current-env`` does), so a
  user-level ``python3`` kernelspec pointing at another Python cannot hijack the run.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: Notebooks ``reidlab report`` runs when none are named: ``notebooks/NN_name.ipynb``.
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
#: Parameters :func:`run_notebooks` always injects (the CLI has a flag for each).
INJECTED_PARAMETERS = ("profile", "dataset", "data_root", "output_dir")
#: Distributions whose versions ``metrics.json`` records (plus the Python version).
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "grad-cam", "numpy", "papermill", "reidlab")
#: How many results the index shows when a notebook marked no headline metric.
INDEX_RESULTS = 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask: temp files are created 0600, reports get ordinary permissions


# --------------------------------------------------------------------------- writing files


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_json(path: Path, document: Mapping) -> Path:
    return _atomic_write(path, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON: NumPy/torch scalars and arrays via ``item``/``tolist``; NaN and ±inf → None."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return _jsonable(value.item(), what)
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist(), what)
    raise TypeError(f"{what}: cannot store a {type(value).__name__} in metrics.json; "
                    "expected a number, string, bool, None, list or dict")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} name {name!r}: expected letters, digits, '_' or '-' (no extension, no folder)")
    return name


# --------------------------------------------------------------------------- the notebook side


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

        return save_figure(fig, self.dir / "figures" / f"{_check_name(name, 'figure')}.png")

    def table(self, df: Any, name: str, caption: str | None = None, floatfmt: str = ".4g") -> tuple[Path, Path]:
        """Save a DataFrame as ``tables/<name>.csv`` (full precision) and ``tables/<name>.md``.

        The Markdown comes from :func:`reidlab.viz.tables.to_markdown` (``DataFrame.to_markdown`` needs
        ``tabulate``) with floats as ``floatfmt`` and the caption as a bold line above the table. The
        index is written unless it is the default unnamed ``0..n-1`` range. A Series is saved as a
        one-column table. Returns ``(csv_path, markdown_path)``.
        """
        import pandas as pd

        from reidlab.viz.tables import to_markdown

        _check_name(name, "table")
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
        return (_atomic_write(folder / f"{name}.csv", csv.encode()),
                _atomic_write(folder / f"{name}.md", markdown.encode()))

    def metric(self, name: str, value: Any, *, headline: bool = False) -> None:
        """Record one result; ``headline=True`` also shows it in the ``reports/README.md`` index."""
        self.metrics({name: value}, headline=headline)

    def metrics(self, values: Mapping[str, Any], *, headline: bool = False) -> None:
        """Record several results (see :meth:`metric`); NaN and ±inf are stored as null."""
        for name, value in values.items():
            self._results[str(name)] = _jsonable(value, f"metric {name!r}")
            if headline and str(name) not in self._headline:
                self._headline.append(str(name))
        self._save()

    def note(self, key: str, value: Any) -> None:
        """Record a provenance extra (seeds, dataset description, device actually used, ...)."""
        self._notes[str(key)] = _jsonable(value, f"note {key!r}")
        self._save()

    def _save(self) -> None:
        _write_json(self.metrics_path, {"notebook": self.notebook, "results": self._results,
                                        "headline": self._headline, "notes": self._notes})


# --------------------------------------------------------------------------- provenance


def git_state(exclude: Path | None = None, repo: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of ``repo`` (default: the checkout holding reidlab).

    Changes under ``exclude`` (the reports folder being regenerated) do not make the tree dirty;
    untracked files that git does not ignore do. Outside a git checkout (an installed package) both are None.
    """
    top = Path(repo).resolve() if repo is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    pathspec = ["--", "."]
    if exclude is not None and exclude.resolve().is_relative_to(top):
        pathspec.append(f":(exclude){exclude.resolve().relative_to(top).as_posix()}")
    status = git("status", "--porcelain", *pathspec)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


_DEVICE_PROBE = """
import json, os, platform
info = {"cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform()}
import torch
cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
info.update(name=cuda[0] if cuda else "cpu", cuda_devices=cuda, cuda_version=torch.version.cuda)
print(json.dumps(info))
"""


@functools.lru_cache(maxsize=1)
def device_info() -> dict[str, Any]:
    """The machine: ``name`` (first CUDA device or "cpu"), ``cuda_devices``, ``cpu_count``, ``platform``.

    Probed in a child process so this process never creates a CUDA context (which would hold GPU
    memory while notebooks run).
    """
    done = subprocess.run([sys.executable, "-c", _DEVICE_PROBE], capture_output=True, text=True)
    if done.returncode != 0:
        return {"name": "unknown", "cpu_count": os.cpu_count(), "platform": platform.platform(),
                "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "device probe failed"}
    return json.loads(done.stdout)


def package_versions() -> dict[str, str | None]:
    """Python and :data:`VERSIONED_PACKAGES` versions (None for a package that is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _parameters_cell(nb: Any) -> Any | None:
    return next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)


def python_source(source: str) -> str:
    """A code cell's source with IPython magic and shell lines (``%...``, ``!...``) blanked, for ``ast``."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def parameter_defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal defaults of a notebook's ``parameters``-tagged cell (non-literal assignments skipped)."""
    import nbformat

    cell = _parameters_cell(nbformat.read(notebook, as_version=4))
    defaults: dict[str, Any] = {}
    for node in ast.parse(python_source(cell.source)).body if cell is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and value is not None:
            try:
                defaults[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError):
                continue
    return defaults


# --------------------------------------------------------------------------- running notebooks


@dataclass(frozen=True)
class NotebookRun:
    """Outcome of one notebook run: the source, its report folder, ``"ok"``/``"failed"``, wall time."""

    notebook: Path
    report_dir: Path
    status: str
    error: str | None
    wall_time_s: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def executed(self) -> Path:
        """The executed notebook (absent when the run failed before execution started)."""
        return self.report_dir / self.notebook.name

    def describe(self) -> str:
        """One line for a terminal: status, notebook, wall time, report folder (and the error)."""
        line = f"{'ok' if self.ok else 'FAILED':<6}  {self.notebook.stem:<24} {format_duration(self.wall_time_s):>10}  "
        line += _display_path(self.report_dir)
        return line if self.ok else f"{line}\n        {self.error}"


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``3 min 52 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def find_notebooks(directory: str | Path = "notebooks") -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` of ``directory``, in order."""
    return sorted(Path(directory).glob(NOTEBOOK_PATTERN))


@functools.lru_cache(maxsize=1)
def _current_env_kernel_manager() -> type:
    """A KernelManager whose ``python3`` kernel is this interpreter (ipykernel's own spec, as nbval does).

    It also asks for CurveZMQ transport encryption where the kernel supports it (ipykernel 7 warns otherwise).
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            if kernel_name == NATIVE_KERNEL_NAME:
                return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    class CurrentEnvKernelManager(KernelManager):
        @default("kernel_spec_manager")
        def _current_env_specs(self) -> KernelSpecManager:
            return CurrentEnvKernelSpecManager(data_dir=self.data_dir)

        @default("transport_encryption")
        def _encrypt_when_supported(self) -> str:  # CurveZMQ keys when the kernel supports them
            return "auto"

    return CurrentEnvKernelManager


def _error_summary(error: BaseException) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename is not None:  # papermill.PapermillExecutionError: the exception raised inside the notebook
        first = (str(evalue).strip().splitlines() or [""])[0][:300]
        return f"{ename}: {first} (cell [{error.exec_count}])" if first else f"{ename} (cell [{error.exec_count}])"
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"


def _rename_mentions(path: Path, old: Path, new: Path) -> None:
    """Replace the staging path by the final one in a text file (JSON-escaped form)."""
    if path.exists():
        text = path.read_text()
        needle, replacement = json.dumps(str(old))[1:-1], json.dumps(str(new))[1:-1]
        if needle in text:
            _atomic_write(path, text.replace(needle, replacement).encode())


def _replace_folder(staging: Path, final: Path) -> None:
    """Move ``staging`` to ``final``, replacing it: rename old away, rename new in, delete old."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old)


def _complete_metrics(staging: Path, final: Path, notebook: Path, status: str, error: str | None,
                      started: datetime, wall: float, parameters: dict[str, Any], git: dict[str, Any]) -> None:
    """Rewrite the notebook's ``metrics.json`` with provenance first and what it recorded after."""
    path = staging / "metrics.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    notes = recorded.get("notes", {})
    _write_json(path, {
        "notebook": notebook.name,
        "status": status,
        "error": error,
        "profile": parameters["profile"],
        "dataset": parameters["dataset"],
        "data_root": parameters["data_root"],
        "seeds": notes.get("seeds", parameters.get("seeds")),
        "device": device_info(),
        "git": git,
        "versions": package_versions(),
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_time_s": round(wall, 3),
        "parameters": _jsonable({**parameters, "output_dir": str(final)}, "parameters"),
        "figures": sorted(p.relative_to(staging).as_posix() for p in staging.glob("figures/*.png")),
        "tables": sorted(p.relative_to(staging).as_posix() for p in staging.glob("tables/*.md")),
        "headline": recorded.get("headline", []),
        "results": recorded.get("results", {}),
        "notes": notes,
    })


def _run_one(notebook: Path, profile_dir: Path, parameters: dict[str, Any], git: dict[str, Any],
             kernel_name: str | None, log_output: bool, progress: bool) -> NotebookRun:
    import papermill

    final = profile_dir / notebook.stem
    for pattern in (f".{notebook.stem}.staging-*", f".{notebook.stem}.old-*"):  # left by an interrupted run
        for leftover in profile_dir.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{notebook.stem}.staging-", dir=profile_dir))
    try:
        started, clock = datetime.now(timezone.utc), time.perf_counter()
        status, error, defaults = "ok", None, {}
        try:
            defaults = parameter_defaults(notebook)
            papermill.execute_notebook(
                notebook, staging / notebook.name, parameters={**parameters, "output_dir": str(staging)},
                kernel_name=kernel_name, cwd=notebook.parent, progress_bar=progress, log_output=log_output,
                kernel_manager_class=_current_env_kernel_manager())
        except Exception as e:  # noqa: BLE001 - any failure is recorded; the other notebooks still run
            status, error = "failed", _error_summary(e)
        wall = time.perf_counter() - clock
        for written in (staging / notebook.name, staging / "metrics.json"):
            _rename_mentions(written, staging, final)
        _complete_metrics(staging, final, notebook, status, error, started, wall, {**defaults, **parameters}, git)
        for written in [staging, *staging.rglob("*")]:  # temp files and folders are created 0600/0700
            written.chmod((0o777 if written.is_dir() else 0o666) & ~_UMASK)
        _replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return NotebookRun(notebook, final, status, error, wall)


def run_notebooks(notebooks: Iterable[str | Path], *, profile: str = "tutorial", dataset: str | None = None,
                  data_root: str | Path | None = None, parameters: Mapping[str, Any] | None = None,
                  reports_root: str | Path = "reports", kernel_name: str | None = None,
                  log_output: bool = False, progress: bool = False) -> list[NotebookRun]:
    """Execute notebooks with papermill into ``reports_root/<profile>/<stem>/`` and rewrite the index.

    Injects ``profile``, ``dataset``, ``data_root`` (made absolute: notebooks run in their own folder)
    and ``output_dir`` (the report folder, absolute) plus ``parameters``. Each run's ``metrics.json``
    gets provenance and a status; a failing notebook is recorded and the next one still runs. The
    kernel is ``kernel_name`` or the notebook's own (``python3`` = this interpreter, see the module
    docstring). ``progress`` shows papermill's per-cell bar and a line per notebook on stderr.
    """
    paths = [Path(nb).resolve() for nb in notebooks]
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"{path}: not a notebook file (expected an existing .ipynb)")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"two notebooks share a name; their reports would collide: {sorted(stems)}")
    extra = dict(parameters or {})
    for key in extra:
        if key in INJECTED_PARAMETERS or not key.isidentifier():
            raise ValueError(f"parameter {key!r}: expected a Python identifier other than "
                             f"{', '.join(INJECTED_PARAMETERS)} (those have their own arguments)")
    injected = {"profile": profile, "dataset": dataset,
                "data_root": None if data_root is None else str(Path(data_root).expanduser().resolve()), **extra}
    root = Path(reports_root).resolve()
    profile_dir = root / _check_name(profile, "profile")
    profile_dir.mkdir(parents=True, exist_ok=True)
    git = git_state(exclude=root)
    runs = []
    for number, path in enumerate(paths, 1):
        if progress:
            print(f"[{number}/{len(paths)}] {_display_path(path)} (profile {profile})", file=sys.stderr, flush=True)
        runs.append(_run_one(path, profile_dir, injected, git, kernel_name, log_output, progress))
        write_index(root)
    return runs


# --------------------------------------------------------------------------- the index

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
        return "unknown"
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
    return _atomic_write(Path(reports_root) / "README.md", render_index(reports_root).encode())
