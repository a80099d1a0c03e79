"""Retrieval metrics — CMC, mAP and mINP — chunked over queries: distances by one matrix product per block of
queries, ranking metrics without sorting the gallery (on the CPU a compiled kernel, :mod:`reidlab.eval.kernel`; on
CUDA tensor operations, :func:`_score_chunk`).

Conventions (shared with :func:`reidlab.bench.reference_evaluate`, the per-query NumPy loop the
tests compare against):

* **Distance.** Features are L2-normalised and compared with the squared Euclidean distance
  ``2 - 2 cos`` (``metric="euclidean"``, the TransReID / AGW choice); ``metric="cosine"`` gives
  ``1 - cos``, which ranks identically. ``normalize=False`` keeps raw features (Euclidean only).
* **Ranking.** Each query's gallery is sorted by increasing distance; ties are broken stably by
  gallery index (the earlier gallery item ranks first).
* **Removal.** The protocol (:mod:`reidlab.eval.protocols`) removes junk gallery items per query
  before anything is counted; ranks are positions in the remaining list.
* **Skipped queries.** A query with no remaining true match has no AP and no first hit; it is
  skipped (``valid`` false, ``ap`` NaN, ``first_hit`` -1) and counted in
  ``num_skipped_queries``. CMC, mAP and mINP average over the valid queries only.
* **AP** = mean over the true matches of (matches so far / rank). **mINP** (Ye et al., "Deep
  learning for person re-identification: a survey and outlook", TPAMI 2021): for query *i*
  with ``|G_i|`` true matches whose hardest (last) match sits at rank ``R_hard``,
  ``INP_i = |G_i| / R_hard`` (= 1 - NP_i, with NP_i = (R_hard - |G_i|) / R_hard); mINP is the
  mean over valid queries.
* **CMC** at rank k is the fraction of valid queries whose first true match is within the top k
  (the SYSU-MM01 protocols count each gallery identity once, see protocols). At least
  :data:`MIN_CMC_RANKS` ranks are computed so rank-20 is always available. Ranks beyond the
  gallery size carry the last value (every valid query has been matched by then: 1.0).
* All metrics are fractions in [0, 1]; multiply by 100 to display percentages.

Memory: distances are computed ``chunk_size`` queries at a time (one matrix product; ``None``: equal
blocks of about :data:`DEFAULT_CHUNK_BYTES`, :func:`query_blocks`), and scored in pieces of at most
:data:`SCORE_CELLS` cells (the kernel's working set: a few bytes per gallery item per worker thread; the tensor
operations': a few bytes per cell), so memory is bounded whatever the number of queries.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.data.records import DataFormatError
from reidlab.eval.protocols import Labels, Protocol, get_protocol

MIN_CMC_RANKS = 20
#: Bytes of one block of float32 distances when ``chunk_size`` is not given (:func:`query_blocks`): small
#: enough to be written again and again into one buffer (fresh pages cost 10% of the product), large enough
#: for each worker thread to score several pieces of it.
DEFAULT_CHUNK_BYTES = 32 * 2**20
#: Fewest queries per default block: the product reads the whole gallery once per block.
MIN_BLOCK_ROWS = 128
#: Most (query, gallery) cells of a block scored at once (a piece, on one worker thread): for the tensor operations
#: a cache-sized working set (distances, bins, masks; 2**19 and 2**21 measured slower at RGBNT100 scale on two
#: threads); for the kernel, 8 pieces of a default RGBNT100 block for the workers to share.
SCORE_CELLS = 2**20
#: Score CPU pieces with the compiled kernel (:mod:`reidlab.eval.kernel`); False: with the tensor operations of
#: CUDA (:func:`_score_chunk`), which is how the tests check the CUDA algorithm on a machine without a GPU.
CPU_KERNEL = True
METRICS = ("euclidean", "cosine")
REPORTED_RANKS = (1, 5, 10, 20)
#: Histogram bins per true match of the chunk's most-matched query (:func:`_score_chunk`); 10 to 16 measured
#: alike at RGBNT100 scale.
BINS_PER_MATCH = 10
#: Bins above the last match's (:func:`_score_chunk`).
TOP_BINS = 8

ArrayLike = np.ndarray | torch.Tensor | Sequence
#: ``run(tasks)``: calls the tasks, on worker threads where there are some (:func:`_piece_workers`).
Runner = Callable[[list[Callable[[], object]]], None]
#: ``score(block, cells, start, offset, end)``: scores rows ``offset:end`` of the block of queries ``start:``.
Scorer = Callable[[torch.Tensor, "_Cells", int, int, int], None]


@dataclass
class RetrievalResult:
    """Metrics of one evaluation, plus the per-query numbers behind them.

    ``cmc[k-1]`` is rank-k accuracy. ``ap``, ``inp`` (NaN for skipped queries) and
    ``first_hit`` (0-based rank of the first true match in the list CMC uses — deduplicated by
    identity for SYSU-MM01 —, -1 for skipped queries) are in query order; ``valid`` marks the
    queries that had a true match after removal.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    first_hit: np.ndarray
    valid: np.ndarray
    protocol: str

    @property
    def num_valid_queries(self) -> int:
        return int(self.valid.sum())

    @property
    def num_skipped_queries(self) -> int:
        return int((~self.valid).sum())

    def rank(self, k: int) -> float:
        """Rank-k accuracy (fraction)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank {k} outside the computed CMC ranks 1..{len(self.cmc)}")
        return float(self.cmc[k - 1])

    def summary(self) -> dict:
        """Plain-Python dict (JSON-ready): mAP, mINP, rank1/5/10/20, cmc list, query counts."""
        out = {"protocol": self.protocol, "mAP": float(self.mAP), "mINP": float(self.mINP)}
        out.update({f"rank{k}": self.rank(k) for k in REPORTED_RANKS})
        out["cmc"] = [float(v) for v in self.cmc]
        out["num_valid_queries"] = self.num_valid_queries
        out["num_skipped_queries"] = self.num_skipped_queries
        return out

    def format(self) -> str:
        """A short human-readable table, in percent."""
        names = ["mAP", "mINP"] + [f"R-{k}" for k in REPORTED_RANKS]
        values = [self.mAP, self.mINP] + [self.rank(k) for k in REPORTED_RANKS]
        return "\n".join([
            f"protocol {self.protocol}: {self.num_valid_queries} queries evaluated, "
            f"{self.num_skipped_queries} skipped (no true match after removal)",
            "  ".join(f"{n:>6}" for n in names) + "   (%)",
            "  ".join(f"{100 * v:6.2f}" for v in values),
        ])


def pairwise_distance(query_feats: ArrayLike, gallery_feats: ArrayLike, metric: str = "euclidean",
                      normalize: bool = True, device: str | torch.device | None = None) -> torch.Tensor:
    """The full ``[Q, G]`` distance matrix under the module's convention (small sets, plots, tests)."""
    distances = _Distances(query_feats, gallery_feats, metric, normalize, device)
    return distances(0, distances.num_query)


