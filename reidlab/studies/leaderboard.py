"""Leaderboards across papers (notebook 06, issue 17): methods side by side on the same tree, protocol, seeds and
last-epoch selection, with what each costs — and a row for features computed anywhere else.

    runs = studies.train_variants({"AGW": agw, "PECA": peca}, seeds=[0, 1, 2])    # the run cache: no retraining
    board = leaderboard(score_runs(runs, ...), costs={row: run_cost(run) for ...})
    export_features(run, "mine.npz")                                          # the `reidlab evaluate` format
    board = leaderboard(pd.concat([scores, features_scores("my method", "mine.npz", "sysu_all")]))

The scores are the study layer's long frame (one line per row and seed, metrics in %); a row with features from
outside has one line (``seed`` −1) and says so in ``note``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from reidlab.data.loading import build_test_loader
from reidlab.data.records import Split
from reidlab.engine.evaluation import COLUMNS
from reidlab.engine.experiment import Run
from reidlab.engine.features import extract_features
from reidlab.eval.metrics import RetrievalResult, evaluate_features_file

#: Leaderboard metric columns (the study layer's names, :data:`reidlab.engine.evaluation.COLUMNS`).
METRICS: tuple[str, ...] = ("mAP", "R-1", "mINP")
#: Seed of a row whose features came from outside (one line, no training seed).
EXTERNAL_SEED = -1


def result_line(row: str, seed: int, result: RetrievalResult) -> dict:
    """One scores line: ``row``, ``seed`` and :data:`METRICS` in percent."""
    summary = result.summary()
    return {"row": row, "seed": seed, **{column: 100 * summary[COLUMNS[column]] for column in METRICS}}


def export_features(run: Run, path: str | Path, split: Split | None = None) -> Path:
    """Write the run's query and gallery features (its model's test feature) of ``split`` (default: the run's) as
    the ``.npz`` that ``reidlab evaluate`` reads: ``{query,gallery}_{feats,pids,camids,sceneids}``."""
    split = split or run.split
    arrays = {}
    for side in ("query", "gallery"):
        loader = build_test_loader(getattr(split, side), run.transform, run.recipe.data.get("test_batch_size", 128),
                                   modalities=getattr(run.model, "modalities", split.modalities))
        features = extract_features(run.model, loader, flip=run.recipe.eval.get("flip", False), progress=False)
        arrays[f"{side}_feats"] = features.select(run.model.default_feature).float().numpy()
        arrays[f"{side}_pids"], arrays[f"{side}_camids"] = features.pids, features.camids
        arrays[f"{side}_sceneids"] = features.sceneids
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def features_scores(name: str, path: str | Path, protocol: str) -> pd.DataFrame:
    """A leaderboard row for features computed elsewhere (an ``.npz`` in the ``reidlab evaluate`` format) under
    ``protocol``; a bad file is a :class:`~reidlab.data.records.DataFormatError` naming the file and the key."""
    return pd.DataFrame([{**result_line(name, EXTERNAL_SEED, evaluate_features_file(path, protocol)),
                          "note": f"features from {Path(path).name}"}])


def run_cost(run: Run, repeats: int = 1) -> dict[str, float]:
    """What a trained run costs on this machine: parameters (M), GFLOPs of one test sample's forward pass
    (``torch.utils.flop_counter``: matrix products and convolutions, a multiply-add = 2), inference images/s
    (extracting the query and gallery features, best of ``repeats``) and training images/s (the mean over its
    epochs, as the trainer recorded them — from the machine and load of the training, say which in the notes)."""
    model = run.model.eval()
    batch = run.batch("query", [0])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch)
    samples = len(run.split.query) + len(run.split.gallery)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for side in ("query", "gallery"):
            run.features(side)
        best = min(best, time.perf_counter() - start)
    history = run.history.to_frame()
    return {"parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            "GFLOPs / sample": counter.get_total_flops() / 1e9,
            "inference img/s": samples / best,
            "training img/s": float(history["images_per_s"].mean()) if "images_per_s" in history else float("nan")}


def leaderboard(scores: pd.DataFrame, costs: Mapping[str, Mapping[str, float]] | None = None,
                notes: Mapping[str, str] | None = None, metrics: Sequence[str] = METRICS,
                decimals: int = 1) -> pd.DataFrame:
    """One line per row of ``scores``, best mean of the first metric first: ``seeds``, each metric's ``mean ± std``
    over seeds (``mean`` alone for one line), the ``costs`` columns of the row (:func:`run_cost`; numbers to three
    significant digits) and ``note`` (``notes[row]``, else the scores' own ``note`` column, e.g. "unsupervised" or
    an external file)."""
    missing = [c for c in ("row", "seed", *metrics) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {missing}; columns: {list(scores.columns)}")
    lines = {}
    for row, frame in scores.groupby("row", sort=False):
        line: dict = {"seeds": int((frame["seed"] != EXTERNAL_SEED).sum())}
        for metric in metrics:
            values = frame[metric].astype(float)
            line[metric] = (f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f}" if len(values) > 1
                            else f"{values.mean():.{decimals}f}")
            line[f"_{metric}"] = values.mean()
        for column, value in (costs or {}).get(row, {}).items():
            line[column] = float(f"{value:.3g}") if isinstance(value, Real) else value
        own = frame["note"].dropna().iloc[0] if "note" in frame and frame["note"].notna().any() else ""
        line["note"] = (notes or {}).get(row, own)
        lines[row] = line
    board = pd.DataFrame.from_dict(lines, orient="index").rename_axis("method")
    board = board.sort_values(f"_{metrics[0]}", ascending=False, kind="stable")
    return board.drop(columns=[f"_{m}" for m in metrics])
