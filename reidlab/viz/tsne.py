"""t-SNE of re-identification features: colour = identity, marker = modality (papers' Figs. 6/8).

Choices: features are L2-normalised first (so t-SNE's Euclidean distances order pairs as the
evaluation distance of :func:`reidlab.eval.pairwise_distance` does); the shown identities are the
first ``max_ids`` in sorted order; scikit-learn's TSNE runs with ``init="pca"``, a fixed
``random_state``, perplexity ``min(30, (N - 1) / 3)`` (at least 1) and one thread (its Barnes-Hut
gradient is multi-threaded and t-SNE amplifies rounding differences), so plots are reproducible
across machines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from reidlab.viz.style import MARKER_SIZE, PANEL_SIZE, finish, identity_color, modality_marker, new_figure, style

Array = np.ndarray | torch.Tensor | Sequence


def _as_numpy(values: Array) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def select_identities(pids: Array, max_ids: int) -> np.ndarray:
    """Boolean mask of the samples whose identity is among the first ``max_ids`` identities (sorted)."""
    pids = _as_numpy(pids)
    if max_ids < 1:
        raise ValueError(f"max_ids must be at least 1, got {max_ids}")
    return np.isin(pids, np.unique(pids)[:max_ids])


def tsne_embedding(features: Array, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of L2-normalised ``features`` ``[N, D]`` (deterministic for a given ``seed``)."""
    x = _as_numpy(features).astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"t-SNE needs features [N, D] with N >= 3, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = max(1.0, min(30.0, (x.shape[0] - 1) / 3))
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _check(features: Array, pids: Array, modalities: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, list]:
    feats, pids = _as_numpy(features), _as_numpy(pids)
    if feats.ndim != 2 or pids.shape != (feats.shape[0],):
        raise ValueError(f"expected features [N, D] and pids [N], got shapes {feats.shape} and {pids.shape}")
    mods = [None] * len(pids) if modalities is None else list(modalities)
    if len(mods) != len(pids):
        raise ValueError(f"modalities must name one modality per sample ({len(pids)}), got {len(mods)}")
    return feats, pids, mods


def _draw(ax: Axes, feats: np.ndarray, pids: np.ndarray, mods: list, max_ids: int, seed: int,
          title: str | None) -> None:
    keep = select_identities(pids, max_ids)
    feats, pids = feats[keep], pids[keep]
    mods = [m for m, k in zip(mods, keep, strict=True) if k]
    xy = tsne_embedding(feats, seed)
    position = {pid: i for i, pid in enumerate(np.unique(pids))}
    for modality in dict.fromkeys(mods):
        rows = np.array([m == modality for m in mods])
        colors = [identity_color(position[p]) for p in pids[rows]]
        ax.scatter(xy[rows, 0], xy[rows, 1], c=colors, marker=modality_marker(modality), s=MARKER_SIZE,
                   edgecolors="black", linewidths=0.3)
    ax.set_xticks([])
    ax.set_yticks([])
    named = [m for m in dict.fromkeys(mods) if m is not None]
    if named:
        handles = [Line2D([], [], linestyle="", marker=modality_marker(m), markerfacecolor="white",
                          markeredgecolor="black", label=m) for m in named]
        ax.legend(handles=handles, loc="best", title="modality")
    ax.set_title(title if title is not None else f"t-SNE ({len(position)} identities, {len(pids)} samples)")


def plot_tsne(features: Array, pids: Array, modalities: Sequence[str] | None = None, *, max_ids: int = 15,
              seed: int = 0, title: str | None = None, ax: Axes | None = None,
              save: str | Path | None = None) -> Figure:
    """t-SNE scatter of ``features`` ``[N, D]``: colour = identity, marker = modality.

    ``modalities`` names each sample's modality (``rgb`` circle, ``nir`` square, ``tir`` triangle,
    anything else — e.g. ``fused`` — star) and adds a modality legend; ``None`` draws circles.
    Draws into ``ax`` when given (and returns its figure), else into a new fixed-size figure.
    """
    feats, pids, mods = _check(features, pids, modalities)
    with style():
        if ax is None:
            fig, axes = new_figure(1, 1, PANEL_SIZE)
            ax = axes[0, 0]
        else:
            fig = ax.figure
        _draw(ax, feats, pids, mods, max_ids, seed, title)
    return finish(fig, save)


def plot_tsne_pair(features: Mapping[str, Array], pids: Array, modalities: Sequence[str] | None = None, *,
                   max_ids: int = 15, seed: int = 0, save: str | Path | None = None) -> Figure:
    """Side-by-side t-SNE panels of the same samples under several models (``{title: features}``).

    Typically ``{"baseline": f0, "method": f1}`` (the papers' "baseline vs ours" figures); every
    panel shows the same identities with the same colours.
    """
    if not features:
        raise ValueError("features must map at least one panel title to a feature array")
    checked = {name: _check(f, pids, modalities) for name, f in features.items()}
    with style():
        fig, axes = new_figure(1, len(checked), PANEL_SIZE)
        for ax, (name, (feats, ids, mods)) in zip(axes[0], checked.items(), strict=True):
            _draw(ax, feats, ids, mods, max_ids, seed, name)
    return finish(fig, save)
