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

from reidlab.eval.metrics import _flat_nonzero

#: Rows (and columns) of one block of the similarity matrix in :func:`knn`.
KNN_BLOCK = 2048
#: float32 similarities closer than this are ordered again in float64 (:func:`_order_near_ties`): ten times the
#: typical rounding of a 2048-d product of unit vectors (~1e-7; the flip seen at N = 11,909: 1.3e-7).
NEAR_TIE = 1e-6
#: Neighbours searched beyond ``k`` in :func:`knn`, for ties at the ``k``-th.
KNN_MARGIN = 2
#: Cells of the dense ``rows x N`` accumulator, and (row, column, row) triples, of a :func:`jaccard_distance` block.
JACCARD_BLOCK_CELLS = 2**22


def knn(features: torch.Tensor, k: int, block: int = KNN_BLOCK) -> np.ndarray:
    """``[N, k]`` indices of each row's ``k`` nearest rows (itself included) by ``2 - 2 cos``, nearest first.

    Exact. ``features`` must be L2-normalised rows (float32). The similarity matrix is symmetric, so each
    ``block x block`` tile above the diagonal is computed once and serves both its row block and its
    column block; a row's running top-k is merged with the tile's entries above its current k-th best
    (the diagonal tiles, first, set those bounds with a plain ``topk``). Both merges of a tile come from one
    scan of it (:func:`_merge_tile`), so the matrix products are almost all of the time. The lists are kept
    :data:`KNN_MARGIN` longer than ``k``, so that their order, near ties included, is settled in float64
    (:func:`_order_near_ties`) before they are cut: equal distances rank by index, unless more than
    :data:`KNN_MARGIN` items tie with the ``k``-th.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the number of samples), got {k}")
    x = features.detach().float().contiguous()
    starts = list(range(0, n, block))
    kept = min(n, k + KNN_MARGIN)
    best_v = torch.empty(n, kept, device=x.device)
    best_i = torch.empty(n, kept, dtype=torch.long, device=x.device)
    for a in starts:
        rows = x[a:a + block]
        sims = rows @ rows.t()
        kk = min(kept, len(rows))
        top = sims.topk(kk, dim=1)
        best_v[a:a + block] = -torch.inf
        best_v[a:a + block, :kk], best_i[a:a + block, :kk] = top.values, top.indices + a
    for a in starts:
        for b in starts:
            if b > a:
                _merge_tile(best_v, best_i, a, b, x[a:a + block] @ x[b:b + block].t())
    best_v, order = best_v.sort(dim=1, descending=True, stable=True)
    best_i = best_i.gather(1, order)
    _order_near_ties(x, best_v, best_i)
    return best_i[:, :k].cpu().numpy()


def _order_near_ties(x: torch.Tensor, best_v: torch.Tensor, best_i: torch.Tensor) -> None:
    """Re-order, in float64, the rows whose float32 similarities of two neighbours are within :data:`NEAR_TIE`.

    The order inside the list matters (query expansion takes the first ``k2``, the half-size reciprocal sets the
    first ``k1 / 2 + 1``), and float32 rounding of a product decided it at random between neighbours whose exact
    distances differ by 1e-7 (one row at N = 11,909: a different ``V`` row, Jaccard distances off by 0.07). In
    float64 the order is exact for float32 features; equal distances keep the gallery order.
    """
    tied = ((best_v[:, :-1] - best_v[:, 1:]) <= NEAR_TIE).any(1).nonzero()[:, 0]
    for start in range(0, len(tied), 64):  # 64 rows of k neighbours in float64 at a time: a few tens of MB
        rows = tied[start:start + 64]
        neighbours = best_i[rows]
        # a product and a sum per pair, the same operations for every pair: equal vectors get equal similarities
        # (a batched matrix product rounds by the pair's position in its tile: 1e-16 apart, an order by chance)
        exact = (x[rows].double()[:, None, :] * x[neighbours].double()).sum(-1)
        by_index = neighbours.sort(dim=1).indices
        by_value = exact.gather(1, by_index).sort(dim=1, descending=True, stable=True).indices
        best_i[rows] = neighbours.gather(1, by_index.gather(1, by_value))


def _merge_tile(best_v: torch.Tensor, best_i: torch.Tensor, row0: int, col0: int, sims: torch.Tensor) -> None:
    """Merge tile ``sims`` (rows from ``row0``, columns from ``col0``, disjoint blocks) into the running top-k of its
    rows and, transposed, of its columns.

    One pass marks the entries above the row's or the column's current k-th best; only those few (a percent or
    less once the bounds have settled) are read again, never a transposed copy of the tile.
    """
    num_rows, num_cols = sims.shape
    row_bound = best_v[row0:row0 + num_rows].amin(1)
    col_bound = best_v[col0:col0 + num_cols].amin(1)
    above = torch.gt(sims, row_bound[:, None])
    above |= torch.gt(sims, col_bound[None, :])
    found = _flat_nonzero(above)
    rows, cols, values = found // num_cols, found % num_cols, sims.view(-1)[found]
    for_rows = values > row_bound[rows]
    _merge(best_v, best_i, row0, rows[for_rows], cols[for_rows] + col0, values[for_rows])
    for_cols = values > col_bound[cols]
    order = torch.argsort(cols[for_cols], stable=True)
    _merge(best_v, best_i, col0, cols[for_cols][order], rows[for_cols][order] + row0, values[for_cols][order])


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, row0: int, rows: torch.Tensor, indices: torch.Tensor,
           values: torch.Tensor) -> None:
    """Merge candidates ``(rows, indices, values)`` (``rows`` sorted, local to ``row0``) into the running top-k."""
    if len(rows) == 0:
        return
    num_rows, k = int(rows[-1]) + 1, best_v.shape[1]
    count = torch.bincount(rows, minlength=num_rows)
    slot = torch.arange(len(rows), device=rows.device) - (count.cumsum(0) - count)[rows]
    cand_v = values.new_full((num_rows, int(count.max())), -torch.inf)
    cand_i = torch.zeros(cand_v.shape, dtype=torch.long, device=rows.device)
    cand_v[rows, slot], cand_i[rows, slot] = values, indices
    top = torch.cat([best_v[row0:row0 + num_rows], cand_v], 1).topk(k, dim=1)
    best_i[row0:row0 + num_rows] = torch.cat([best_i[row0:row0 + num_rows], cand_i], 1).gather(1, top.indices)
    best_v[row0:row0 + num_rows] = top.values


def reciprocal_sets(initial_rank: np.ndarray, k: int) -> sp.csr_matrix:
    """Binary CSR ``R[i, j] = 1`` iff ``j`` is in ``i``'s k-reciprocal set (first ``k + 1`` columns of the rank)."""
    forward = initial_rank[:, :k + 1]
    n, width = forward.shape
    backward = initial_rank[:, :width].astype(np.int32)[forward]  # [n, width, width], int32: half the memory
    reciprocal = (backward == np.arange(n, dtype=np.int32)[:, None, None]).any(-1)
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
        # the transposed view, not a copy: the same values, 4x faster and no N x D copy (measured at N = 22,258)
        dots = torch.sparse.sampled_addmm(pattern, x, x.t(), beta=0.0).values()
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
    return _jaccard_pairs(v, max_distance)


