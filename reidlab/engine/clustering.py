"""Pseudo-labels for unsupervised re-identification: k-reciprocal Jaccard distance, DBSCAN, matching.

The algorithm is the one every unsupervised VI-ReID peer uses (cluster-contrast's
``compute_jaccard_distance``, after Zhong et al., "Re-ranking person re-identification with
k-reciprocal encoding", CVPR 2017), computed exactly but never as dense ``N x N`` matrices:

1. exact kNN under the squared Euclidean distance of L2-normalised features, ``2 - 2 cos``
   (:func:`knn`, chunked matrix products); ``initial_rank[i]`` lists ``i``'s ``k1`` nearest, itself first;
2. k-reciprocal sets ``R(i, k) = {j in N(i, k) : i in N(j, k)}`` (Eq. 3 of Zhong et al.) with the
   peer's list lengths: ``N(i, k1)`` has ``k1`` entries, ``N(i, round(k1 / 2))`` has ``round(k1 / 2) + 1``;
3. expansion (Eq. 6): ``R*(i) = R(i, k1)`` united with every ``R(c, round(k1 / 2))``, ``c`` in
   ``R(i, k1)``, that shares more than 2/3 of its members with ``R(i, k1)``;
4. Gaussian weights (Eq. 7): ``V[i, j] = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j'))`` on ``R*(i)``;
5. local query expansion: ``V[i] <- mean of V[j]`` over the ``k2`` nearest ``j`` (including ``i``);
6. Jaccard distance (Eq. 10-11): ``d_J(i, j) = 1 - sum min(V_i, V_j) / sum max(V_i, V_j)``; rows of
   ``V`` sum to 1, so ``sum max = 2 - sum min`` (the peer's form). Only pairs whose ``V`` rows share
   a column can be below 1; :func:`jaccard_distance` returns exactly those pairs (diagonal included,
   zeros stored explicitly) as a SciPy CSR matrix — every other pair is at distance 1.

:func:`dbscan_labels` runs scikit-learn's DBSCAN on that sparse matrix (absent entries are not
neighbours, which is right since they are at distance 1 > eps). Memories and cross-modal
matching live in :mod:`reidlab.engine.memory`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

#: Rows of the query x gallery similarity block of :func:`knn` (bounds its memory).
KNN_CHUNK_BYTES = 256 * 2**20
#: Cells of the dense ``rows x N`` accumulator, and (row, column, row) triples, of a :func:`jaccard_distance` block.
JACCARD_BLOCK_CELLS = 2**22


def knn(features: torch.Tensor, k: int, chunk_bytes: int = KNN_CHUNK_BYTES) -> np.ndarray:
    """``[N, k]`` indices of each row's ``k`` nearest rows (itself included) by ``2 - 2 cos``, nearest first.

    Exact: chunked ``x @ x.T`` and ``topk``. ``features`` must be L2-normalised rows (float32).
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the number of samples), got {k}")
    rows = max(1, chunk_bytes // (4 * n))
    out = torch.empty(n, k, dtype=torch.long)
    gallery = features.t().contiguous()
    for start in range(0, n, rows):
        sims = features[start:start + rows] @ gallery
        out[start:start + rows] = sims.topk(k, dim=1, sorted=True).indices.cpu()
    return out.numpy()


def reciprocal_sets(initial_rank: np.ndarray, k: int) -> sp.csr_matrix:
    """Binary CSR ``R[i, j] = 1`` iff ``j`` is in ``i``'s k-reciprocal set (first ``k + 1`` columns of the rank)."""
    forward = initial_rank[:, :k + 1]
    n, width = forward.shape
    backward = initial_rank[forward, :width]  # [n, width, width]
    reciprocal = (backward == np.arange(n)[:, None, None]).any(-1)
    rows = np.repeat(np.arange(n), width)[reciprocal.ravel()]
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, forward[reciprocal])), shape=(n, n))


