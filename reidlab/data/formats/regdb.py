"""RegDB (Nguyen et al., Sensors 2017): visible-thermal person ReID, 412 identities x 10 images each.

Layout (the image folders of the official release plus the ``idx/`` lists of Ye et al.'s
reference code, which every paper uses)::

    RegDB/
      Visible/<id>/<gender>_<view>_v_<n>_<id>.bmp
      Thermal/<id>/<gender>_<view>_t_<n>_<id>.bmp
      idx/{train,test}_{visible,thermal}_<trial 1..10>.txt    lines "Visible/88/female_back_v_01102_88.bmp 0"

Trial ``t`` splits the identities 206 / 206 into train and test; each trial needs its own model.
The label column is the reference's training label (identities renumbered 0..205 per list); it
must be consistent (one label per identity and one identity per label, the same in a trial's
visible and thermal lists), but records keep the identity folder's number as ``pid``.

* train: ``train_visible_t`` + ``train_thermal_t``;
* ``direction="visible_to_thermal"``: query = ``test_visible_t``, gallery = ``test_thermal_t``;
  ``"thermal_to_visible"``: the reverse.

Visible images are modality ``rgb`` with ``camid`` 1, thermal images ``tir`` with ``camid`` 2 (as
the reference evaluation does). Protocol ``regdb`` removes nothing from the gallery.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from reidlab.data.formats._common import (
    LayoutProblem,
    Problems,
    check_names,
    collect_problems,
    find_dataset_dir,
    list_dir,
    parse_id,
    read_lines,
    require_dir,
)
from reidlab.data.records import RGB, TIR, ImageRef, Record, Split

NAME = "regdb"
MODALITIES = (RGB, TIR)
PROTOCOL = "regdb"
DATASET_DIR = "RegDB"
SPLIT_DIR = "idx"
MODALITY_DIRS = {RGB: "Visible", TIR: "Thermal"}
LIST_NAMES = {RGB: "visible", TIR: "thermal"}
CAMIDS = {RGB: 1, TIR: 2}
TRIALS = tuple(range(1, 11))
DIRECTIONS = {"visible_to_thermal": (RGB, TIR), "thermal_to_visible": (TIR, RGB)}
NAME_PATTERNS = {RGB: re.compile(r".+_v_\d+_(?P<pid>\d+)\.bmp"), TIR: re.compile(r".+_t_\d+_(?P<pid>\d+)\.bmp")}
NAME_FORMATS = {RGB: "<gender>_<view>_v_<n>_<id>.bmp", TIR: "<gender>_<view>_t_<n>_<id>.bmp"}


def load(root: str | Path, trial: int = 1, direction: str = "visible_to_thermal",
         split_dir: str | Path | None = None) -> Split:
    """Load RegDB trial ``trial`` (1-10) with queries in ``direction``.

    ``split_dir``: the folder holding the idx lists, default ``<RegDB>/idx``.
    ``Split.info``: ``trial``, ``direction``.
    """
    if trial not in TRIALS:
        raise ValueError(f"RegDB trial must be one of 1..10, got {trial!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"RegDB direction must be one of {tuple(DIRECTIONS)}, got {direction!r}")
    problems = Problems(fail_fast=True)
    dataset_dir = _dataset_dir(root)
    existing = _scan_images(dataset_dir, problems)
    lists = _read_trial(dataset_dir, _split_dir(dataset_dir, split_dir, problems), trial, existing, problems)
    records = {(part, m): sorted((_record(dataset_dir, m, p) for p in paths), key=lambda r: r.key)
               for (part, m), paths in lists.items()}
    query_modality, gallery_modality = DIRECTIONS[direction]
    train = sorted(records["train", RGB] + records["train", TIR], key=lambda r: r.key)
    return Split(NAME, dataset_dir, train, records["test", query_modality], records["test", gallery_modality],
                 PROTOCOL, MODALITIES, {"trial": trial, "direction": direction})


def layout_problems(root: str | Path, split_dir: str | Path | None = None) -> list[LayoutProblem]:
    """Every layout, naming and idx-list problem (all ten trials) under ``root``."""

    def scan(problems: Problems) -> None:
        dataset_dir = _dataset_dir(root)
        existing = _scan_images(dataset_dir, problems)
        lists_dir = _split_dir(dataset_dir, split_dir, problems)
        if lists_dir is not None:
            for trial in TRIALS:
                _read_trial(dataset_dir, lists_dir, trial, existing, problems)

    return collect_problems(scan)


def _dataset_dir(root: str | Path) -> Path:
    return find_dataset_dir(root, DATASET_DIR, tuple(MODALITY_DIRS.values()))


def _split_dir(dataset_dir: Path, split_dir: str | Path | None, problems: Problems) -> Path | None:
    path = Path(split_dir) if split_dir is not None else dataset_dir / SPLIT_DIR
    if path.is_dir():
        return path
    problems.add("missing", path, "missing idx folder with {train,test}_{visible,thermal}_<1..10>.txt (the lists of "
                 "the reference code; copies ship in data_manifests/regdb/idx; pass split_dir=... to use them)")
    return None


def _scan_images(dataset_dir: Path, problems: Problems) -> dict[str, set[str]]:
    """Relative paths of the well-named images of each modality (``Visible/88/...bmp``)."""
    existing: dict[str, set[str]] = {}
    for modality, sub in MODALITY_DIRS.items():
        existing[modality] = set()
        folder = require_dir(dataset_dir, sub, f"{LIST_NAMES[modality]} image", problems,
                             exclude=MODALITY_DIRS.values())
        if folder is None:
            continue
        id_dirs, stray = list_dir(folder, problems)
        for name in stray:
            problems.add("misnamed", folder / name, "unexpected file; expected one numeric folder per identity")
        for d in id_dirs:
            if parse_id(d) is None:
                problems.add("misnamed", folder / d, "folder name is not a numeric identity")
                continue
            names = check_names(folder / d, list_dir(folder / d, problems)[1], NAME_PATTERNS[modality],
                                NAME_FORMATS[modality], problems)
            for name, match in names.items():
                if int(match["pid"]) != int(d):
                    problems.add("misnamed", folder / d / name, f"identity {match['pid']} in the file name differs "
                                 f"from its folder {d}/")
                else:
                    existing[modality].add(f"{sub}/{d}/{name}")
        if not existing[modality]:
            problems.add("missing", folder, f"has no images; expected <id>/{NAME_FORMATS[modality]}")
    return existing


def _read_trial(dataset_dir: Path, lists_dir: Path, trial: int, existing: dict[str, set[str]],
                problems: Problems) -> dict[tuple[str, str], list[str]]:
    """The four idx lists of ``trial`` as ``{(part, modality): [relative path]}``, cross-checked."""
    lists: dict[tuple[str, str], list[str]] = {}
    labels: dict[tuple[str, str], dict[int, int]] = {}
    for part in ("train", "test"):
        for modality in MODALITIES:
            path = lists_dir / f"{part}_{LIST_NAMES[modality]}_{trial}.txt"
            lists[part, modality], labels[part, modality] = _read_list(path, dataset_dir, modality, existing,
                                                                       problems)
        visible, thermal = labels[part, RGB], labels[part, TIR]
        if visible and thermal and visible != thermal:
            differ = sorted(p for p in set(visible) | set(thermal) if visible.get(p) != thermal.get(p))
            problems.add("misnamed", lists_dir,
                         f"{part}_visible_{trial}.txt and {part}_thermal_{trial}.txt disagree on "
                         f"the identities or labels of ids {differ[:5]}; expected the same id -> label map")
    shared = sorted(set(labels["train", RGB]) & set(labels["test", RGB]))
    if shared:
        problems.add("misnamed", lists_dir, f"trial {trial} has ids {shared[:5]} in both train and test lists")
    return lists


def _read_list(path: Path, dataset_dir: Path, modality: str, existing: dict[str, set[str]],
               problems: Problems) -> tuple[list[str], dict[int, int]]:
    """One idx list: relative image paths, and the identity -> label map it implies.

    An identity's label is the one most of its lines give (the first on a tie), so one wrong line is
    blamed, not the lines that agree with each other.
    """
    lines = read_lines(path, "idx list", problems)
    if lines is None:
        return [], {}
    sub = MODALITY_DIRS[modality]
    entries: list[tuple[int, str, int, int]] = []  # (line number, relative path, id, label)
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        label = parse_id(fields[1]) if len(fields) == 2 else None
        if label is None:
            problems.add("misnamed", path, f"expected '<image path> <label>' with the label in ASCII digits, got "
                         f"{line.strip()!r}", number)
            continue
        relpath = fields[0]
        parts = relpath.split("/")
        if len(parts) != 3 or parts[0] != sub or parse_id(parts[1]) is None:
            problems.add("misnamed", path, f"image path {relpath!r} is not {sub}/<id>/<file>.bmp", number)
            continue
        if relpath not in existing[modality]:
            problems.add("misnamed", path, f"{dataset_dir / relpath} is not a well-named image of the tree", number)
            continue
        if relpath in seen:
            problems.add("misnamed", path, f"{relpath} is listed twice", number)
            continue
        seen.add(relpath)
        entries.append((number, relpath, int(parts[1]), label))
    votes: dict[int, Counter] = {}
    for _, _, pid, label in entries:
        votes.setdefault(pid, Counter())[label] += 1
    label_of = {pid: counts.most_common(1)[0][0] for pid, counts in votes.items()}
    pid_of: dict[int, int] = {}
    paths: list[str] = []
    for number, relpath, pid, label in entries:
        if label != label_of[pid]:
            others = votes[pid][label_of[pid]]
            problems.add("misnamed", path, f"id {pid} has label {label} here but {label_of[pid]} on {others} other "
                         f"line{'s' * (others != 1)}; expected one label per identity", number)
            continue
        if pid_of.setdefault(label, pid) != pid:
            problems.add("misnamed", path, f"label {label} is used for ids {pid_of[label]} and {pid}; "
                                           "expected one identity per label", number)
            continue
        paths.append(relpath)
    if not paths:
        problems.add("misnamed", path, "empty list; expected lines '<image path> <label>'")
    return paths, label_of


def _record(dataset_dir: Path, modality: str, relpath: str) -> Record:
    return Record(images={modality: ImageRef(dataset_dir / relpath)}, pid=int(relpath.split("/")[1]),
                  camid=CAMIDS[modality], key=relpath)
