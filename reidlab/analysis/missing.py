"""Missing-modality analysis for DENet (Zheng et al., "Dynamic Enhancement Network for Partial Multi-modality
Person Re-identification") and the baselines it is compared with: the few helpers notebook 05 needs.

- :func:`recovery` switches a DENet model between recovering a missing modality with CMFT (Eq. 1–2) and
  zero-filling it (the baseline's behaviour), with the same weights.
- :func:`missing_scores` scores runs under fixed missing settings (``"M(N)"``: Tables I, III, VII) and random
  missing rates η (Sec. IV-E: Tables V, VI and Fig. 5d), one row per (row, seed, setting);
  :func:`setting_table` lays such rows out as the paper's tables (a column group per setting, mean ± std over
  seeds).
- :func:`modality_points` stacks the per-modality pooled features, real or recovered, for Fig. 6's t-SNE, and
  :func:`recovery_alignment` measures how close a recovered feature is to the real one of its sample and
  identity.

Settings are missing-modality names of :data:`reidlab.eval.MISSING_SETTINGS` or missing rates η (a float):
a rate is averaged over ``mask_seeds`` random masks (:func:`reidlab.engine.evaluation.evaluate_missing_rates`)
and labelled ``"η=0.25"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from numbers import Real

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlab.data.records import MODALITIES
from reidlab.engine.evaluation import COLUMNS, evaluate_missing_rates, results_frame
from reidlab.engine.features import FeatureSet
from reidlab.eval import evaluate
from reidlab.viz.tables import EMPTY_CELL

#: The DENet paper's missing-state labels (Tables I–III column groups, Table VII's "Missing Modality") -> our names.
PAPER_SETTINGS = {"No Missing": "complete", "Missing NIR": "M(N)", "Missing TIR": "M(T)", "Missing NIR+TIR": "M(NT)",
                  "None": "complete", "NIR": "M(N)", "TIR": "M(T)", "NIR+TIR": "M(NT)"}
#: Feature-name prefixes of DENet's pooled per-modality features (``real_nir``, ``recovered_nir``).
KINDS = ("real", "recovered")


@contextmanager
def recovery(model: nn.Module, enabled: bool) -> Iterator[nn.Module]:
    """Within the block, ``model.recovery = enabled`` (DENet: CMFT recovery, or zero-filling); restored after."""
    if not hasattr(model, "recovery"):
        raise ValueError(f"{type(model).__name__} has no recovery switch; only DENet-style models can zero-fill "
                         "instead of recovering")
    previous = model.recovery
    model.recovery = enabled
    try:
        yield model
    finally:
        model.recovery = previous


def setting_label(setting: str | float) -> str:
    """``"M(N)"`` stays as it is; a missing rate 0.25 becomes ``"η=0.25"``."""
    if isinstance(setting, str):
        return setting
    if isinstance(setting, bool) or not isinstance(setting, Real):
        raise ValueError(f"a setting is a missing-modality name or a missing rate, got {setting!r}")
    return f"η={float(setting):g}"


def _scores(run, setting: str | float, mask_seeds: Sequence[int], feature: str | None) -> dict[str, float]:
    if isinstance(setting, str):
        frame = results_frame({setting: run.evaluate(missing=setting, feature=feature)})
        return frame.iloc[0].to_dict()
    options = {"flip": run.recipe.eval.get("flip", False), "progress": False, "feature": feature,
               "batch_size": run.recipe.data.get("test_batch_size", 128)}
    frame = evaluate_missing_rates(run.model, run.split, run.transform, [float(setting)], mask_seeds, **options)
    return frame.iloc[0][list(COLUMNS)].to_dict()


def missing_scores(runs: Mapping[tuple[str, int], object], settings: Sequence[str | float], *,
                   recovery_enabled: bool | None = None, mask_seeds: Sequence[int] = (0,),
                   feature: str | None = None) -> pd.DataFrame:
    """Score every run of ``runs`` ({(row, seed): Run}) under every setting, metrics in percent.

    Columns ``row``, ``seed``, ``setting`` (:func:`setting_label`) and :data:`COLUMNS`, one row per (run, setting)
    in the order given. ``recovery_enabled`` (True / False) switches the models' recovery for the scoring
    (:func:`recovery`); ``None`` leaves them as they are (and works for models without the switch).
    """
    if not runs or not settings:
        raise ValueError("missing_scores needs at least one run and one setting")
    labels = [setting_label(s) for s in settings]
    rows = []
    for (row, seed), run in runs.items():
        for setting, label in zip(settings, labels, strict=True):
            if recovery_enabled is None:
                scores = _scores(run, setting, list(mask_seeds), feature)
            else:
                with recovery(run.model, recovery_enabled):
                    scores = _scores(run, setting, list(mask_seeds), feature)
            rows.append({"row": row, "seed": seed, "setting": label, **scores})
    return pd.DataFrame(rows, columns=["row", "seed", "setting", *COLUMNS])


def setting_table(scores: pd.DataFrame, metrics: Sequence[str] = ("mAP", "R-1"), decimals: int = 1) -> pd.DataFrame:
    """The paper's layout: one row per ``row`` label, a column group per setting, cells ``"mean ± std"`` over seeds
    (the mean alone for one seed). ``scores`` as :func:`missing_scores` returns; rows and settings keep their
    first-appearance order. Columns are a MultiIndex (setting, metric)."""
    missing = [c for c in ("row", "seed", "setting", *metrics) if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {', '.join(missing)}; have {', '.join(map(str, scores.columns))}")
    if scores.duplicated(["row", "seed", "setting"]).any():
        raise ValueError("scores hold a (row, seed, setting) more than once; expected one score per run and setting")
    stats = scores.groupby(["row", "setting"], sort=False)[list(metrics)].agg(["mean", "std", "count"])
    rows, settings = list(dict.fromkeys(scores["row"])), list(dict.fromkeys(scores["setting"]))
    cells = {(setting, metric): [_cell(stats, (row, setting), metric, decimals) for row in rows]
             for setting in settings for metric in metrics}
    table = pd.DataFrame(cells, index=pd.Index(rows, name="row"))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["setting", "metric"])
    return table


def _cell(stats: pd.DataFrame, key: tuple[str, str], metric: str, decimals: int) -> str:
    if key not in stats.index or stats.loc[key, (metric, "count")] == 0:
        return EMPTY_CELL
    mean, std, n = stats.loc[key, metric]
    return f"{mean:.{decimals}f}" if n == 1 else f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def paper_setting_table(paper: pd.DataFrame, metrics: Sequence[str] = ("mAP", "R-1")) -> pd.DataFrame:
    """A paper table whose ``detail`` names the missing state (DENet Tables I, III, VII of
    :func:`reidlab.papers.paper_results`) in :func:`setting_table`'s layout: one row per printed row label, a
    column group per setting (our names, :data:`PAPER_SETTINGS`), the numbers as printed."""
    unknown = sorted(set(paper["detail"]) - set(PAPER_SETTINGS))
    if unknown:
        raise ValueError(f"unknown missing-state label(s) {unknown}; known: {list(PAPER_SETTINGS)}")
    frame = paper.assign(state=paper["detail"].map(PAPER_SETTINGS))
    wide = frame.pivot(index="setting", columns="state", values=list(metrics))
    states = list(dict.fromkeys(frame["state"]))
    table = wide.swaplevel(axis=1)[[(s, m) for s in states for m in metrics]].reindex(frame["setting"].unique())
    table.index.name, table.columns.names = "row", ["setting", "metric"]
    return table


def modality_points(features: FeatureSet, kind: str = "real",
                    modalities: Sequence[str] = MODALITIES) -> tuple[Tensor, np.ndarray, list[str]]:
    """Per-modality pooled features stacked for a t-SNE with one marker per modality (Fig. 6 c–d).

    ``kind`` ``"real"`` reads ``real_<m>`` (the branch's feature), ``"recovered"`` reads ``recovered_<m>``
    (CMFT's recovery of modality m from the modalities present). Returns ``(features [M·N, D], pids [M·N],
    modality names [M·N])``, modality-major.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    stacked = torch.cat([features.select(f"{kind}_{m}") for m in modalities])
    pids = np.concatenate([features.pids] * len(modalities))
    names = [m for m in modalities for _ in range(len(features))]
    return stacked, pids, names


def recovery_alignment(features: FeatureSet, protocol: str, modalities: Sequence[str] = MODALITIES, *,
                       recovered: FeatureSet | None = None) -> pd.DataFrame:
    """How faithful each recovered modality is, on one feature set (query = gallery, e.g. RGBNT201's test set).

    Per modality m (rows), on L2-normalised pooled features: ``cos same sample`` — mean cosine between
    ``recovered_m`` and ``real_m`` of the same sample; ``cos same id`` / ``cos other id`` — mean cosine between a
    sample's ``recovered_m`` and the ``real_m`` of the *other* samples of its identity / of other identities;
    ``mAP real→real`` and ``mAP recovered→real`` (percent) — retrieval of the real m features by the real or
    the recovered m feature of each query under ``protocol`` (which removes the query itself: same camera).
    A recovered feature that carries identity has ``cos same id`` > ``cos other id`` and a recovered→real mAP
    well above chance. ``recovered`` reads the ``recovered_<m>`` features from another extraction of the same
    samples in the same order — e.g. ``run.features("query", missing="M(NT)")``: NIR and TIR recovered from RGB
    alone — while the real features come from ``features`` (complete data).
    """
    recovered_set = features if recovered is None else recovered
    if recovered_set.pids.shape != features.pids.shape or (recovered_set.pids != features.pids).any():
        raise ValueError("recovered must hold the same samples as features, in the same order")
    same = torch.as_tensor(features.pids[:, None] == features.pids[None, :])
    other_sample = ~torch.eye(len(features), dtype=torch.bool)
    rows = {}
    for m in modalities:
        real = F.normalize(features.select(f"real_{m}").double(), dim=1)
        recovered = F.normalize(recovered_set.select(f"recovered_{m}").double(), dim=1)
        cos = recovered @ real.T
        rows[m] = {"cos same sample": cos.diagonal().mean().item(),
                   "cos same id": cos[same & other_sample].mean().item(), "cos other id": cos[~same].mean().item(),
                   "mAP real→real": _map(real, real, features, protocol),
                   "mAP recovered→real": _map(recovered, real, features, protocol)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "modality"
    return frame


def _map(query: Tensor, gallery: Tensor, features: FeatureSet, protocol: str) -> float:
    return 100 * evaluate(query, gallery, features.pids, features.pids, features.camids, features.camids,
                          protocol).mAP
