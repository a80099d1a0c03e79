"""``synthesize``: render a synthetic benchmark and write it in a real on-disk format."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reidlab.data.records import MODALITIES, DataFormatError
from reidlab.data.synthetic.degrade import apply_degradations, draw_degradations, parse_mix
from reidlab.data.synthetic.identities import make_identities
from reidlab.data.synthetic.layouts import SPECS, Capture, Entry
from reidlab.data.synthetic.render import Conditions, render_sample
from reidlab.data.synthetic.seeding import rng_for
from reidlab.data.synthetic.writers import (
    MANIFEST_FILE,
    METADATA_FILE,
    metadata_rows,
    write_capture,
    write_manifest,
    write_metadata,
    write_split_files,
)

#: Bumped whenever the same seed would render different files.
GENERATOR_VERSION = 2


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote. ``str()`` gives a short human summary."""

    benchmark: str
    root: Path
    dataset_dir: Path
    num_ids: int
    image_size: tuple[int, int]
    degradations: str
    seed: int
    counts: dict[str, dict[str, int]]                  # manifest counts (as the loader reports them)
    images: dict[str, dict[str, int]] = field(default_factory=dict)   # metadata split -> modality -> files
    seconds: float = 0.0
    bytes_on_disk: int = 0

    def __str__(self) -> str:
        h, w = self.image_size
        lines = [f"synthetic {self.benchmark} -> {self.dataset_dir}",
                 f"  {self.num_ids} identities, {h}x{w} per modality, seed {self.seed}, "
                 f"degradations {self.degradations}"]
        for part, stats in self.counts.items():
            per_modality = ", ".join(f"{m} {stats[f'images_{m}']}" for m in MODALITIES if stats[f"images_{m}"])
            lines.append(f"  {part:<8} {stats['records']:>5} records, {stats['ids']:>3} ids, "
                         f"{stats['cameras']} cameras ({per_modality})")
        lines.append(f"  written in {self.seconds:.1f} s, {self.bytes_on_disk / 1e6:.1f} MB on disk "
                     f"(manifest.yaml, metadata.csv beside the dataset folder)")
        return "\n".join(lines)


def synthesize(like: str, root: str | Path, *, seed: int = 0, num_ids: int | None = None,
               image_size: tuple[int, int] | None = None, degradations: str | dict = "default",
               overwrite: bool = False, progress: bool = True) -> SynthSummary:
    """Write a synthetic benchmark under ``root`` in the official layout of ``like``.

    ``root`` receives the dataset folder (e.g. ``RGBNT201/``), ``manifest.yaml`` (counts as the
    loader reports them, ``synthetic: true``) and ``metadata.csv`` (one row per record, keyed by
    ``Record.key``; see :func:`read_metadata`). ``num_ids`` and ``image_size`` (height, width of one
    modality image) default per format (docs/synthetic_dataset_card.md). ``degradations`` is a
    preset (default, clean, flare_heavy, low_light, harsh), ``"name=p,..."`` or a dict.

    ``root`` must be empty or absent; with ``overwrite`` a tree previously written here (its
    manifest says ``synthetic: true``) is replaced — the dataset folder that manifest's benchmark
    writes, manifest.yaml and metadata.csv; nothing else in ``root`` is touched, and a dataset folder
    of the new format that the old tree did not write (a user's real copy) is refused, not replaced.
    Files are written to a temporary folder
    inside ``root`` and moved into place at the end, so a failed run leaves no partial tree.
    """
    start = time.perf_counter()
    name = like.lower().replace("-", "_")
    if name not in SPECS:
        raise ValueError(f"unknown format {like!r}; expected one of {', '.join(SPECS)}")
    spec = SPECS[name]
    mix = parse_mix(degradations)
    num_ids = spec.num_ids if num_ids is None else int(num_ids)
    if num_ids < 2:
        raise ValueError(f"num_ids must be at least 2 (train and test identities), got {num_ids}")
    size = spec.image_size if image_size is None else tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"image_size must be (height, width) with both >= 16 pixels, got {image_size!r}")
    root = Path(root)
    _prepare_root(root, spec.dataset_dir, overwrite)

    identities = make_identities(spec.kind, num_ids, seed, split_cues=not spec.shared_pattern)
    layout = spec.plan(spec, identities, seed)
    by_capture: dict[tuple[int, int], list[Entry]] = {}
    for entry in layout.entries:
        by_capture.setdefault((entry.capture.identity, entry.capture.number), []).append(entry)

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synth-", dir=root))
    try:
        dataset_dir = staging / spec.dataset_dir
        plans = {}
        captures = _progress(list(by_capture.items()), progress, f"synth {name}")
        for (index, number), entries in captures:
            cap = entries[0].capture
            rng = capture_rng(seed, name, cap)
            images, labels = render_sample(identities[index], capture_conditions(cap), size, seed, rng,
                                           shared_pattern=spec.shared_pattern)
            images = {m: images[m] for m in cap.modalities}
            plan = plans[index, number] = draw_degradations(mix, cap.modalities, cap.night, spec.night_rate, rng)
            write_capture(dataset_dir, entries, apply_degradations(images, labels, plan, rng))
        write_split_files(dataset_dir, layout)
        write_metadata(staging / METADATA_FILE, metadata_rows(layout, plans, identities))
        settings = {"seed": seed, "num_ids": num_ids, "image_size": size, "degradations": mix.name,
                    "degradation_probabilities": dict(mix.probabilities), "severity": list(mix.severity),
                    "generator_version": GENERATOR_VERSION}
        manifest = write_manifest(staging / MANIFEST_FILE, spec, layout, settings)
        for item in (spec.dataset_dir, METADATA_FILE, MANIFEST_FILE):
            os.replace(staging / item, root / item)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    images: dict[str, Counter] = {}
    for entry in layout.entries:
        images.setdefault(entry.part, Counter()).update(entry.files.keys())
    return SynthSummary(
        benchmark=name, root=root, dataset_dir=root / spec.dataset_dir, num_ids=num_ids, image_size=size,
        degradations=mix.describe(), seed=seed, counts=manifest["counts"],
        images={part: dict(c) for part, c in images.items()}, seconds=time.perf_counter() - start,
        bytes_on_disk=_disk_bytes(root / spec.dataset_dir) + (root / METADATA_FILE).stat().st_size
        + (root / MANIFEST_FILE).stat().st_size)


