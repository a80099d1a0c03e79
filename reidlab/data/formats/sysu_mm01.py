"""SYSU-MM01 (Wu et al., ICCV 2017): visible-infrared person ReID, 491 identities, 6 cameras.

Official layout::

    SYSU-MM01/
      cam1/ ... cam6/<pid %04d>/<n %04d>.jpg   visible cams 1, 2, 4, 5 (rgb); near-infrared cams 3, 6 (nir)
      exp/train_id.txt, val_id.txt, test_id.txt  one line of comma-separated ids each (296 / 99 / 96)
      exp/rand_perm_cam.mat                      the official MATLAB protocol's fixed gallery draws

Protocol, as the official MATLAB code and its Python port (Ye et al., AGW ``data_manager.py``) build it:

* train: every image, all six cameras, of the train + val identities (395 ids);
* query: every infrared image (cams 3 and 6) of the test identities (3803), in both modes;
* gallery of trial ``t``: for each test id (ascending) and each visible camera (all-search 1, 2, 4,
  5; indoor-search 1, 2) that has a folder for it, one image (single-shot) or ten (multi-shot).
  ``permutation="python"`` reproduces the Python port exactly: ``random.seed(t)``, then
  ``random.choice`` on the sorted file list (multi-shot: ``random.sample(files, 10)``, all of them
  when a folder holds fewer). ``permutation="official"`` takes the first 1 (or 10) image numbers
  of row ``t`` of ``rand_perm_cam{cam}{id}`` from the .mat file, as the MATLAB evaluation does.

``camid`` is the camera number 1-6: the protocol (``sysu_all`` / ``sysu_indoor``) removes cam-2
gallery images for cam-3 queries (same room) by these numbers. Records are sorted by key; the
gallery order does not change any metric.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reidlab.data.formats._common import (
    LayoutError,
    LayoutProblem,
    Problems,
    check_names,
    collect_problems,
    find_dataset_dir,
    list_dir,
    read_id_list,
    require_dir,
)
from reidlab.data.records import NIR, RGB, DataFormatError, ImageRef, Record, Split

NAME = "sysu_mm01"
MODALITIES = (RGB, NIR)
PROTOCOL = "sysu_all"
DATASET_DIR = "SYSU-MM01"
SPLIT_DIR = "exp"
CAMERAS = (1, 2, 3, 4, 5, 6)
CAMERA_MODALITY = {1: RGB, 2: RGB, 3: NIR, 4: RGB, 5: RGB, 6: NIR}
QUERY_CAMERAS = (3, 6)
GALLERY_CAMERAS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SPLIT_FILES = {"train": "train_id.txt", "val": "val_id.txt", "test": "test_id.txt"}
PERMUTATION_FILE = "rand_perm_cam.mat"
PERMUTATIONS = ("python", "official")
ID_PATTERN = re.compile(r"\d{4}")
NAME_PATTERN = re.compile(r"\d{4}\.jpg")
NAME_FORMAT = "<n %04d>.jpg"


@dataclass(frozen=True)
class _Tree:
    """One scan of a SYSU-MM01 copy: the split ids and every camera's file names."""

    dataset_dir: Path
    split_dir: Path
    ids: dict[str, list[int]]
    files: dict[int, dict[int, list[str]]]  # camera -> pid -> sorted file names

    def record(self, camera: int, pid: int, name: str) -> Record:
        key = f"cam{camera}/{pid:04d}/{name}"
        return Record(images={CAMERA_MODALITY[camera]: ImageRef(self.dataset_dir / key)},
                      pid=pid, camid=camera, key=key)

    def records(self, pids: list[int], cameras: tuple[int, ...]) -> list[Record]:
        found = [self.record(c, p, n) for c in cameras for p in pids for n in self.files[c].get(p, ())]
        return sorted(found, key=lambda r: r.key)


def load(root: str | Path, mode: str = "all", trial: int = 0, shots: int = 1,
         permutation: str = "python", split_dir: str | Path | None = None) -> Split:
    """Load SYSU-MM01 with the gallery of one trial.

    ``mode``: ``"all"`` or ``"indoor"`` search; ``trial``: 0-9 (the seed, or the .mat row);
    ``shots``: 1 (single-shot) or 10 (multi-shot) gallery images per id and camera;
    ``permutation``: ``"python"`` (the Python port's seeded draw) or ``"official"`` (the fixed
    draws of ``rand_perm_cam.mat``); ``split_dir``: the folder holding the id files (and the .mat),
    default ``<SYSU-MM01>/exp``. ``Split.info``: ``mode``, ``trial``, ``shots``, ``permutation``.
    """
    _check_options(mode, shots, permutation)
    if trial < 0:
        raise ValueError(f"SYSU-MM01 trial must be >= 0, got {trial}")
    return next(_trial_splits(root, mode, shots, permutation, split_dir, trials=[trial]))


