"""CoEN's study (notebook 01): its matched baseline, the variants of its Tables 1–7, its claims.

The paper — Zheng et al., "Collaborative Enhancement Network for Low-quality Multi-spectral Vehicle
Re-identification" — lives in: ``reidlab/models/coen.py`` (PG, DQSM, CEM; Eq. 1–12), ``reidlab/losses/coen.py``
(Eq. 16), ``reidlab/methods/coen.py`` (recipe → model), ``reidlab/recipes/coen.yaml``, ``reidlab/papers/coen.yaml``
(Tables 1–7 as printed), this module, and :mod:`reidlab.studies.coen_dqsm` (DQSM against ground-truth quality).

Row names follow the paper's tables; every variant is CoEN's recipe with one switch changed, so the run cache
trains each once and a row that two tables share (the full model, the baseline) is trained once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from reidlab.engine.evaluation import evaluate_model_features, results_frame
from reidlab.engine.experiment import Run
from reidlab.recipes import Recipe
from reidlab.studies.baselines import matched_baseline
from reidlab.studies.claims import Claim, PaperDelta
from reidlab.studies.variants import rename_rows, score_runs

#: CoEN's own model switches (left out of the matched baseline).
METHOD_ONLY = ("proxy", "sort", "enhancement", "dropout")
BASELINE, UNSHARED, FULL = "multi-branch ViT baseline (shared)", "multi-branch ViT (unshared)", "CoEN"
#: Main comparison (Tables 1–2): row -> (trained variant, inference feature).
MAIN_ROWS = {"RGB only": (UNSHARED, "rgb"), "NIR only": (UNSHARED, "nir"), "TIR only": (UNSHARED, "tir"),
             UNSHARED: (UNSHARED, "fused"), BASELINE: (BASELINE, "fused"), FULL: (FULL, "rnt_proxy")}
#: Ablations: table -> {row: recipe overrides of CoEN}; ``None`` is the matched baseline.
ABLATIONS: dict[int, dict[str, dict | None]] = {
    3: {"(a) ViT baseline": None, "(b) PG": {"model.enhancement": "none"},
        "PG + DQSM + PriE": {"model.enhancement": "primary"}, "PG + DQSM + ProE": {"model.enhancement": "proxy"},
        "(e) CoEN": {}},
    4: {"Sum": {"model.proxy": "sum"}, "Direct Proj": {"model.proxy": "direct"}, "Progressive Proj": {}},
    6: {"w/o DQSM": {"model.sort": "none"}, "RGB→(NIR,TIR)": {"model.sort": "rgb"},
        "NIR→(RGB,TIR)": {"model.sort": "nir"}, "TIR→(RGB,NIR)": {"model.sort": "tir"}, "w/ DQSM": {}},
}
#: Table 7 is Table 3's (b) and (e) rows under the paper's names.
TABLE7_ROWS = {"(b) PG": "w/o CEM", "(e) CoEN": "w/ CEM"}
#: Table 5: inference features of the same CoEN models (row -> feature name).
TABLE5_FEATURES = {"RGB": "rgb", "NIR": "nir", "TIR": "tir", "Proxy": "proxy", "RGB-NIR-TIR": "rnt",
                   "RGB-NIR-TIR-Proxy": "rnt_proxy", "ViT branch (before CEM)": "vit"}
#: Sweeps (Figs. 5–6): parameter symbol -> recipe key.
SWEEPS = {"γ": "model.dropout", "λ": "loss.lambda"}


def baseline(recipe: Recipe, shared: bool = True) -> Recipe:
    """The multi-branch ViT baseline with CoEN's backbone (shared by the modalities, like CoEN's, or not), data,
    solver and schedule."""
    return matched_baseline(recipe, method_only=METHOD_ONLY, shared=shared)


def main_variants(recipe: Recipe) -> dict[str, Recipe]:
    """The three models of the main comparison: unshared and shared multi-branch ViT, and CoEN."""
    return {UNSHARED: baseline(recipe, shared=False), BASELINE: baseline(recipe), FULL: recipe}


def main_scores(runs: Mapping[tuple[str, int], Run]) -> pd.DataFrame:
    """:data:`MAIN_ROWS` scored from ``runs`` of :func:`main_variants` (single modalities are branches of the
    unshared model); one line per (row, seed)."""
    seeds = sorted({seed for _, seed in runs})
    return pd.concat([score_runs({(row, s): runs[variant, s] for s in seeds}, feature=feature)
                      for row, (variant, feature) in MAIN_ROWS.items()], ignore_index=True)


def ablation_variants(recipe: Recipe, table: int) -> dict[str, Recipe]:
    """The rows of ablation ``table`` (3, 4 or 6) as recipes: CoEN with one switch changed."""
    if table not in ABLATIONS:
        raise ValueError(f"CoEN ablation tables are {sorted(ABLATIONS)}, not {table}")
    return {row: baseline(recipe) if changes is None else recipe.override(changes)
            for row, changes in ABLATIONS[table].items()}


def table7_scores(table3_scores: pd.DataFrame) -> pd.DataFrame:
    """Table 7 (without / with CEM) from Table 3's scores."""
    return rename_rows(table3_scores, TABLE7_ROWS)


