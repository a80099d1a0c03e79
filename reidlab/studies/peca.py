"""PECA's study (notebook 02): its matched AGW baseline, the rows of Table 3, the sweeps of Figs. 4–6, the
controls beyond the paper, the VI-ReID protocols and the claims.

The paper — Jing & Li, "Partial Enhancement and Channel Aggregation for Visible-Infrared Person Re-Identification",
IEICE Trans. Inf. & Syst. E108-D(1), 2025 — lives in: ``reidlab/models/peca.py`` (three-stem AGW encoder, CA view,
ICAL Eq. 2, GSL heads Eq. 1), ``reidlab/losses/peca.py`` (Eq. 1, 3, 4, 6–11), ``reidlab/methods/peca.py``,
``reidlab/recipes/peca.yaml``, ``reidlab/papers/peca.yaml`` (Tables 1–3 as printed) and this module.

Every variant is PECA's recipe with switches changed, so the run cache trains a row that two studies share (PECA,
M4, M5) once. M1's "triplet" (Table 3: "CE + triplet, following CAJ, without random grayscale") is the batch-hard
triplet loss with margin 0.3 (spec A11: the paper names no variant; CAJ's code defaults to an adaptive-weight
triplet, AGW's to WRT, which the AGW baseline row keeps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from reidlab.data.formats import load_split
from reidlab.data.formats.sysu_mm01 import sysu_trials
from reidlab.engine.evaluation import results_frame
from reidlab.engine.experiment import Run, dataset_root
from reidlab.eval.metrics import RetrievalResult
from reidlab.recipes import Recipe
from reidlab.studies.baselines import matched_baseline
from reidlab.studies.claims import Claim, PaperDelta

#: PECA's own model switches (left out of the matched AGW baseline).
METHOD_ONLY = ("channel_view", "ical", "ical_variants", "gsl", "gsl_target", "gsl_hidden")
AGW, FULL = "AGW baseline", "PECA"
#: The paper's metrics (Tables 1–3) and mINP, which is ours (the paper reports none).
METRICS = ("R-1", "R-10", "R-20", "mAP", "mINP")
#: Table 3: row -> overrides of PECA's recipe.
ABLATION: dict[str, dict] = {
    "M1": {"loss.metric": "triplet", "loss.modality": False, "model.gsl": False, "model.ical": False},
    "M2": {"loss.modality": False, "model.gsl": False, "model.ical": False},
    "M3": {"model.gsl": False, "model.ical": False},
    "M4": {"model.ical": False},
    "M5": {"model.gsl": False},
    FULL: {},
}
#: Figs. 4–6: symbol -> (recipe key, values; the paper's ranges, grid ours — it prints none).
SWEEPS: dict[str, tuple[str, list[float]]] = {
    "τ_ins": ("loss.tau_ins", [0.05, 0.10, 0.15, 0.20, 0.25]),
    "τ_mod": ("loss.tau_mod", [0.05, 0.10, 0.15, 0.20, 0.25]),
    "λ_m": ("loss.lambda_m", [0.0, 0.25, 0.5, 0.75, 1.0]),
}
#: Beyond the paper — where GSL's gain comes from: PECA with other GSL targets, and PECA without GSL (M5).
GSL_CONTROLS: dict[str, dict] = {
    "GSL on image crops (paper)": {},
    "GSL on feature-map stripes": {"model.gsl_target": "stripes"},
    "GSL capacity control (global target)": {"model.gsl_target": "global"},
    "no GSL (M5)": ABLATION["M5"],
}
#: Beyond the paper — which ICAL variants help (indices into reidlab.data.transforms.ICAL_KEPT_CHANNELS).
ICAL_GROUPS: dict[str, dict] = {
    "no ICAL (M4)": ABLATION["M4"],
    "one IR channel (RG·, R·B, ·GB)": {"model.ical_variants": [0, 1, 2]},
    "two IR channels (R··, ·G·, ··B)": {"model.ical_variants": [3, 4, 5]},
    "all six (PECA)": {},
}


def baseline(recipe: Recipe) -> Recipe:
    """AGW (the two-stream baseline) with PECA's backbone, data, solver and schedule and its own loss (CE + WRT)."""
    return matched_baseline(recipe, method_only=METHOD_ONLY, baseline="baseline_crossmodal")


