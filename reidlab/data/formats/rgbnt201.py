"""RGBNT201 (Zheng et al., AAAI 2021): multi-modality person ReID, RGB + NIR + TIR, 201 identities.

Official layout, as the reference code (PFNet, TOP-ReID, EDITOR, MambaPro) reads it::

    RGBNT201/
      train_171/{RGB,NI,TI}/<pid 6 digits>_cam<c>_<x>_<y>.jpg     171 ids, 3951 samples
      test/{RGB,NI,TI}/<pid 6 digits>_cam<c>_<x>_<y>.jpg          30 ids, 836 samples

The three modality images of a sample share one file name (``000258_cam1_0_00.jpg``) and are
paired by that name. ``pid`` is the 6-digit prefix, ``camid`` the digit after ``cam`` minus one
(4 cameras -> 0..3). Query and gallery are both the whole test folder; the ``market`` protocol
removes gallery samples with the query's pid and camera.

DENet's protocol trains on 141 identities and keeps 30 for validation. The reference loaders
only read ``train_171``, and no public loader reads an official 141/30 division, so
``load(root, split="141")`` derives one deterministically: the validation identities are
``random.Random(0).sample(sorted(train pids), 30)``. They are in ``Split.info["val_pids"]``,
their records in ``Split.info["val"]``; :func:`validation_split` turns them into a
query = gallery split for model selection.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from reidlab.data.formats._common import (
    LayoutProblem,
    Problems,
    collect_problems,
    find_dataset_dir,
    paired_names,
    require_dir,
)
from reidlab.data.records import NIR, RGB, TIR, DataFormatError, ImageRef, Record, Split

NAME = "rgbnt201"
MODALITIES = (RGB, NIR, TIR)
PROTOCOL = "market"
DATASET_DIR = "RGBNT201"
TRAIN_DIR, TEST_DIR = "train_171", "test"
MODALITY_DIRS = {RGB: "RGB", NIR: "NI", TIR: "TI"}
NAME_PATTERN = re.compile(r"(?P<pid>\d{6})_cam(?P<cam>\d)_(?P<x>\d+)_(?P<y>\d+)\.jpg")
NAME_FORMAT = "<pid 6 digits>_cam<c>_<x>_<y>.jpg"
SPLITS = ("171", "141")
#: DENet's validation identities and the seed of their deterministic draw.
NUM_VAL_IDS, VAL_SEED = 30, 0


def load(root: str | Path, split: str | int = "171") -> Split:
    """Load RGBNT201 from its official tree.

    ``split="171"`` (default) trains on all of ``train_171``; ``split="141"`` holds out 30
    training identities for validation (DENet's protocol; see the module docstring).
    ``Split.info``: ``split``; with ``"141"`` also ``val_pids`` (sorted ints) and ``val`` (records).
    """
    split = str(split)
    if split not in SPLITS:
        raise ValueError(f"RGBNT201 split must be one of {SPLITS}, got {split!r}")
    problems = Problems(fail_fast=True)
    dataset_dir = find_dataset_dir(root, DATASET_DIR, (TRAIN_DIR, TEST_DIR))
    train = _part_records(dataset_dir, TRAIN_DIR, problems)
    test = _part_records(dataset_dir, TEST_DIR, problems)
    info: dict = {"split": split}
    if split == "141":
        val_pids = validation_pids({r.pid for r in train}, dataset_dir / TRAIN_DIR)
        held_out = set(val_pids)
        info["val_pids"] = val_pids
        info["val"] = [r for r in train if r.pid in held_out]
        train = [r for r in train if r.pid not in held_out]
    return Split(NAME, dataset_dir, train, test, list(test), PROTOCOL, MODALITIES, info)


def layout_problems(root: str | Path) -> list[LayoutProblem]:
    """Every layout and naming problem of the tree under ``root`` (empty when it is valid)."""

    def scan(problems: Problems) -> None:
        dataset_dir = find_dataset_dir(root, DATASET_DIR, (TRAIN_DIR, TEST_DIR))
        for part in (TRAIN_DIR, TEST_DIR):
            _part_records(dataset_dir, part, problems)

    return collect_problems(scan)


def validation_pids(pids: set[int], folder: Path) -> list[int]:
    """The 30 held-out identities of the 141/30 split: a seeded draw from the sorted train pids."""
    if len(pids) <= NUM_VAL_IDS:
        raise DataFormatError(f"{folder}: {len(pids)} identities; the 141/{NUM_VAL_IDS} split needs "
                              f"more than {NUM_VAL_IDS}")
    return sorted(random.Random(VAL_SEED).sample(sorted(pids), NUM_VAL_IDS))


def validation_split(split: Split) -> Split:
    """The held-out validation identities of a ``split="141"`` load as query = gallery."""
    if "val" not in split.info:
        raise ValueError("this split has no validation identities; load RGBNT201 with split='141'")
    val = split.info["val"]
    info = {k: v for k, v in split.info.items() if k != "val"} | {"evaluated_on": "val"}
    return Split(split.benchmark, split.root, split.train, list(val), list(val), split.protocol,
                 split.modalities, info)


def _part_records(dataset_dir: Path, part: str, problems: Problems) -> list[Record]:
    folder = require_dir(dataset_dir, part, "split", problems, exclude=(TRAIN_DIR, TEST_DIR))
    if folder is None:
        return []
    samples = paired_names(folder, MODALITY_DIRS, NAME_PATTERN, NAME_FORMAT, problems)
    if samples is None:
        return []
    if not samples:
        problems.add("missing", folder, f"has no samples (empty split); expected images named {NAME_FORMAT} "
                     f"in RGB/, NI/ and TI/")
    rgb_dir = MODALITY_DIRS[RGB]
    return [
        Record(images={m: ImageRef(folder / sub / name) for m, sub in MODALITY_DIRS.items()},
               pid=int(match["pid"]), camid=int(match["cam"]) - 1, key=f"{part}/{rgb_dir}/{name}")
        for name, match in samples.items()
    ]
