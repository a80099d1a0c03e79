"""Loaders for the six official on-disk formats, one module per benchmark.

Every format module exposes:

* ``NAME`` (str), ``MODALITIES`` (tuple of modality keys), ``PROTOCOL`` (default protocol name);
* ``load(root, **options) -> Split`` — parse the official tree under ``root`` (either the folder
  that contains the benchmark's top-level folder, or that folder itself);
* ``layout_problems(root) -> list[LayoutProblem]`` — typed problems with the tree's layout and
  file names (kind ``missing`` or ``misnamed``, the path, a readable message: missing folders,
  mis-named files, names that disagree across modality folders), empty when the layout is right.
  ``reidlab data verify`` reports them all at once, whereas ``load`` raises
  :class:`~reidlab.data.formats._common.LayoutError` (a
  :class:`~reidlab.data.records.DataFormatError`) at the first one.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from reidlab.data.records import DataFormatError, Split

BENCHMARKS: tuple[str, ...] = ("rgbnt201", "rgbnt100", "msvr310", "wmveid863", "sysu_mm01", "regdb")


def get_format(benchmark: str) -> ModuleType:
    """The format module of ``benchmark`` (case-insensitive)."""
    name = benchmark.lower().replace("-", "_")
    if name not in BENCHMARKS:
        raise DataFormatError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    return importlib.import_module(f"reidlab.data.formats.{name}")


def load_split(benchmark: str, root: str | Path, **options) -> Split:
    """Load ``benchmark`` from its official tree under ``root``; ``options`` go to its loader."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: dataset root does not exist or is not a folder")
    return get_format(benchmark).load(root, **options)