def main_variants(recipe: Recipe) -> dict[str, Recipe]:
    """Tables 1–2's comparison: the AGW baseline and PECA."""
    return {AGW: baseline(recipe), FULL: recipe}


def variants(recipe: Recipe, rows: Mapping[str, Mapping]) -> dict[str, Recipe]:
    """``{row: PECA's recipe with the row's overrides}`` (:data:`ABLATION`, :data:`GSL_CONTROLS`, ...)."""
    return {row: recipe.override(dict(changes)) for row, changes in rows.items()}


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
    raise ValueError(f"PECA's protocols are SYSU-MM01's and RegDB's, not {recipe.dataset!r}")


def protocol_scores(runs: Mapping[tuple[str, int], Run], splits: Mapping[str, Sequence]) -> pd.DataFrame:
    """Every run under every protocol, averaged over its trials; one line per (row, seed, protocol), metrics in %."""
    lines = []
    for (row, seed), run in runs.items():
        for protocol, trial_splits in splits.items():
            results = [run.evaluate(split=split) for split in trial_splits]
            frame = results_frame(dict(enumerate(results)))
            lines.append({"row": row, "seed": seed, "protocol": protocol, "trials": len(results),
                          **frame.mean().to_dict()})
    return pd.DataFrame(lines)


def of_protocol(scores: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The lines of one protocol as the (row, seed, metrics) frame the study layer's tables take."""
    return scores[scores["protocol"] == protocol].drop(columns=["protocol", "trials"]).reset_index(drop=True)


def modality_gap(features: Mapping[str, object], pids: Sequence[int], modalities: Sequence[str]) -> pd.DataFrame:
    """Fig. 8 as numbers: for each model's features (``{model: [N, d]}``, the same samples), the distances of
    same-identity pairs within a modality vs across modalities, summarised by :func:`reidlab.viz.separation`
    (means, gap, histogram overlap: 1 = the cross-modality positives are as close as same-modality ones)."""
    from reidlab.viz.distances import distance_distributions, separation

    lines = {}
    for name, feats in features.items():
        d = distance_distributions(feats, pids, modalities)
        lines[name] = separation(d["intra_identity_same_modality"], d["intra_identity_cross_modality"])
    return pd.DataFrame(lines).T.rename_axis("model")


def claims(scores: Mapping[str, pd.DataFrame]) -> list[Claim]:
    """The paper's claims on our scores: ``{"main": ..., "ablation": ...}`` (SYSU all-search frames of
    :func:`of_protocol`), each row paired by seed."""
    def delta(table: int, row: str, reference: str, dataset: str = "sysu_mm01_all") -> PaperDelta:
        return PaperDelta("peca", table, row, reference, where={"dataset": dataset})
    main, ablation = scores["main"], scores["ablation"]
    return [
        Claim("PECA beats AGW (T1, all search)", main, FULL, AGW, delta(1, "PECA", "AGW")),
        Claim("L_ins beats the triplet loss (T3 M1→M2)", ablation, "M2", "M1", delta(3, "M2", "M1")),
        Claim("L_mod helps (T3 M2→M3)", ablation, "M3", "M2", delta(3, "M3", "M2")),
        Claim("GSL helps (T3 M3→M4, the jump hardest to reproduce)", ablation, "M4", "M3", delta(3, "M4", "M3")),
        Claim("ICAL helps (T3 M3→M5)", ablation, "M5", "M3", delta(3, "M5", "M3")),
        Claim("ICAL adds to GSL (T3 M4→PECA)", ablation, FULL, "M4", delta(3, "PECA", "M4")),
        Claim("GSL adds to ICAL (T3 M5→PECA)", ablation, FULL, "M5", delta(3, "PECA", "M5")),
    ]


def result_columns(result: RetrievalResult) -> dict[str, float]:
    """:data:`METRICS` of one result, in percent."""
    return results_frame({0: result}).iloc[0][list(METRICS)].to_dict()