def _jaccard_pairs(v: sp.csr_matrix, max_distance: float | None) -> sp.csr_matrix:
    """Symmetric CSR of ``1 - s / (2 - s)``, ``s = sum_c min(V[i, c], V[j, c])``, over the pairs with ``s > 0``
    (and distance ``<= max_distance``).

    Each unordered pair is accumulated once: an entry ``(i, c)`` meets the entries of column ``c`` in rows
    ``j >= i`` (the column lists rows in increasing order), into a dense accumulator over the block's rows
    and the columns from its first row on.
    """
    n = v.shape[0]
    entry_rows = np.repeat(np.arange(n), np.diff(v.indptr))
    order = np.argsort(v.indices, kind="stable")  # column-major; rows increase within a column
    col_rows, col_vals = entry_rows[order], v.data[order]
    col_end = np.cumsum(np.bincount(v.indices, minlength=n))
    position = np.empty(v.nnz, dtype=np.int64)
    position[order] = np.arange(v.nnz)
    partners = col_end[v.indices] - position  # rows j >= i sharing the entry's column (itself included)
    triples = np.cumsum(np.bincount(entry_rows, weights=partners, minlength=n))
    # s >= threshold <=> distance <= max_distance (a margin for rounding; the distance is checked again)
    threshold = 0.0 if max_distance is None else max(0.0, 2 * (1 - max_distance) / (2 - max_distance) - 1e-6)
    limit = np.inf if max_distance is None else max_distance
    pair_rows, pair_cols, pair_data = [], [], []
    start = 0
    while start < n:  # blocks of rows with at most JACCARD_BLOCK_CELLS accumulator cells and triples
        width = n - start
        done = triples[start - 1] if start else 0
        stop = min(n, start + max(1, JACCARD_BLOCK_CELLS // width),
                   max(start + 1, int(np.searchsorted(triples, done + JACCARD_BLOCK_CELLS, side="right"))))
        lo, hi = v.indptr[start], v.indptr[stop]
        lengths = partners[lo:hi]
        at = np.arange(lengths.sum()) + np.repeat(position[lo:hi] - np.cumsum(lengths) + lengths, lengths)
        local = np.repeat((entry_rows[lo:hi] - start) * width - start, lengths) + col_rows[at]
        mins = np.minimum(np.repeat(v.data[lo:hi], lengths), col_vals[at])
        shared = np.bincount(local, weights=mins, minlength=(stop - start) * width)
        flat = np.flatnonzero(shared > threshold)
        s = shared[flat].astype(np.float32)
        distance = np.maximum(1 - s / (2 - s), 0)
        keep = distance <= limit
        pair_rows.append(flat[keep] // width + start)
        pair_cols.append(flat[keep] % width + start)
        pair_data.append(distance[keep])
        start = stop
    rows, cols, data = (np.concatenate(parts) for parts in (pair_rows, pair_cols, pair_data))
    upper = rows != cols
    # Each row shares its own columns, so the diagonal is always stored (as 0 or a rounding residue).
    return sp.csr_matrix((np.concatenate([data, data[upper]]), (np.concatenate([rows, cols[upper]]),
                                                               np.concatenate([cols, rows[upper]]))), shape=(n, n))


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
