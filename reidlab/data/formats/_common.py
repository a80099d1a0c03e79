"""What the format loaders share: finding the dataset folder, listing folders once, checking names.

Every loader scans its tree with a :class:`Problems` collector. ``load`` uses a fail-fast collector
(the first problem raises :class:`LayoutError`, a :class:`DataFormatError`); ``layout_problems`` uses
a collecting one and returns every problem, so ``reidlab data verify`` can show them all at once. One
scan, two modes: the two entry points can never disagree about what a valid tree is.

A problem is typed (:class:`LayoutProblem`: its kind, the path it is about, what is wrong), so
``verify`` files it by its kind instead of reading the message.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from reidlab.data.records import DataFormatError

#: Operating-system clutter that is never a dataset file.
IGNORED_FILES = frozenset({"Thumbs.db", "desktop.ini"})


#: ``missing``: an expected file, folder or sample is absent; ``misnamed``: something is there but named,
#: placed or listed wrongly (a near-miss folder name, a bad file name, an inconsistent split list).
LayoutKind = Literal["missing", "misnamed"]
LAYOUT_KINDS: tuple[str, ...] = get_args(LayoutKind)


@dataclass(frozen=True)
class LayoutProblem:
    """One problem with a tree's layout: ``str()`` is ``"<path>: <message>"`` (``"<path>:<line>: ..."`` in a list)."""

    kind: LayoutKind
    path: Path
    message: str
    line: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"layout problem kind {self.kind!r}: expected one of {', '.join(LAYOUT_KINDS)}")

    def __str__(self) -> str:
        return f"{self.path}{'' if self.line is None else f':{self.line}'}: {self.message}"


