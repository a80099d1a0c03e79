"""The CPU scoring kernel of :mod:`reidlab.eval.metrics`: per-query AP, INP and first hit, compiled with numba.

Semantics (those of :mod:`reidlab.eval.metrics` and of :func:`reidlab.bench.reference_evaluate`): a query's
gallery is ranked by the key (distance, gallery index) — ties broken stably by gallery index —, its removed items
are dropped before anything is counted, and the 0-based rank of its t-th true match (in key order) among the kept
items is ``#{kept non-matches with a smaller key} + t``. AP is the mean over the matches of ``(t + 1) / (rank + 1)``,
INP is ``|matches| / (rank of the last match + 1)``, the first hit is the first match's rank — or, for the SYSU-MM01
protocols (``gallery_ids`` given), the number of distinct identities among the kept items before it (CMC counts each
gallery identity once). A query with no match left is skipped: AP and INP NaN, first hit -1.

No sort of the gallery. Per query row, with ``first`` / ``last`` its nearest / farthest true match and
``bins = min(BINS_PER_MATCH * |matches|, max(G // 2, 16))`` for a gallery of ``G`` items:

1. every item gets a code, ``trunc(min(max(v + 4, j % 4), bins + 5 + j % 4))`` for gallery item ``j`` with
   ``v = (d / 2 - first / 2) * scale`` and ``scale = bins / (last / 2 - first / 2)`` (halves: no overflow for any
   finite distances). Codes 4 to ``bins + 4`` are a histogram between the two matches, one code per bin; codes 0-3
   hold only items nearer than the nearest match, codes ``bins + 5`` and up only items beyond the farthest, spread by
   gallery index so that runs of such items do not wait on the increment of one counter. Each step is monotone under
   rounding, so an item whose code is lower (higher) than a match's has a smaller (larger) key. A vectorised pass;
2. one pass counts the codes and collects the items that share a code with a match (a few per cent);
3. a match's rank is then the kept non-matches of the lower codes (the cumulated counts, less matches and removed
   items) plus those of its own code with a smaller key — each collected item is compared with the matches of its
   code, sorted by key (most codes hold one) — plus t. For the SYSU-MM01 first hit, the identities of the kept items
   of the codes below the first match's and of the collected ones before it are counted once each.

The kernel holds no interpreter lock (``nogil``): :func:`reidlab.eval.metrics.evaluate` calls it from its worker
threads, one piece of the query block each. Compiled code is cached on disk (numba's ``cache=True``: next to this
file, else in the user's cache directory); where no cache directory is writable each process compiles it again.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

#: Histogram bins per true match of the query (at most half the gallery size, at least 16).
BINS_PER_MATCH = 10
#: Codes below the nearest match (and beyond the farthest): ``j % SPREAD`` for gallery item ``j``.
SPREAD = 4
#: Key segments at most this long are sorted by insertion (and searched linearly); longer ones by a heap sort (and
#: a binary search).
SHORT = 16


def _jit(function: Callable) -> Callable:
    """``function`` compiled by numba without the interpreter lock, cached on disk where a cache directory is
    writable."""
    options = {"nogil": True, "fastmath": False, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # "no locator available": no writable cache directory; compile in each process
        return numba.njit(**options)(function)


@_jit
def _distance(value: float, a: float, b: float, floor: float) -> float:
    """``max(a * value + b, floor)`` in the dtype of its arguments, rounded after each operation as the tensor
    operations that finish the distances elsewhere round (no fused multiply-add: ``fastmath`` is off); as float64
    (exact)."""
    return np.float64(max(value * a + b, floor))


@_jit
def _code(distance: float, half_first: float, scale: float, top: float, j: int) -> int:
    """The code of gallery item ``j`` at ``distance`` (step 1 of the module docstring; ``top = bins + 5``)."""
    spread = float(j & (SPREAD - 1))
    return int(min(max((distance * 0.5 - half_first) * scale + SPREAD, spread), top + spread))


@_jit
def _before(d1: float, j1: int, d2: float, j2: int) -> bool:
    """Whether the key (distance, gallery index) ``(d1, j1)`` comes before ``(d2, j2)`` (without branches: the
    outcome is a coin toss for the items that share a code with a match)."""
    return (d1 < d2) | ((d1 == d2) & (j1 < j2))


@_jit
def _sift_down(dist: np.ndarray, index: np.ndarray, lo: int, root: int, size: int) -> None:
    """Restore the max-heap (by key) of the ``size`` entries from ``lo`` below its node ``root``."""
    while 2 * root + 1 < size:
        a, b = lo + 2 * root + 1, lo + 2 * root + 2  # the children
        child = b if b < lo + size and _before(dist[a], index[a], dist[b], index[b]) else a
        top = lo + root
        if not _before(dist[top], index[top], dist[child], index[child]):
            return
        dist[top], dist[child] = dist[child], dist[top]
        index[top], index[child] = index[child], index[top]
        root = child - lo


@_jit
def _sort_by_key(dist: np.ndarray, index: np.ndarray, lo: int, hi: int) -> None:
    """Sort the entries ``lo:hi`` of the parallel arrays ``dist`` (float64) and ``index`` (distinct gallery indices)
    in place by the key (distance, gallery index): by insertion when short, else a heap sort (the keys are distinct,
    so any sort gives their one order)."""
    if hi - lo <= SHORT:
        for k in range(lo + 1, hi):
            d, j = dist[k], index[k]
            p = k
            while p > lo and _before(d, j, dist[p - 1], index[p - 1]):
                dist[p], index[p] = dist[p - 1], index[p - 1]
                p -= 1
            dist[p], index[p] = d, j
        return
    n = hi - lo
    for root in range(n // 2 - 1, -1, -1):
        _sift_down(dist, index, lo, root, n)
    for end in range(n - 1, 0, -1):
        dist[lo], dist[lo + end] = dist[lo + end], dist[lo]
        index[lo], index[lo + end] = index[lo + end], index[lo]
        _sift_down(dist, index, lo, 0, end)


@_jit
def _count_before(dist: np.ndarray, index: np.ndarray, lo: int, hi: int, d: float, j: int) -> int:
    """How many of the key-sorted entries ``lo:hi`` of ``dist`` / ``index`` come before the key ``(d, j)``."""
    if hi - lo <= SHORT:
        p = lo
        while p < hi and _before(dist[p], index[p], d, j):
            p += 1
        return p - lo
    left, right = lo, hi
    while left < right:
        middle = (left + right) // 2
        if _before(dist[middle], index[middle], d, j):
            left = middle + 1
        else:
            right = middle
    return left - lo


@_jit
def score_rows(values: np.ndarray, a: float, b: float, floor: float, match_cols: np.ndarray,
               match_start: np.ndarray, removed_cols: np.ndarray, removed_start: np.ndarray,
               gallery_ids: np.ndarray, ap: np.ndarray, inp: np.ndarray, first_hit: np.ndarray) -> None:
    """Score the query rows of the distances ``max(a * values + b, floor)`` (``values``: ``[rows, G]``, float32 or
    float64, C order, only read; ``a``, ``b``, ``floor``: scalars of its dtype) into ``ap``, ``inp`` and
    ``first_hit`` (one entry per row, written in place).

    Row ``i``'s true matches are the gallery indices ``match_cols[match_start[i]:match_start[i + 1]]``, its removed
    items likewise in ``removed_cols`` / ``removed_start`` (any order; disjoint from the matches). ``gallery_ids``:
    each gallery item's identity as ``0..n-1`` for the SYSU-MM01 first hit (identities counted once), or empty.
    """
    rows, num_gallery = values.shape
    dedup = len(gallery_ids) > 0
    most = 0
    for i in range(rows):
        most = max(most, match_start[i + 1] - match_start[i])
    codes = min(BINS_PER_MATCH * most, max(num_gallery // 2, 16)) + 2 * SPREAD + 1
    hist = np.zeros(codes, dtype=np.int32)
    in_match_code = np.zeros(codes, dtype=np.uint8)
    below = np.zeros(codes, dtype=np.int64)  # per code: kept non-matches of the lower codes
    slot = np.zeros(codes, dtype=np.int64)  # per match code: its rank among the row's match codes
    slot_code = np.zeros(max(most, 1), dtype=np.int64)
    start = np.zeros(max(most, 1) + 1, dtype=np.int64)  # per slot: where its matches start in key_*
    key_dist = np.empty(max(most, 1), dtype=np.float64)  # the matches, by slot, each slot's in key order
    key_col = np.empty(max(most, 1), dtype=np.int64)
    ahead = np.zeros(max(most, 1), dtype=np.int64)  # per match: kept items of its code between it and the previous
    code = np.empty(num_gallery, dtype=np.uint32)
    near = np.empty(num_gallery, dtype=np.int64)  # the items of the match codes, by gallery index
    special = np.zeros(num_gallery, dtype=np.uint8)  # of the row being scored: 1 a match, 2 a removed item
    seen = np.zeros(gallery_ids.max() + 1 if dedup else 0, dtype=np.int64)  # row + 1 where an identity was counted

    for i in range(rows):
        row = values[i]
        matches = match_cols[match_start[i]:match_start[i + 1]]
        removed = removed_cols[removed_start[i]:removed_start[i + 1]]
        m = len(matches)
        if m == 0:
            ap[i], inp[i], first_hit[i] = np.nan, np.nan, -1
            continue
        first, last = np.inf, -np.inf
        for col in matches:
            d = _distance(row[col], a, b, floor)
            first, last = min(first, d), max(last, d)
        bins = min(BINS_PER_MATCH * m, max(num_gallery // 2, 16))
        half_first = first * 0.5
        scale = bins / max(last * 0.5 - half_first, bins * 2.0**-60)
        top = bins + SPREAD + 1.0

        # Every item's code (vectorised), then one pass that counts the codes and collects the items of the match
        # codes. Matches and removed items are not kept non-matches: out of the counts.
        for j in range(num_gallery):
            code[j] = np.uint32(_code(_distance(row[j], a, b, floor), half_first, scale, top, j))
        last_code = 0
        for col in matches:
            in_match_code[code[col]] = 1
            special[col] = 1
            last_code = max(last_code, code[col])
        hist[:bins + 2 * SPREAD + 1] = 0
        n = 0
        for j in range(num_gallery):
            c = code[j]
            hist[c] += 1
            near[n] = j
            n += np.int64(in_match_code[c])
        for col in matches:
            hist[code[col]] -= 1
        for col in removed:
            special[col] = 2
            hist[code[col]] -= 1
        total, slots = 0, 0
        for c in range(last_code + 1):  # branch-free: one code in ten holds a match, at random
            below[c] = total
            total += np.int64(hist[c])
            slot[c], slot_code[slots] = slots, c
            slots += np.int64(in_match_code[c])

        # The matches grouped by code (a counting sort), each group in key order: slot s in key_*[start[s]:start[s+1]].
        start[:slots + 1] = 0
        for col in matches:
            start[slot[code[col]] + 1] += 1
        for s in range(slots):
            start[s + 1] += start[s]
        for col in matches:
            s = slot[code[col]]
            key_col[start[s]], key_dist[start[s]] = col, _distance(row[col], a, b, floor)
            start[s] += 1
        for s in range(slots, 0, -1):  # back to where each group starts
            start[s] = start[s - 1]
        start[0] = 0
        for s in range(slots):
            if start[s + 1] - start[s] > 1:  # (most codes hold one match)
                _sort_by_key(key_dist, key_col, start[s], start[s + 1])

        # Each kept non-match of a match code counts for the first match of the code after it. Most codes hold
        # one match: a comparison, which is false for the match itself.
        ahead[:m] = 0
        for k in range(n):
            j = near[k]
            s, d = slot[code[j]], _distance(row[j], a, b, floor)
            lo, hi = start[s], start[s + 1]
            if hi - lo == 1:
                ahead[lo] += (special[j] == 0) & _before(d, j, key_dist[lo], key_col[lo])
            elif special[j] == 0:
                p = lo + _count_before(key_dist, key_col, lo, hi, d, j)
                if p < hi:
                    ahead[p] += 1

        # In key order, the t-th match's rank: kept non-matches of the lower codes and before it in its code, + t.
        precision = 0.0
        rank = 0
        for s in range(slots):
            kept = below[slot_code[s]]
            for t in range(start[s], start[s + 1]):
                kept += ahead[t]
                rank = kept + t
                precision += (t + 1) / (rank + 1)
        first_hit[i] = below[slot_code[0]] + ahead[0]
        ap[i] = precision / m
        inp[i] = m / (rank + 1)

        if dedup:  # distinct identities before the first match: the lower codes, then its code up to it
            distinct = 0
            for j in range(num_gallery):
                if code[j] < slot_code[0] and special[j] == 0 and seen[gallery_ids[j]] != i + 1:
                    seen[gallery_ids[j]] = i + 1
                    distinct += 1
            for k in range(n):
                j = near[k]
                if (special[j] == 0 and code[j] == slot_code[0] and seen[gallery_ids[j]] != i + 1
                        and _before(_distance(row[j], a, b, floor), j, key_dist[0], key_col[0])):
                    seen[gallery_ids[j]] = i + 1
                    distinct += 1
            first_hit[i] = distinct

        for col in matches:  # clear the row's marks
            special[col] = 0
            in_match_code[code[col]] = 0
        for col in removed:
            special[col] = 0
