"""Clustering benchmark — our sparse k-reciprocal Jaccard + DBSCAN vs the peers' dense algorithm.

:func:`peer_jaccard_distance` is our own re-implementation of cluster-contrast's
``compute_jaccard_distance`` (used by ADCA, PGM, GUR, TokenMatcher, ...), step for step: a flat L2
kNN search (faiss ``IndexFlatL2`` there; an exact NumPy search of the same distances here), per-query
Python loops over the k-reciprocal sets, and dense ``N x N`` float32 matrices ``V``, ``V_qe`` and the
Jaccard distance; then scikit-learn DBSCAN on the dense matrix. ``reidlab bench cluster`` times it
against :mod:`reidlab.engine.clustering` on the same clustered features, each (size, implementation)
in a fresh process so the peak resident memory (``ru_maxrss``) is that run's alone.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from reidlab.bench import in_fresh_process
from reidlab.engine.clustering import dbscan_labels, jaccard_distance, knn

SIZES = (5_000, 11_909, 22_258)  # SYSU-MM01 training images: 11,909 infrared, 22,258 visible
DIM, PER_ID = 2048, 10


def clustered_features(n: int, seed: int = 0, dim: int = DIM, per_id: int = PER_ID) -> np.ndarray:
    """``n`` L2-normalised rows, ~``per_id`` per identity around unit-norm centres, with noise.

    Rows are generated in blocks (the same random stream as one call), so the generator's own peak memory
    stays small next to what the measured algorithms use.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // per_id), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ids = rng.integers(0, len(centres), n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 4096):
        block = x[start:start + 4096]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block *= np.float32(1.1 / np.sqrt(dim))
        block += centres[ids[start:start + 4096]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return x


def peer_knn(x: np.ndarray, k: int, rows: int = 1024) -> np.ndarray:
    """What ``IndexFlatL2.search`` returns: the ``k`` smallest ``|x|^2 + |y|^2 - 2 x.y``, nearest first."""
    sq = (x * x).sum(1)
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), rows):
        d = sq[start:start + rows, None] + sq[None, :] - 2 * x[start:start + rows] @ x.T
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[start:start + rows] = np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, 1), 1), 1)
    return out


def _k_reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def peer_jaccard_distance(x: np.ndarray, k1: int = 30, k2: int = 6,
                          initial_rank: np.ndarray | None = None) -> np.ndarray:
    """Dense ``N x N`` float32 Jaccard distance, computed the way cluster-contrast computes it."""
    n = len(x)
    features = torch.from_numpy(x)
    rank = peer_knn(x, k1) if initial_rank is None else initial_rank
    nn_k1 = [_k_reciprocal(rank, i, k1) for i in range(n)]
    nn_half = [_k_reciprocal(rank, i, int(np.around(k1 / 2))) for i in range(n)]
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        expansion = nn_k1[i]
        for candidate in nn_k1[i]:
            half = nn_half[candidate]
            if len(np.intersect1d(half, nn_k1[i])) > 2 / 3 * len(half):
                expansion = np.append(expansion, half)
        expansion = np.unique(expansion)
        dist = 2 - 2 * torch.mm(features[i].unsqueeze(0), features[expansion].t())
        v[i, expansion] = torch.softmax(-dist, dim=1).view(-1).numpy()
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = np.mean(v[rank[i, :k2]], axis=0)
        v = v_qe
    inverted = [np.where(v[:, c] != 0)[0] for c in range(n)]
    jaccard = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        shared = np.zeros((1, n), dtype=np.float32)
        columns = np.where(v[i] != 0)[0]
        for c in columns:
            rows = inverted[c]
            shared[0, rows] = shared[0, rows] + np.minimum(v[i, c], v[rows, c])
        jaccard[i] = 1 - shared / (2 - shared)
    jaccard[jaccard < 0] = 0
    return jaccard


