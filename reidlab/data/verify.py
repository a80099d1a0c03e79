"""Verification of a dataset copy against its manifest (:mod:`reidlab.data.manifests`).

:func:`verify` checks a copy and collects *every* problem — layout, loading, counts, official split
files, undecodable images — into a :class:`VerifyReport` whose :meth:`~VerifyReport.render` says
what is wrong, what was expected and what to do. Layout problems come typed from the format
modules (:class:`~reidlab.data.formats._common.LayoutProblem`) and are filed under their kind.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from reidlab.data.formats import get_format
from reidlab.data.formats._common import LayoutError
from reidlab.data.images import ImageAccessError, read_image
from reidlab.data.manifests import PARTS, STATISTICS, TREE_MANIFEST, Manifest, load_manifest
from reidlab.data.records import DataFormatError, ImageRef, Split

#: Problem kinds, in report order: title and what to do about them.
PROBLEM_KINDS: dict[str, tuple[str, str]] = {
    "missing": ("Missing files or folders",
                "Re-download the dataset or re-extract the archive (an interrupted extraction leaves "
                "folders incomplete), then run verify again."),
    "misnamed": ("Mis-named or misplaced files and folders",
                 "Rename or move them to the official names in the expected layout below (e.g. the "
                 "RGBNT201 folder NIR must be NI); the loaders read only the official layout."),
    "inaccessible": ("Files or folders that cannot be opened",
                     "Fix the permissions (chmod -R u+rX on the dataset), remove symbolic link loops, and "
                     "remove folders named like image files; then run verify again."),
    "stray": ("Stray files (skipped, never loaded)",
              "Delete them or move them out of the dataset: file-manager copies (x - Copy.jpg), hidden files "
              "and OS clutter (Thumbs.db, .DS_Store) are not part of the official release."),
    "unloadable": ("The split could not be loaded",
                   "Fix the problem the loader names (usually one of the above); counts and images "
                   "were not checked."),
    "miscounted": ("Counts differ from the manifest",
                   "Files are missing or extra, or this is a different release of the dataset. "
                   "Re-download it; if you use a modified copy on purpose, verify against your own "
                   "manifest with --manifest PATH and report results as not comparable."),
    "unreadable": ("Images that cannot be decoded",
                   "These files are truncated or corrupt (typically an interrupted download or "
                   "extraction): re-download them."),
    "official": ("Split files differ from the official ones",
                 "Restore the official files: copy them from the shipped folder named above. Results "
                 "on other splits are not comparable with published numbers."),
}

@dataclass
class VerifyReport:
    """Everything :func:`verify` found. ``problems[kind]`` lists messages; see :data:`PROBLEM_KINDS`."""

    benchmark: str
    root: Path
    manifest: Manifest
    problems: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in PROBLEM_KINDS})
    #: Checks that passed or were skipped, and values that could not be checked, one line each.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def add(self, kind: str, message: str) -> None:
        """Record a problem; a path under :attr:`root` at the start of ``message`` is made relative."""
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; expected one of {', '.join(PROBLEM_KINDS)}")
        self.problems[kind].append(message.removeprefix(f"{self.root}{os.sep}"))

    def render(self, max_items: int = 12) -> str:
        """A readable report: problems by kind with what to do, notes, then a one-line verdict."""
        lines = [f"Verifying {self.benchmark} at {self.root} (paths below are relative to it)",
                 f"  manifest: {self.manifest.source or '(in memory)'}"
                 + ("  [synthetic tree]" if self.manifest.synthetic else "")]
        for kind, (title, advice) in PROBLEM_KINDS.items():
            messages = self.problems[kind]
            if not messages:
                continue
            lines += ["", f"[{kind.upper()}] {title} ({len(messages)}):"]
            lines += [f"  - {m}".replace("\n", "\n    ") for m in messages[:max_items]]
            if len(messages) > max_items:
                lines.append(f"  ... and {len(messages) - max_items} more")
            lines.append(f"  What to do: {advice}")
        if (self.problems["missing"] or self.problems["misnamed"]) and self.manifest.layout:
            lines += ["", "Expected layout (from the manifest):"]
            lines += [f"  {line}" for line in self.manifest.layout.rstrip().splitlines()]
        if self.notes:
            lines += ["", "Notes:"] + [f"  - {note}" for note in self.notes]
        lines += ["", self.verdict()]
        return "\n".join(lines)

    def verdict(self) -> str:
        if self.ok:
            return f"OK: {self.benchmark} at {self.root} matches its manifest."
        counts = ", ".join(f"{len(m)} {kind}" for kind, m in self.problems.items() if m)
        total = sum(len(m) for m in self.problems.values())
        return f"FAILED: {total} problem{'s' * (total != 1)} ({counts}) in {self.benchmark} at {self.root}."


def verify(benchmark: str, root: str | Path, manifest: Manifest | str | Path | None = None,
           quick: bool = False, progress: bool = True) -> VerifyReport:
    """Check the copy of ``benchmark`` under ``root`` against its manifest, collecting all problems.

    ``manifest`` defaults to ``<root>/manifest.yaml`` when the tree carries one (synthetic trees),
    else the shipped ``data_manifests/<benchmark>.yaml``. Checks: the official split files, byte
    for byte (skipped for synthetic trees); the format's ``layout_problems``; loading the split
    with the manifest's ``loader_options``; counts per part and statistic (``null`` values are
    listed as unchecked); and, unless ``quick``, decoding every image file once. A problem is
    reported once: an absent official file is not repeated as a layout problem, nor a layout
    problem as a loading failure.
    """
    fmt = get_format(benchmark)
    root = Path(root)
    manifest = _resolve_manifest(fmt, root, manifest)
    if manifest.benchmark != fmt.NAME:
        raise DataFormatError(f"{manifest.source}: manifest describes {manifest.benchmark!r}, not {fmt.NAME!r}")
    report = VerifyReport(fmt.NAME, root, manifest)
    if not root.is_dir():
        report.add("missing", f"{root}: dataset root does not exist or is not a folder")
        return report

    if manifest.synthetic:
        absent_official: set[Path] = set()
        if manifest.official_files:
            report.notes.append("official split files not compared: synthetic tree")
    else:
        absent_official = _check_official_files(_dataset_dir(fmt, root), manifest, report)
    layout = fmt.layout_problems(root)
    for problem in layout:
        if problem.path not in absent_official:  # else already reported with its fix
            report.add(problem.kind, str(problem))
    try:
        split = fmt.load(root, **manifest.loader_options)
    except DataFormatError as e:
        split = None
        if isinstance(e, LayoutError) and e.problem in layout:  # the fail-fast loader stopped at a problem above
            report.notes.append("split not loaded (the loader stops at the first layout problem): "
                                "counts and images not checked")
        else:
            report.add("unloadable", str(e))
    except (TypeError, ValueError) as e:  # options the loader does not accept
        split = None
        report.add("unloadable", f"{manifest.source}: loader_options {manifest.loader_options} rejected by the "
                                 f"{fmt.NAME} loader: {e}")
    if split is not None:
        _check_counts(split, manifest, report)
    if quick:
        report.notes.append("images not decoded (--quick)")
    elif split is not None:
        _check_images(split, report, progress)
    return report


def _resolve_manifest(fmt: ModuleType, root: Path, manifest: Manifest | str | Path | None) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if manifest is not None:
        return load_manifest(Path(manifest))
    candidates = [root / TREE_MANIFEST]
    if root.name.lower() == fmt.DATASET_DIR.lower():
        candidates.append(root.parent / TREE_MANIFEST)
    for candidate in candidates:
        if candidate.is_file():
            return load_manifest(candidate)
    return load_manifest(fmt.NAME)


def _dataset_dir(fmt: ModuleType, root: Path) -> Path:
    """The folder holding the official split folders: ``root/<DATASET_DIR>`` or ``root`` itself.

    Names are compared case-insensitively, as the loaders do.
    """
    name = fmt.DATASET_DIR.lower()
    for child in sorted(root.iterdir()):
        if child.name.lower() == name and child.is_dir():
            return child
    return root if root.name.lower() == name else root / fmt.DATASET_DIR


def _check_counts(split: Split, manifest: Manifest, report: VerifyReport) -> None:
    found = split.statistics()
    checked, unchecked = 0, []
    for part in PARTS:
        expected = manifest.counts.get(part)
        if expected is None:
            unchecked.append(f"{part} (no counts in the manifest)")
            continue
        for stat in STATISTICS:
            if stat not in expected or expected[stat] is None:
                if stat in ("records", "ids") or stat in expected:
                    unchecked.append(f"{part}.{stat}")
                continue
            checked += 1
            value, want = found[part][stat], expected[stat]
            if value != want:
                report.add("miscounted", f"{part}: {stat} expected {want}, found {value} ({value - want:+d})")
    report.notes.append(f"{checked} counts compared with the manifest")
    if unchecked:
        report.notes.append("not checked (no published value in the manifest): " + ", ".join(unchecked))


def _check_official_files(dataset_dir: Path, manifest: Manifest, report: VerifyReport) -> set[Path]:
    """Byte-compare the copy's official split files with the shipped ones; return the absent copies."""
    absent: set[Path] = set()
    if not manifest.official_files:
        return absent
    shipped_dir = manifest.files_dir
    mismatched = 0
    for rel in manifest.official_files:
        shipped, copy = shipped_dir / rel, dataset_dir / rel
        if not copy.is_file():
            report.add("official", f"{copy}: official split file is missing (expected a copy of {shipped})")
            absent.add(copy)
            mismatched += 1
            continue
        expected, found = shipped.read_bytes(), copy.read_bytes()
        if expected != found:
            difference = _describe_difference(expected, found)
            report.add("official", f"{copy}: differs from the official {shipped}: {difference}")
            mismatched += 1
    if not mismatched:
        report.notes.append(f"{len(manifest.official_files)} official split files identical to {shipped_dir}")
    return absent


