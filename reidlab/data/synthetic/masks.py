"""Where the subject is in a synthetic image: its object mask, re-derived exactly from the generator's own draws.

A tree's ``manifest.yaml`` keeps the generator settings (seed, identities, image size, degradation mix), and
every capture is rendered from a random stream keyed on ``(seed, format, identity, capture number)``
(:func:`~.generate.capture_rng`). Re-planning the tree (cheap: no rendering) and replaying the first draws of
one capture's stream (:func:`~.render.subject_labels`, the pose jitter) gives the part-label map its images
were painted from — so trees written before this module existed work unchanged, and no sidecar file is needed.

The mask is the person's or vehicle's silhouette (label map != background) in the geometry of the modality
image as the loader reads it: the written file's H x W (``image_size`` of the manifest), or, for RGBNT100's
side-by-side RGB|NIR|TIR file, one tile (the same mask for all three). Nothing the generator does after drawing
moves geometry (the background is shifted, not the subject; degradations are in place; JPEG/BMP keep the
size), and the modalities of a capture are pixel-aligned. Blur, fog and TIR heat diffusion soften the drawn
edge by a few pixels; the mask stays the sharp silhouette. Used to *measure* where attention maps fall
(:func:`reidlab.analysis.attention.object_mass`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from reidlab.data.records import DataFormatError, Record
from reidlab.data.synthetic.degrade import DegradationMix, draw_degradations, occluder_box
from reidlab.data.synthetic.generate import GENERATOR_VERSION, capture_conditions, capture_rng
from reidlab.data.synthetic.identities import make_identities
from reidlab.data.synthetic.layouts import SPECS, Entry
from reidlab.data.synthetic.render import BG, render_sample, subject_labels
from reidlab.data.synthetic.writers import MANIFEST_FILE


class ObjectMasks:
    """Object masks of the records of one synthetic tree (``root``: the folder holding ``manifest.yaml``, or
    the dataset folder in it, e.g. ``run.split.root``).

    Raises :class:`DataFormatError` when ``root`` holds no synthetic manifest or one written by another
    generator version (its drawings cannot be replayed).
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if not (root / MANIFEST_FILE).is_file() and (root.parent / MANIFEST_FILE).is_file():
            root = root.parent                        # given the dataset folder itself
        manifest = _read_manifest(root / MANIFEST_FILE)
        settings = manifest["generator"]
        self.root = root
        self.spec = SPECS[manifest["benchmark"]]
        self.seed, self.num_ids = int(settings["seed"]), int(settings["num_ids"])
        self.image_size: tuple[int, int] = (int(settings["image_size"][0]), int(settings["image_size"][1]))
        self.mix = DegradationMix(dict(settings["degradation_probabilities"]),
                                  tuple(float(s) for s in settings["severity"]), settings["degradations"])
        self.identities = make_identities(self.spec.kind, self.num_ids, self.seed,
                                          split_cues=not self.spec.shared_pattern)
        layout = self.spec.plan(self.spec, self.identities, self.seed)
        self._entries: dict[str, Entry] = {e.key: e for e in layout.entries}

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.spec.dataset_dir

    def mask(self, record: Record, modality: str | None = None, *, exclude_occluder: bool = False) -> np.ndarray:
        """Boolean (H, W) mask of the subject in ``record``'s ``modality`` image (True = person / vehicle).

        ``modality`` defaults to the record's only one; a multi-modal record's modalities share one mask
        (pixel-aligned), so any will do unless ``exclude_occluder``. An occluder (the ``occlusion``
        degradation) is never object. By default the mask is the full silhouette, including the parts an
        occluder hides; ``exclude_occluder=True`` removes those (for ``modality`` only: an occlusion may hit one
        modality of a sample), leaving the visible object — this replays the whole rendering (about a
        millisecond per image) instead of the pose draws alone.
        """
        entry, modality = self._entry(record, modality, exclude_occluder)
        cap = entry.capture
        ident = self.identities[cap.identity]
        rng = capture_rng(self.seed, self.spec.benchmark, cap)
        if not exclude_occluder:
            labels = subject_labels(ident, capture_conditions(cap), self.image_size, rng)[0]
            return labels != BG
        # The generator's exact sequence (synthesize): render, then draw the degradation plan.
        _, labels = render_sample(ident, capture_conditions(cap), self.image_size, self.seed, rng,
                                  shared_pattern=self.spec.shared_pattern)
        plan = draw_degradations(self.mix, cap.modalities, cap.night, self.spec.night_rate, rng)
        mask = labels != BG
        if plan.occluder is not None and plan.per_modality[modality].kind == "occlusion":
            top, left, bottom, right = occluder_box(labels, plan.occluder)
            mask[top:bottom, left:right] = False
        return mask

    def masks(self, records: Sequence[Record], modality: str | None = None, *,
              exclude_occluder: bool = False) -> np.ndarray:
        """Boolean ``[N, H, W]`` masks of ``records`` (see :meth:`mask`), e.g. the records of ``run.batch``."""
        h, w = self.image_size
        out = np.zeros((len(records), h, w), bool)
        for i, record in enumerate(records):
            out[i] = self.mask(record, modality, exclude_occluder=exclude_occluder)
        return out

    def _entry(self, record: Record, modality: str | None, exclude_occluder: bool) -> tuple[Entry, str]:
        if modality is None:
            if len(record.images) > 1 and exclude_occluder:
                raise ValueError(f"record {record.key!r} has modalities {record.modalities}: pass the modality whose "
                                 "occluder to exclude (an occlusion may hit one modality of a sample only)")
            modality = record.modalities[0]
        if modality not in record.images:
            raise ValueError(f"record {record.key!r} has no {modality!r} image (it has {record.modalities})")
        ref = record.images[modality]
        path = ref.path if Path(ref.path).is_absolute() else self.dataset_dir / ref.path
        key = record.key or Path(path).relative_to(self.dataset_dir).as_posix()
        entry = self._entries.get(key)
        if entry is None or modality not in entry.files:
            raise DataFormatError(f"record {key!r} ({modality}) is not an image of the synthetic "
                                  f"{self.spec.benchmark} tree in {self.root}")
        h, w = self.image_size
        expected = (w * ref.num_tiles if ref.tile is not None else w, h)
        try:
            with Image.open(path) as img:
                size = img.size
        except OSError as e:
            raise DataFormatError(f"{path}: cannot read the image ({e})") from None
        if size != expected:
            raise DataFormatError(f"{path}: image is {size[1]}x{size[0]} but the tree's manifest says "
                                  f"{expected[1]}x{expected[0]}; the file was not written by this tree's generator")
        return entry, modality