def measure_cluster_case(implementation: str, n: int, seed: int, k1: int, k2: int, eps: float, min_samples: int,
                         workdir: str) -> dict:
    """One implementation on ``n`` features, meant to run in a fresh process (``ru_maxrss`` is its peak).

    ``ours`` saves its neighbour sets, labels and sparse Jaccard pairs to ``workdir``; the ``peer`` run,
    after its measurement, compares its own outputs with them.
    """
    from sklearn.cluster import DBSCAN

    x = clustered_features(n, seed)
    start = time.perf_counter()
    if implementation == "ours":
        rank = knn(torch.from_numpy(x), k1)
        distance = jaccard_distance(torch.from_numpy(x), k1, k2, initial_rank=rank, max_distance=eps)
        jaccard_s = time.perf_counter() - start
        labels = dbscan_labels(distance, eps, min_samples)
    else:
        rank = peer_knn(x, k1)
        distance = peer_jaccard_distance(x, k1, k2, initial_rank=rank)
        jaccard_s = time.perf_counter() - start
        labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=-1).fit_predict(distance)
    total = time.perf_counter() - start
    out = {"seconds": total, "jaccard_s": jaccard_s, "dbscan_s": total - jaccard_s,
           "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
           "threads": torch.get_num_threads(), "clusters": int(labels.max() + 1), "outliers": int((labels == -1).sum())}
    saved = Path(workdir) / "ours.npz"
    if implementation == "ours":
        pairs = distance.tocoo()
        np.savez(saved, rank=np.sort(rank, axis=1), labels=labels, rows=pairs.row, cols=pairs.col, values=pairs.data)
    else:
        out.update(_compare(np.load(saved), np.sort(rank, axis=1), labels, distance, eps))
    return out


def _compare(ours: np.lib.npyio.NpzFile, rank: np.ndarray, labels: np.ndarray, dense: np.ndarray,
             eps: float) -> dict:
    """Same neighbour sets (and in how many rows not: where the k-th and the (k+1)-th are within float32 rounding,
    the peer's search can keep the other one), Jaccard distances within 1e-5 on the pairs ours stores (those
    <= eps), no other pair of the peer's <= eps, same DBSCAN labels."""
    differing_rows = int((ours["rank"] != rank).any(1).sum())
    same_rank = differing_rows == 0
    same_labels = bool(np.array_equal(ours["labels"], labels))
    at_pairs = dense[ours["rows"], ours["cols"]]
    gap = float(np.abs(at_pairs - ours["values"]).max())
    close = sum(int((dense[i:i + 1024] <= eps).sum()) for i in range(0, len(dense), 1024))
    missing = close - int((at_pairs <= eps).sum())
    return {"same_neighbours": same_rank, "rows_with_other_neighbours": differing_rows, "jaccard_max_gap": gap,
            "pairs_within_eps_not_stored": missing, "same_labels": same_labels,
            "identical": same_rank and same_labels and gap <= 1e-5 and missing == 0}


def bench_cluster(sizes: tuple[int, ...] = SIZES, seed: int = 0, threads: int | None = None, k1: int = 30,
                  k2: int = 6, eps: float = 0.6, min_samples: int = 4, skip_peer: bool = False) -> Iterator[dict]:
    """Yield one result per size: time (kNN + Jaccard + DBSCAN), peak memory, and the agreement checks."""
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="reidlab-bench-cluster-") as workdir:
            args = (n, seed, k1, k2, eps, min_samples, workdir)
            ours = in_fresh_process("reidlab.bench_cluster.measure_cluster_case", threads, "ours", *args)
            row = {"case": f"N={n}", "n": n, "dim": DIM, "threads": ours["threads"], "ours_s": ours["seconds"],
                   "ours_jaccard_s": ours["jaccard_s"], "ours_dbscan_s": ours["dbscan_s"],
                   "ours_peak_mib": ours["peak_mib"], "clusters": ours["clusters"], "outliers": ours["outliers"]}
            if skip_peer:
                row.update(peer_s=None, peer_peak_mib=None, speedup=None, identical=None)
            else:
                peer = in_fresh_process("reidlab.bench_cluster.measure_cluster_case", threads, "peer", *args)
                row.update(peer_s=peer["seconds"], peer_jaccard_s=peer["jaccard_s"], peer_dbscan_s=peer["dbscan_s"],
                           peer_peak_mib=peer["peak_mib"], speedup=peer["seconds"] / ours["seconds"],
                           **{k: peer[k] for k in ("same_neighbours", "rows_with_other_neighbours", "jaccard_max_gap",
                                                   "pairs_within_eps_not_stored", "same_labels", "identical")})
        yield row


CLUSTER_COLUMNS = [("case", "case"), ("threads", "threads"), ("ours_s", "ours s"), ("peer_s", "peer s"),
                   ("speedup", "speed-up"), ("ours_peak_mib", "ours MiB"), ("peer_peak_mib", "peer MiB"),
                   ("clusters", "clusters"), ("identical", "identical")]