def sysu_trials(root: str | Path, mode: str = "all", shots: int = 1, num_trials: int = 10,
                permutation: str = "python", split_dir: str | Path | None = None) -> Iterator[Split]:
    """The splits of trials ``0 .. num_trials-1``, scanning the tree once.

    Train and query records are built once (each split gets its own list of the same records);
    only the gallery changes from trial to trial. Options as in :func:`load`.
    """
    _check_options(mode, shots, permutation)
    if num_trials < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials}")
    return _trial_splits(root, mode, shots, permutation, split_dir, trials=range(num_trials))


def layout_problems(root: str | Path, split_dir: str | Path | None = None) -> list[LayoutProblem]:
    """Every layout, naming and split-file problem under ``root`` (empty when it is valid).

    When ``rand_perm_cam.mat`` is present, also checks that every image it draws exists.
    """

    def scan(problems: Problems) -> None:
        tree = _scan(root, split_dir, problems)
        path = tree.split_dir / PERMUTATION_FILE
        if path.is_file() and tree.ids.get("test"):  # a LayoutError here is collected as the last problem
            permutation = _read_permutation(path)
            for trial in range(_num_permutation_trials(permutation, path)):
                _official_gallery(tree, permutation, path, GALLERY_CAMERAS["all"], trial, 10)

    return collect_problems(scan)


def _check_options(mode: str, shots: int, permutation: str) -> None:
    if mode not in GALLERY_CAMERAS:
        raise ValueError(f"SYSU-MM01 mode must be one of {tuple(GALLERY_CAMERAS)}, got {mode!r}")
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"SYSU-MM01 shots must be a positive integer (1 or 10), got {shots!r}")
    if permutation not in PERMUTATIONS:
        raise ValueError(f"SYSU-MM01 permutation must be one of {PERMUTATIONS}, got {permutation!r}")


def _trial_splits(root: str | Path, mode: str, shots: int, permutation: str, split_dir: str | Path | None,
                  trials: Iterable[int]) -> Iterator[Split]:
    """Scan (and read the .mat) now, so errors surface at the call; build galleries lazily."""
    tree = _scan(root, split_dir, Problems(fail_fast=True))
    train = tree.records(sorted(tree.ids["train"] + tree.ids["val"]), CAMERAS)
    query = tree.records(sorted(tree.ids["test"]), QUERY_CAMERAS)
    cameras = GALLERY_CAMERAS[mode]
    path = tree.split_dir / PERMUTATION_FILE
    if permutation == "official":
        if not path.is_file():
            raise DataFormatError(f"{path}: missing; permutation='official' needs the official MATLAB "
                                  f"protocol file {SPLIT_DIR}/{PERMUTATION_FILE} (use permutation='python' without it)")
        cells = _read_permutation(path)

    def splits() -> Iterator[Split]:
        for trial in trials:
            if permutation == "official":
                gallery = _official_gallery(tree, cells, path, cameras, trial, shots)
            else:
                gallery = _python_gallery(tree, cameras, trial, shots)
            if not gallery:
                raise DataFormatError(f"{tree.dataset_dir}: empty gallery; no visible images of the test ids "
                                      f"in {', '.join(f'cam{c}/' for c in cameras)}")
            info = {"mode": mode, "trial": trial, "shots": shots, "permutation": permutation}
            yield Split(NAME, tree.dataset_dir, list(train), list(query), gallery, f"sysu_{mode}", MODALITIES, info)

    return splits()


def _python_gallery(tree: _Tree, cameras: tuple[int, ...], trial: int, shots: int) -> list[Record]:
    """The Python port's draw: seed, then ids ascending, then cameras, choosing from sorted files."""
    rng = random.Random(trial)  # the same stream as random.seed(trial) + random.choice/sample
    picks = []
    for pid in sorted(tree.ids["test"]):
        for camera in cameras:
            files = tree.files[camera].get(pid)
            if not files:
                continue
            chosen = [rng.choice(files)] if shots == 1 else rng.sample(files, min(shots, len(files)))
            picks.extend(tree.record(camera, pid, name) for name in chosen)
    return sorted(picks, key=lambda r: r.key)


def _permutation_error(path: Path, message: str) -> LayoutError:
    """A problem with the official ``rand_perm_cam.mat`` (filed as misnamed: the file is there but wrong)."""
    return LayoutError(LayoutProblem("misnamed", path, message))


