"""Benchmark manifests, and verification of a dataset copy against them.

A manifest (``data_manifests/<benchmark>.yaml`` in the repository, or ``manifest.yaml`` at the
root of a tree written by ``reidlab data synth``) records what a correct copy of a benchmark looks
like: citation, how to obtain it, the on-disk layout, the published counts per split and modality
(as :meth:`Split.statistics` reports them under the manifest's ``loader_options``; ``null`` where
no number is published), the evaluation protocol, and the official split files that a copy must
match byte for byte (SYSU-MM01 ``exp/*.txt``, RegDB ``idx/*.txt``), shipped next to the manifest
in ``data_manifests/<benchmark>/``.

:func:`verify` checks a copy against its manifest and collects *every* problem — layout, loading,
counts, official split files, undecodable images — into a :class:`VerifyReport` whose
:meth:`~VerifyReport.render` says what is wrong, what was expected and what to do.

The shipped manifests are looked up in ``data_manifests/`` beside the ``reidlab`` package
directory, i.e. in the repository clone (an editable install). A non-editable install has no
such folder; :func:`manifests_dir` then says so, and ``--manifest PATH`` still works.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType

import yaml

import reidlab
from reidlab.data.formats import BENCHMARKS, get_format
from reidlab.data.images import read_image
from reidlab.data.records import MODALITIES, DataFormatError, ImageRef, Split

PARTS: tuple[str, ...] = ("train", "query", "gallery")
#: The statistics a manifest may give per part — the keys of :meth:`Split.statistics`.
STATISTICS: tuple[str, ...] = ("records", "ids", "cameras", *(f"images_{m}" for m in MODALITIES))
#: Name of the manifest a synthetic tree carries at its root.
TREE_MANIFEST = "manifest.yaml"

_REQUIRED_KEYS = ("benchmark", "modalities", "counts", "protocol")
_OPTIONAL_KEYS = ("title", "synthetic", "citation", "obtain", "layout", "loader_options", "official_files")


@dataclass(frozen=True)
class Manifest:
    """One benchmark manifest, validated. ``counts[part][statistic]`` is ``None`` when unknown."""

    benchmark: str
    modalities: tuple[str, ...]
    counts: dict[str, dict[str, int | None]]
    protocol: str
    protocol_description: str = ""
    title: str = ""
    synthetic: bool = False
    citation: str = ""
    obtain: str = ""
    layout: str = ""
    loader_options: dict = field(default_factory=dict)
    official_files: tuple[str, ...] = ()
    #: The YAML file this manifest was read from.
    source: Path | None = None
    #: Further keys a synthetic manifest may carry (generator settings); empty for real benchmarks.
    extra: dict = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        """Folder holding the shipped copies of :attr:`official_files`: ``<manifest dir>/<benchmark>/``."""
        if self.source is None:
            raise DataFormatError(f"manifest of {self.benchmark!r} was not read from a file, so it has no "
                                  "shipped official files")
        return self.source.parent / self.benchmark


def manifests_dir() -> Path:
    """The ``data_manifests/`` folder of the repository clone reidlab is imported from."""
    folder = Path(reidlab.__file__).resolve().parents[1] / "data_manifests"
    if not folder.is_dir():
        raise DataFormatError(
            f"{folder}: the shipped manifests are not there. They live in the repository clone "
            "(data_manifests/ beside the reidlab package); install reidlab from the clone with "
            "`pip install -e .`, or pass an explicit manifest file (--manifest PATH)")
    return folder


def manifest_path(benchmark: str) -> Path:
    """Path of the shipped manifest of ``benchmark`` (case-insensitive, ``-`` or ``_``)."""
    name = benchmark.lower().replace("-", "_")
    if name not in BENCHMARKS:
        raise DataFormatError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    path = manifests_dir() / f"{name}.yaml"
    if not path.is_file():
        raise DataFormatError(f"{path}: shipped manifest of {name} is missing from data_manifests/")
    return path


def load_manifest(benchmark_or_path: str | Path) -> Manifest:
    """Read and validate a manifest: a benchmark name (the shipped one) or a YAML file path.

    All schema problems are reported at once in one :class:`DataFormatError` naming the file
    and each offending key.
    """
    if isinstance(benchmark_or_path, str) and benchmark_or_path.lower().replace("-", "_") in BENCHMARKS:
        path = manifest_path(benchmark_or_path)
    else:
        path = Path(benchmark_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: manifest file does not exist (benchmarks: {', '.join(BENCHMARKS)})") from None
    except yaml.YAMLError as e:
        raise DataFormatError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a YAML mapping of manifest keys, got {type(data).__name__}")
    return _ManifestParser(path.resolve(), data).parse()


class _ManifestParser:
    """Validates a manifest mapping, collecting every problem before raising."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path, self.data, self.errors = path, data, []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"key {key!r}: {message}")

    def text(self, key: str) -> str:
        value = self.data.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            self.error(key, f"expected text, got {value!r}")
            return ""
        return value

    def parse(self) -> Manifest:
        data = self.data
        for key in _REQUIRED_KEYS:
            if key not in data:
                self.error(key, "is required")
        synthetic = data.get("synthetic", False)
        if not isinstance(synthetic, bool):
            self.error("synthetic", f"expected true or false, got {synthetic!r}")
            synthetic = False
        unknown = sorted(set(data) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
        if unknown and not synthetic:
            self.error(unknown[0] if len(unknown) == 1 else ", ".join(unknown),
                       f"unknown key(s); a manifest has {', '.join(_REQUIRED_KEYS + _OPTIONAL_KEYS)}")
        benchmark = data.get("benchmark")
        if "benchmark" in data and benchmark not in BENCHMARKS:
            self.error("benchmark", f"{benchmark!r} is not one of {', '.join(BENCHMARKS)}")
        protocol, description = self.protocol()
        manifest = Manifest(
            benchmark=str(benchmark), modalities=self.modalities(), counts=self.counts(),
            protocol=protocol, protocol_description=description, title=self.text("title"),
            synthetic=synthetic, citation=self.text("citation"), obtain=self.text("obtain"),
            layout=self.text("layout"), loader_options=self.loader_options(),
            official_files=self.official_files(str(benchmark), synthetic), source=self.path,
            extra={k: data[k] for k in unknown} if synthetic else {})
        if self.errors:
            raise DataFormatError(f"{self.path}: invalid manifest:\n  " + "\n  ".join(self.errors))
        return manifest

    def modalities(self) -> tuple[str, ...]:
        value = self.data.get("modalities")
        if value is None:
            return ()
        if (not isinstance(value, list) or not value or len(set(value)) != len(value)
                or not set(value) <= set(MODALITIES)):
            self.error("modalities", f"expected a non-empty list of distinct modalities from {list(MODALITIES)}, "
                                     f"got {value!r}")
            return ()
        return tuple(m for m in MODALITIES if m in value)

    def counts(self) -> dict[str, dict[str, int | None]]:
        value = self.data.get("counts")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error("counts", f"expected a mapping of {'/'.join(PARTS)} to statistics, got {value!r}")
            return {}
        counts = {}
        for part, stats in value.items():
            if part not in PARTS:
                self.error(f"counts.{part}", f"unknown part; expected one of {', '.join(PARTS)}")
                continue
            if stats is None:
                stats = {}
            if not isinstance(stats, dict):
                self.error(f"counts.{part}", f"expected a mapping of statistics, got {stats!r}")
                continue
            counts[part] = {}
            for stat, number in stats.items():
                key = f"counts.{part}.{stat}"
                if stat not in STATISTICS:
                    self.error(key, f"unknown statistic; expected one of {', '.join(STATISTICS)}")
                elif number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 0):
                    self.error(key, f"expected a non-negative integer or null (unknown), got {number!r}")
                else:
                    counts[part][stat] = number
        return counts

    def protocol(self) -> tuple[str, str]:
        value = self.data.get("protocol")
        if value is None:
            return "", ""
        if not isinstance(value, dict) or "name" not in value:
            self.error("protocol", f"expected a mapping with 'name' (and 'description'), got {value!r}")
            return "", ""
        from reidlab.eval.protocols import PROTOCOLS

        name = value["name"]
        if name not in PROTOCOLS:
            self.error("protocol.name", f"{name!r} is not an evaluation protocol; "
                                        f"expected one of {', '.join(PROTOCOLS)}")
        unknown = sorted(set(value) - {"name", "description"})
        if unknown:
            self.error(f"protocol.{unknown[0]}", "unknown key; protocol has 'name' and 'description'")
        description = value.get("description") or ""
        if not isinstance(description, str):
            self.error("protocol.description", f"expected text, got {description!r}")
            description = ""
        return str(name), description

    def loader_options(self) -> dict:
        value = self.data.get("loader_options") or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.error("loader_options", f"expected a mapping of option names to values, got {value!r}")
            return {}
        return dict(value)

    def official_files(self, benchmark: str, synthetic: bool) -> tuple[str, ...]:
        value = self.data.get("official_files") or []
        if not isinstance(value, list):
            self.error("official_files", f"expected a list of relative paths, got {value!r}")
            return ()
        files = []
        for rel in value:
            posix = PurePosixPath(str(rel))
            if not isinstance(rel, str) or posix.is_absolute() or ".." in posix.parts or not posix.parts:
                self.error("official_files", f"{rel!r} is not a relative path inside the dataset folder")
                continue
            shipped = self.path.parent / benchmark / posix
            if not synthetic and not shipped.is_file():
                self.error("official_files", f"{rel!r}: its shipped copy {shipped} is missing")
            files.append(posix.as_posix())
        return tuple(files)


