"""Evaluation benchmark — our chunked torch metrics vs the per-query NumPy loop of the reference repos.

:func:`reference_evaluate` is that loop, written the way the reference code (AGW ``eval_sysu`` /
``eval_regdb``, TransReID ``eval_func``, MSVR310 ``eval_func_msrv``) writes it: one stable
``argsort`` of the whole distance matrix, then per query a boolean removal, a cumulative sum
and, for SYSU-MM01, ``np.unique`` de-duplication. Its removal rules are spelled out here
independently of :mod:`reidlab.eval.protocols`, so the tests use it as the brute-force
reference of :func:`reidlab.eval.metrics.evaluate`.

:func:`bench_eval` times both on synthetic features at real benchmark scale (``reidlab bench
eval``). The numbers are a figure for the README, not a test.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from reidlab.eval.metrics import evaluate

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


# --------------------------------------------------------------------------------------------
# measurement


def _numpy_distance(query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
    """What the reference repos do: L2-normalise, full matrix of squared Euclidean distances."""
    q = query_feats / np.linalg.norm(query_feats, axis=1, keepdims=True)
    g = gallery_feats / np.linalg.norm(gallery_feats, axis=1, keepdims=True)
    return np.maximum(2 - 2 * q @ g.T, 0)


def _run(implementation: str, trials: list[dict[str, np.ndarray]], protocol: str) -> list[dict]:
    out = []
    for t in trials:
        if implementation == "ours":
            result = evaluate(t["query_feats"], t["gallery_feats"], t["query_pids"], t["gallery_pids"],
                              t["query_camids"], t["gallery_camids"], protocol)
            out.append({"mAP": result.mAP, "rank1": result.rank(1)})
        else:
            distmat = _numpy_distance(t["query_feats"], t["gallery_feats"])
            ref = reference_evaluate(distmat, t["query_pids"], t["gallery_pids"], t["query_camids"],
                                     t["gallery_camids"], protocol)
            out.append({"mAP": ref["mAP"], "rank1": float(ref["cmc"][0])})
    return out


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _peak_rss_increase(fn: Callable[[], T]) -> tuple[T, int | None]:
    """Run ``fn``; return (its result, peak resident-set increase in bytes or None if unmeasurable).

    Linux only: the high-water mark is reset through ``/proc/self/clear_refs`` before the call and
    read from ``VmHWM`` after it. It sees NumPy and torch allocations alike (tracemalloc would miss
    torch's). Memory the allocator already held before the call is not counted, which is why each
    measurement runs first thing in a fresh process.
    """
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_status_kib("VmRSS")
    except OSError:
        return fn(), None
    result = fn()
    return result, (_proc_status_kib("VmHWM") - before) * 1024


def _measure(implementation: str, case: str, seed: int, scale: float, repeats: int) -> dict:
    """Runs in a fresh process: memory of the first call, then the best time of ``repeats`` calls.

    A call on a tiny input first initialises the libraries (thread pools, lazy imports), so that
    one-off cost is not charged to either implementation.
    """
    protocol = "market" if case == "rgbnt100" else "sysu_all"
    _run(implementation, sysu_like_trials(seed, scale=0.0)[:1], protocol)
    trials = [rgbnt100_like(seed, scale)] if case == "rgbnt100" else sysu_like_trials(seed, scale)
    metrics, peak = _peak_rss_increase(lambda: _run(implementation, trials, protocol))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _run(implementation, trials, protocol)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_bytes": peak, "threads": torch.get_num_threads(),
            "mAP": float(np.mean([m["mAP"] for m in metrics])), "rank1": float(np.mean([m["rank1"] for m in metrics])),
            "trials": len(trials), "shape": (len(trials[0]["query_pids"]), len(trials[0]["gallery_pids"]))}


def _in_fresh_process(implementation: str, case: str, seed: int, scale: float, repeats: int) -> dict:
    """:func:`_measure` in a new interpreter (this one's ``sys.path``), result passed back as JSON."""
    code = ("import json, sys; from reidlab.bench import _measure; "
            f"print(json.dumps(_measure({implementation!r}, {case!r}, {seed!r}, {scale!r}, {repeats!r})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark process for {implementation}/{case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_eval(seed: int = 0, repeats: int = 3, skip_reference: bool = False, scale: float = 1.0) -> str:
    """Time and peak memory of :func:`reidlab.eval.evaluate` vs :func:`reference_evaluate`.

    Two cases, both from features (distance computation included): RGBNT100 scale, market
    protocol (1715 × 8575, 768-d); SYSU-MM01 all-search, 10 trials (3803 × ~301 each, 2048-d).
    ``scale`` shrinks the sizes (tests use a small one). Each (case, implementation) runs in its own
    fresh process on the CPU; time is the best of ``repeats`` runs after the memory-measured one.
    Returns the table as text; a mAP disagreement between the two is flagged in it.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    implementations = ["ours"] if skip_reference else ["ours", "reference"]
    labels = {"ours": "reidlab (torch, chunked)", "reference": "per-query NumPy loop"}
    rows, notes, threads = [], [], None
    for case in ("rgbnt100", "sysu"):
        found = {impl: _in_fresh_process(impl, case, seed, scale, repeats) for impl in implementations}
        ours = found["ours"]
        threads = ours["threads"]
        n_q, n_g = ours["shape"]
        title = (f"RGBNT100 market, {n_q} x {n_g}, 768-d" if case == "rgbnt100"
                 else f"SYSU all-search, {ours['trials']} trials x ({n_q} x {n_g}), 2048-d")
        for impl in implementations:
            m = found[impl]
            peak = "n/a" if m["peak_bytes"] is None else f"{m['peak_bytes'] / 2**20:.1f}"
            rows.append([title if impl == "ours" else "", labels[impl], f"{m['seconds']:.3f}", peak,
                         f"{m['mAP']:.4f}", f"{m['rank1']:.4f}"])
        if not skip_reference:
            ref = found["reference"]
            memory_ratio = ("n/a" if not (ref["peak_bytes"] and ours["peak_bytes"])
                            else f"{ref['peak_bytes'] / ours['peak_bytes']:.2f}x")
            rows.append(["", "ratio (loop / ours)", f"{ref['seconds'] / ours['seconds']:.2f}x", memory_ratio, "", ""])
            for metric in ("mAP", "rank1"):
                gap = abs(ref[metric] - ours[metric])
                if gap > 1e-6:
                    notes.append(f"WARNING: {case}: {metric} differs by {gap:.2e} between the implementations")
    header = ["case", "implementation", "time (s)", "peak MiB", "mAP", "rank-1"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    align = ["<", "<", ">", ">", ">", ">"]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)).rstrip()

    intro = [f"Evaluation benchmark: CPU, {threads} torch threads, seed {seed}, best of {repeats} runs.",
             "time: features -> metrics (distances included); peak MiB: resident-memory increase during the",
             "first call, measured in a fresh process (Linux VmHWM). Synthetic features, "
             + ("real benchmark sizes." if scale == 1 else f"benchmark sizes x {scale}.")]
    table = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if not skip_reference and not notes:
        notes.append("both implementations give the same mAP and rank-1 (|difference| <= 1e-6)")
    return "\n".join(intro + [""] + table + ([""] + notes if notes else []))
