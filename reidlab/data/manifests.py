"""Benchmark manifests: the schema, loading and validation (:mod:`reidlab.data.verify` checks a copy against one).

A manifest (``data_manifests/<benchmark>.yaml`` in the repository, or ``manifest.yaml`` at the
root of a tree written by ``reidlab data synth``) records what a correct copy of a benchmark looks
like: citation, how to obtain it, the on-disk layout, the published counts per split and modality
(as :meth:`Split.statistics` reports them under the manifest's ``loader_options``; ``null`` where
no number is published), the evaluation protocol, and the official split files that a copy must
match byte for byte (SYSU-MM01 ``exp/*.txt``, RegDB ``idx/*.txt``), shipped next to the manifest
in ``data_manifests/<benchmark>/``.

The shipped manifests are looked up in ``data_manifests/`` beside the ``reidlab`` package
directory, i.e. in the repository clone (an editable install). A non-editable install has no
such folder; :func:`manifests_dir` then says so, and ``--manifest PATH`` still works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

import reidlab
from reidlab.data.formats import BENCHMARKS
from reidlab.data.records import MODALITIES, PROTOCOL_NAMES, DataFormatError, Split

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
        name = value["name"]
        if name not in PROTOCOL_NAMES:
            self.error("protocol.name", f"{name!r} is not an evaluation protocol; "
                                        f"expected one of {', '.join(PROTOCOL_NAMES)}")
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