def evaluate(query_feats: ArrayLike, gallery_feats: ArrayLike, query_pids: ArrayLike, gallery_pids: ArrayLike,
             query_camids: ArrayLike, gallery_camids: ArrayLike, protocol: str | Protocol = "market",
             query_sceneids: ArrayLike | None = None, gallery_sceneids: ArrayLike | None = None,
             max_rank: int = 50, chunk_size: int | None = None, device: str | torch.device | None = None,
             metric: str = "euclidean", normalize: bool = True) -> RetrievalResult:
    """Rank the gallery for every query from features and compute CMC / mAP / mINP.

    Features are ``[N, D]`` arrays or tensors; labels are 1-D integer arrays. ``device`` defaults
    to the device of ``query_feats`` (CPU for NumPy input). See the module docstring for the
    conventions (distance, tie-breaking, skipped queries, CMC length).
    """
    distances = _Distances(query_feats, gallery_feats, metric, normalize, device)
    query = _labels("query", distances.num_query, query_pids, query_camids, query_sceneids)
    gallery = _labels("gallery", distances.num_gallery, gallery_pids, gallery_camids, gallery_sceneids)
    return _evaluate_chunks(functools.partial(distances.dot, reuse=True), distances.finish, distances.affine,
                            distances.num_query, distances.num_gallery, query, gallery, protocol, max_rank, chunk_size,
                            distances.device)


def evaluate_distmat(distmat: ArrayLike, query_pids: ArrayLike, gallery_pids: ArrayLike, query_camids: ArrayLike,
                     gallery_camids: ArrayLike, protocol: str | Protocol = "market",
                     query_sceneids: ArrayLike | None = None, gallery_sceneids: ArrayLike | None = None,
                     max_rank: int = 50, chunk_size: int | None = None,
                     device: str | torch.device | None = None) -> RetrievalResult:
    """Like :func:`evaluate` from a precomputed ``[Q, G]`` distance matrix (smaller = closer).

    The matrix is moved to ``device`` (default: its own device; CPU for NumPy) one chunk at a time.
    """
    if not isinstance(distmat, torch.Tensor):
        distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(distmat.shape)}")
    dev = torch.device(device) if device is not None else (
        distmat.device if isinstance(distmat, torch.Tensor) else torch.device("cpu"))
    num_query, num_gallery = distmat.shape
    query = _labels("query", num_query, query_pids, query_camids, query_sceneids)
    gallery = _labels("gallery", num_gallery, gallery_pids, gallery_camids, gallery_sceneids)

    def rows(start: int, stop: int) -> torch.Tensor:
        block = torch.as_tensor(distmat[start:stop]).to(dev)
        if not block.is_floating_point():
            block = block.double()
        if not bool(torch.isfinite(block).all()):
            raise ValueError(f"distmat rows {start}..{stop - 1} contain NaN or infinite values")
        return block

    return _evaluate_chunks(rows, lambda piece, start: piece, _IDENTITY, num_query, num_gallery, query, gallery,
                            protocol, max_rank, chunk_size, dev)


