"""Retrieval metrics — CMC, mAP and mINP — vectorised in torch and chunked over queries.

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

Memory: distances are computed ``chunk_size`` queries at a time (one matrix product; ``None``: a
block of :data:`DEFAULT_CHUNK_BYTES`), and scored :data:`SCORE_CELLS` cells at a time (a working set of
a few tens of bytes per cell), so memory is bounded whatever the number of queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.data.records import DataFormatError
from reidlab.eval.protocols import Labels, Protocol, get_protocol

MIN_CMC_RANKS = 20
#: Bytes of one block of float32 distances when ``chunk_size`` is not given (:func:`chunk_rows`).
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: (query, gallery) cells of a block scored at once: a cache-sized working set (distances, bins, masks);
#: 64 rows of an RGBNT100 gallery, the fastest size measured there.
SCORE_CELLS = 2**19
METRICS = ("euclidean", "cosine")
REPORTED_RANKS = (1, 5, 10, 20)
#: Histogram bins per true match of the chunk's most-matched query (:func:`_score_chunk`).
BINS_PER_MATCH = 16

ArrayLike = np.ndarray | torch.Tensor | Sequence


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
    return _evaluate_chunks(distances, distances.num_query, distances.num_gallery, query, gallery,
                            protocol, max_rank, chunk_size, distances.device)


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

    return _evaluate_chunks(rows, num_query, num_gallery, query, gallery, protocol, max_rank, chunk_size, dev)


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


class _Distances:
    """Distance rows ``[start:stop]`` between prepared query and gallery features."""

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
        self.query, self.gallery_t = q, g.t().contiguous()
        self.gallery_sq = None if self.normalized else (g * g).sum(1)
        self.num_query, self.num_gallery = q.shape[0], g.shape[0]

    def dot(self, start: int, stop: int) -> torch.Tensor:
        """The ``[stop - start, G]`` inner products."""
        return matmul(self.query[start:stop], self.gallery_t)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        dist = self.dot(start, stop)
        if self.metric == "cosine":
            return dist.neg_().add_(1)  # 1 - dot
        if self.normalized:
            return dist.mul_(-2).add_(2).clamp_min_(0)  # 2 - 2 dot (the product by -2 is exact)
        q = self.query[start:stop]
        return ((q * q).sum(1, keepdim=True) + self.gallery_sq[None, :]).sub_(dist, alpha=2).clamp_min_(0)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``; on the CPU through NumPy's BLAS (OpenBLAS: twice the speed of torch's MKL on AMD CPUs)."""
    if a.device.type == "cpu" and b.device.type == "cpu" and a.dtype == b.dtype:
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


