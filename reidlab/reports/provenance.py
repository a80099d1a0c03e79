"""What a report records about its run: git state, the machine, package versions, the notebook's defaults."""

from __future__ import annotations

import ast
import functools
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions ``metrics.json`` records (plus the Python version).
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "grad-cam", "numpy", "papermill", "reidlab")


def git_state(exclude: Path | None = None, repo: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "repository"}`` of the git repository holding ``repo`` (default: the reidlab checkout).

    ``repo`` may be any folder inside a repository (a notebook's folder): its top level is found, and
    ``repository`` is that top level. Changes under ``exclude`` (the reports folder being regenerated)
    do not make the tree dirty; untracked files that git does not ignore do. Outside a repository (a
    notebook kept elsewhere, an installed package) all three are None: "not in a repository".
    """
    start = Path(repo).resolve() if repo is not None else Path(__file__).resolve().parents[2]

    def git(where: Path, *args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout

    toplevel = git(start, "rev-parse", "--show-toplevel")
    commit = git(start, "rev-parse", "HEAD") if toplevel is not None else None
    if toplevel is None or commit is None:
        return {"commit": None, "dirty": None, "repository": None}
    top = Path(toplevel.strip()).resolve()
    pathspec = ["--", "."]
    if exclude is not None and exclude.resolve().is_relative_to(top):
        pathspec.append(f":(exclude){exclude.resolve().relative_to(top).as_posix()}")
    status = git(top, "status", "--porcelain", *pathspec)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip()),
            "repository": str(top)}


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


def python_source(source: str) -> str:
    """A code cell's source with IPython magic and shell lines (``%...``, ``!...``) blanked, for ``ast``."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def parameter_defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal defaults of a notebook's ``parameters``-tagged cell (non-literal assignments skipped)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
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