def _read_permutation(path: Path) -> list[np.ndarray]:
    """``rand_perm_cam``: a 6-cell array (one per camera) of cells per id (1-based, the id's number)
    holding a trials x images matrix of 1-based image numbers, each row a permutation."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on a bad file
        raise _permutation_error(path, f"cannot read the MATLAB file ({e}); expected the official "
                              f"SYSU-MM01 {PERMUTATION_FILE}") from None
    if "rand_perm_cam" not in mat:
        raise _permutation_error(path, f"no variable 'rand_perm_cam'; expected the official SYSU-MM01 "
                              f"{PERMUTATION_FILE}")
    cells = np.asarray(mat["rand_perm_cam"], dtype=object).reshape(-1)
    if cells.size != len(CAMERAS):
        raise _permutation_error(path, f"rand_perm_cam has {cells.size} cells, expected one per camera "
                                       f"({len(CAMERAS)})")
    return [np.asarray(cell, dtype=object).reshape(-1) for cell in cells]


def _num_permutation_trials(cells: list[np.ndarray], path: Path) -> int:
    rows = {np.atleast_2d(m).shape[0] for cell in cells for m in cell if np.size(m)}
    if len(rows) != 1:
        raise _permutation_error(path, f"the permutation matrices disagree on the number of trials ({sorted(rows)})")
    return rows.pop()


def _official_gallery(tree: _Tree, cells: list[np.ndarray], path: Path, cameras: tuple[int, ...],
                      trial: int, shots: int) -> list[Record]:
    """The first ``shots`` image numbers of row ``trial`` of ``rand_perm_cam{cam}{id}``."""
    picks = []
    for camera in cameras:
        per_id = cells[camera - 1]
        for pid in sorted(tree.ids["test"]):
            if pid > len(per_id) or np.size(per_id[pid - 1]) == 0:
                continue
            matrix = np.atleast_2d(per_id[pid - 1])
            if trial >= matrix.shape[0]:
                raise _permutation_error(path, f"camera {camera}, id {pid} has {matrix.shape[0]} trials; "
                                      f"trial {trial} was asked for")
            available = tree.files[camera].get(pid, ())
            for number in matrix[trial, :shots]:
                name = f"{int(number):04d}.jpg"
                if name not in available:
                    raise _permutation_error(path, f"trial {trial} draws cam{camera}/{pid:04d}/{name}, "
                                          f"which is not in {tree.dataset_dir}")
                picks.append(tree.record(camera, pid, name))
    return sorted(picks, key=lambda r: r.key)


def _scan(root: str | Path, split_dir: str | Path | None, problems: Problems) -> _Tree:
    dataset_dir = find_dataset_dir(root, DATASET_DIR, tuple(f"cam{c}" for c in CAMERAS))
    split_dir = Path(split_dir) if split_dir is not None else dataset_dir / SPLIT_DIR
    ids = _read_split_ids(split_dir, problems)
    files = {camera: _scan_camera(dataset_dir, camera, problems) for camera in CAMERAS}
    for part, pids in ids.items():
        for pid in pids:
            if not any(pid in files[c] for c in CAMERAS):
                problems.add("missing", split_dir / SPLIT_FILES[part], f"id {pid} has no images in any camera folder "
                             f"(expected cam<c>/{pid:04d}/)")
    test = ids.get("test", [])
    if test and not any(pid in files[c] for c in QUERY_CAMERAS for pid in test):
        problems.add("missing", dataset_dir,
                     "empty query; the infrared images (cam3/, cam6/) of the test ids are missing")
    return _Tree(dataset_dir, split_dir, ids, files)


def _read_split_ids(split_dir: Path, problems: Problems) -> dict[str, list[int]]:
    if not split_dir.is_dir():
        problems.add("missing", split_dir, f"missing split folder holding {', '.join(SPLIT_FILES.values())} "
                     f"(the official files ship with SYSU-MM01 in exp/, and in data_manifests/sysu_mm01/exp; "
                     f"pass split_dir=... to use another copy)")
        return {part: [] for part in SPLIT_FILES}
    ids = {part: read_id_list(split_dir / name, problems) for part, name in SPLIT_FILES.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = sorted(set(ids[a]) & set(ids[b]))
        if shared:
            problems.add("misnamed", split_dir, f"ids {shared[:5]} are in both {SPLIT_FILES[a]} and {SPLIT_FILES[b]}")
    return ids


def _scan_camera(dataset_dir: Path, camera: int, problems: Problems) -> dict[int, list[str]]:
    cam = f"cam{camera}"
    folder = require_dir(dataset_dir, cam, "camera", problems, exclude=[f"cam{c}" for c in CAMERAS])
    if folder is None:
        return {}
    id_dirs, stray = list_dir(folder, problems)
    for name in stray:
        problems.add("misnamed", folder / name, "unexpected file; expected one folder per identity named <pid %04d>")
    files = {}
    for d in id_dirs:
        if not ID_PATTERN.fullmatch(d):
            problems.add("misnamed", folder / d, "folder name is not a 4-digit identity (<pid %04d>)")
            continue
        names = check_names(folder / d, list_dir(folder / d, problems)[1], NAME_PATTERN, NAME_FORMAT, problems)
        if names:
            files[int(d)] = list(names)
        else:
            problems.add("missing", folder / d, f"has no images; expected files named {NAME_FORMAT}")
    return files