def evaluate_features_file(path: str | Path, protocol: str, max_rank: int = 50,
                           chunk_size: int | None = None, device: str | torch.device | None = None) -> RetrievalResult:
    """Evaluate an ``.npz`` of features computed anywhere under one of our protocols.

    Required keys: ``query_feats`` / ``gallery_feats`` (``[N, D]`` floats, same D),
    ``query_pids``, ``gallery_pids``, ``query_camids``, ``gallery_camids`` (1-D integers, one per
    row), and for ``msvr310`` ``query_sceneids`` / ``gallery_sceneids``. Camera ids follow
    :class:`reidlab.data.records.Record` (SYSU-MM01: camera numbers 1–6). Problems with the file
    raise :class:`DataFormatError` naming the file and the key.
    """
    proto = get_protocol(protocol)
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an archive of named arrays")
        with loaded as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise DataFormatError(f"{path}: features file not found") from None
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable .npz archive ({e})") from None

    required = ["query_feats", "gallery_feats", "query_pids", "gallery_pids", "query_camids", "gallery_camids"]
    if proto.needs_sceneids:
        required += ["query_sceneids", "gallery_sceneids"]
    missing = [key for key in required if key not in arrays]
    if missing:
        raise DataFormatError(f"{path}: missing key(s) {', '.join(missing)} (protocol {proto.name!r} needs "
                              f"{', '.join(required)}; found {', '.join(sorted(arrays)) or 'nothing'})")
    for side in ("query", "gallery"):
        feats = arrays[f"{side}_feats"]
        if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
            raise DataFormatError(f"{path}: {side}_feats must be a 2-D float array [num_{side}, dim], "
                                  f"got shape {feats.shape} dtype {feats.dtype}")
        if not np.isfinite(feats).all():
            raise DataFormatError(f"{path}: {side}_feats contains NaN or infinite values")
        for name in ("pids", "camids", "sceneids"):
            key = f"{side}_{name}"
            if key not in required:
                continue
            values = arrays[key]
            if values.shape != (feats.shape[0],) or not np.issubdtype(values.dtype, np.integer):
                raise DataFormatError(f"{path}: {key} must be a 1-D integer array of length {feats.shape[0]} "
                                      f"(one per {side}_feats row), got shape {values.shape} dtype {values.dtype}")
    if arrays["query_feats"].shape[1] != arrays["gallery_feats"].shape[1]:
        raise DataFormatError(f"{path}: query_feats has dimension {arrays['query_feats'].shape[1]} but "
                              f"gallery_feats has {arrays['gallery_feats'].shape[1]}")
    try:
        return evaluate(arrays["query_feats"], arrays["gallery_feats"], arrays["query_pids"], arrays["gallery_pids"],
                        arrays["query_camids"], arrays["gallery_camids"], proto,
                        query_sceneids=arrays.get("query_sceneids"), gallery_sceneids=arrays.get("gallery_sceneids"),
                        max_rank=max_rank, chunk_size=chunk_size, device=device)
    except ValueError as e:
        raise DataFormatError(f"{path}: {e}") from None


