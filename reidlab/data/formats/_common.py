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
import errno
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from reidlab.data.records import DataFormatError

#: Operating-system clutter that is never a dataset file (thumbnail caches, folder settings).
IGNORED_FILES = frozenset({"Thumbs.db", "ehthumbs.db", "desktop.ini", "@eaDir", "__MACOSX"})
#: A file-manager copy: ``x - Copy.jpg``, ``x - Copy (2).jpg``, ``x (1).jpg``, ``x copy 2.jpg``, ``Copy of x``.
COPY_NAME = re.compile(r"(?i)^copy of .+|.+?( - copy( \(\d+\))?| \(\d+\)| copy( \d+)?)(\.[^.]+)?")
#: Suffixes of image files: a folder named like this is reported, never descended into as an image.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})


#: ``missing``: an expected file, folder or sample is absent; ``misnamed``: something is there but named,
#: placed or listed wrongly (a near-miss folder name, a bad file name, an inconsistent split list);
#: ``inaccessible``: it is there but cannot be read (permissions, a symbolic link loop, a folder where a
#: file belongs); ``stray``: a file that is skipped, never loaded (hidden files, OS clutter such as
#: Thumbs.db or .DS_Store, file-manager copies such as ``x - Copy.jpg``). Every kind but ``stray`` stops
#: a loader; a stray file is only reported by ``verify``.
LayoutKind = Literal["missing", "misnamed", "inaccessible", "stray"]
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
        if self.fail_fast and kind != "stray":  # a stray file is skipped by a loader, not fatal
            raise LayoutError(problem)
        self.items.append(problem)


def list_dir(path: Path, problems: Problems | None = None) -> tuple[list[str], list[str]]:
    """Sorted sub-folder names and sorted file names of ``path`` (one ``os.scandir``).

    Hidden entries (leading dot), OS clutter (:data:`IGNORED_FILES`) and file-manager copies
    (:data:`COPY_NAME`) are skipped and, with ``problems``, reported as ``stray``. With ``problems``,
    a folder that cannot be listed, an entry that cannot be examined (a symbolic link loop, a broken
    link) and a folder named like an image are reported (and left out) instead of raising.
    """
    dirs, files = [], []
    try:
        with os.scandir(path) as entries:
            listed = list(entries)
    except OSError as e:
        if problems is None:
            raise
        problems.add("inaccessible", path, f"folder cannot be listed: {os_reason(e)}")
        return [], []
    for entry in listed:
        name = entry.name
        if name.startswith(".") or name in IGNORED_FILES or COPY_NAME.fullmatch(name):
            if problems is not None:
                what = ("a file-manager copy" if COPY_NAME.fullmatch(name) and not name.startswith(".")
                        else "a hidden file or OS clutter")
                problems.add("stray", path / name, f"skipped, not loaded: {what}; delete it (or move it out of the "
                             "dataset) so the tree holds only the official files")
            continue
        try:
            is_dir = entry.is_dir()
            if not is_dir and entry.is_symlink():
                os.stat(entry.path)  # a link loop or a broken link: raises
        except OSError as e:
            if problems is None:
                raise
            problems.add("inaccessible", path / name, f"cannot be examined: {os_reason(e)}")
            continue
        if is_dir and Path(name).suffix.lower() in IMAGE_SUFFIXES and problems is not None:
            problems.add("misnamed", path / name, "is a folder named like an image file; expected an image file "
                         "here (remove or rename the folder)")
            continue
        (dirs if is_dir else files).append(name)
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
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a link loop, a folder we may not enter: there, but unusable
        problems.add("inaccessible", path, f"{what} folder cannot be opened: {os_reason(e)}")
        return None
    else:
        problems.add("misnamed", path, f"is a file, expected the {what} folder '{name}/'")
        return None
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
    try:
        dirs, _ = list_dir(root)
    except OSError as e:
        problem = LayoutProblem("inaccessible", root, f"dataset root cannot be listed: {os_reason(e)}")
        raise LayoutError(problem) from None
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
            listings[sub] = set(list_dir(path, problems)[1])
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
    dirs, files = list_dir(part_dir, problems)
    flat = [d for d in dirs if d in modality_dirs.values()]
    if flat:
        problems.add("misnamed", part_dir, f"found {', '.join(d + '/' for d in flat)} directly inside; {expected}")
    for name in files:
        problems.add("misnamed", part_dir / name, f"unexpected file; {expected}")
    samples = []
    for d in dirs:
        if d in flat:
            continue
        if parse_id(d) is None:
            problems.add("misnamed", part_dir / d, f"folder name is not a numeric identity; {expected}")
            continue
        found = paired_names(part_dir / d, modality_dirs, pattern, describe, problems) or {}
        samples.extend((d, name, match) for name, match in found.items())
    return samples


def read_lines(path: Path, what: str, problems: Problems) -> list[str] | None:
    """The lines of a split file (UTF-8; a byte-order mark is recognised and skipped); None when unreadable.

    A missing file is ``missing``; one that cannot be opened (permissions, a folder, a link loop) is
    ``inaccessible``; one that is not UTF-8 text is ``misnamed`` with the line of the first bad byte.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.add("missing", path, f"{what} is missing")
        return None
    except OSError as e:
        problems.add("inaccessible", path, f"{what} cannot be read: {os_reason(e)}")
        return None
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        problems.add("misnamed", path, f"{what} is not UTF-8 text (byte {data[e.start]:#04x}); expected plain "
                     "ASCII lines as in the official file", line)
        return None


def parse_id(text: str) -> int | None:
    """A non-negative integer written in ASCII digits (``'²'`` or ``'３'`` are digits to ``str.isdigit``, not here)."""
    return int(text) if text.isascii() and text.isdigit() else None


def read_id_list(path: Path, problems: Problems) -> list[int]:
    """A SYSU-MM01-style id file: one line of comma-separated integers (``1,2,4,5``)."""
    lines = read_lines(path, "split file", problems)
    if lines is None:
        return []
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if len(numbered) != 1:
        problems.add("misnamed", path, f"expected one line of comma-separated ids, found {len(numbered)} non-empty "
                     "lines", numbered[1][0] if len(numbered) > 1 else None)
        return []
    number, line = numbered[0]
    ids = []
    for position, field in enumerate(line.split(","), start=1):
        value = parse_id(field.strip())
        if value is None:
            problems.add("misnamed", path, f"entry {position} is {field.strip()!r}, expected a positive integer id "
                         "in ASCII digits", number)
            return []
        ids.append(value)
    if len(set(ids)) != len(ids):
        problems.add("misnamed", path, "some ids are listed twice", number)
    return ids


def os_reason(error: OSError) -> str:
    """What an ``OSError`` on a dataset path means, for a layout problem."""
    reasons = {errno.ELOOP: "symbolic link loop (fix or remove the link)",
               errno.EACCES: "permission denied (make it readable: chmod -R u+rX)",
               errno.EPERM: "permission denied (make it readable: chmod -R u+rX)",
               errno.EISDIR: "is a folder, expected a file",
               errno.ENOTDIR: "is a file, expected a folder"}
    return reasons.get(error.errno or -1, error.strerror or str(error))
