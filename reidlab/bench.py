"""Evaluation benchmark — our chunked metrics (compiled CPU kernel) vs the peers' ``eval_func``, at benchmark scale.

:func:`reference_evaluate` is the brute-force reference: one stable ``argsort`` of the whole
distance matrix, then per query a boolean removal, a cumulative sum and, for SYSU-MM01,
``np.unique`` de-duplication. Its removal rules are spelled out here independently of
:mod:`reidlab.eval.protocols`, so the tests use it as the reference of
:func:`reidlab.eval.metrics.evaluate`, and the benchmark checks our per-query numbers against it.

:func:`peer_eval_func` is the speed baseline: our own re-implementation of the ``eval_func`` that
TOP-ReID, DeMo and MFRNet ship (from TransReID): L2-normalised features, a dense NumPy distance
matrix, ``np.argsort`` of it, a match matrix, per query cumulative matches, AP and INP; for
SYSU-MM01 the CMC de-duplication of AGW's ``eval_sysu``.

:func:`bench_eval` times ours and the peer in the same process on synthetic features at real
benchmark scale (``reidlab bench eval``). The numbers are figures for the README, not tests.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from reidlab.eval.metrics import RetrievalResult, _Distances, evaluate, pairwise_distance, query_blocks

T = TypeVar("T")
SYSU_PROTOCOLS = ("sysu_all", "sysu_indoor")
REFERENCE_PROTOCOLS = ("market", "msvr310", "regdb") + SYSU_PROTOCOLS


def reference_evaluate(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                       g_camids: np.ndarray, protocol: str, q_sceneids: np.ndarray | None = None,
                       g_sceneids: np.ndarray | None = None, max_rank: int = 50) -> dict:
    """Brute-force per-query evaluation with the same conventions as :mod:`reidlab.eval.metrics`.

    Returns ``cmc`` (``max(max_rank, 20)`` ranks, padded with the last value), ``mAP``, ``mINP``
    and per-query ``ap``, ``inp`` (NaN when skipped) and ``first_hit`` (-1 when skipped).
    """
    if protocol not in REFERENCE_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    num_q, num_g = distmat.shape
    ranks = max(max_rank, 20)
    indices = np.argsort(distmat, axis=1, kind="stable")  # ties: lower gallery index first
    matches = g_pids[indices] == q_pids[:, np.newaxis]
    ap, inp = np.full(num_q, np.nan), np.full(num_q, np.nan)
    first_hit = np.full(num_q, -1)
    all_cmc = []
    for q_idx in range(num_q):
        order = indices[q_idx]
        if protocol == "market":
            remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        elif protocol == "msvr310":
            remove = (g_pids[order] == q_pids[q_idx]) & (g_sceneids[order] == q_sceneids[q_idx])
        elif protocol in SYSU_PROTOCOLS:
            remove = (q_camids[q_idx] == 3) & (g_camids[order] == 2)
        else:
            remove = np.zeros(num_g, dtype=bool)
        keep = np.invert(remove)
        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue
        cum = raw_cmc.cumsum()
        hits = np.flatnonzero(raw_cmc)
        ap[q_idx] = np.mean(cum[hits] / (hits + 1.0))
        inp[q_idx] = cum[hits[-1]] / (hits[-1] + 1.0)
        if protocol in SYSU_PROTOCOLS:
            ranked_ids = g_pids[order][keep]
            first_index = np.unique(ranked_ids, return_index=True)[1]
            raw_cmc = ranked_ids[np.sort(first_index)] == q_pids[q_idx]
        first_hit[q_idx] = np.flatnonzero(raw_cmc)[0]
        cmc = np.minimum(raw_cmc.cumsum(), 1)[:ranks]
        all_cmc.append(np.pad(cmc, (0, ranks - len(cmc)), mode="edge"))
    valid = first_hit >= 0
    assert valid.any(), "no query has a true match in the gallery"
    return {"cmc": np.mean(all_cmc, axis=0), "mAP": float(np.mean(ap[valid])), "mINP": float(np.mean(inp[valid])),
            "ap": ap, "inp": inp, "first_hit": first_hit}


# --------------------------------------------------------------------------------------------
# synthetic inputs at benchmark scale

RGBNT100 = {"num_query": 1715, "num_gallery": 8575, "num_ids": 50, "num_cams": 8, "dim": 768}
SYSU = {"num_query": 3803, "num_ids": 96, "gallery_per_trial": 301, "trials": 10, "dim": 2048}


def rgbnt100_like(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """RGBNT100-sized test set: 8575 gallery items of 50 ids in 8 cameras, 1715 of them also queries.

    As in RGBNT100 the queries are drawn from the test set, so each query also sits in the
    gallery (removed by the same-id-same-camera rule). Features are 768-d (one ViT-B token;
    methods that concatenate three modalities have 2304-d, which only scales the matrix product).
    Identity centres plus camera offsets plus noise, tuned for a mid-range mAP.
    """
    rng = np.random.default_rng(seed)
    n_g = max(40, round(RGBNT100["num_gallery"] * scale))
    n_q = max(8, round(RGBNT100["num_query"] * scale))
    ids, cams, dim = RGBNT100["num_ids"], RGBNT100["num_cams"], RGBNT100["dim"]
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    cam_offsets = 0.5 * rng.standard_normal((cams, dim), dtype=np.float32)
    g_pids = rng.integers(0, ids, n_g)
    g_cams = rng.integers(0, cams, n_g)
    g_feats = centres[g_pids] + cam_offsets[g_cams] + 2.8 * rng.standard_normal((n_g, dim), dtype=np.float32)
    q_index = np.sort(rng.choice(n_g, n_q, replace=False))
    return {"query_feats": g_feats[q_index], "gallery_feats": g_feats, "query_pids": g_pids[q_index],
            "gallery_pids": g_pids, "query_camids": g_cams[q_index], "gallery_camids": g_cams}


def sysu_like_trials(seed: int, scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    """Ten SYSU-MM01 all-search trials: 3803 infrared queries (cams 3, 6) of 96 ids; per trial a
    gallery of one visible image per (id, camera 1/2/4/5) where the id appears there (~301).

    2048-d features (ResNet-50, AGW), identity centres plus a shared modality offset plus noise.
    """
    rng = np.random.default_rng(seed)
    ids = max(4, round(SYSU["num_ids"] * scale))
    n_q = max(8, round(SYSU["num_query"] * scale))
    dim = SYSU["dim"]
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    infrared_offset = 0.8 * rng.standard_normal(dim, dtype=np.float32)
    q_pids = rng.integers(0, ids, n_q)
    q_cams = rng.choice(np.array([3, 6]), n_q)
    q_feats = centres[q_pids] + infrared_offset + 4.2 * rng.standard_normal((n_q, dim), dtype=np.float32)
    present = rng.random((ids, 4)) < SYSU["gallery_per_trial"] / (4 * SYSU["num_ids"])  # (id, cam) occurs
    present[np.arange(ids), rng.integers(0, 4, ids)] = True  # every test id appears in some visible camera
    g_pids, g_cams = (a.ravel() for a in np.nonzero(present))
    g_cams = np.array([1, 2, 4, 5])[g_cams]
    trials = []
    for _ in range(SYSU["trials"]):
        g_feats = centres[g_pids] + 4.2 * rng.standard_normal((len(g_pids), dim), dtype=np.float32)
        trials.append({"query_feats": q_feats, "gallery_feats": g_feats, "query_pids": q_pids, "gallery_pids": g_pids,
                       "query_camids": q_cams, "gallery_camids": g_cams})
    return trials


def peer_eval_func(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                   g_camids: np.ndarray, max_rank: int = 50, sysu: bool = False) -> tuple[np.ndarray, float, float]:
    """The peers' ``eval_func`` algorithm: returns (CMC over valid queries, mAP, mINP).

    ``np.argsort`` (not stable: ties may order differently from ours), market removal (same id and
    camera) or, with ``sysu``, AGW's cam-3-query/cam-2-gallery removal and identity de-duplicated CMC.
    """
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    ranked_pids = g_pids[indices]
    matches = (ranked_pids == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        if sysu:
            remove = (q_camids[q_idx] == 3) & (g_camids[order] == 2)
        else:
            remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        keep = np.invert(remove)
        orig_cmc = matches[q_idx][keep]
        if not np.any(orig_cmc):
            continue
        cmc = orig_cmc.cumsum()
        last = np.max(np.where(orig_cmc == 1))
        all_inp.append(cmc[last] / (last + 1.0))
        if sysu:
            ranked = ranked_pids[q_idx][keep]
            ranked = ranked[np.sort(np.unique(ranked, return_index=True)[1])]
            cmc = (ranked == q_pids[q_idx]).astype(np.int32).cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = orig_cmc.cumsum() / np.arange(1, len(orig_cmc) + 1.0)
        all_ap.append((precision * orig_cmc).sum() / orig_cmc.sum())
    width = min(len(c) for c in all_cmc)
    cmc = np.asarray([c[:width] for c in all_cmc], dtype=np.float32).sum(0) / len(all_cmc)
    return cmc, float(np.mean(all_ap)), float(np.mean(all_inp))


# --------------------------------------------------------------------------------------------
# measurement

EVAL_CASES = ("rgbnt100", "sysu", "large")
LARGE = {"num_query": 20_000, "num_gallery": 200_000, "num_ids": 2_000, "dim": 256}
#: Queries of the large case checked against :func:`reference_evaluate` (all 20,000 would take an hour).
LARGE_CHECKED = 100


def large_like(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """20,000 queries x 200,000 gallery items of 2,000 ids in 8 cameras, 256-d: a scaling case."""
    rng = np.random.default_rng(seed)
    n_q, n_g = max(8, round(LARGE["num_query"] * scale)), max(40, round(LARGE["num_gallery"] * scale))
    ids, dim = max(4, round(LARGE["num_ids"] * scale)), LARGE["dim"]
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    q_pids, g_pids = rng.integers(0, ids, n_q), rng.integers(0, ids, n_g)
    return {"query_feats": centres[q_pids] + 1.5 * rng.standard_normal((n_q, dim), dtype=np.float32),
            "gallery_feats": centres[g_pids] + 1.5 * rng.standard_normal((n_g, dim), dtype=np.float32),
            "query_pids": q_pids, "gallery_pids": g_pids, "query_camids": rng.integers(0, 8, n_q),
            "gallery_camids": rng.integers(0, 8, n_g)}


def _numpy_distance(query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
    """What the peers do: L2-normalise, full matrix of squared Euclidean distances."""
    q = query_feats / np.linalg.norm(query_feats, axis=1, keepdims=True)
    g = gallery_feats / np.linalg.norm(gallery_feats, axis=1, keepdims=True)
    return np.maximum(2 - 2 * q @ g.T, 0)


def _ours(trials: list[dict[str, np.ndarray]], protocol: str) -> list[RetrievalResult]:
    return [evaluate(t["query_feats"], t["gallery_feats"], t["query_pids"], t["gallery_pids"], t["query_camids"],
                     t["gallery_camids"], protocol) for t in trials]


def _peer(trials: list[dict[str, np.ndarray]], protocol: str) -> list[tuple[np.ndarray, float, float]]:
    return [peer_eval_func(_numpy_distance(t["query_feats"], t["gallery_feats"]), t["query_pids"], t["gallery_pids"],
                           t["query_camids"], t["gallery_camids"], sysu=protocol == "sysu_all") for t in trials]


def _matmul(trials: list[dict[str, np.ndarray]]) -> float:
    """The physical floor: the query x gallery products alone, in :func:`evaluate`'s blocks and through its
    product routine (features prepared beforehand)."""
    prepared = [_Distances(t["query_feats"], t["gallery_feats"], "euclidean", True, "cpu") for t in trials]
    start = time.perf_counter()
    for distances in prepared:
        for first, stop in query_blocks(distances.num_query, distances.num_gallery):
            distances.dot(first, stop, reuse=True)
    return time.perf_counter() - start


def _same_as_reference(result: RetrievalResult, t: dict[str, np.ndarray], protocol: str, rows: int | None) -> bool:
    """Our per-query AP, INP and first hit equal the brute-force reference's (on the first ``rows`` queries)."""
    keep = slice(None) if rows is None else slice(0, rows)
    queries = t["query_feats"][keep]
    blocks = query_blocks(len(t["query_pids"]), len(t["gallery_pids"]))  # evaluate()'s blocks: the same products
    distmat = np.concatenate([pairwise_distance(queries[start:stop], t["gallery_feats"]).numpy()
                              for start, stop in blocks if start < len(queries)])
    ref = reference_evaluate(distmat, t["query_pids"][keep], t["gallery_pids"], t["query_camids"][keep],
                             t["gallery_camids"], protocol)
    return bool(np.array_equal(result.first_hit[keep], ref["first_hit"])
                and np.allclose(result.ap[keep], ref["ap"], rtol=0, atol=1e-12, equal_nan=True)
                and np.allclose(result.inp[keep], ref["inp"], rtol=0, atol=1e-12, equal_nan=True))


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_rss_increase(fn: Callable[[], T]) -> tuple[T, int | None]:
    """Run ``fn``; return (its result, peak resident-set increase in bytes or None if unmeasurable).

    Linux only: the high-water mark is reset through ``/proc/self/clear_refs`` before the call and
    read from ``VmHWM`` after it. It sees NumPy and torch allocations alike (tracemalloc would miss
    torch's). Memory the allocator already held before the call is not counted, which is why each
    case runs in a fresh process.
    """
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_status_kib("VmRSS")
    except OSError:
        return fn(), None
    result = fn()
    return result, (_proc_status_kib("VmHWM") - before) * 1024


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _mib(peak: int | None) -> float | None:
    return None if peak is None else round(peak / 2**20, 1)