def feature_scores(runs: Mapping[int, Run]) -> pd.DataFrame:
    """Table 5: every :data:`TABLE5_FEATURES` feature of the CoEN models ``{seed: Run}`` (no retraining)."""
    names = {feature: row for row, feature in TABLE5_FEATURES.items()}
    frames = [results_frame(evaluate_model_features(run.model, run.split, run.transform, features=list(names),
                                                    progress=False)).rename(index=names).rename_axis("row")
              .reset_index().assign(seed=seed) for seed, run in runs.items()]
    return pd.concat(frames, ignore_index=True)


def claims(scores: Mapping[int | str, pd.DataFrame]) -> list[Claim]:
    """The paper's claims on our scores (``{3: table3, 4: ..., 5: ..., 6: ..., 7: ..., "main": main_scores}``)."""
    def delta(table: int, row: str, reference: str, **where: str) -> PaperDelta:
        return PaperDelta("coen", table, row, reference, where=where)
    return [
        Claim("CoEN beats the ViT baseline (T1)", scores["main"], FULL, BASELINE,
              delta(1, "CoEN", "ViT", backbone="ViT")),
        Claim("PG helps (T3 a→b)", scores[3], "(b) PG", "(a) ViT baseline", delta(3, "(b)", "(a)")),
        Claim("CEM helps (T7)", scores[7], "w/ CEM", "w/o CEM", delta(7, "w/ CEM", "w/o CEM")),
        Claim("PriE + ProE beat ProE only (T3 c→e)", scores[3], "(e) CoEN", "PG + DQSM + ProE",
              delta(3, "(e)", "(c)")),
        Claim("progressive beats sum (T4)", scores[4], "Progressive Proj", "Sum", delta(4, "Progressive Proj", "Sum")),
        Claim("progressive beats direct (T4)", scores[4], "Progressive Proj", "Direct Proj",
              delta(4, "Progressive Proj", "Direct Proj")),
        Claim("proxy beats the best modality (T5)", scores[5], "Proxy", "TIR", delta(5, "Proxy", "TIR")),
        Claim("adding the proxy helps (T5)", scores[5], "RGB-NIR-TIR-Proxy", "RGB-NIR-TIR",
              delta(5, "RGB-NIR-TIR-Proxy", "RGB-NIR-TIR")),
        Claim("DQSM beats no sort (T6)", scores[6], "w/ DQSM", "w/o DQSM", delta(6, "w/ DQSM", "w/o DQSM")),
        Claim("DQSM beats fixed TIR (T6)", scores[6], "w/ DQSM", "TIR→(RGB,NIR)", delta(6, "w/ DQSM", "TIR→(RGB,NIR)")),
    ]


def seeds_of(runs: Mapping[tuple[str, int], Run], row: str) -> dict[int, Run]:
    """``{seed: Run}`` of one row of ``runs``."""
    return {seed: run for (name, seed), run in runs.items() if name == row}


def chance_map(gallery_pids: Sequence[int], query_pids: Sequence[int]) -> float:
    """The mAP (%) of a random ranking, about: the mean fraction of the gallery that matches each query."""
    gallery = pd.Series(list(gallery_pids)).value_counts(normalize=True)
    return 100 * float(pd.Series(list(query_pids)).map(gallery).fillna(0).mean())
