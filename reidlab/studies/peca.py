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

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from reidlab.analysis.attention import attention_entropy, object_mass
from reidlab.data.loading import ReIDDataset
from reidlab.data.records import Split
from reidlab.data.synthetic import object_masks
from reidlab.data.transforms import ICAL_KEPT_CHANNELS, Transform, channel_aggregation, channel_exchange
from reidlab.engine.experiment import Run
from reidlab.recipes import Recipe
from reidlab.studies.baselines import matched_baseline
from reidlab.studies.claims import Claim, PaperDelta
from reidlab.studies.crossmodal import METRICS as CROSSMODAL_METRICS
from reidlab.studies.crossmodal import (  # noqa: F401 -- notebook 02 calls them as study.*
    of_protocol,
    protocol_scores,
    protocol_splits,
    test_features,
)
from reidlab.studies.noise import BEYOND, ONE_SEED, WITHIN, critical_t
from reidlab.viz.gradcam import IdentityLogitTarget, gradcam_maps, plot_gradcam
from reidlab.viz.style import denormalize

#: PECA's own model switches (left out of the matched AGW baseline).
METHOD_ONLY = ("channel_view", "ical", "ical_variants", "gsl", "gsl_target", "gsl_hidden")
AGW, FULL = "AGW baseline", "PECA"
#: The paper's metrics (Tables 1–3) and mINP, which is ours (the paper reports none): column -> summary key.
METRICS = CROSSMODAL_METRICS
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
#: File-name-safe names of the sweep symbols.
SWEEP_NAMES = {"τ_ins": "tau_ins", "τ_mod": "tau_mod", "λ_m": "lambda_m"}
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


def step_cost(models: Mapping[str, tuple[nn.Module, nn.Module]], batch: Mapping[str, Tensor]) -> pd.DataFrame:
    """Per ``{name: (model, criterion)}``: parameters (M) and one training step on ``batch`` — forward, the
    criterion and backward — in GFLOPs (``torch.utils.flop_counter``: matrix products and convolutions, a
    multiply-add = 2) and its loss."""
    rows = {}
    for name, (model, criterion) in models.items():
        with FlopCounterMode(display=False) as counter:
            loss = sum(criterion(model.train()(batch), batch).values())
            loss.backward()
        rows[name] = {"parameters (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                      "training step (GFLOPs)": round(counter.get_total_flops() / 1e9, 1),
                      "loss at initialisation": round(loss.item(), 3)}
    return pd.DataFrame(rows).T


def main_variants(recipe: Recipe) -> dict[str, Recipe]:
    """Tables 1–2's comparison: the AGW baseline and PECA."""
    return {AGW: baseline(recipe), FULL: recipe}


def variants(recipe: Recipe, rows: Mapping[str, Mapping]) -> dict[str, Recipe]:
    """``{row: PECA's recipe with the row's overrides}`` (:data:`ABLATION`, :data:`GSL_CONTROLS`, ...)."""
    return {row: recipe.override(dict(changes)) for row, changes in rows.items()}


def ical_examples(split: Split, transform: Transform, position: int = 0) -> dict[str, Tensor]:
    """For the identity of ``split.train[position]``: its first visible image, the six ICAL images of Eq. 2 made
    with its first infrared image, CAJ's channel-exchanged view and the infrared image, each [3, H, W] in [0, 1]
    (un-normalised for display). Column names give the kept visible channels (``R·B`` = G from infrared)."""
    pid = split.train[position].pid
    chosen = [next(r for r in split.train if r.pid == pid and r.modality == m) for m in split.modalities]
    dataset = ReIDDataset(chosen, transform, split.modalities)
    visible, infrared = (dataset[i]["images"][dataset[i]["present"]][0] for i in range(2))
    images = {"visible": visible}
    for index, kept in enumerate(ICAL_KEPT_CHANNELS):
        label = "".join("RGB"[c] if c in kept else "·" for c in range(3))
        images[f"ICAL {label}"] = channel_aggregation(visible, infrared, variant=index)
    images["CA view"] = channel_exchange(visible, generator=torch.Generator().manual_seed(position))
    images["infrared"] = infrared
    return {name: denormalize(image, transform.mean, transform.std) for name, image in images.items()}


def _cam(run: Run, positions: Sequence[int], modality: str) -> tuple[np.ndarray, dict]:
    """Grad-CAM maps of training images ``positions`` (all of ``modality``) for their own identity's logit."""
    batch = run.batch("train", list(positions))
    targets = [IdentityLogitTarget(int(c), run.model.default_feature) for c in batch["label"]]
    return gradcam_maps(run.model, batch, modality, targets), batch


def cam_positions(split: Split, modality: str, n: int) -> list[int]:
    """``n`` training images of ``modality`` spread evenly over the training list (so over identities)."""
    positions = [i for i, r in enumerate(split.train) if r.modality == modality]
    return [positions[int(j)] for j in np.linspace(0, len(positions) - 1, min(n, len(positions)))]


