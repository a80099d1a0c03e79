"""RGBNT100 (Li et al., AAAI 2020): multi-spectral vehicle ReID, RGB + NIR + TIR, 100 vehicles.

Official layout, as the reference code (TOP-ReID, EDITOR, MambaPro) reads it::

    RGBNT100/rgbir/
      bounding_box_train/<pid>_c<cam>_<n>.jpg     50 ids, 8675 samples
      query/<pid>_c<cam>_<n>.jpg                  1715 samples
      bounding_box_test/<pid>_c<cam>_<n>.jpg      50 ids, 8575 samples

Each JPEG holds the three modalities side by side, RGB | NIR | TIR (768 x 128: three 256 x 128
tiles; the reference crops x = 0-256, 256-512, 512-768). Records therefore point at the same file
three times, as ``ImageRef(path, tile=i, num_tiles=3)``. ``pid`` and the camera number are the
integers of the ``([-\\d]+)_c([-\\d]+)`` match of the reference (``0502_c0001_000.jpg``: pid 502,
camera 1); ``camid`` is the camera number minus one (8 cameras -> 0..7). Protocol ``market``.
"""

from __future__ import annotations

import re
from pathlib import Path

from reidlab.data.formats._common import (
    LayoutProblem,
    Problems,
    check_names,
    collect_problems,
    find_dataset_dir,
    list_dir,
    require_dir,
)
from reidlab.data.records import NIR, RGB, TIR, ImageRef, Record, Split

NAME = "rgbnt100"
MODALITIES = (RGB, NIR, TIR)
PROTOCOL = "market"
DATASET_DIR = "RGBNT100"
IMAGE_DIR = "rgbir"
PART_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_PATTERN = re.compile(r"(?P<pid>\d+)_c(?P<cam>\d+)_(?P<n>\d+)\.jpg")
NAME_FORMAT = "<pid>_c<cam>_<n>.jpg"


def load(root: str | Path) -> Split:
    """Load RGBNT100 from its official tree. ``Split.info`` is empty (the benchmark has no options)."""
    dataset_dir, parts = _scan(root, Problems(fail_fast=True))
    return Split(NAME, dataset_dir, parts["train"], parts["query"], parts["gallery"], PROTOCOL, MODALITIES, {})


def layout_problems(root: str | Path) -> list[LayoutProblem]:
    """Every layout and naming problem of the tree under ``root`` (empty when it is valid)."""
    return collect_problems(lambda problems: _scan(root, problems))


def _scan(root: str | Path, problems: Problems) -> tuple[Path, dict[str, list[Record]]]:
    dataset_dir = find_dataset_dir(root, DATASET_DIR, (IMAGE_DIR,))
    image_dir = require_dir(dataset_dir, IMAGE_DIR, "image", problems)
    parts = {part: [] if image_dir is None else _part_records(image_dir, sub, problems)
             for part, sub in PART_DIRS.items()}
    return dataset_dir, parts


def _part_records(image_dir: Path, sub: str, problems: Problems) -> list[Record]:
    folder = require_dir(image_dir, sub, "split", problems, exclude=PART_DIRS.values())
    if folder is None:
        return []
    samples = check_names(folder, list_dir(folder, problems)[1], NAME_PATTERN, NAME_FORMAT, problems)
    if not samples:
        problems.add("missing", folder, f"has no samples (empty split); expected side-by-side RGB|NIR|TIR images "
                     f"named {NAME_FORMAT}")
    records = []
    for name, match in samples.items():
        path = folder / name
        images = {m: ImageRef(path, tile=i, num_tiles=len(MODALITIES)) for i, m in enumerate(MODALITIES)}
        records.append(Record(images=images, pid=int(match["pid"]), camid=int(match["cam"]) - 1,
                              key=f"{IMAGE_DIR}/{sub}/{name}"))
    return records
