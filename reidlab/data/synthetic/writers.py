"""Encoding images and writing the tree's files: images, split files, metadata.csv, manifest.yaml.

Outputs are byte-for-byte reproducible: fixed JPEG quality and no EXIF/timestamps, rows sorted by
key with fixed float formatting, YAML keys in a fixed order.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from reidlab.data.records import MODALITIES, record_statistics
from reidlab.data.synthetic.degrade import SampleDegradations
from reidlab.data.synthetic.identities import Identity
from reidlab.data.synthetic.layouts import Entry, FormatSpec, Layout, expected_parts

JPEG_QUALITY = 92
METADATA_FILE, MANIFEST_FILE = "metadata.csv", "manifest.yaml"
METADATA_COLUMNS: tuple[str, ...] = (
    "key", "split", "pid", "camid", "sceneid", "viewpoint", "background", "illumination",
    *(f"{m}_{c}" for m in MODALITIES for c in ("degradation", "severity", "quality")),
    "capture", "colour_code", "pattern_code", "heat_code", "shape",
)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode(pixels: np.ndarray, path: Path) -> bytes:
    """JPEG (quality 92) or BMP bytes of a uint8 grey (H, W) or colour (H, W, 3) image."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    if path.suffix == ".bmp":
        image.save(buffer, "BMP")
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_capture(dataset_dir: Path, entries: list[Entry], images: dict[str, np.ndarray]) -> None:
    """Write every record of one capture; copies (query = gallery sample) get identical bytes."""
    pixels = {m: to_uint8(img) for m, img in images.items()}
    cache: dict[tuple[str, ...], bytes] = {}
    for entry in entries:
        if entry.tiled:                                   # RGBNT100: RGB | NIR | TIR in one RGB JPEG
            tiles = [pixels[m] if pixels[m].ndim == 3 else np.repeat(pixels[m][..., None], 3, 2)
                     for m in MODALITIES]
            targets = [(MODALITIES, np.concatenate(tiles, axis=1), entry.files[MODALITIES[0]])]
        else:
            targets = [((m,), pixels[m], path) for m, path in entry.files.items()]
        for key, array, rel in targets:
            path = dataset_dir / rel
            data = cache.get((*key, path.suffix))
            if data is None:
                data = cache[(*key, path.suffix)] = encode(array, path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def write_split_files(dataset_dir: Path, layout: Layout) -> None:
    for rel, text in layout.split_files.items():
        path = dataset_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("ascii"))


def metadata_rows(layout: Layout, degradations: dict[tuple[int, int], SampleDegradations],
                  identities: list[Identity]) -> list[dict]:
    rows = []
    for e in layout.entries:
        cap = e.capture
        ident = identities[cap.identity]
        row = {"key": e.key, "split": e.part, "pid": e.pid, "camid": e.camid,
               "sceneid": "" if cap.scene is None else cap.scene, "viewpoint": cap.view,
               "background": cap.background, "illumination": "night" if cap.night else "day"}
        plan = degradations[cap.identity, cap.number].per_modality
        for m in MODALITIES:
            present = m in e.files
            d = plan.get(m)
            row[f"{m}_degradation"] = d.kind if present else ""
            row[f"{m}_severity"] = f"{d.severity:.4f}" if present else ""
            row[f"{m}_quality"] = f"{d.quality:.4f}" if present else ""
        row.update(capture=f"{cap.identity}/{cap.number}", colour_code=ident.codes[0],
                   pattern_code=ident.codes[1], heat_code=ident.codes[2], shape=ident.shape)
        rows.append(row)
    return sorted(rows, key=lambda r: r["key"])


def write_metadata(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def manifest_counts(layout: Layout) -> dict[str, dict[str, int]]:
    """Per part, what ``Split.statistics()`` reports for the records the loader returns."""
    return {part: record_statistics(records) for part, records in expected_parts(layout).items()}


def write_manifest(path: Path, spec: FormatSpec, layout: Layout, settings: dict) -> dict:
    counts = manifest_counts(layout)
    manifest = {
        "benchmark": spec.benchmark,
        "title": f"Synthetic benchmark in the {spec.dataset_dir} on-disk format (reidlab data synth)",
        "synthetic": True,
        "citation": "",
        "obtain": (f"Generated, not downloaded: reidlab data synth --like {spec.benchmark} "
                   f"--seed {settings['seed']} --num-ids {settings['num_ids']} "
                   f"--image-size {settings['image_size'][0]}x{settings['image_size'][1]} "
                   f"--degradations '{settings['degradations']}'. "
                   "See docs/synthetic_dataset_card.md; per-record conditions are in metadata.csv.\n"),
        "layout": spec.layout + "\n",
        "modalities": list(spec.modalities),
        "loader_options": dict(spec.loader_options),
        "counts": {part: {k: int(v) for k, v in stats.items()} for part, stats in counts.items()},
        "protocol": {"name": spec.protocol,
                     "description": "As the real benchmark (see data_manifests/"
                                    f"{spec.benchmark}.yaml); sizes are the synthetic tree's.\n"},
        "official_files": [],
        "generator": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
    }
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=120, allow_unicode=False), encoding="utf-8")
    return manifest