def expanded_sets(initial_rank: np.ndarray, k1: int) -> sp.csr_matrix:
    """Binary CSR of ``R*(i)``: ``R(i, k1)`` plus the half-size sets that overlap it by more than 2/3."""
    full = reciprocal_sets(initial_rank, k1)
    half = reciprocal_sets(initial_rank, int(np.around(k1 / 2)))
    overlap = full.multiply(full @ half.T).tocoo()  # |R(i, k1) & R(c, k1/2)| for c in R(i, k1)
    sizes = np.asarray(half.sum(1)).ravel()
    accept = overlap.data > 2 / 3 * sizes[overlap.col]
    chosen = sp.csr_matrix((np.ones(accept.sum(), dtype=np.float32), (overlap.row[accept], overlap.col[accept])),
                           shape=full.shape)
    expanded = (full + chosen @ half).tocsr()
    expanded.data[:] = 1
    expanded.sort_indices()
    return expanded


def encode(features: torch.Tensor, initial_rank: np.ndarray, k1: int, k2: int) -> sp.csr_matrix:
    """The k-reciprocal feature ``V`` (steps 3-5 of the module docstring), float32 CSR with rows summing to 1."""
    support = expanded_sets(initial_rank, k1)
    x = features.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta", invariant checks
        pattern = torch.sparse_csr_tensor(torch.from_numpy(support.indptr.astype(np.int64)),
                                          torch.from_numpy(support.indices.astype(np.int64)),
                                          torch.ones(support.nnz), size=support.shape)
        dots = torch.sparse.sampled_addmm(pattern, x, x.t().contiguous(), beta=0.0).values()
    dist = 2 - 2 * dots
    rows = torch.from_numpy(np.repeat(np.arange(support.shape[0]), np.diff(support.indptr)))
    # Row-wise softmax of -dist (shifted by the row's max for stability, as torch.softmax does).
    n = support.shape[0]
    shift = torch.full((n,), -torch.inf).scatter_reduce(0, rows, -dist, "amax")
    weight = torch.exp(-dist - shift[rows])
    weight /= torch.zeros(n).index_add_(0, rows, weight)[rows]
    v = sp.csr_matrix((weight.numpy(), support.indices, support.indptr), shape=support.shape)
    if k2 == 1:
        return v
    qe_rows = np.repeat(np.arange(n), k2)
    qe = sp.csr_matrix((np.full(n * k2, 1 / k2, dtype=np.float32), (qe_rows, initial_rank[:, :k2].ravel())),
                       shape=(n, n))
    return (qe @ v).tocsr()