def capture_rng(seed: int, benchmark: str, capture: Capture) -> np.random.Generator:
    """The generator that renders and degrades ``capture`` of a ``benchmark`` tree (fresh, never drawn from)."""
    return rng_for(seed, benchmark, "capture", capture.identity, capture.number)


def capture_conditions(capture: Capture) -> Conditions:
    """The nuisances ``capture`` is rendered under."""
    return Conditions(capture.view, capture.night, capture.background, capture.mirror)


def read_metadata(root: str | Path) -> pd.DataFrame:
    """The sidecar of a synthetic tree, indexed by record key (``Record.key``).

    Columns: split, pid, camid, sceneid, viewpoint, background, illumination; per modality
    ``<m>_degradation`` (none, flare, low_light, fog, blur, noise, occlusion; empty when the record
    has no image of that modality), ``<m>_severity`` and ``<m>_quality`` (= 1 - severity); and the
    generative factors capture, colour_code, pattern_code, heat_code, shape.
    """
    root = Path(root)
    path = root / METADATA_FILE
    if not path.is_file() and (root.parent / METADATA_FILE).is_file():
        path = root.parent / METADATA_FILE            # root given as the dataset folder itself
    if not path.is_file():
        raise DataFormatError(f"{path}: missing; expected the metadata sidecar of a tree written by "
                              "`reidlab data synth`")
    return pd.read_csv(path, index_col="key", dtype={"capture": str})


def _prepare_root(root: Path, dataset_dir: str, overwrite: bool) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise DataFormatError(f"{root}: exists and is not a folder; expected an empty or absent output folder")
    if not any(root.iterdir()):
        return
    if not overwrite:
        raise DataFormatError(f"{root}: folder is not empty; choose an empty or new folder, or pass "
                              "overwrite=True (--overwrite) to replace a synthetic tree written there before")
    manifest = root / MANIFEST_FILE
    try:
        previous = yaml.safe_load(manifest.read_text(encoding="utf-8"))
        synthetic = previous.get("synthetic") is True
    except (OSError, yaml.YAMLError, AttributeError):
        synthetic = False
    if not synthetic:
        raise DataFormatError(f"{root}: not a synthetic tree ({manifest} is missing or lacks 'synthetic: true'); "
                              "refusing to delete anything there even with overwrite")
    if previous.get("benchmark") not in SPECS:
        raise DataFormatError(f"{manifest}: benchmark {previous.get('benchmark')!r} is not a synthetic format "
                              f"({', '.join(SPECS)}); refusing to delete anything in {root}")
    written = SPECS[previous["benchmark"]].dataset_dir  # what that synthetic tree wrote, beside its two files
    if dataset_dir != written and (root / dataset_dir).exists():
        raise DataFormatError(f"{root / dataset_dir}: exists but the synthetic tree in {root} did not write it "
                              f"({manifest} describes a {previous['benchmark']} tree in {written}/); refusing to "
                              "replace it: move it away or choose another --root")
    for item in (root / written, root / METADATA_FILE, manifest):
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        elif item.exists() or item.is_symlink():
            item.unlink()


def _progress(items: list, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="capture", leave=False)


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
