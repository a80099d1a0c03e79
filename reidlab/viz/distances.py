"""Intra-/inter-identity and intra-/inter-modality distance distributions (papers' Fig. 7 style).

Distances are those of evaluation: squared Euclidean between L2-normalised features
(:func:`reidlab.eval.pairwise_distance`, values in [0, 4]), over every unordered pair ``i < j``.
Separation is summarised by the means, their gap, the histogram overlap coefficient (sum of the
bin-wise minimum of the two normalised histograms over :func:`distance_bins` — :data:`NUM_BINS`
equal bins spanning the pooled intra and inter distances; 0 = disjoint, 1 = identical) and the
AUC = P(intra distance < inter distance) (ties count one half).

Bins follow the data, not the full range [0, 4]: features that collapse to distances in
[0.1, 0.3] would otherwise fall into a handful of bins (and overlap by construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import rankdata

from reidlab.eval import pairwise_distance
from reidlab.viz.style import INTER_COLOR, INTRA_COLOR, PANEL_SIZE, finish, new_figure, style

Array = np.ndarray | torch.Tensor | Sequence
#: Number of equal-width histogram bins over the pooled distances (plots and the overlap coefficient).
NUM_BINS = 60
#: The pair splits :func:`plot_distance_distributions` can show: (intra key, inter key, labels).
SPLITS: dict[str, tuple[str, str, str, str]] = {
    "identity": ("intra_identity", "inter_identity", "same identity", "different identity"),
    "cross_modality": ("intra_identity_cross_modality", "inter_identity_cross_modality",
                       "same identity, cross-modality", "different identity, cross-modality"),
    "modality": ("intra_modality", "inter_modality", "same modality", "different modality"),
    "modality_gap": ("intra_identity_same_modality", "intra_identity_cross_modality",
                     "same identity, same modality", "same identity, cross-modality"),
}


def distance_distributions(features: Array, pids: Array, modalities: Sequence[str] | None = None
                           ) -> dict[str, np.ndarray]:
    """Distances of every unordered pair of samples, split by identity (and modality).

    Returns ``intra_identity`` / ``inter_identity`` (all pairs) and, when ``modalities`` names each
    sample's modality, ``intra_modality`` / ``inter_modality`` (any identity) and
    ``intra_identity_cross_modality`` / ``inter_identity_cross_modality`` (pairs of different
    modalities only — the visible-infrared gap the cross-modal papers plot) and
    ``intra_identity_same_modality`` (same identity and modality: with the cross-modality positives, the
    modality gap of PECA's Fig. 8). 1-D float64 arrays in pair order (row-major over ``i < j``).
    """
    pids = pids.detach().cpu().numpy() if isinstance(pids, torch.Tensor) else np.asarray(pids)
    dist = pairwise_distance(features, features).double().cpu().numpy()
    if pids.shape != (dist.shape[0],):
        raise ValueError(f"pids must hold one identity per feature row ({dist.shape[0]}), got shape {pids.shape}")
    rows, cols = np.triu_indices(len(pids), k=1)
    values = dist[rows, cols]
    same_id = pids[rows] == pids[cols]
    out = {"intra_identity": values[same_id], "inter_identity": values[~same_id]}
    if modalities is not None:
        mods = np.asarray(list(modalities), dtype=object)
        if mods.shape != pids.shape:
            raise ValueError(f"modalities must name one modality per sample ({len(pids)}), got {len(mods)}")
        same_mod = mods[rows] == mods[cols]
        out["intra_modality"] = values[same_mod]
        out["inter_modality"] = values[~same_mod]
        out["intra_identity_same_modality"] = values[same_id & same_mod]
        out["intra_identity_cross_modality"] = values[same_id & ~same_mod]
        out["inter_identity_cross_modality"] = values[~same_id & ~same_mod]
    return out


def distance_bins(*distances: Array, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """:data:`NUM_BINS` + 1 equal-width bin edges spanning the pooled ``distances`` (or ``value_range``)."""
    pooled = np.concatenate([np.asarray(d, dtype=np.float64).ravel() for d in distances])
    if pooled.size == 0:
        raise ValueError("need at least one distance to place histogram bins")
    return np.histogram_bin_edges(pooled, bins=NUM_BINS, range=value_range)


def separation(intra: np.ndarray, inter: np.ndarray) -> dict[str, float]:
    """``intra_mean``, ``inter_mean``, ``gap`` (inter − intra mean), ``overlap`` and ``auc`` (module docstring)."""
    intra, inter = np.asarray(intra, dtype=np.float64), np.asarray(inter, dtype=np.float64)
    if intra.size == 0 or inter.size == 0:
        raise ValueError(f"need at least one intra and one inter distance, got {intra.size} and {inter.size}")
    bins = distance_bins(intra, inter)
    hist_intra = np.histogram(intra, bins)[0] / intra.size
    hist_inter = np.histogram(inter, bins)[0] / inter.size
    ranks = rankdata(np.concatenate([intra, inter]))
    # Mann-Whitney U of "inter > intra", normalised: P(intra < inter) + 0.5 P(tie).
    u = ranks[intra.size:].sum() - inter.size * (inter.size + 1) / 2
    return {"intra_mean": float(intra.mean()), "inter_mean": float(inter.mean()),
            "gap": float(inter.mean() - intra.mean()), "overlap": float(np.minimum(hist_intra, hist_inter).sum()),
            "auc": float(u / (intra.size * inter.size))}


def plot_distance_distributions(features: Array | Mapping[str, Array], pids: Array,
                                modalities: Sequence[str] | None = None, *, split: str = "identity",
                                shared_range: bool = False, save: str | Path | None = None) -> Figure:
    """Histograms of intra vs inter distances; one panel per model when ``features`` is ``{title: features}``.

    ``split`` is ``"identity"`` (all pairs), ``"cross_modality"`` (same vs different identity over
    cross-modality pairs), ``"modality"`` (same vs different modality) or ``"modality_gap"`` (same-identity
    pairs within vs across modalities); all but the first need ``modalities``. Each panel shows density
    histograms over :func:`distance_bins` of its own
    distances (x-axis = their range, so a panel whose distances collapse to [0.1, 0.3] is still
    resolved), dashed lines at the means, and the scale-free :func:`separation` summary (gap,
    overlap, AUC) in its title, which compares panels directly. ``shared_range=True`` puts every
    panel on the range of all panels' distances (for panels of similar spread).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split != "identity" and modalities is None:
        raise ValueError(f"split {split!r} needs the per-sample modalities")
    panels = dict(features) if isinstance(features, Mapping) else {"": features}
    if not panels:
        raise ValueError("features must map at least one panel title to a feature array")
    intra_key, inter_key, intra_label, inter_label = SPLITS[split]
    pairs = {}
    for name, feats in panels.items():
        dists = distance_distributions(feats, pids, modalities)
        pairs[name] = dists[intra_key], dists[inter_key]
    pooled = distance_bins(*(d for pair in pairs.values() for d in pair)) if shared_range else None
    with style():
        fig, axes = new_figure(1, len(panels), PANEL_SIZE)
        for ax, (name, (intra, inter)) in zip(axes[0], pairs.items(), strict=True):
            summary = separation(intra, inter)
            bins = distance_bins(intra, inter, value_range=None if pooled is None else (pooled[0], pooled[-1]))
            for values, color, label in ((intra, INTRA_COLOR, intra_label), (inter, INTER_COLOR, inter_label)):
                ax.hist(values, bins=bins, density=True, color=color, alpha=0.45, label=label)
                ax.axvline(values.mean(), color=color, linestyle="--", linewidth=1.2)
            ax.set_xlim(bins[0], bins[-1])
            ax.set_xlabel("squared Euclidean distance (L2-normalised features)")
            ax.set_ylabel("density")
            ax.legend(loc="upper left")
            head = f"{name}\n" if name else ""
            ax.set_title(f"{head}gap {summary['gap']:.3f}, overlap {summary['overlap']:.2f}, "
                         f"AUC {summary['auc']:.3f}")
    return finish(fig, save)