class LayoutError(DataFormatError):
    """The :class:`DataFormatError` of a layout problem (what a fail-fast scan raises); ``problem`` holds it."""

    def __init__(self, problem: LayoutProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class Problems:
    """Layout problems found while scanning a tree; raises at the first one when ``fail_fast``."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.items: list[LayoutProblem] = []

    def add(self, kind: LayoutKind, path: Path, message: str, line: int | None = None) -> None:
        problem = LayoutProblem(kind, Path(path), message, line)
        if self.fail_fast:
            raise LayoutError(problem)
        self.items.append(problem)


def list_dir(path: Path) -> tuple[list[str], list[str]]:
    """Sorted sub-folder names and sorted file names of ``path`` (one ``os.scandir``).

    Hidden entries (leading dot) and OS clutter (``Thumbs.db``) are skipped.
    """
    dirs, files = [], []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name in IGNORED_FILES:
                continue
            (dirs if entry.is_dir() else files).append(entry.name)
    return sorted(dirs), sorted(files)


def near_miss(parent: Path, expected: str, exclude: Iterable[str] = ()) -> str | None:
    """A folder in ``parent`` that looks like a misspelling of ``expected`` (``NIR`` for ``NI``)."""
    try:
        dirs, _ = list_dir(parent)
    except OSError:
        return None
    skip = {expected, *exclude}
    candidates = {d.lower(): d for d in dirs if d not in skip}
    if expected.lower() in candidates:
        return candidates[expected.lower()]
    close = difflib.get_close_matches(expected.lower(), list(candidates), n=1, cutoff=0.6)
    return candidates[close[0]] if close else None


def missing_dir_problem(parent: Path, expected: str, what: str, exclude: Iterable[str] = ()) -> LayoutProblem:
    """A missing folder, or a misnamed one when a near miss is there (named in the message)."""
    message = f"missing {what} folder '{expected}/'"
    found = near_miss(parent, expected, exclude)
    if found is None:
        return LayoutProblem("missing", parent / expected, message)
    return LayoutProblem("misnamed", parent / expected,
                         f"{message} (found '{found}/' instead; rename it to '{expected}')")


def require_dir(parent: Path, name: str, what: str, problems: Problems,
                exclude: Iterable[str] = ()) -> Path | None:
    """``parent/name`` if it is a folder; otherwise report it (naming any near miss) and return None."""
    path = parent / name
    if path.is_dir():
        return path
    problem = missing_dir_problem(parent, name, what, exclude)
    problems.add(problem.kind, problem.path, problem.message)
    return None


def collect_problems(scan: Callable[[Problems], object]) -> list[LayoutProblem]:
    """Run ``scan`` with a collecting :class:`Problems` and return every problem it reported.

    A :class:`LayoutError` that ``scan`` raises itself (no dataset folder at all, so nothing
    else can be checked) becomes the last problem.
    """
    problems = Problems(fail_fast=False)
    try:
        scan(problems)
    except LayoutError as e:
        problems.items.append(e.problem)
    return problems.items


def find_dataset_dir(root: str | Path, dataset_dir: str, markers: Sequence[str],
                     aliases: Sequence[str] = ()) -> Path:
    """The benchmark's top-level folder: ``root/<dataset_dir>`` or ``root`` itself.

    ``root/<dataset_dir>`` is matched case-insensitively (reference code spells ``MSVR310`` and
    ``msvr310``); ``aliases`` are other names the same release goes by. ``root`` itself is taken
    when its name matches or it holds one of the ``markers`` (the official split folders).
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(LayoutProblem("missing", root, "dataset root does not exist or is not a folder"))
    names = {n.lower() for n in (dataset_dir, *aliases)}
    dirs, _ = list_dir(root)
    for d in dirs:
        if d.lower() in names:
            return root / d
    if root.name.lower() in names or any(m in dirs for m in markers):
        return root
    message = (f"expected the {dataset_dir}/ folder here, or {root} to be that folder "
               f"(holding {', '.join(m + '/' for m in markers)})")
    found = near_miss(root, dataset_dir)
    if found is None:
        raise LayoutError(LayoutProblem("missing", root, message))
    raise LayoutError(LayoutProblem("misnamed", root, f"{message}; found '{found}/', rename it to '{dataset_dir}'"))


def check_names(folder: Path, names: Iterable[str], pattern: re.Pattern, describe: str,
                problems: Problems) -> dict[str, re.Match]:
    """Full-match every file name against ``pattern``; report the others, return the matches."""
    matches = {}
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            problems.add("misnamed", folder / name, f"file name does not match {describe}")
        else:
            matches[name] = match
    return matches


def paired_names(folder: Path, modality_dirs: Mapping[str, str], pattern: re.Pattern, describe: str,
                 problems: Problems) -> dict[str, re.Match] | None:
    """Sample names present, well named, in every modality folder of ``folder`` (pairing by name).

    ``modality_dirs`` maps modality key to its folder name (``{"rgb": "RGB", "nir": "NI", ...}``).
    Reports missing modality folders, badly named files, and names present in some modality
    folders but not the others. Returns ``{name: match}`` for the complete samples, sorted by name,
    or None when a modality folder is missing.
    """
    listings: dict[str, set[str]] = {}
    siblings = list(modality_dirs.values())
    for modality, sub in modality_dirs.items():
        path = require_dir(folder, sub, f"{modality} modality", problems, exclude=siblings)
        if path is not None:
            listings[sub] = set(list_dir(path)[1])
    if len(listings) < len(modality_dirs):
        return None
    complete = {}
    for name in sorted(set().union(*listings.values())):
        present = [sub for sub in siblings if name in listings[sub]]
        match = pattern.fullmatch(name)
        if match is None:
            problems.add("misnamed", folder / present[0] / name, f"file name does not match {describe}")
        elif len(present) < len(siblings):
            missing = [sub for sub in siblings if sub not in present]
            problems.add("missing", folder / missing[0] / name, "missing; the sample is in "
                         f"{', '.join(p + '/' for p in present)} but not in {', '.join(m + '/' for m in missing)} "
                         f"(every sample needs the same file name in {', '.join(s + '/' for s in siblings)})")
        else:
            complete[name] = match
    return complete


def id_folder_samples(part_dir: Path, modality_dirs: Mapping[str, str], pattern: re.Pattern, describe: str,
                      problems: Problems) -> list[tuple[str, str, re.Match]]:
    """Samples of a ``<part>/<id>/<modality folders>/<name>`` tree as ``(id folder, name, match)``.

    Modality images are paired by file name inside each identity folder (:func:`paired_names`),
    never by listing order. Reports modality folders found directly in ``part_dir`` (a flat tree
    instead of one folder per identity), stray files, and identity folders that are not numbers.
    """
    subs = ", ".join(s + "/" for s in modality_dirs.values())
    expected = f"expected one numeric folder per identity, each holding {subs}"
    dirs, files = list_dir(part_dir)
    flat = [d for d in dirs if d in modality_dirs.values()]
    if flat:
        problems.add("misnamed", part_dir, f"found {', '.join(d + '/' for d in flat)} directly inside; {expected}")
    for name in files:
        problems.add("misnamed", part_dir / name, f"unexpected file; {expected}")
    samples = []
    for d in dirs:
        if d in flat:
            continue
        if not d.isdigit():
            problems.add("misnamed", part_dir / d, f"folder name is not a numeric identity; {expected}")
            continue
        found = paired_names(part_dir / d, modality_dirs, pattern, describe, problems) or {}
        samples.extend((d, name, match) for name, match in found.items())
    return samples


def read_id_list(path: Path, problems: Problems) -> list[int]:
    """A SYSU-MM01-style id file: one line of comma-separated integers (``1,2,4,5``)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        problems.add("missing", path, "split file is missing")
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        problems.add("misnamed", path, f"expected one line of comma-separated ids, found {len(lines)} non-empty lines")
        return []
    ids = []
    for position, field in enumerate(lines[0].split(","), start=1):
        field = field.strip()
        if not field.isdigit():
            problems.add("misnamed", path, f"entry {position} is {field!r}, expected a positive integer id")
            return []
        ids.append(int(field))
    if len(set(ids)) != len(ids):
        problems.add("misnamed", path, "some ids are listed twice")
    return ids
