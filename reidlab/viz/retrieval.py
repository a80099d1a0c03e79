"""Retrieval rank lists: the query, then its top-k gallery matches with correct/incorrect borders.

Ranking follows :mod:`reidlab.eval.metrics`: increasing distance, ties broken by gallery index,
gallery items removed by the protocol skipped (pass ``keep_mask``, e.g. from
:func:`protocol_keep_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from reidlab.eval.protocols import Labels, Protocol, removal_mask
from reidlab.viz.style import (
    CORRECT_COLOR,
    INCORRECT_COLOR,
    QUERY_COLOR,
    ImageSource,
    finish,
    fit_image_cells,
    image_axis,
    image_cell_size,
    new_figure,
    style,
    to_display,
)

Array = np.ndarray | torch.Tensor | Sequence


def _numpy(values: Array) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def rank_list(distmat: Array, query_pids: Array, gallery_pids: Array, k: int = 10,
              keep_mask: Array | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery indices ``[Q, k]`` per query and whether each is a true match ``[Q, k]`` (bool).

    ``keep_mask`` ``[Q, G]`` (True = may be ranked) removes junk gallery items per query. Raises when
    a query has fewer than ``k`` gallery items left.
    """
    dist = _numpy(distmat).astype(np.float64)
    q_pids, g_pids = _numpy(query_pids), _numpy(gallery_pids)
    if dist.ndim != 2 or q_pids.shape != (dist.shape[0],) or g_pids.shape != (dist.shape[1],):
        raise ValueError(f"expected distmat [Q, G] with query_pids [Q] and gallery_pids [G], got shapes "
                         f"{dist.shape}, {q_pids.shape}, {g_pids.shape}")
    if keep_mask is not None:
        keep = _numpy(keep_mask).astype(bool)
        if keep.shape != dist.shape:
            raise ValueError(f"keep_mask must have the distmat's shape {dist.shape}, got {keep.shape}")
        short = np.flatnonzero(keep.sum(1) < k)
        if short.size:
            raise ValueError(f"query {short[0]} has only {int(keep[short[0]].sum())} gallery items left after "
                             f"removal; cannot show the top {k}")
        dist = np.where(keep, dist, np.inf)
    elif dist.shape[1] < k:
        raise ValueError(f"the gallery has {dist.shape[1]} items; cannot show the top {k}")
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, g_pids[order] == q_pids[:, None]


def protocol_keep_mask(protocol: str | Protocol, query_pids: Array, gallery_pids: Array, query_camids: Array,
                       gallery_camids: Array, query_sceneids: Array | None = None,
                       gallery_sceneids: Array | None = None) -> np.ndarray:
    """``[Q, G]`` mask of gallery items a protocol lets each query rank (the complement of its removal)."""

    def labels(pids: Array, camids: Array, sceneids: Array | None) -> Labels:
        scenes = None if sceneids is None else torch.as_tensor(_numpy(sceneids).astype(np.int64))
        return Labels(torch.as_tensor(_numpy(pids).astype(np.int64)),
                      torch.as_tensor(_numpy(camids).astype(np.int64)), scenes)

    removed = removal_mask(protocol, labels(query_pids, query_camids, query_sceneids),
                           labels(gallery_pids, gallery_camids, gallery_sceneids))
    return ~removed.numpy()


def plot_rank_list(query_images: Sequence[ImageSource] | torch.Tensor,
                   gallery_images: Sequence[ImageSource] | torch.Tensor, distmat: Array, query_pids: Array,
                   gallery_pids: Array, query_indices: Sequence[int], *, k: int = 10,
                   keep_mask: Array | None = None, save: str | Path | None = None) -> Figure:
    """Image grid: one row per query in ``query_indices``; the query, then its top-``k`` gallery items.

    Gallery cells get a green (same identity) or red (different identity) border and a
    "rank / distance" caption; the query cell a blue border and its identity. Images are anything
    :func:`reidlab.viz.style.to_display` reads (tensors in [0, 1] — :func:`denormalize` normalised
    ones first —, arrays, PIL images, :class:`~reidlab.data.records.ImageRef` or paths); only the
    shown ones are loaded. Cells follow the first query image's aspect ratio.
    """
    dist = _numpy(distmat).astype(np.float64)
    q_pids, g_pids = _numpy(query_pids), _numpy(gallery_pids)
    rows = list(query_indices)
    if not rows:
        raise ValueError("query_indices is empty; name at least one query to show")
    keep = None if keep_mask is None else _numpy(keep_mask)[rows]
    order, correct = rank_list(dist[rows], q_pids[rows], g_pids, k, keep)
    with style():
        first = to_display(query_images[rows[0]])
        fig, axes = new_figure(len(rows), k + 1, image_cell_size(first.shape))
        for r, q in enumerate(rows):
            image_axis(axes[r, 0], to_display(query_images[q]), QUERY_COLOR, "query", f"id {q_pids[q]}")
            for c in range(k):
                g = int(order[r, c])
                border = CORRECT_COLOR if correct[r, c] else INCORRECT_COLOR
                image_axis(axes[r, c + 1], to_display(gallery_images[g]), border, f"#{c + 1}",
                           f"id {g_pids[g]}\nd={dist[q, g]:.3f}")
        fit_image_cells(fig, axes, first.shape)
    return finish(fig, save)