def measure_eval_case(case: str, seed: int, scale: float, repeats: int) -> dict:
    """One case, meant to run first thing in a fresh process: peak memory of the first call of each
    implementation, then the best time of ``repeats`` calls, and the agreement checks.

    A call on a tiny input first initialises the libraries (thread pools, lazy imports), so that
    one-off cost is not charged to either implementation.
    """
    protocol = "sysu_all" if case == "sysu" else "market"
    warm = sysu_like_trials(seed, scale=0.0)[:1]
    _ours(warm, "sysu_all")
    _peer(warm, "sysu_all")
    trials = {"rgbnt100": lambda: [rgbnt100_like(seed, scale)], "sysu": lambda: sysu_like_trials(seed, scale),
              "large": lambda: [large_like(seed, scale)]}[case]()
    ours, ours_peak = peak_rss_increase(lambda: _ours(trials, protocol))
    row: dict = {"case": case, "trials": len(trials), "num_query": len(trials[0]["query_pids"]),
                 "num_gallery": len(trials[0]["gallery_pids"]), "dim": trials[0]["query_feats"].shape[1],
                 "threads": torch.get_num_threads(), "ours_peak_mib": _mib(ours_peak)}
    row["ours_s"] = best_time(lambda: _ours(trials, protocol), repeats)
    row["matmul_s"] = min(_matmul(trials) for _ in range(repeats))
    checked = LARGE_CHECKED if case == "large" else None
    row["identical"] = all(_same_as_reference(r, t, protocol, checked) for r, t in zip(ours, trials, strict=True))
    row["checked_queries"] = checked or row["num_query"]
    row["mAP"] = float(np.mean([r.mAP for r in ours]))
    if case == "large":  # the peer's dense 20,000 x 200,000 matrices would need ~50 GB
        row.update(peer_s=None, peer_peak_mib=None, speedup=None)
        return row
    peer, peer_peak = peak_rss_increase(lambda: _peer(trials, protocol))
    row["peer_peak_mib"] = _mib(peer_peak)
    row["peer_s"] = best_time(lambda: _peer(trials, protocol), repeats)
    row["speedup"] = row["peer_s"] / row["ours_s"]
    row["peer_mAP_gap"] = float(max(abs(r.mAP - p[1]) for r, p in zip(ours, peer, strict=True)))
    return row


