"""Shipped pretrained weights of the tutorial presets, selected like timm tags: ``vit_tutorial.synth``.

The ``synth`` tag is a preset pre-trained by ``reidlab pretrain PRESET`` (:mod:`reidlab.engine.pretrain`) on
the synthetic pre-training pool (:mod:`reidlab.data.synthetic.pool`: identities disjoint from every
benchmark tree, persons and vehicles, RGB/NIR/TIR, the generator's degradations), by supervised identity
classification — the stand-in for ImageNet / LUPerson pre-training. The weights of the tags registered in
:data:`SYNTH_SHA256` ship in the package
(``reidlab/weights/<tag>.safetensors`` with ``<tag>.json`` provenance: command, commit, sha256, seconds,
final training accuracy), so no notebook or CI run pays the pre-training cost; :data:`SYNTH_SHA256` pins
each file (a rebuilt file changes this module, hence the run cache's code digest), and loading verifies it.

ViT weights are saved with the position embedding of an 8×8 grid (the square 64×64 grid they were trained
around, resampled on the fly to each batch's grid); loading resamples it to the target ``img_size``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
PRETRAINED_TAG = "synth"
#: ViT pre-training grid: img_size 64×64 with 8×8 patches.
VIT_BASE_SIZE = (64, 64)
#: sha256 of each shipped weight file (rebuild: ``reidlab pretrain PRESET``, then update the line it prints).
SYNTH_SHA256: dict[str, str] = {
    "resnet_tutorial.synth": "0f5dd4942f3213f72aa5581c26bf5e67166f2c16b9ac6e396c621a1529dd30b9",
    "vit_tutorial.synth": "4b582cefd9cdf34ab19235572eea0e5bfcf7804279f0a6e7d778beff994bda08",
}


def split_tag(name: str) -> tuple[str, str | None]:
    """``"vit_tutorial.synth"`` -> ``("vit_tutorial", "synth")``; no tag -> ``(name, None)``."""
    arch, sep, tag = name.partition(".")
    return (arch, tag) if sep else (name, None)


def weights_path(tagged: str) -> Path:
    return WEIGHTS_DIR / f"{tagged}.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_weights(tagged: str, path: Path | None = None) -> Path:
    """The shipped weight file of ``tagged`` (e.g. ``vit_tutorial.synth``) after checking its sha256 against
    :data:`SYNTH_SHA256`; a missing, corrupted or stale file is a clear error naming it and the rebuild command."""
    path = weights_path(tagged) if path is None else Path(path)
    preset = split_tag(tagged)[0]
    rebuild = f"restore it from git (git checkout -- {path.name}) or rebuild it: reidlab pretrain {preset}"
    if tagged not in SYNTH_SHA256:
        raise ValueError(f"no pretrained weights are registered for {tagged!r}; registered: "
                         f"{', '.join(sorted(SYNTH_SHA256)) or 'none'}")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights for {tagged!r} not found: {path}; {rebuild}")
    actual, expected = sha256_of(path), SYNTH_SHA256[tagged]
    if actual != expected:
        raise RuntimeError(f"pretrained weights {path} are corrupted or stale: sha256 {actual[:16]}... does not "
                           f"match the registered {expected[:16]}... for {tagged!r}; {rebuild}")
    return path


__all__ = ["PRETRAINED_TAG", "SYNTH_SHA256", "VIT_BASE_SIZE", "WEIGHTS_DIR", "sha256_of", "split_tag",
           "verified_weights", "weights_path"]
