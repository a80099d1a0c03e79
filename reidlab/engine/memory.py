"""Cluster memories and cross-modal cluster matching for unsupervised methods.

* :class:`ClusterMemory` — cluster-contrast's ``ClusterMemory`` (Dai et al., "Cluster contrast for
  unsupervised person re-identification", ACCV 2022, Eq. 2-3): logits ``normalise(q) . M^T / tau``,
  cross-entropy over clusters; the centroids are refreshed inside the backward pass.
  ``"mean"`` (their ``CM``): sample by sample ``M_y <- m M_y + (1 - m) q``, then re-normalised.
  ``"hard"`` (their ``CM_Hard``): per cluster in the batch, the sample **least** similar to ``M_y``.
  The bank is rebuilt from cluster centroids (:func:`cluster_centroids`) at every re-clustering, so it
  is not part of the state dict.
* :func:`hungarian_match` (PGM: ``linear_sum_assignment`` on ``exp(-S)``, repeated for the rows left
  over) and :func:`greedy_match` (TokenMatcher Alg. 1 / MMCF VRA: greedy argmax, at most ``mu`` rows
  per column; see ``specs/mmcf.md`` §3.5b) pair clusters of two modalities from a similarity ``S``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

MEMORY_MODES = ("mean", "hard")


def cluster_centroids(features: Tensor, labels: np.ndarray | Tensor) -> Tensor:
    """L2-normalised mean feature of each cluster ``0..max(labels)``; outliers (``-1``) are ignored."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    keep = labels >= 0
    if not bool(keep.any()):
        raise ValueError("no clustered sample: every label is -1")
    count = int(labels.max()) + 1
    sums = torch.zeros(count, features.shape[1], dtype=features.dtype).index_add_(0, labels[keep], features[keep])
    sizes = torch.bincount(labels[keep], minlength=count).clamp_min(1)
    return F.normalize(sums / sizes[:, None].to(features.dtype), dim=1)


class _MemoryUpdate(torch.autograd.Function):
    # Under CUDA bf16 autocast the similarities are computed in float32 against the float32 bank, and the backward
    # pass sees float32 gradients (without this the backward multiplied bf16 gradients with the float32 bank).
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, inputs: Tensor, targets: Tensor, bank: Tensor, momentum: float, hard: bool) -> Tensor:
        ctx.bank, ctx.momentum, ctx.hard = bank, momentum, hard
        ctx.save_for_backward(inputs, targets)
        return inputs @ bank.t()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_outputs: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        inputs, targets = ctx.saved_tensors
        grad = grad_outputs @ ctx.bank if ctx.needs_input_grad[0] else None
        bank, m = ctx.bank, ctx.momentum
        with torch.no_grad():
            if ctx.hard:
                for y in targets.unique().tolist():
                    members = inputs[targets == y]
                    hardest = members[(members @ bank[y]).argmin()]
                    bank[y] = F.normalize(m * bank[y] + (1 - m) * hardest, dim=0)
            else:
                for x, y in zip(inputs, targets.tolist(), strict=True):
                    bank[y] = F.normalize(m * bank[y] + (1 - m) * x, dim=0)
        return grad, None, None, None, None


class ClusterMemory(nn.Module):
    """Centroid memory with a momentum update in the backward pass (module docstring)."""

    def __init__(self, dim: int, temperature: float = 0.05, momentum: float = 0.2, mode: str = "mean") -> None:
        super().__init__()
        if mode not in MEMORY_MODES:
            raise ValueError(f"mode must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
        self.temperature, self.momentum, self.mode = temperature, momentum, mode
        self.register_buffer("bank", torch.zeros(0, dim), persistent=False)

    def reset(self, centroids: Tensor) -> None:
        """Replace the bank (e.g. with :func:`cluster_centroids` after re-clustering)."""
        self.bank = F.normalize(centroids.detach().to(self.bank.device, torch.float32), dim=1).clone()

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        if self.bank.shape[0] == 0:
            raise RuntimeError("ClusterMemory is empty: call reset(centroids) after clustering")
        logits = _MemoryUpdate.apply(F.normalize(inputs, dim=1), targets, self.bank, self.momentum,
                                     self.mode == "hard")
        return F.cross_entropy(logits / self.temperature, targets)


def hungarian_match(similarity: np.ndarray) -> np.ndarray:
    """Partner column of every row (rows >= columns): optimal one-to-one assignments on ``exp(-S)``,
    repeated on the rows still unmatched until each has one (PGM's many-to-one second pass)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    rows, cols = similarity.shape
    if rows < cols or cols == 0:
        raise ValueError(f"need at least as many rows as columns (and one column), got {rows} x {cols}")
    partner = np.full(rows, -1)
    while (left := np.flatnonzero(partner < 0)).size:
        r, c = linear_sum_assignment(np.exp(-similarity[left]))
        partner[left[r]] = c
    return partner


def greedy_match(similarity: np.ndarray, mu: int, overflow: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """TokenMatcher / MMCF greedy capped matching (rows = the larger modality, e.g. visible clusters).

    Pass 1: take pairs by decreasing similarity; a row is matched once, a column takes at most ``mu``
    rows. Pass 2: every column still without a partner takes, in the same order, rows again (at most
    ``mu`` new columns per row) until each column has one. Returns (``row_to_col``, ``col_to_rows``, in
    the order they were assigned: the first is the most similar).

    With more than ``mu`` rows per column (``rows > mu * cols``) pass 1 cannot place every row: by default that
    is an error (PGM's ``KeyError`` on such epochs, spec §8); ``overflow=True`` gives each row left over its most
    similar column beyond the cap (appended after the capped ones).
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    rows, cols = similarity.shape
    if mu < 1 or cols < 1 or (rows > mu * cols and not overflow):
        raise ValueError(f"cannot give each of {rows} rows a partner among {cols} columns with mu={mu}")
    order = np.argsort(-similarity, axis=None, kind="stable")
    row_to_col, col_to_rows = np.full(rows, -1), [[] for _ in range(cols)]
    for flat in order:
        r, c = divmod(int(flat), cols)
        if row_to_col[r] < 0 and len(col_to_rows[c]) < mu:
            row_to_col[r] = c
            col_to_rows[c].append(r)
    for r in np.flatnonzero(row_to_col < 0):  # only with overflow: every column already holds mu rows
        row_to_col[r] = int(np.argmax(similarity[r]))
        col_to_rows[row_to_col[r]].append(int(r))
    reused = np.zeros(rows, dtype=int)
    for flat in order:
        r, c = divmod(int(flat), cols)
        if not col_to_rows[c] and reused[r] < mu:
            col_to_rows[c].append(r)
            reused[r] += 1
    return row_to_col, col_to_rows