def mean_std(results: Sequence[RetrievalResult]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for one trial) of mAP, mINP and rank-1/5/10/20.

    Returns ``{"trials": n, "mAP": {"mean": m, "std": s}, "mINP": ..., "rank1": ..., ...}``.
    """
    if not results:
        raise ValueError("mean_std needs at least one result")
    out: dict = {"trials": len(results)}
    for key in ["mAP", "mINP"] + [f"rank{k}" for k in REPORTED_RANKS]:
        values = np.array([r.summary()[key] for r in results], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "std": std}
    return out


# --------------------------------------------------------------------------------------------
# implementation


class _Affine(NamedTuple):
    """The distances ``max(a * value + b, floor)`` of values (each operation rounded in the values' dtype)."""

    a: float
    b: float
    floor: float


_IDENTITY = _Affine(1.0, 0.0, -math.inf)


class _Distances:
    """Distance rows ``[start:stop]`` between prepared query and gallery features.

    :meth:`dot` is the matrix product of a block of rows and :meth:`finish` turns (a piece of) it into distances,
    in place where it can: :func:`_evaluate_chunks` finishes each cache-sized piece just before scoring it rather
    than the whole block, which would stream the block through memory once more.
    """

    def __init__(self, query_feats: ArrayLike, gallery_feats: ArrayLike, metric: str, normalize: bool,
                 device: str | torch.device | None) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        if device is None:
            device = query_feats.device if isinstance(query_feats, torch.Tensor) else "cpu"
        self.device = torch.device(device)
        q = _features("query_feats", query_feats, self.device)
        g = _features("gallery_feats", gallery_feats, self.device)
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"query_feats has dimension {q.shape[1]} but gallery_feats has {g.shape[1]}")
        if metric == "cosine" or normalize:
            q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
        self.metric, self.normalized = metric, metric == "cosine" or normalize
        for name, prepared in (("query_feats", q), ("gallery_feats", g)):
            # Normalised rows cannot overflow a sum, and NaN/inf inputs leave NaN in it: one cheap reduction.
            finite = torch.isfinite(prepared.sum()) if self.normalized else torch.isfinite(prepared).all()
            if not bool(finite):
                raise ValueError(f"{name} contains NaN or infinite values")
        self.query, self.gallery_t = q, g.t()  # a view: BLAS reads the transposed operand in place
        self.gallery_sq = None if self.normalized else (g * g).sum(1)
        self.num_query, self.num_gallery = q.shape[0], g.shape[0]
        self.buffer: torch.Tensor | None = None

    def dot(self, start: int, stop: int, reuse: bool = False) -> torch.Tensor:
        """The ``[stop - start, G]`` inner products; with ``reuse``, written over those of the previous call.

        Reusing one buffer spares mapping fresh pages for every block (measured: 15% of the product's time).
        """
        rows = self.query[start:stop]
        if not reuse:
            return rows @ self.gallery_t
        if self.buffer is None or len(self.buffer) < len(rows):
            self.buffer = rows.new_empty((len(rows), self.num_gallery))
        return torch.matmul(rows, self.gallery_t, out=self.buffer[:len(rows)])

    @property
    def affine(self) -> _Affine | None:
        """:meth:`finish` as ``max(a * dot + b, floor)``, rounded as it rounds (None for unnormalised features)."""
        if self.metric == "cosine":
            return _Affine(-1.0, 1.0, -math.inf)
        return _Affine(-2.0, 2.0, 0.0) if self.normalized else None

    def finish(self, dot: torch.Tensor, start: int) -> torch.Tensor:
        """Distances from the inner products ``dot`` of query rows ``start:start + len(dot)`` (overwritten)."""
        if self.metric == "cosine":
            return dot.neg_().add_(1)  # 1 - dot
        if self.normalized:
            return dot.mul_(-2).add_(2).clamp_min_(0)  # 2 - 2 dot (the product by -2 is exact)
        q = self.query[start:start + len(dot)]
        return ((q * q).sum(1, keepdim=True) + self.gallery_sq[None, :]).sub_(dot, alpha=2).clamp_min_(0)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        return self.finish(self.dot(start, stop), start)