def attention_scores(runs: Mapping[str, Run], n: int = 24) -> pd.DataFrame:
    """Fig. 7 as numbers: for ``n`` training images per modality and every model, the share of the Grad-CAM mass
    on the person (:func:`reidlab.analysis.attention.object_mass`, masks from the synthetic generator) and the
    map's normalised spatial entropy (scatter); one line per (model, image)."""
    lines = []
    split = next(iter(runs.values())).split
    for modality in split.modalities:
        positions = cam_positions(split, modality, n)
        masks = object_masks([split.train[i] for i in positions], modality)
        for name, run in runs.items():
            maps, _ = _cam(run, positions, modality)
            lines.append(pd.DataFrame({"model": name, "modality": modality, "image": positions,
                                       "object mass": object_mass(maps, masks), "entropy": attention_entropy(maps),
                                       "chance": masks.mean(axis=(1, 2))}))
    return pd.concat(lines, ignore_index=True)


def attention_effect(scores: pd.DataFrame, row: str, reference: str) -> pd.DataFrame:
    """``row`` − ``reference`` per modality and measure, paired over the same images: mean Δ, se, images and the
    noise rule's verdict (a paired t-test at 95 % over images — the images, not training seeds, vary here)."""
    lines = {}
    for modality, frame in scores.groupby("modality", sort=False):
        pair = frame.pivot_table(index="image", columns="model", values=["object mass", "entropy"]).dropna()
        for measure in ("object mass", "entropy"):
            d = pair[measure][row] - pair[measure][reference]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            verdict = ONE_SEED if len(d) < 2 else BEYOND if abs(d.mean()) > critical_t(len(d)) * se else WITHIN
            lines[(modality, measure)] = {"delta": d.mean(), "se": se, "images": len(d), "verdict": verdict}
    frame = pd.DataFrame(lines).T.rename_axis(["modality", "measure"])
    return frame.astype({"delta": float, "se": float, "images": int})


def plot_attention_examples(runs: Mapping[str, Run], n: int = 3) -> Figure:
    """Grad-CAM overlays of ``n`` training images per modality (rows), one column per model."""
    split = next(iter(runs.values())).split
    images, maps, titles = [], {name: [] for name in runs}, []
    for modality in split.modalities:
        positions = cam_positions(split, modality, n)
        for name, run in runs.items():
            cams, batch = _cam(run, positions, modality)
            maps[name].append(cams)
        present = batch["images"][batch["present"]]
        images.append(denormalize(present, run.transform.mean, run.transform.std))
        titles += [f"{modality} · id {split.train[i].pid}" for i in positions]
    return plot_gradcam(torch.cat(images), {k: np.concatenate(v) for k, v in maps.items()}, titles=titles,
                        show_input=False)


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


#: The optimum of each sweep the paper states in its text (§4.2): the value the others are compared with.
SWEEP_BEST = {"τ_ins": 0.15, "τ_mod": 0.10, "λ_m": 0.5}


def claims(scores: Mapping[str, pd.DataFrame]) -> list[Claim]:
    """The paper's claims on our scores: ``{"main": ...}`` and, where trained, ``"ablation"`` (SYSU all-search
    frames of :func:`of_protocol`; the lecture trains no Table 3 row) and the sweeps ``{"τ_ins": ..., "τ_mod": ...,
    "λ_m": ...}`` (frames of :func:`reidlab.studies.sweep`-like scores with the value in the symbol's column), each
    row paired by seed."""
    def delta(table: int, row: str, reference: str, dataset: str = "sysu_mm01_all") -> PaperDelta:
        return PaperDelta("peca", table, row, reference, where={"dataset": dataset})
    main, ablation = scores["main"], scores.get("ablation")
    steps = [] if ablation is None else [
        Claim("L_ins beats the triplet loss (T3 M1→M2)", ablation, "M2", "M1", delta(3, "M2", "M1")),
        Claim("L_mod helps (T3 M2→M3)", ablation, "M3", "M2", delta(3, "M3", "M2")),
        Claim("GSL helps (T3 M3→M4, the jump hardest to reproduce)", ablation, "M4", "M3", delta(3, "M4", "M3")),
        Claim("ICAL helps (T3 M3→M5)", ablation, "M5", "M3", delta(3, "M5", "M3")),
        Claim("ICAL adds to GSL (T3 M4→PECA)", ablation, FULL, "M4", delta(3, "PECA", "M4")),
        Claim("GSL adds to ICAL (T3 M5→PECA)", ablation, FULL, "M5", delta(3, "PECA", "M5")),
    ]
    return [Claim("PECA beats AGW (T1, all search)", main, FULL, AGW, delta(1, "PECA", "AGW"))] + steps + [
        Claim(f"{symbol} = {best:g} beats {symbol} = {value:g}", frame, best, value, expected_sign=1,
              source="Figs. 4–6 (text only: the optimum, §4.2)")
        for symbol, best in SWEEP_BEST.items() if symbol in scores
        for frame in [scores[symbol].rename(columns={symbol: "row"})]
        for value in sorted(set(frame["row"]) - {best})]