def in_fresh_process(function: str, threads: int | None, *args: object) -> dict:
    """``reidlab.bench.<function>(*args)`` in a new interpreter (this one's ``sys.path``; ``threads``
    sets the OpenMP/BLAS/torch thread count), its JSON result passed back."""
    module, name = function.rsplit(".", 1)
    code = (f"import json; from {module} import {name}; import torch; "
            + (f"torch.set_num_threads({threads}); " if threads else "")
            + f"print(json.dumps({name}(*{args!r})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    if threads:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark process {function}{args!r} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_eval(seed: int = 0, repeats: int = 3, scale: float = 1.0, threads: int | None = None,
               cases: tuple[str, ...] = EVAL_CASES) -> Iterator[dict]:
    """Yield one result per case (each measured in its own fresh process, on the CPU).

    Cases: ``rgbnt100`` (market protocol, 1715 x 8575, 768-d), ``sysu`` (all-search, 10 trials of
    3803 x ~301, 2048-d), ``large`` (20,000 x 200,000, 256-d, ours only). Time covers features to
    metrics (normalisation and distances included), best of ``repeats``; ``matmul_s`` is the distance
    product alone. ``identical``: our per-query AP, INP and first hit equal :func:`reference_evaluate`'s
    (first 100 queries for ``large``). ``scale`` shrinks the sizes (tests use a small one).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    unknown = sorted(set(cases) - set(EVAL_CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; expected some of {', '.join(EVAL_CASES)}")
    for case in cases:
        yield in_fresh_process("reidlab.bench.measure_eval_case", threads, case, seed, scale, repeats)


def format_rows(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain text table of ``rows`` with ``(key, header)`` columns (None shown as ``-``)."""
    def cell(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    table = [[header for _, header in columns]] + [[cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in table)


EVAL_COLUMNS = [("case", "case"), ("num_query", "queries"), ("num_gallery", "gallery"), ("trials", "trials"),
                ("threads", "threads"), ("ours_s", "ours s"), ("matmul_s", "matmul s"), ("peer_s", "peer s"),
                ("speedup", "speed-up"), ("ours_peak_mib", "ours MiB"), ("peer_peak_mib", "peer MiB"),
                ("identical", "identical")]
