"""WMVeID863 (Zheng et al., FACENet 2025; some code calls it MSVWild863): multi-spectral vehicle
ReID in the wild (flare, night), RGB + NIR + TIR, 863 vehicles.

Layout, as the official FACENet code and its forks (ICPL-ReID, MambaPro-style repos) read it::

    WMVEID863/
      train/<vid>/{vis,ni,th}/<name>.jpg
      query/<vid>/{vis,ni,th}/<name>.jpg
      test/<vid>/{vis,ni,th}/<name>.jpg          the gallery

The data ships with one folder per vehicle; every public loader (the official one included) reads
that layout, and the flat ``<split>/{vis,ni,th}`` variant appears only in an unused copy-pasted
method, so it is not accepted (``layout_problems`` says so when it sees it). The official loader
pairs the three modalities by **listing order** (``os.listdir`` of each folder, zipped by index),
which silently mismatches images whenever the listings differ; here they are paired by file name
and a name missing from one modality folder is an error.

``pid`` is the folder's number; ``camid`` is the digit after the first ``v`` in the file name,
as is (the reference's ``re.search('v+\\d', name)``; it does not subtract one). The reference
also parses a night flag (``n<digit>``) that nothing uses; it is not kept. Protocol ``market``.
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

NAME = "wmveid863"
MODALITIES = (RGB, NIR, TIR)
PROTOCOL = "market"
DATASET_DIR = "WMVEID863"
ALIASES = ("MSVWild863",)
PART_DIRS = {"train": "train", "query": "query", "gallery": "test"}
MODALITY_DIRS = {RGB: "vis", NIR: "ni", TIR: "th"}
NAME_PATTERN = re.compile(r"(?=.*?v(?P<cam>\d)).+\.jpg")
NAME_FORMAT = "a .jpg name containing v<camera digit>"


def load(root: str | Path) -> Split:
    """Load WMVeID863 from its official tree. ``Split.info`` is empty (the benchmark has no options)."""
    dataset_dir, parts = _scan(root, Problems(fail_fast=True))
    return Split(NAME, dataset_dir, parts["train"], parts["query"], parts["gallery"], PROTOCOL, MODALITIES, {})


def layout_problems(root: str | Path) -> list[LayoutProblem]:
    """Every layout and naming problem of the tree under ``root`` (empty when it is valid)."""
    return collect_problems(lambda problems: _scan(root, problems))


def _scan(root: str | Path, problems: Problems) -> tuple[Path, dict[str, list[Record]]]:
    dataset_dir = find_dataset_dir(root, DATASET_DIR, tuple(PART_DIRS.values()), ALIASES)
    return dataset_dir, {part: _part_records(dataset_dir, sub, problems) for part, sub in PART_DIRS.items()}


def _part_records(dataset_dir: Path, sub: str, problems: Problems) -> list[Record]:
    folder = require_dir(dataset_dir, sub, "split", problems, exclude=PART_DIRS.values())
    if folder is None:
        return []
    records = [
        Record(images={m: ImageRef(folder / vid / d / name) for m, d in MODALITY_DIRS.items()},
               pid=int(vid), camid=int(match["cam"]), key=f"{sub}/{vid}/{MODALITY_DIRS[RGB]}/{name}")
        for vid, name, match in id_folder_samples(folder, MODALITY_DIRS, NAME_PATTERN, NAME_FORMAT, problems)
    ]
    if not records:
        problems.add("missing", folder,
                     f"has no samples (empty split); expected <vid>/vis|ni|th/<name>.jpg ({NAME_FORMAT})")
    return records
