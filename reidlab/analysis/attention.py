"""Measuring where attention maps fall, so that "less scattered and on the person" (PECA, Fig. 7) is a number.

- :func:`object_mass` — the share of each map's mass inside an object mask (1 = all attention on the person or
  vehicle; a uniform map scores the mask's area fraction, ``masks.mean(axis=(1, 2))``, the chance level);
- :func:`attention_entropy` — normalised spatial entropy of each map (1 = spread evenly, 0 = one pixel): the
  "scatter";
- :func:`resize_maps` — the resampling both use, for putting maps of different models on one grid.

Maps are non-negative ``[N, H, W]`` arrays, e.g. :func:`reidlab.viz.gradcam_maps` (per-image min-max in [0, 1],
at the model's input size); masks come from :func:`reidlab.data.synthetic.object_masks` for the same records
(``[run.split.query[i] for i in indices]`` for ``run.batch("query", indices)``: the test transform resizes the
whole image, so the map and the mask cover the same frame). Both measures depend on the map's offset (not on
its scale): Grad-CAM's min-max normalisation sets each map's minimum to 0.

An all-zero map has no mass to share out or spread: both measures return NaN for it (``np.nanmean`` skips it
and it stays visible), not 0 or the chance level. :func:`~reidlab.viz.gradcam_maps` returns all-zero maps for a
constant CAM and for samples whose modality a cross-modal model did not read.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _maps(cams: np.ndarray) -> np.ndarray:
    cams = np.asarray(cams, dtype=np.float64)
    if cams.ndim != 3:
        raise ValueError(f"expected maps [N, H, W], got shape {cams.shape} (one map: cams[None])")
    if not np.isfinite(cams).all():
        raise ValueError("maps hold NaN or infinite values")
    if (cams < 0).any():
        raise ValueError(f"maps must be non-negative (attention mass); the smallest value is {cams.min():g}")
    return cams


def resize_maps(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Non-negative maps ``[N, H, W]`` resampled to ``size`` = (H0, W0), float64.

    Bilinear with half-pixel centres (``align_corners=False``: cv2's and pytorch-grad-cam's convention, so
    enlarging a feature-resolution map matches how Grad-CAM upsamples), antialiased when shrinking (a triangle
    filter widened by the factor, as PIL's bilinear resize: every map pixel contributes). Stays non-negative; a
    constant map stays constant; the same size returns the maps unchanged.
    """
    cams = _maps(cams)
    size = (int(size[0]), int(size[1]))
    if cams.shape[1:] == size:
        return cams
    resized = F.interpolate(torch.from_numpy(cams)[:, None], size=size, mode="bilinear", align_corners=False,
                            antialias=True)[:, 0]
    return resized.clamp_min(0).numpy()


def object_mass(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share ``[N]`` of each map's total mass that lies inside its object mask, in [0, 1] (NaN: all-zero map).

    ``cams`` ``[N, H, W]`` are non-negative maps at any resolution, ``masks`` ``[N, H0, W0]`` boolean (True =
    object). Each map is resized to its mask's size (:func:`resize_maps`: bilinear), not the mask to the map's,
    so the mask stays exact at the image's own pixels. Compare with the mask's area fraction
    ``masks.mean(axis=(1, 2))``: what a map spread evenly over the image would score.
    """
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3:
        raise ValueError(f"expected boolean masks [N, H0, W0], got {masks.dtype} of shape {masks.shape}")
    cams = _maps(cams)
    if len(cams) != len(masks):
        raise ValueError(f"got {len(cams)} maps and {len(masks)} masks")
    resized = resize_maps(cams, masks.shape[1:])
    total = resized.sum(axis=(1, 2))
    inside = (resized * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def attention_entropy(cams: np.ndarray) -> np.ndarray:
    """Normalised spatial entropy ``[N]`` of each map, in [0, 1] (NaN: all-zero map).

    The map divided by its sum is a distribution over its ``H * W`` pixels; its Shannon entropy divided by
    ``log(H * W)`` is 1 for a uniform map (attention scattered everywhere) and 0 when all the mass sits on one
    pixel. Compare maps on one grid (:func:`resize_maps`): resampling changes the value somewhat.
    """
    cams = _maps(cams)
    pixels = cams.shape[1] * cams.shape[2]
    if pixels < 2:
        raise ValueError(f"maps of {pixels} pixel(s) have no spatial entropy to normalise; need at least 2")
    flat = cams.reshape(len(cams), -1)
    total = flat.sum(axis=1, keepdims=True)
    p = flat / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    entropy = np.clip(-terms.sum(axis=1) / np.log(pixels), 0.0, 1.0)
    return np.where(total[:, 0] > 0, entropy, np.nan)
