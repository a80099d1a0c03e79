"""The visible-infrared test protocols every VI-ReID notebook scores with (02 PECA, 03 MMCF): SYSU-MM01 all / indoor
search over random gallery draws and RegDB's two query directions, one line per (row, seed, protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from reidlab.data.formats import load_split
from reidlab.data.formats.sysu_mm01 import sysu_trials
from reidlab.engine.evaluation import evaluate_sysu_trials
from reidlab.engine.experiment import Run, dataset_root
from reidlab.eval.metrics import RetrievalResult
from reidlab.recipes import Recipe
from reidlab.studies.variants import ablation_table

#: Column -> summary key of the metrics scored (a notebook shows the ones its paper reports, plus mINP).
METRICS: dict[str, str] = {"R-1": "rank1", "R-10": "rank10", "R-20": "rank20", "mAP": "mAP", "mINP": "mINP"}


def protocol_splits(recipe: Recipe, num_trials: int = 10) -> dict[str, list]:
    """The test protocols of the recipe's benchmark: SYSU-MM01 all / indoor search over ``num_trials`` gallery
    draws, or RegDB's two query directions (of the recipe's trial); ``{protocol: [Split, ...]}``."""
    root = dataset_root(recipe)
    options = {k: v for k, v in recipe.dataset_options.items() if k not in ("mode", "trial", "direction")}
    if recipe.dataset == "sysu_mm01":
        return {f"SYSU {mode}": list(sysu_trials(root, mode=mode, num_trials=num_trials, **options))
                for mode in ("all", "indoor")}
    if recipe.dataset == "regdb":
        trial = recipe.dataset_options.get("trial", 1)
        return {name: [load_split("regdb", root, trial=trial, direction=direction, **options)]
                for name, direction in (("RegDB V→I", "visible_to_thermal"), ("RegDB I→V", "thermal_to_visible"))}
    raise ValueError(f"the visible-infrared protocols are SYSU-MM01's and RegDB's, not {recipe.dataset!r}")


def result_columns(result: RetrievalResult) -> dict[str, float]:
    """:data:`METRICS` of one result, in percent."""
    summary = result.summary()
    return {column: 100 * summary[key] for column, key in METRICS.items()}


def protocol_scores(runs: Mapping[tuple[str, int], Run], splits: Mapping[str, Sequence]) -> pd.DataFrame:
    """Every run under every protocol, averaged over its trials; one line per (row, seed, protocol), metrics in %."""
    lines = []
    for (row, seed), run in runs.items():
        for protocol, trial_splits in splits.items():
            if len(trial_splits) > 1:  # SYSU-MM01's gallery draws: the query and the union extracted once
                results = evaluate_sysu_trials(run.model, trial_splits, run.transform, progress=False,
                                               batch_size=run.recipe.data.get("test_batch_size", 128)).results
            else:
                results = [run.evaluate(split=split) for split in trial_splits]
            scores = pd.DataFrame([result_columns(result) for result in results])
            lines.append({"row": row, "seed": seed, "protocol": protocol, "trials": len(results),
                          **scores.mean().to_dict()})
    return pd.DataFrame(lines)


def of_protocol(scores: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The lines of one protocol as the (row, seed, metrics) frame the study layer's tables take."""
    return scores[scores["protocol"] == protocol].drop(columns=["protocol", "trials"]).reset_index(drop=True)


def test_features(run: Run) -> tuple[Tensor, np.ndarray, list[str]]:
    """The run's query and gallery features (one protocol's test set), their identities and each sample's
    modality name — the input of the modality-gap plots and :func:`modality_gap`."""
    parts = [run.features(part) for part in ("query", "gallery")]
    features = torch.cat([p.select(run.model.default_feature) for p in parts])
    pids = np.concatenate([p.pids for p in parts])
    names = [p.modalities[i] for p in parts for i in p.present.argmax(axis=1)]
    return features, pids, names


def protocol_tables(scores: pd.DataFrame, reference: str, metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """:func:`reidlab.studies.ablation_table` of every protocol of ``scores`` (:func:`protocol_scores`), stacked
    with the protocol as the outer index: mean ± std over seeds, Δ to ``reference`` paired by seed, verdict."""
    return pd.concat({p: ablation_table(of_protocol(scores, p), reference=reference, metrics=list(metrics))
                      for p in scores["protocol"].unique()})
