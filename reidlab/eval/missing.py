"""Missing-modality test settings: fixed ones (M(R) ... M(NT)) and DENet's random missing rate η.

Modalities are always indexed in the canonical order of :data:`reidlab.data.records.MODALITIES`
(rgb, nir, tir). A *missing mask* is a boolean ``[B, 3]`` tensor, True where a modality is
absent; a *presence mask* is its complement.

Fixed settings name the missing modalities: ``M(NT)`` means NIR and TIR are missing, only RGB
is given (the notation of MFRNet / TOP-ReID tables). They are applied to query **and** gallery.
The reference code feeds a zero tensor in place of the missing image *after* normalisation,
which :func:`apply_missing` reproduces; methods with a reconstruction path (MFRNet, DENet) read
the presence mask instead of the zeros.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from reidlab.data.records import MODALITIES, MODALITY_LETTERS


def _setting_name(missing: tuple[str, ...]) -> str:
    return "M(" + "".join(MODALITY_LETTERS[m] for m in missing) + ")"


#: Setting name -> missing modalities (canonical order). "complete" misses nothing.
MISSING_SETTINGS: dict[str, tuple[str, ...]] = {"complete": ()} | {
    _setting_name(missing): missing
    for size in (1, 2)
    for missing in combinations(MODALITIES, size)
}


def missing_mask(setting: str, batch_size: int) -> torch.Tensor:
    """The ``[batch_size, 3]`` missing mask of a fixed setting (e.g. ``"M(NT)"``)."""
    try:
        missing = MISSING_SETTINGS[setting]
    except KeyError:
        raise ValueError(f"unknown missing-modality setting {setting!r}; "
                         f"expected one of {', '.join(MISSING_SETTINGS)}") from None
    row = torch.tensor([m in missing for m in MODALITIES])
    return row.expand(batch_size, len(MODALITIES)).clone()


def apply_missing(images: torch.Tensor, missing: str | torch.Tensor,
                  presence: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the missing modalities of a stacked batch and return ``(images, presence)``.

    ``images`` is ``[B, 3, C, H, W]`` (already normalised) in canonical modality order;
    ``missing`` is a setting name or a ``[B, 3]`` boolean missing mask (e.g. from
    :func:`random_missing_masks`); ``presence`` is the batch's current ``[B, 3]`` presence mask
    (default: all present). Returns new tensors; the inputs are not modified. A sample left with
    no modality at all is an error.
    """
    if images.ndim != 5 or images.shape[1] != len(MODALITIES):
        raise ValueError(f"images must be [B, {len(MODALITIES)}, C, H, W] in order {MODALITIES}, "
                         f"got shape {tuple(images.shape)}")
    batch = images.shape[0]
    mask = missing_mask(missing, batch) if isinstance(missing, str) else missing
    if mask.shape != (batch, len(MODALITIES)) or mask.dtype != torch.bool:
        raise ValueError(f"missing mask must be a bool tensor of shape ({batch}, {len(MODALITIES)}), "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    if presence is None:
        presence = torch.ones(batch, len(MODALITIES), dtype=torch.bool)
    mask = mask.to(images.device)
    presence = presence.to(images.device) & ~mask
    empty = (~presence.any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"samples {empty[:10].tolist()} would have no modality left")
    kept = presence[:, :, None, None, None].to(images.dtype)
    return images * kept, presence


def random_missing_masks(n: int, rate: float, seed: int, modalities: int = len(MODALITIES)) -> torch.Tensor:
    """DENet's random missing rate η: a ``[n, modalities]`` boolean missing mask.

    DENet (Sec. IV-E) removes M images — any modality of any sample — from the N query+gallery
    images and calls η = M / N the missing rate. Here N = ``n * modalities`` images and exactly
    M = round(η·N) of them are removed. The paper does not say what happens to a sample that
    would lose every image; we never remove a sample's last modality: each sample keeps one
    modality drawn uniformly at random, and the M removed images are drawn uniformly without
    replacement from the others. Every image is thus missing with the same probability η, and
    η may not exceed (modalities - 1) / modalities. Draw one mask for query and gallery
    together (as the paper does) and split it. Deterministic from ``seed``.
    """
    if n < 0 or modalities < 1:
        raise ValueError(f"need n >= 0 samples and at least one modality, got n={n}, modalities={modalities}")
    limit = (modalities - 1) / modalities
    if not 0.0 <= rate <= limit:
        raise ValueError(f"missing rate must be in [0, {limit:.3f}] so that every sample keeps a modality, "
                         f"got {rate}")
    rng = np.random.default_rng(seed)
    kept = rng.integers(0, modalities, size=n)
    others = np.array([[m for m in range(modalities) if m != k] for k in range(modalities)])
    # candidate (sample, modality) slots: every modality but the kept one, flattened sample-major
    candidates = (np.arange(n)[:, None] * modalities + others[kept]).ravel()
    removed = rng.choice(candidates, size=round(rate * n * modalities), replace=False)
    mask = np.zeros(n * modalities, dtype=bool)
    mask[removed] = True
    return torch.from_numpy(mask.reshape(n, modalities))