def _describe_difference(expected: bytes, found: bytes) -> str:
    def normalise(data: bytes) -> list[bytes]:
        return [line.rstrip() for line in data.replace(b"\r\n", b"\n").strip().split(b"\n")]

    want, got = normalise(expected), normalise(found)
    if want == got:
        return ("only line endings or trailing whitespace differ (was it converted by an editor or "
                "git autocrlf?)")
    for number, (a, b) in enumerate(zip(want, got, strict=False), start=1):
        if a != b:
            col = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            start = max(0, col - 20)
            excerpt_a = a[start:col + 20].decode(errors="replace")
            excerpt_b = b[start:col + 20].decode(errors="replace")
            return f"line {number} first differs at column {col + 1}: expected {excerpt_a!r}, found {excerpt_b!r}"
    return f"expected {len(want)} lines, found {len(got)}"


def _check_images(split: Split, report: VerifyReport, progress: bool) -> None:
    """Decode each image file once (RGBNT100's tiles share one file), in a small thread pool."""
    from tqdm.auto import tqdm

    files: dict[Path, ImageRef] = {}
    for records in split.parts().values():
        for record in records:
            for ref in record.images.values():
                files.setdefault(ref.path, ref)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_decode_problem, files.values(), chunksize=16)
        failures = [r for r in tqdm(results, total=len(files), desc=f"decoding {split.benchmark}",
                                    unit="img", disable=not progress) if r is not None]
    for kind, path, reason in sorted(failures, key=lambda f: str(f[1])):
        report.add(kind, f"{path}: {reason}")
    report.notes.append(f"{len(files) - len(failures)} of {len(files)} image files decoded")


def _decode_problem(ref: ImageRef) -> tuple[str, Path, str] | None:
    if not ref.path.is_file():
        return "missing", ref.path, "image file is missing"
    try:
        read_image(ref)
    except ImageAccessError as e:
        return "inaccessible", ref.path, str(e).removeprefix(f"{ref.path}: ")
    except DataFormatError as e:
        return "unreadable", ref.path, str(e).removeprefix(f"{ref.path}: ")
    return None