def object_mask(record: Record, modality: str | None = None, *, root: str | Path | None = None,
                exclude_occluder: bool = False) -> np.ndarray:
    """Boolean (H, W) person / vehicle mask of a synthetic ``record``'s ``modality`` image (:meth:`ObjectMasks.mask`).

    ``root`` defaults to the tree the record's image lies in (the nearest folder above it holding
    ``manifest.yaml``); the tree is re-planned once per root and kept.
    """
    return _tree(record, root).mask(record, modality, exclude_occluder=exclude_occluder)


def object_masks(records: Sequence[Record], modality: str | None = None, *, root: str | Path | None = None,
                 exclude_occluder: bool = False) -> np.ndarray:
    """Boolean ``[N, H, W]`` masks of synthetic ``records`` — e.g. ``object_masks([run.split.query[i] for i in
    indices], "rgb")`` for the samples of ``run.batch("query", indices)`` (see :func:`object_mask`)."""
    masks = [object_mask(r, modality, root=root, exclude_occluder=exclude_occluder) for r in records]
    if len({m.shape for m in masks}) > 1:
        raise ValueError(f"records come from trees of different image sizes {sorted({m.shape for m in masks})}")
    return np.stack(masks) if masks else np.zeros((0, 0, 0), bool)


def _tree(record: Record, root: str | Path | None) -> ObjectMasks:
    if root is None:
        path = Path(next(iter(record.images.values())).path)
        root = next((p for p in path.parents if (p / MANIFEST_FILE).is_file()), None)
        if root is None:
            raise DataFormatError(f"{path}: no {MANIFEST_FILE} in any folder above it; the record is not from a "
                                  "synthetic tree (pass root= if its image paths are relative)")
    root = Path(root)
    if not (root / MANIFEST_FILE).is_file() and (root.parent / MANIFEST_FILE).is_file():
        root = root.parent
    manifest = root / MANIFEST_FILE
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(f"{manifest}: cannot read the synthetic tree's manifest ({e})") from None
    return _cached_tree(str(root.resolve()), text)


@functools.lru_cache(maxsize=16)
def _cached_tree(root: str, manifest_text: str) -> ObjectMasks:
    """One :class:`ObjectMasks` per tree and manifest (a tree rewritten in place is re-planned)."""
    return ObjectMasks(root)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DataFormatError(f"{path}: cannot read a synthetic tree's manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("synthetic") is not True:
        raise DataFormatError(f"{path}: not the manifest of a synthetic tree (no 'synthetic: true'); object masks "
                              "exist only for trees written by `reidlab data synth`")
    if manifest.get("benchmark") not in SPECS:
        raise DataFormatError(f"{path}: benchmark {manifest.get('benchmark')!r} is not a synthetic format "
                              f"({', '.join(SPECS)})")
    version = (manifest.get("generator") or {}).get("generator_version")
    if version != GENERATOR_VERSION:
        raise DataFormatError(f"{path}: written by generator version {version}, this code is version "
                              f"{GENERATOR_VERSION}; its drawings cannot be replayed: render the tree again")
    return manifest
