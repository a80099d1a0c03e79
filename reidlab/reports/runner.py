"""``reidlab report``: execute notebooks with papermill into report folders, with provenance.

:func:`run_notebooks` executes notebooks into ``reports/<profile>/<notebook stem>/`` — the executed
notebook, ``figures/``, ``tables/`` and ``metrics.json`` completed with provenance (git commit,
profile, dataset, device, seeds, package versions, wall time, status) — and rewrites
``reports/README.md`` (:func:`reidlab.reports.index.write_index`).

Choices:

- A run executes into a hidden staging folder beside its report folder and then replaces the report
  folder (rename old away, rename staging in, delete old), so a report is never half-written.
- **No machine paths in a report.** The executed notebook and ``metrics.json`` are committed, so after
  the run every path in them (cell sources, outputs, papermill metadata, provenance) is rewritten:
  the staging folder becomes the report folder; the *project root* — the deepest folder holding the
  reports folder and every notebook run, i.e. the repository for ``make report`` — becomes ``.``
  (``./reports/tutorial/01_coen``, ``./data/...``); then the home folder becomes ``~``
  (``~/.cache/reidlab/synthetic/...``). Paths are replaced whole (not inside a longer name). Other
  absolute paths (an explicit ``--data-root /data/reid``) are kept: they say where the data was.
  The notebook itself still gets absolute ``output_dir`` and ``data_root`` (it runs in its own folder).
- A **failed** run also replaces the report folder: ``reports/`` always shows the last run of the
  current code (a stale success would claim results the code no longer produces; git keeps the old
  one). Its ``metrics.json`` says ``"status": "failed"`` with the error, the executed notebook shows
  the failing cell, and the index marks it **FAILED**.
- Notebooks run in their own folder as working directory (as in JupyterLab and nbval) on the kernel
  ``python3`` resolved to *this* interpreter (what nbval's ``--nbval-current-env`` does), so a
  user-level ``python3`` kernelspec pointing at another Python cannot hijack the run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reidlab.fileio import make_unique_dir, write_atomic
from reidlab.reports.index import format_duration, write_index
from reidlab.reports.provenance import device_info, git_state, package_versions, parameter_defaults
from reidlab.reports.report import check_name, jsonable, write_json

#: Notebooks ``reidlab report`` runs when none are named: ``notebooks/NN_name.ipynb``.
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
#: Parameters :func:`run_notebooks` always injects (the CLI has a flag for each).
INJECTED_PARAMETERS = ("profile", "dataset", "data_root", "output_dir", "scope")
#: A paper notebook's sizes: its short lecture (the notebook's default: nbval, JupyterLab) or its full study.
SCOPES = ("lecture", "full")


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


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def find_notebooks(directory: str | Path = "notebooks") -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` of ``directory``, in order."""
    return sorted(Path(directory).glob(NOTEBOOK_PATTERN))


def portable_paths(text: str, replacements: Sequence[tuple[Path, str]]) -> str:
    """``text`` with each absolute path of ``replacements`` replaced by its short form, in order.

    A path is replaced only as a whole (``/a/b`` in ``/a/b/c`` or ``"/a/b"``, not in ``/a/bc`` or
    ``/x/a/b``), in its plain and JSON-escaped spellings, so the text may be a JSON document.
    """
    for path, short in replacements:
        for ascii_only in (True, False):
            needle = json.dumps(str(path), ensure_ascii=ascii_only)[1:-1]
            replacement = json.dumps(short, ensure_ascii=ascii_only)[1:-1]
            pattern = rf"(?<![\w.~/-]){re.escape(needle)}(?![\w-]|\.\w)"
            text = re.sub(pattern, replacement.replace("\\", r"\\"), text)
    return text


def project_root(reports_root: Path, notebooks: Iterable[Path]) -> Path | None:
    """The deepest folder holding ``reports_root`` and every notebook; None when that is ``/`` itself."""
    common = Path(os.path.commonpath([reports_root, *(nb.parent for nb in notebooks)]))
    return None if common == Path(common.anchor) else common


def _path_replacements(staging: Path, final: Path, root: Path | None) -> list[tuple[Path, str]]:
    """What :func:`portable_paths` rewrites in a report (see the module docstring), in order."""
    home = Path.home()
    replacements = [(staging, str(final))]
    if root is not None:
        replacements.append((root, "."))
    if home != Path(home.anchor):
        replacements.append((home, "~"))
    return replacements


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