def query_blocks(num_query: int, num_gallery: int, chunk_size: int | None = None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` query blocks whose distances :func:`evaluate` computes in one matrix product each:
    ``chunk_size`` queries, or equal blocks of about :data:`DEFAULT_CHUNK_BYTES` of float32 distances (at least
    :data:`MIN_BLOCK_ROWS` queries)."""
    if chunk_size is None:
        rows = max(MIN_BLOCK_ROWS, DEFAULT_CHUNK_BYTES // (4 * num_gallery))
        chunk_size = -(-num_query // -(-num_query // rows))  # as many blocks, of equal sizes
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return [(start, min(num_query, start + chunk_size)) for start in range(0, num_query, chunk_size)]


def _features(name: str, values: ArrayLike, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(values if isinstance(values, torch.Tensor) else np.asarray(values), device=device)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_items, dim], got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point() or tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor


def _label_array(name: str, values: ArrayLike, length: int) -> torch.Tensor:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 1 or len(array) != length:
        raise ValueError(f"{name} must be 1-D with one entry per row ({length}), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return torch.as_tensor(array.astype(np.int64))


def _labels(side: str, length: int, pids: ArrayLike, camids: ArrayLike, sceneids: ArrayLike | None) -> Labels:
    scenes = None if sceneids is None else _label_array(f"{side}_sceneids", sceneids, length)
    return Labels(_label_array(f"{side}_pids", pids, length), _label_array(f"{side}_camids", camids, length), scenes)


def _evaluate_chunks(distance_rows: Callable[[int, int], torch.Tensor],
                     finish: Callable[[torch.Tensor, int], torch.Tensor], affine: _Affine | None, num_query: int,
                     num_gallery: int, query: Labels, gallery: Labels, protocol: str | Protocol, max_rank: int,
                     chunk_size: int | None, device: torch.device) -> RetrievalResult:
    """Score ``distance_rows(start, stop)`` over :func:`query_blocks`, in pieces of at most :data:`SCORE_CELLS`
    cells (each turned into distances by ``finish(piece, first_query)``, or on the CPU by the kernel itself where
    ``affine`` says how), and reduce the per-query numbers.

    On the CPU with ``torch.get_num_threads() > 1`` the pieces of a block are scored by that many worker threads,
    one torch thread each (:func:`_piece_workers`): one call of the kernel runs on one thread. The block's product
    keeps all the threads (the same product, bit for bit, as :func:`pairwise_distance` of those rows); the rest of
    the calling thread's tensor operations use one.
    """
    proto = get_protocol(protocol)
    proto.check(query, gallery)
    if num_query == 0 or num_gallery == 0:
        raise ValueError(f"nothing to evaluate: {num_query} queries, {num_gallery} gallery items")
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")
    blocks = query_blocks(num_query, num_gallery, chunk_size)
    piece_rows = max(1, SCORE_CELLS // num_gallery)

    gallery = gallery.to(device)
    groups = _LabelGroups(gallery)
    gallery_ids = torch.unique(gallery.pids, return_inverse=True)[1] if proto.dedup_cmc else None
    ap = np.full(num_query, np.nan)
    inp = np.full(num_query, np.nan)
    first_hit = np.full(num_query, -1, dtype=np.int64)
    if device.type == "cpu" and CPU_KERNEL:
        score = _compiled_scorer(finish, affine, gallery_ids, ap, inp, first_hit)
    else:
        score = _torch_scorer(finish, gallery_ids, ap, inp, first_hit, piece_rows, num_gallery, device)

    threads = torch.get_num_threads()
    with _piece_workers(threads if device.type == "cpu" else 1) as run:
        for start, stop in blocks:
            cells = groups.special_cells(query[start:stop].to(device), proto)
            with _torch_threads(threads):
                block = distance_rows(start, stop)
            pieces = -(-(stop - start) // piece_rows)
            size = -(-(stop - start) // pieces)  # pieces of equal sizes: the workers finish together
            run([functools.partial(score, block, cells, start, offset, min(stop - start, offset + size))
                 for offset in range(0, stop - start, size)])

    valid = first_hit >= 0
    if not valid.any():
        raise ValueError(f"no query has a true match in the gallery after {proto.name!r} removal "
                         f"({num_query} queries, {num_gallery} gallery items)")
    ranks = max(max_rank, MIN_CMC_RANKS)
    counts = np.bincount(np.minimum(first_hit[valid], ranks), minlength=ranks + 1)[:ranks]
    cmc = np.cumsum(counts) / valid.sum()
    return RetrievalResult(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), ap=ap, inp=inp,
                           first_hit=first_hit, valid=valid, protocol=proto.name)


def _compiled_scorer(finish: Callable[[torch.Tensor, int], torch.Tensor], affine: _Affine | None,
                     gallery_ids: torch.Tensor | None, ap: np.ndarray, inp: np.ndarray,
                     first_hit: np.ndarray) -> Scorer:
    """``score(block, cells, start, offset, end)``: rows ``offset:end`` of the block of queries ``start:`` scored by
    the compiled CPU kernel (:func:`reidlab.eval.kernel.score_rows`) straight into ``ap``, ``inp`` and ``first_hit``.

    The kernel applies an ``affine`` finish itself as it reads the values (one pass less over the block than
    ``finish``, which runs first otherwise)."""
    from reidlab.eval.kernel import score_rows  # numba: imported on the first CPU evaluation only

    ids = np.empty(0, dtype=np.int64) if gallery_ids is None else gallery_ids.numpy()

    def score(block: torch.Tensor, cells: _Cells, start: int, offset: int, end: int) -> None:
        lo, hi = start + offset, start + end
        values, (a, b, floor) = (block[offset:end], affine) if affine else (finish(block[offset:end], lo), _IDENTITY)
        if values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()  # exact
        values = np.ascontiguousarray(values.numpy())
        dtype = values.dtype.type  # the finish rounds in the values' dtype
        score_rows(values, dtype(a), dtype(b), dtype(floor), cells.match_cols.numpy(),
                   np.asarray(cells.match_start[offset:end + 1]), cells.removed_cols.numpy(),
                   np.asarray(cells.removed_start[offset:end + 1]), ids, ap[lo:hi], inp[lo:hi], first_hit[lo:hi])

    return score


def _torch_scorer(finish: Callable[[torch.Tensor, int], torch.Tensor], gallery_ids: torch.Tensor | None,
                  ap: np.ndarray, inp: np.ndarray, first_hit: np.ndarray, piece_rows: int, num_gallery: int,
                  device: torch.device) -> Scorer:
    """Like :func:`_compiled_scorer` through :func:`_score_chunk` (tensor operations: the CUDA path)."""
    workspaces = threading.local()

    def score(block: torch.Tensor, cells: _Cells, start: int, offset: int, end: int) -> None:
        if not hasattr(workspaces, "buffers"):
            workspaces.buffers = _Workspace(piece_rows, num_gallery, device)
        lo, hi = start + offset, start + end
        chunk = _score_chunk(finish(block[offset:end], lo), *cells.rows(offset, end), gallery_ids, workspaces.buffers)
        ap[lo:hi], inp[lo:hi], first_hit[lo:hi] = (t.cpu().numpy() for t in chunk)

    return score


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """The calling thread uses ``threads`` torch threads inside (its previous count again on the way out)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _piece_workers(threads: int) -> Iterator[Runner]:
    """``run(tasks)`` calls the tasks on ``threads`` worker threads that each use one torch thread (inline for 1).

    Meanwhile the calling thread uses one torch thread too: its small tensor operations then wake no OpenMP
    threads, which spin for milliseconds after each parallel operation on the cores the workers need (measured at
    RGBNT100 scale on two threads of a machine loaded by other processes: the evaluation took 1.8x as long; alike
    on an idle one). ``torch.set_num_threads`` is per calling thread for the OpenMP pool, but the value it stores
    also seeds the threads torch starts later, so the caller's count is set again on the way out.
    """
    if threads <= 1:
        yield lambda tasks: [task() for task in tasks]
        return
    try:
        torch.set_num_threads(1)
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield lambda tasks: [future.result() for future in [pool.submit(task) for task in tasks]]
    finally:
        torch.set_num_threads(threads)


class _LabelGroups:
    """The gallery grouped by distinct label tuple (identity, camera, scene), to find each query's true matches and
    removed items without comparing labels cell by cell.

    A removal rule decides pair by pair from labels alone, so it is evaluated once per (query, group) — 400 groups
    for the 8575 items of RGBNT100 — and only the groups that share the query's identity or are removed for it are
    expanded into their gallery items, about as many as the query's true matches.
    """

    def __init__(self, gallery: Labels) -> None:
        columns = [gallery.pids, gallery.camids] + ([] if gallery.sceneids is None else [gallery.sceneids])
        group = torch.zeros_like(gallery.pids)
        for column in columns:  # group of the tuple so far, refined by the next label (1-D uniques: fast)
            values, rank = torch.unique(column, return_inverse=True)
            group = torch.unique(group * len(values) + rank, return_inverse=True)[1]
        self.members = torch.argsort(group, stable=True)  # gallery indices by group, increasing within one
        self.size = torch.bincount(group)
        self.start = self.size.cumsum(0) - self.size
        first = self.members[self.start]  # one item of each group carries its labels
        self.labels = Labels(gallery.pids[first], gallery.camids[first],
                             None if gallery.sceneids is None else gallery.sceneids[first])

    def special_cells(self, query: Labels, protocol: Protocol) -> _Cells:
        """The cells of ``query``'s true matches and of its removed items (once per block: a few dozen small
        operations, which worker threads would run no faster, holding the interpreter in turn)."""
        same = query.pids[:, None] == self.labels.pids[None, :]
        removed = protocol.remove(query, self.labels)
        return _Cells(*self._expand(same & ~removed), *self._expand(removed))

    def _expand(self, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        row, group = chosen.nonzero(as_tuple=True)
        size = self.size.index_select(0, group)
        pair = torch.repeat_interleave(size)  # the (row, group) pair of each cell
        first = self.start.index_select(0, group) - (size.cumsum(0) - size)  # cell index -> member index, per pair
        cols = self.members.index_select(0, first.index_select(0, pair) + torch.arange(len(pair), device=pair.device))
        row_start = torch.zeros(len(chosen) + 1, dtype=torch.long, device=row.device)
        row_start[1:] = row_start[1:].index_add_(0, row, size).cumsum(0)
        return row.index_select(0, pair), cols, row_start.tolist()


class _Cells(NamedTuple):
    """The true matches and the removed items of a block of queries, each as row-sorted ``(rows, cols)`` with
    ``len(block) + 1`` offsets where each query's entries start."""

    match_rows: torch.Tensor
    match_cols: torch.Tensor
    match_start: list[int]
    removed_rows: torch.Tensor
    removed_cols: torch.Tensor
    removed_start: list[int]

    def rows(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Matches and removed items of queries ``lo:hi``, rows counted from ``lo``."""
        m, r = slice(self.match_start[lo], self.match_start[hi]), slice(self.removed_start[lo], self.removed_start[hi])
        return self.match_rows[m] - lo, self.match_cols[m], self.removed_rows[r] - lo, self.removed_cols[r]


class _Workspace:
    """Reusable ``[rows, G]`` buffers of :func:`_score_chunk` (one per worker thread).

    A fresh multi-megabyte tensor per piece is mapped page by page on first touch, which measured as costly as
    the arithmetic done in it (~0.8 ns per cell against ~0.1 ns for an in-place pass).
    """

    def __init__(self, rows: int, num_gallery: int, device: torch.device) -> None:
        self.shape, self.device = (rows, num_gallery), device
        self.buffers: dict[torch.dtype, torch.Tensor] = {}

    def get(self, dtype: torch.dtype, rows: int) -> torch.Tensor:
        if dtype not in self.buffers:
            self.buffers[dtype] = torch.empty(self.shape, dtype=dtype, device=self.device)
        return self.buffers[dtype][:rows]


def _score_chunk(dist: torch.Tensor, match_rows: torch.Tensor, match_cols: torch.Tensor, removed_rows: torch.Tensor,
                 removed_cols: torch.Tensor, gallery_ids: torch.Tensor | None,
                 workspace: _Workspace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query AP, INP and first-hit rank (-1 / NaN where no true match remains) for one chunk, in tensor
    operations: the CUDA path (the CPU's is :func:`reidlab.eval.kernel.score_rows`, unless :data:`CPU_KERNEL` is off).

    ``(match_rows, match_cols)``, ``(removed_rows, removed_cols)``: the chunk's true matches and removed items,
    sorted by row (:meth:`_LabelGroups.special_cells`).

    No gallery sort and no per-item search. Items are ordered by the key (distance, gallery index); the
    0-based rank of a query's t-th match (in key order) among the kept items is
    ``#{other kept items with a smaller key} + t``, counted in two parts:

    * every item falls into one of ``bins + 2 + TOP_BINS`` bins of its row, ``trunc(min(max((d - first) * scale,
      -1), bins + 1 + j % TOP_BINS) + 1)`` for gallery item ``j``, with ``first``/``last`` the query's
      nearest/farthest match and ``scale = bins / (last - first)`` (the row's offset is added before the
      truncation, so one int32 code tells row and bin). Each step is monotone under rounding, so an item in a
      lower (higher) bin than a match's is before (after) it: one histogram of the codes, less the matches, the
      removed items and the items placed exactly, cumulated, counts those. The items past the last match (most
      of them when mINP is low) only need a bin above every match's; spread over :data:`TOP_BINS` bins, they no
      longer make the histogram add to one counter cell after cell (measured 40% slower);
    * the few items that share a bin with a match are placed exactly: sorted by key with the matches
      (:func:`_key_order`).

    The passes over the ``[rows, G]`` cells write into the reused buffers of ``workspace``; the rest works on the
    flat list of matches (a few per cent of the cells) with 1-D gathers, the fastest torch indexing.
    """
    num_query, num_gallery = dist.shape
    device = dist.device
    if dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.float()  # exact; the bin arithmetic needs the range
    flat = dist.contiguous().view(-1)
    num_rel = torch.bincount(match_rows, minlength=num_query)
    nothing = torch.full((num_query,), math.nan, dtype=torch.float64, device=device)
    m = int(num_rel.max()) if len(match_rows) else 0
    if m == 0:
        return nothing, nothing, torch.full_like(num_rel, -1)
    valid = num_rel > 0
    match_cell = match_cols.add(match_rows, alpha=num_gallery)
    match_d = flat.index_select(0, match_cell)
    first = match_d.new_zeros(num_query).scatter_reduce_(0, match_rows, match_d, "amin", include_self=False)
    last = match_d.new_zeros(num_query).scatter_reduce_(0, match_rows, match_d, "amax", include_self=False)

    bins = min(BINS_PER_MATCH * m, max(num_gallery // 2, 16))
    width = bins + 2 + TOP_BINS
    scale = (bins / (last - first).clamp_min(bins * 2.0**-60)).clamp_min(2.0**-60)
    row_bin = torch.arange(0, num_query * width, width, device=device)  # first code of each row
    key = torch.sub(dist, first[:, None], out=workspace.get(dist.dtype, num_query))
    top = torch.arange(num_gallery, device=device).remainder_(TOP_BINS).add_(bins + 1).to(key.dtype)
    torch.minimum(key.mul_(scale[:, None]).clamp_min_(-1), top, out=key).add_((row_bin + 1).to(key.dtype)[:, None])
    # float32 keys are converted in place (element by element): a smaller working set for the passes below
    code = (key.view(torch.int32) if key.dtype == torch.float32 else workspace.get(torch.int32, num_query))
    code = code.copy_(key).view(-1)
    counts = torch.bincount(code, minlength=num_query * width)
    shared = torch.zeros(num_query * width, dtype=torch.bool, device=device)  # the bins holding a match
    shared.index_fill_(0, code.index_select(0, match_cell).long(), True)
    near = torch.index_select(shared, 0, code, out=workspace.get(torch.bool, num_query).view(-1))
    removed_cell = removed_cols.add(removed_rows, alpha=num_gallery)
    special = torch.cat([match_cell, removed_cell])
    near.index_fill_(0, special, False)  # matches and removed items are not "other kept items"
    found = _flat_nonzero(near)  # ascending: its rows by a binary search in the rows' ends, not a division
    found_rows = _searchsorted(torch.arange(num_gallery, len(near) + 1, num_gallery, device=device), found, right=True)

    # The other kept items outside the matches' bins, cumulated: the histogram less every item that is not one
    # (matches, removed items, items placed exactly below).
    drop = code.index_select(0, torch.cat([special, found])).long()
    counts.scatter_add_(0, drop, torch.full((1,), -1, dtype=counts.dtype, device=device).expand(len(drop)))
    cumulative = counts.cumsum(0)  # over the whole chunk: less its value before each row's first bin
    row_base = cumulative.index_select(0, row_bin) - counts.index_select(0, row_bin)

    # The matches and the other kept items of their bins in key order, row by row: a match's position there
    # less its row's start is its rank among them; the matches' own order gives t.
    rows, cells, is_match = _key_order(flat, num_gallery, match_rows, match_cols, found_rows,
                                       found.sub(found_rows, alpha=num_gallery))
    at_match = _flat_nonzero(is_match)
    match_cell = cells.index_select(0, at_match)  # in key order (rows as in match_rows)
    row_start = num_rel.cumsum(0) - num_rel  # each row's first match in that order
    slot = torch.arange(len(match_rows), device=device) - row_start.index_select(0, match_rows)  # t of each match
    per_row = torch.bincount(rows, minlength=num_query)
    placed_before = at_match - (per_row.cumsum(0) - per_row).index_select(0, match_rows) - slot
    below_bin = cumulative.index_select(0, code.index_select(0, match_cell).long() - 1) - row_base.index_select(
        0, match_rows)  # a match's bin is at least 1
    ranks = below_bin + placed_before + slot  # 0-based rank of each match among the kept items

    precision = (slot + 1).double() / (ranks + 1).double()
    ap = torch.where(valid, torch.bincount(match_rows, precision, minlength=num_query) / num_rel.clamp_min(1), nothing)
    last_rank = ranks.index_select(0, (row_start + num_rel - 1).clamp_min(0))
    inp = torch.where(valid, num_rel / (last_rank + 1).double(), nothing)
    first_match = row_start.clamp_max(len(match_rows) - 1)
    if gallery_ids is None:
        first_hit = ranks.index_select(0, first_match)
    else:  # the other kept items before the first match: bin 0 (below every match), or placed before it
        before_first = (code.view(num_query, num_gallery) == row_bin[:, None]).view(-1)
        before_first[removed_cell] = False
        matches_before = is_match.cumsum(0) - row_start.index_select(0, rows)
        before_first[cells[~is_match & (matches_before == 0)]] = True
        first_hit = _distinct_ids_before(before_first.view(num_query, num_gallery), gallery_ids)
    return ap, inp, torch.where(valid, first_hit, -1)


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the true entries of a contiguous ``mask``; on the CPU through NumPy (4x torch's speed)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.view(-1).nonzero()[:, 0]


def _key_order(flat: torch.Tensor, num_gallery: int, match_rows: torch.Tensor, match_cols: torch.Tensor,
               other_rows: torch.Tensor, other_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matches and the other cells given, of row-major distances ``flat``, sorted by key (row, distance,
    gallery index): their rows, flat cells, and which of them are matches.

    For float32 distances the key fits in one int64 with a bit to spare for the flag: the row, then the distance's
    bits made monotone as an unsigned integer, then the gallery index, then the flag; one 1-D sort (NumPy's
    vectorised one on the CPU) orders everything. Other dtypes: three stable sorts, least significant part first.
    """
    rows, cols = torch.cat([match_rows, other_rows]), torch.cat([match_cols, other_cols])
    cells = cols.add(rows, alpha=num_gallery)
    is_match = torch.zeros(len(cells), dtype=torch.bool, device=cells.device)
    is_match[:len(match_rows)] = True
    col_bits, row_bits = _bits(num_gallery), _bits(int(rows.max()) + 1)
    if flat.dtype != torch.float32 or row_bits + col_bits > 30:
        order = cells.argsort()  # (row, gallery index) order; then stable by distance, then by row
        for part in (flat.index_select(0, cells), rows):
            order = order.index_select(0, part.index_select(0, order).sort(stable=True).indices)
        return rows.index_select(0, order), cells.index_select(0, order), is_match.index_select(0, order)
    bits = flat.index_select(0, cells).add_(0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0, its equal
    ordered = (bits >> 31).bitwise_and_(0x7FFFFFFF).bitwise_xor_(bits)  # negatives: magnitude bits reversed
    keys = _sort(((((rows << 32).add_(ordered).add_(2**31) << col_bits).add_(cols)) << 1).add_(is_match))
    rows = keys >> (33 + col_bits)
    return rows, ((keys >> 1) & (2**col_bits - 1)).add_(rows, alpha=num_gallery), (keys & 1).bool()


def _bits(count: int) -> int:
    """Bits of the largest of ``count`` indices."""
    return max(1, (count - 1).bit_length())


def _sort(values: torch.Tensor) -> torch.Tensor:
    """Sorted 1-D ``values``; on the CPU through NumPy (10x torch's speed on int64)."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy()))
    return values.sort().values


def _searchsorted(sorted_values: torch.Tensor, values: torch.Tensor, right: bool = False) -> torch.Tensor:
    """Insertion points of ``values`` in ``sorted_values`` (both 1-D); on the CPU through NumPy."""
    if values.device.type == "cpu":
        side = "right" if right else "left"
        return torch.from_numpy(np.searchsorted(sorted_values.numpy(), values.numpy(), side=side))
    return torch.searchsorted(sorted_values, values, right=right)


def _distinct_ids_before(before_first: torch.Tensor, gallery_ids: torch.Tensor) -> torch.Tensor:
    """Number of distinct gallery identities among the kept items ranked before each query's first hit.

    That is the 0-based rank of the first hit once each identity's repeats are dropped (SYSU CMC).
    """
    rows, cols = before_first.nonzero(as_tuple=True)
    seen = torch.zeros(before_first.shape[0], int(gallery_ids.max()) + 1, dtype=torch.bool,
                       device=before_first.device)
    seen[rows, gallery_ids[cols]] = True
    return seen.sum(1)