def chunk_rows(num_gallery: int) -> int:
    """Default queries per block of distances: :data:`DEFAULT_CHUNK_BYTES` of float32 distances."""
    return max(1, DEFAULT_CHUNK_BYTES // (4 * num_gallery))


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


def _evaluate_chunks(distance_rows: Callable[[int, int], torch.Tensor], num_query: int, num_gallery: int,
                     query: Labels, gallery: Labels, protocol: str | Protocol, max_rank: int,
                     chunk_size: int | None, device: torch.device) -> RetrievalResult:
    proto = get_protocol(protocol)
    proto.check(query, gallery)
    if num_query == 0 or num_gallery == 0:
        raise ValueError(f"nothing to evaluate: {num_query} queries, {num_gallery} gallery items")
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")
    if chunk_size is None:
        chunk_size = chunk_rows(num_gallery)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    score_rows = min(chunk_size, max(1, SCORE_CELLS // num_gallery))

    gallery = gallery.to(device)
    gallery_ids = torch.unique(gallery.pids, return_inverse=True)[1] if proto.dedup_cmc else None
    ap = np.full(num_query, np.nan)
    inp = np.full(num_query, np.nan)
    first_hit = np.full(num_query, -1, dtype=np.int64)
    for start in range(0, num_query, chunk_size):
        block = distance_rows(start, min(num_query, start + chunk_size))
        for offset in range(0, len(block), score_rows):  # cache-sized pieces of the block
            lo, hi = start + offset, start + min(len(block), offset + score_rows)
            chunk = _score_chunk(block[offset:offset + score_rows], query[lo:hi].to(device), gallery, proto,
                                 gallery_ids)
            ap[lo:hi], inp[lo:hi], first_hit[lo:hi] = (t.cpu().numpy() for t in chunk)

    valid = first_hit >= 0
    if not valid.any():
        raise ValueError(f"no query has a true match in the gallery after {proto.name!r} removal "
                         f"({num_query} queries, {num_gallery} gallery items)")
    ranks = max(max_rank, MIN_CMC_RANKS)
    counts = np.bincount(np.minimum(first_hit[valid], ranks), minlength=ranks + 1)[:ranks]
    cmc = np.cumsum(counts) / valid.sum()
    return RetrievalResult(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), ap=ap, inp=inp,
                           first_hit=first_hit, valid=valid, protocol=proto.name)


def _score_chunk(dist: torch.Tensor, query: Labels, gallery: Labels, protocol: Protocol,
                 gallery_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-query AP, INP and first-hit rank (-1 / NaN where no true match remains) for one chunk.

    No gallery sort and no per-item search. Items are ordered by the key (distance, gallery index); the
    0-based rank of a query's t-th match (in key order) among the kept items is
    ``#{other kept items with a smaller key} + t``, counted in two parts:

    * every item falls into one of ``bins + 3`` bins, ``trunc(clamp((d - first) * scale + 1, 0, bins + 2))``
      with ``first``/``last`` the query's nearest/farthest match and ``scale = bins / (last - first)``
      (removed items: the top bin, which holds no match). Each step is monotone under rounding, so an
      item in a lower (higher) bin than a match's is before (after) it: one histogram of the bins,
      cumulated, counts those;
    * the few items that share a bin with a match are placed exactly: the number of the query's
      matches with a smaller key, by binary search in its sorted matches (ties: gallery index).
    """
    num_query, num_gallery = dist.shape
    device = dist.device
    if dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.float()  # exact; the bin arithmetic needs the range
    dist = dist.contiguous()
    removed = protocol.remove(query, gallery)
    hit = (query.pids[:, None] == gallery.pids[None, :]) & ~removed
    found = hit.view(-1).nonzero()[:, 0]  # the matches, row-major
    match_rows, match_cols = found // num_gallery, found % num_gallery
    num_rel = torch.bincount(match_rows, minlength=num_query)
    valid = num_rel > 0
    nothing = torch.full(num_rel.shape, math.nan, dtype=torch.float64, device=device)
    if not bool(valid.any()):
        return nothing, nothing, torch.full_like(num_rel, -1)

    # The matches, packed left into [num_query, m] and sorted by (distance, gallery index).
    m = int(num_rel.max())
    slot = _slots(match_rows, num_rel)
    match_d = dist.new_full((num_query, m), math.inf)
    match_d[match_rows, slot] = dist.view(-1)[found]
    match_g = torch.full((num_query, m), num_gallery, dtype=torch.long, device=device)
    match_g[match_rows, slot] = match_cols
    match_d, perm = match_d.sort(dim=1, stable=True)  # stable: tied matches stay in gallery order
    match_g = match_g.gather(1, perm)
    in_use = torch.arange(m, device=device)[None, :] < num_rel[:, None]

    bins = min(BINS_PER_MATCH * m, max(num_gallery // 2, 16))
    width = bins + 3
    first = torch.where(valid, match_d[:, 0], 0)
    last = torch.where(valid, match_d.gather(1, (num_rel - 1).clamp_min(0)[:, None])[:, 0], 0)
    scale = (bins / (last - first).clamp_min(bins * 2.0**-60)).clamp_min(2.0**-60)
    key = torch.where(removed, math.inf, dist).sub_(first[:, None]).mul_(scale[:, None]).add_(1)
    # code = row * width + bin, in int32 (fast histogram) when it fits
    code_type = torch.int32 if num_query * width < 2**31 else torch.long
    code = key.clamp_(0, bins + 2).to(code_type)
    del key
    code.add_(torch.arange(0, num_query * width, width, device=device, dtype=code_type)[:, None])
    counts = torch.bincount(code.view(-1), minlength=num_query * width).view(num_query, width)
    match_bin = torch.zeros((num_query, m), dtype=torch.long, device=device)
    match_bin[match_rows, slot] = code.view(-1)[found].long()
    match_bin = match_bin.gather(1, perm)  # flat bin ids of the sorted matches
    shared = torch.zeros(num_query * width, dtype=torch.bool, device=device)  # bins holding a match
    shared[match_bin[in_use]] = True
    found = shared.index_select(0, code.view(-1)).view(num_query, num_gallery).logical_and_(~hit).view(-1).nonzero()
    other_rows, other_cols = found[:, 0] // num_gallery, found[:, 0] % num_gallery

    # Other items in no match's bin: a cumulative histogram (the matches' own counts taken out); in one: placed
    # exactly.
    others = (counts.view(-1) - torch.bincount(match_bin[in_use], minlength=num_query * width)).masked_fill_(
        shared, 0).view(num_query, width)
    below_bin = (others.cumsum(1) - others).view(-1)[match_bin]
    pos = _matches_before(match_d, match_g, other_rows, other_cols, dist[other_rows, other_cols])
    placed = torch.bincount(other_rows * (m + 1) + pos, minlength=num_query * (m + 1)).view(num_query, m + 1)
    ranks = below_bin + placed[:, :m].cumsum(1) + torch.arange(m, device=device)  # 0-based rank of the t-th match

    kth = torch.arange(1, m + 1, device=device, dtype=torch.float64)
    precision_sum = torch.where(in_use, kth / (ranks + 1).double(), 0.0).sum(1)
    ap = torch.where(valid, precision_sum / num_rel.clamp_min(1), nothing)
    last_rank = ranks.gather(1, (num_rel - 1).clamp_min(0)[:, None])[:, 0]
    inp = torch.where(valid, num_rel / (last_rank + 1).double(), nothing)
    if gallery_ids is None:
        first_hit = ranks[:, 0]
    else:  # the other kept items before the first match: bin 0 (below every match), or placed before it
        before_first = code.long() % width == 0
        at_zero = pos == 0
        before_first[other_rows[at_zero], other_cols[at_zero]] = True
        first_hit = _distinct_ids_before(before_first, gallery_ids)
    return ap, inp, torch.where(valid, first_hit, -1)


def _slots(rows: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """Position of each entry within its row, for sorted ``rows`` with ``per_row`` entries each."""
    return torch.arange(len(rows), device=rows.device) - (per_row.cumsum(0) - per_row)[rows]


def _matches_before(match_d: torch.Tensor, match_g: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    values: torch.Tensor) -> torch.Tensor:
    """For items ``(rows, cols)`` (sorted by row) at distances ``values``: how many of their row's sorted
    matches have a smaller key (distance, gallery index)."""
    num_query, m = match_d.shape
    per_row = torch.bincount(rows, minlength=num_query)
    slot = _slots(rows, per_row)
    packed = match_d.new_zeros(num_query, max(1, int(per_row.max())) if len(rows) else 1)
    packed[rows, slot] = values
    pos = torch.searchsorted(match_d, packed)[rows, slot]  # matches with a strictly smaller distance
    tied = match_d[rows, pos.clamp_max(m - 1)] == values
    if bool(tied.any()):
        pos[tied] += _tied_matches_before(match_d, match_g, rows[tied], cols[tied], values[tied], pos[tied])
    return pos


def _tied_matches_before(match_d: torch.Tensor, match_g: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                         values: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """For items at exactly a match's distance: how many of those equal-distance matches have a smaller index."""
    stop = torch.searchsorted(match_d[rows], values[:, None], right=True)[:, 0]
    span = torch.arange(int((stop - start).max()), device=rows.device)
    at = start[:, None] + span[None, :]
    inside = at < stop[:, None]
    earlier = match_g[rows[:, None], at.clamp_max(match_g.shape[1] - 1)] < cols[:, None]
    return (earlier & inside).sum(1)


def _distinct_ids_before(before_first: torch.Tensor, gallery_ids: torch.Tensor) -> torch.Tensor:
    """Number of distinct gallery identities among the kept items ranked before each query's first hit.

    That is the 0-based rank of the first hit once each identity's repeats are dropped (SYSU CMC).
    """
    rows, cols = before_first.nonzero(as_tuple=True)
    seen = torch.zeros(before_first.shape[0], int(gallery_ids.max()) + 1, dtype=torch.bool,
                       device=before_first.device)
    seen[rows, gallery_ids[cols]] = True
    return seen.sum(1)
