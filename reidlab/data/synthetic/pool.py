"""The pre-training population: the synthetic stand-in for ImageNet / LUPerson, rendered in memory.

Its identities come from :func:`~.identities.make_pool_identities`, whose codes lie in a region of
each modality's code space that no benchmark codebook draws (so no pool identity equals, or shares a
colour, pattern or heat code with, an identity of any synthetic benchmark tree). Each identity is
captured ``captures`` times under random views, mirrors, day/night and backgrounds (layout ids from
:data:`POOL_BACKGROUND_BASE` on, above every benchmark's camera and scene ids), rendered in RGB, NIR
and TIR, degraded by a mix drawn per capture from the generator's presets, JPEG-encoded at the
trees' quality, decoded and resized as the loader does, and kept as uint8 tensors. Half of the
persons are rendered in the cross-modal regime (``shared_pattern``: texture in every modality, as in
SYSU-MM01 / RegDB), so one backbone meets both regimes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from reidlab.data.records import MODALITIES
from reidlab.data.synthetic.degrade import PRESETS, apply_degradations, draw_degradations
from reidlab.data.synthetic.identities import PERSON, make_pool_identities
from reidlab.data.synthetic.layouts import SPECS
from reidlab.data.synthetic.render import VIEWS, Conditions, render_sample
from reidlab.data.synthetic.seeding import rng_for
from reidlab.data.synthetic.writers import encode, to_uint8

#: Background layout ids of the pool start here (benchmarks use camera ids < 10 and MSVR310 scene ids < 1000).
POOL_BACKGROUND_BASE = 10_000
POOL_BACKGROUNDS = 64
POOL_NIGHT_RATE = 0.35
#: Render sizes (H, W) per kind: the benchmark trees' defaults, so resizing matches what the loader sees.
RENDER_SIZE = {PERSON: SPECS["rgbnt201"].image_size, "vehicle": SPECS["wmveid863"].image_size}


@dataclass
class PoolImages:
    """One kind's population: ``images`` uint8 [N, 3, H, W] (NIR / TIR replicated to 3 channels), identity
    ``labels`` [N] (0..num_ids-1), ``modality`` [N] (index into MODALITIES)."""

    kind: str
    images: Tensor
    labels: Tensor
    modality: Tensor


def render_pool(kind: str, num_ids: int, captures: int, size: tuple[int, int], seed: int = 0, *,
                progress: bool = True) -> PoolImages:
    """Render ``num_ids`` pool identities of ``kind``, ``captures`` captures each, every capture in all three
    modalities, at ``size`` (H, W) after the loader's resize. Deterministic in ``seed``."""
    identities = make_pool_identities(kind, num_ids, seed)
    mixes = list(PRESETS.values())
    images, labels, modality = [], [], []
    jobs = [(ident, n) for ident in identities for n in range(captures)]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=f"render {kind} pool", unit="capture", leave=False)
    for ident, number in jobs:
        rng = rng_for(seed, "pool", kind, "capture", ident.index, number)
        shared = kind == PERSON and ident.index % 2 == 1
        night = bool(rng.random() < POOL_NIGHT_RATE)
        cond = Conditions(VIEWS[int(rng.integers(3))], night,
                          POOL_BACKGROUND_BASE + int(rng.integers(POOL_BACKGROUNDS)), bool(rng.random() < 0.5))
        rendered, parts = render_sample(ident, cond, RENDER_SIZE[kind], seed, rng, shared_pattern=shared)
        plan = draw_degradations(mixes[int(rng.integers(len(mixes)))], MODALITIES, night, POOL_NIGHT_RATE, rng)
        degraded = apply_degradations(rendered, parts, plan, rng)
        for m, name in enumerate(MODALITIES):
            images.append(_as_loaded(degraded[name], size))
            labels.append(ident.index)
            modality.append(m)
    return PoolImages(kind, torch.stack(images), torch.tensor(labels), torch.tensor(modality))


def _as_loaded(image: np.ndarray, size: tuple[int, int]) -> Tensor:
    """What the loader makes of this image written as a JPEG: decoded to RGB and resized by PIL (bicubic, as
    :func:`~reidlab.data.transforms.resize_to_tensor` does for PIL images), kept as uint8 [3, H, W]."""
    with Image.open(io.BytesIO(encode(to_uint8(image), Path("x.jpg")))) as decoded:
        resized = decoded.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1).contiguous()