# --------------------------------------------------------------------------------------------
# Verification

#: Problem kinds, in report order: title and what to do about them.
PROBLEM_KINDS: dict[str, tuple[str, str]] = {
    "missing": ("Missing files or folders",
                "Re-download the dataset or re-extract the archive (an interrupted extraction leaves "
                "folders incomplete), then run verify again."),
    "misnamed": ("Mis-named or misplaced files and folders",
                 "Rename or move them to the official names in the expected layout below (e.g. the "
                 "RGBNT201 folder NIR must be NI); the loaders read only the official layout."),
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

_MISSING_WORDS = re.compile(r"\b(missing|not found|does not exist|no such|has no|absent|lacks?|without)\b",
                            re.IGNORECASE)


def _layout_kind(problem: str) -> str:
    """File a ``layout_problems`` message: a suggested rename is "misnamed", an absence "missing"."""
    if re.search(r"\brename\b", problem, re.IGNORECASE):
        return "misnamed"
    return "missing" if _MISSING_WORDS.search(problem) else "misnamed"


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
        absent_official: set[str] = set()
        if manifest.official_files:
            report.notes.append("official split files not compared: synthetic tree")
    else:
        absent_official = _check_official_files(_dataset_dir(fmt, root), manifest, report)
    layout = fmt.layout_problems(root)
    for problem in layout:
        if problem.partition(": ")[0] not in absent_official:  # else already reported with its fix
            report.add(_layout_kind(problem), problem)
    try:
        split = fmt.load(root, **manifest.loader_options)
    except DataFormatError as e:
        split = None
        if str(e) in layout:  # the fail-fast loader stopped at a problem listed above
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


def _check_official_files(dataset_dir: Path, manifest: Manifest, report: VerifyReport) -> set[str]:
    """Byte-compare the copy's official split files with the shipped ones; return the absent copies."""
    absent: set[str] = set()
    if not manifest.official_files:
        return absent
    shipped_dir = manifest.files_dir
    mismatched = 0
    for rel in manifest.official_files:
        shipped, copy = shipped_dir / rel, dataset_dir / rel
        if not copy.is_file():
            report.add("official", f"{copy}: official split file is missing (expected a copy of {shipped})")
            absent.add(str(copy))
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
    except DataFormatError as e:
        return "unreadable", ref.path, str(e).removeprefix(f"{ref.path}: ")
    return None


def format_statistics(split: Split) -> str:
    """Aligned table of :meth:`Split.statistics` per part, with the protocol and loader options."""
    stats = split.statistics()
    columns = ["records", "ids", "cameras", *(f"images_{m}" for m in split.modalities)]
    headers = ["records", "ids", "cameras", *split.modalities]
    rows = [[part, *(str(stats[part][c]) for c in columns)] for part in PARTS]
    widths = [max(len(r[i]) for r in [["part", *headers], *rows]) for i in range(len(headers) + 1)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([cells[0].ljust(widths[0]), *padded]).rstrip()

    options = ", ".join(f"{k}={_short(v)}" for k, v in split.info.items()) or "defaults"
    out = [f"{split.benchmark} at {split.root}",
           f"protocol: {split.protocol}    loader options: {options}",
           "", line(["part", *headers]), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)



def _short(value: object) -> str:
    """A loader option for display; collections other than a few numbers or names by their size only."""
    if isinstance(value, (list, tuple, set, dict)):
        if len(value) > 8 or not all(isinstance(v, (int, float, str)) for v in value):
            return f"<{len(value)} items>"
    return str(value)