def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6, initial_rank: np.ndarray | None = None,
                     max_distance: float | None = None) -> sp.csr_matrix:
    """Exact k-reciprocal Jaccard distance (module docstring), as a float32 CSR of the pairs below 1.

    ``features``: ``[N, D]`` (L2-normalised here). ``initial_rank``: a precomputed :func:`knn` of at
    least ``k1`` columns (computed when None). Absent entries are at distance 1. ``max_distance``
    keeps only the pairs at most that far (DBSCAN needs no more than its ``eps``): the support of
    ``V V^T`` can hold thousands of pairs per row, almost all of them near 1.
    """
    x = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
    n = x.shape[0]
    if not 1 <= k2 <= k1:
        raise ValueError(f"need 1 <= k2 <= k1, got k1={k1}, k2={k2}")
    rank = knn(x, min(k1, n)) if initial_rank is None else initial_rank[:, :k1]
    v = encode(x.cpu(), rank, k1, k2)
    by_col = v.tocsc()
    col_nnz = np.diff(by_col.indptr)
    limit = np.inf if max_distance is None else max_distance
    # blocks of rows with at most JACCARD_BLOCK_CELLS accumulator cells and (row, column, row) triples
    triples = np.cumsum(np.bincount(np.repeat(np.arange(n), np.diff(v.indptr)), weights=col_nnz[v.indices],
                                    minlength=n))
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        budget = (triples[start - 1] if start else 0) + JACCARD_BLOCK_CELLS
        bounds.append(int(min(start + max(1, JACCARD_BLOCK_CELLS // n), max(start + 1, np.searchsorted(
            triples, budget, side="right")))))
    indptr, indices, data = [np.zeros(1, dtype=np.int64)], [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        stop = min(n, stop)
        lo, hi = v.indptr[start], v.indptr[stop]
        entry_rows = np.repeat(np.arange(stop - start), np.diff(v.indptr[start:stop + 1]))
        entry_cols, entry_vals = v.indices[lo:hi], v.data[lo:hi]
        # every (row i, column c) entry meets every other row j with an entry in column c
        lengths = col_nnz[entry_cols]
        first = np.repeat(by_col.indptr[entry_cols] - np.cumsum(lengths) + lengths, lengths)
        at = first + np.arange(lengths.sum())
        pair_i = np.repeat(entry_rows, lengths)
        mins = np.minimum(np.repeat(entry_vals, lengths), by_col.data[at])
        shared = np.bincount(pair_i * n + by_col.indices[at], weights=mins, minlength=(stop - start) * n)
        shared = shared.reshape(stop - start, n).astype(np.float32)
        distance = np.maximum(1 - shared / (2 - shared), 0)
        block_rows, block_cols = np.nonzero((shared > 0) & (distance <= limit))
        indices.append(block_cols)
        data.append(distance[block_rows, block_cols])
        indptr.append(indptr[-1][-1] + np.cumsum(np.bincount(block_rows, minlength=stop - start)))
    # Each row shares its own columns, so the diagonal is always stored (as 0 or a rounding residue).
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)), shape=(n, n))


def dbscan_labels(distance: sp.spmatrix, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN pseudo-labels (``-1`` = outlier) on a sparse precomputed distance (absent = not a neighbour).

    Entries above ``eps`` are dropped first (they are not neighbours either); stored zeros stay, and
    scikit-learn makes every point its own neighbour.
    """
    from sklearn.cluster import DBSCAN

    full = distance.tocsr()
    rows = np.repeat(np.arange(full.shape[0]), np.diff(full.indptr))
    keep = full.data <= eps
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=full.shape[0]))])
    close = sp.csr_matrix((full.data[keep], full.indices[keep], indptr), shape=full.shape)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(close)


def pseudo_labels(features: torch.Tensor, k1: int = 30, k2: int = 6, eps: float = 0.6,
                  min_samples: int = 4) -> np.ndarray:
    """Cluster-contrast pseudo-labels: DBSCAN on the k-reciprocal Jaccard distance; ``-1`` marks outliers."""
    return dbscan_labels(jaccard_distance(features, k1, k2, max_distance=eps), eps, min_samples)


@dataclass
class ClusteringStep:
    """The per-epoch step of an unsupervised method, usable as :func:`reidlab.engine.trainer.fit`'s ``epoch_hook``.

    ``extract(model) -> [N, D]`` features (run under ``no_grad`` in eval mode), then
    :func:`pseudo_labels`, then ``rebuild(labels, features, epoch) -> DataLoader`` (the method refreshes
    its memories and builds the sampler over the clustered samples). Every part is a deterministic
    function of the model weights, so a resumed run re-derives exactly the pseudo-labels of the
    interrupted one from the checkpointed weights. ``history`` keeps each epoch's labels.
    """

    extract: Callable[[nn.Module], torch.Tensor]
    rebuild: Callable[[np.ndarray, torch.Tensor, int], DataLoader]
    k1: int = 30
    k2: int = 6
    eps: float = 0.6
    min_samples: int = 4
    history: dict[int, np.ndarray] = field(default_factory=dict)

    def __call__(self, epoch: int, model: nn.Module, loader: DataLoader) -> DataLoader:
        training = model.training
        model.eval()
        with torch.no_grad():
            features = self.extract(model).detach().float().cpu()
        model.train(training)
        labels = pseudo_labels(features, self.k1, self.k2, self.eps, self.min_samples)
        self.history[epoch] = labels
        return self.rebuild(labels, features, epoch)