def _replace_folder(staging: Path, final: Path) -> None:
    """Move ``staging`` to ``final``, replacing it: rename old away, rename new in, delete old."""
    old = None
    if final.exists():
        old = make_unique_dir(final.parent, f".{final.name}.old-")
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
    write_json(path, {
        "notebook": notebook.name,
        "status": status,
        "error": error,
        "profile": parameters["profile"],
        "dataset": parameters["dataset"],
        "data_root": parameters["data_root"],
        "seeds": notes.get("seeds", parameters.get("seeds")),
        "device": device_info(),
        "git": git,  # the notebook's own repository (git_state of its folder), not the working directory's
        "versions": package_versions(),
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_time_s": round(wall, 3),
        "parameters": jsonable({**parameters, "output_dir": str(final)}, "parameters"),
        "figures": sorted(p.relative_to(staging).as_posix() for p in staging.glob("figures/*.png")),
        "tables": sorted(p.relative_to(staging).as_posix() for p in staging.glob("tables/*.md")),
        "headline": recorded.get("headline", []),
        "results": recorded.get("results", {}),
        "notes": notes,
    })


def _run_one(notebook: Path, profile_dir: Path, root: Path | None, parameters: dict[str, Any], scope: str | None,
             git: dict[str, Any], kernel_name: str | None, log_output: bool, progress: bool) -> NotebookRun:
    import papermill

    final = profile_dir / notebook.stem
    for pattern in (f".{notebook.stem}.staging-*", f".{notebook.stem}.old-*"):  # left by an interrupted run
        for leftover in profile_dir.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = make_unique_dir(profile_dir, f".{notebook.stem}.staging-")
    try:
        started, clock = datetime.now(UTC), time.perf_counter()
        status, error, defaults = "ok", None, {}
        try:
            defaults = parameter_defaults(notebook)
            if scope is not None and "scope" in defaults:
                parameters = {**parameters, "scope": scope}
            papermill.execute_notebook(
                notebook, staging / notebook.name, parameters={**parameters, "output_dir": str(staging)},
                kernel_name=kernel_name, cwd=notebook.parent, progress_bar=progress, log_output=log_output,
                kernel_manager_class=_current_env_kernel_manager())
        except Exception as e:  # noqa: BLE001 - any failure is recorded; the other notebooks still run
            status, error = "failed", _error_summary(e)
        wall = time.perf_counter() - clock
        _complete_metrics(staging, final, notebook, status, error, started, wall, {**defaults, **parameters}, git)
        replacements = _path_replacements(staging, final, root)
        for written in (staging / notebook.name, staging / "metrics.json"):
            if written.exists():
                write_atomic(written, portable_paths(written.read_text(), replacements))
        _replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return NotebookRun(notebook, final, status, error, wall)


def run_notebooks(notebooks: Iterable[str | Path], *, profile: str = "tutorial", dataset: str | None = None,
                  data_root: str | Path | None = None, parameters: Mapping[str, Any] | None = None,
                  reports_root: str | Path = "reports", kernel_name: str | None = None,
                  log_output: bool = False, progress: bool = False, scope: str | None = None) -> list[NotebookRun]:
    """Execute notebooks with papermill into ``reports_root/<profile>/<stem>/`` and rewrite the index.

    Injects ``profile``, ``dataset``, ``data_root`` (made absolute: notebooks run in their own folder)
    and ``output_dir`` (the report folder, absolute) plus ``parameters``. Each run's ``metrics.json``
    gets provenance and a status; a failing notebook is recorded and the next one still runs. Paths in
    the written report are made portable (module docstring). The kernel is ``kernel_name`` or the
    notebook's own (``python3`` = this interpreter). ``progress`` shows papermill's per-cell bar and a
    line per notebook on stderr. ``scope`` (``"lecture"`` or ``"full"``) is injected into the notebooks whose
    parameters cell declares a ``scope``: a paper notebook's default is its short lecture, ``"full"`` adds every
    ablation seed, control and sweep of its study; a notebook without the parameter has one size.
    """
    if scope not in (None, *SCOPES):
        raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
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
    profile_dir = root / check_name(profile, "profile")
    profile_dir.mkdir(parents=True, exist_ok=True)
    project = project_root(root, paths)
    runs = []
    for number, path in enumerate(paths, 1):
        if progress:
            print(f"[{number}/{len(paths)}] {_display_path(path)} (profile {profile})", file=sys.stderr, flush=True)
        git = git_state(exclude=root, repo=path.parent)
        runs.append(_run_one(path, profile_dir, project, injected, scope, git, kernel_name, log_output, progress))
        write_index(root)
    return runs
