"""MSVR310 (Zheng et al., 2023): multi-spectral vehicle ReID, RGB + NIR + TIR, 310 vehicles.

Official layout, as the reference code (TOP-ReID, EDITOR, MambaPro) reads it::

    MSVR310/
      bounding_box_train/<vid>/{vis,ni,th}/<vid 4>_s<scene 3>_v<cam>_<n>.jpg   155 ids, 1032 samples
      query3/<vid>/{vis,ni,th}/...                                               591 samples
      bounding_box_test/<vid>/{vis,ni,th}/...                                    155 ids, 1055 samples

The three modality images of a sample share one file name (``0002_s002_v0_000.jpg``) inside the
vehicle's folder. ``pid`` is the 4-digit prefix (it must equal the folder's number), ``sceneid``
the 3 digits after ``s``, ``camid`` the digit after ``v`` *as is*: the reference reads
``int(name[11])`` without subtracting one, and the names already count views from 0. The
``msvr310`` protocol removes gallery samples with the query's pid **and scene** (not camera).
"""

from __future__ import annotations

import re
from pathlib import Path

from reidlab.data.formats._common import (
    LayoutProblem,
    Problems,
    collect_problems,
    find_dataset_dir,
    id_folder_samples,
    require_dir,
)
from reidlab.data.records import NIR, RGB, TIR, ImageRef, Record, Split

NAME = "msvr310"
MODALITIES = (RGB, NIR, TIR)
PROTOCOL = "msvr310"
DATASET_DIR = "MSVR310"
PART_DIRS = {"train": "bounding_box_train", "query": "query3", "gallery": "bounding_box_test"}
MODALITY_DIRS = {RGB: "vis", NIR: "ni", TIR: "th"}
NAME_PATTERN = re.compile(r"(?P<pid>\d{4})_s(?P<scene>\d{3})_v(?P<cam>\d)_(?P<n>\d+)\.jpg")
NAME_FORMAT = "<vid 4 digits>_s<scene 3 digits>_v<cam>_<n>.jpg"


def load(root: str | Path) -> Split:
    """Load MSVR310 from its official tree. ``Split.info`` is empty (the benchmark has no options)."""
    dataset_dir, parts = _scan(root, Problems(fail_fast=True))
    return Split(NAME, dataset_dir, parts["train"], parts["query"], parts["gallery"], PROTOCOL, MODALITIES, {})


def layout_problems(root: str | Path) -> list[LayoutProblem]:
    """Every layout and naming problem of the tree under ``root`` (empty when it is valid)."""
    return collect_problems(lambda problems: _scan(root, problems))


def _scan(root: str | Path, problems: Problems) -> tuple[Path, dict[str, list[Record]]]:
    dataset_dir = find_dataset_dir(root, DATASET_DIR, tuple(PART_DIRS.values()))
    return dataset_dir, {part: _part_records(dataset_dir, sub, problems) for part, sub in PART_DIRS.items()}


def _part_records(dataset_dir: Path, sub: str, problems: Problems) -> list[Record]:
    folder = require_dir(dataset_dir, sub, "split", problems, exclude=PART_DIRS.values())
    if folder is None:
        return []
    records = []
    for vid, name, match in id_folder_samples(folder, MODALITY_DIRS, NAME_PATTERN, NAME_FORMAT, problems):
        pid = int(match["pid"])
        if pid != int(vid):
            problems.add("misnamed", folder / vid / MODALITY_DIRS[RGB] / name, f"vehicle id {pid} in the file name "
                         f"differs from its folder {vid}/")
            continue
        images = {m: ImageRef(folder / vid / d / name) for m, d in MODALITY_DIRS.items()}
        records.append(Record(images=images, pid=pid, camid=int(match["cam"]), sceneid=int(match["scene"]),
                              key=f"{sub}/{vid}/{MODALITY_DIRS[RGB]}/{name}"))
    if not records:
        problems.add("missing", folder, f"has no samples (empty split); expected <vid>/vis|ni|th/{NAME_FORMAT}")
    return records
