"""MMCF's study (notebook 03): the clustering baseline, the ablation rows of Table 3, the sweeps of Fig. 6,
pseudo-label quality, cross-modal matching accuracy, the modality classifier's view, ROC / AUC (Fig. 5) and the
claims.

The paper — Sun, Du & Gao, "A Multimodule Collaborative Framework for Unsupervised Visible–Infrared Person
Re-Identification with Channel Enhancement Modality" — lives in: ``reidlab/models/mmcf.py`` (ViT with N region
tokens, modality-specific stems, PA-CBAM, D_E), ``reidlab/losses/mmcf.py`` (every loss, reconstructed: the paper's
equations were lost), ``reidlab/engine/mmcf.py`` (per-epoch clustering, two phases), ``reidlab/methods/mmcf.py``,
``reidlab/recipes/mmcf.yaml``, ``reidlab/papers/mmcf.yaml`` (the numbers its text states, and the peers') and this
module. The true identities of the synthetic training set are read **here only**, after training, to measure the
pseudo-labels (the paper could not: real training sets are unlabelled for the method, and it reports none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score, roc_curve
from torch.utils.flop_counter import FlopCounterMode

from reidlab.data.loading import ReIDDataset
from reidlab.data.records import RGB, Split
from reidlab.data.transforms import Transform, channel_augmented_view
from reidlab.engine.clustering import pseudo_labels
from reidlab.engine.experiment import Run
from reidlab.engine.mmcf import match_clusters
from reidlab.losses.mmcf import regional_cluster_similarity
from reidlab.models.mmcf import KINDS, MMCF, ReIDConvStemEmbed
from reidlab.recipes import Recipe, load_recipe
from reidlab.studies.claims import Claim
from reidlab.studies.peca import baseline as agw_baseline
from reidlab.studies.variants import train_groups
from reidlab.viz.style import denormalize, new_figure, style

BASELINE, FULL, ORACLE, AGW = "clustering baseline", "MMCF", "true labels (same ViT)", "AGW (supervised ResNet)"
#: The paper's metrics (R-1, mAP, mINP) as score columns.
METRICS = ("R-1", "mAP", "mINP")
#: Every module off: cluster-contrast with MMCF's ViT, region tokens and L_div (Table 3, No. 1).
OFF = {"model.pa_cbam": False, "loss.maal": False, "loss.vra": 0.0, "loss.vrnl": 0.0, "loss.um": 0.0}
#: Table 3 (lost; rows reconstructed from the prose, spec §5.2): row -> overrides of MMCF's recipe. MAAL is counted
#: with VRA ("VRA (+MAAL)"); PA-CBAM is in No. 2 and the full model only (the prose leaves No. 3–6 unclear).
ABLATION: dict[str, dict] = {
    "No.1 baseline": OFF,
    "No.2 + PA-CBAM": {**OFF, "model.pa_cbam": True},
    "No.3 + UM": {**OFF, "loss.um": 0.03},
    "No.4 + VRNL": {**OFF, "loss.vrnl": 0.5},
    "No.5 + VRA (MAAL)": {**OFF, "loss.vra": 0.4, "loss.maal": True},
    "No.6 + VRA (MAAL) + VRNL": {**OFF, "loss.vra": 0.4, "loss.maal": True, "loss.vrnl": 0.5},
    "No.7 MMCF": {},
}
#: Fig. 6 / §4.5: symbol -> (recipe key, the value the paper sets). μ is §4.2's match cap.
SWEEPS: dict[str, tuple[str, float]] = {"μ": ("loss.mu", 3), "α1 (VRA)": ("loss.vra", 0.4),
                                        "α2 (VRNL)": ("loss.vrnl", 0.5), "α3 (UM)": ("loss.um", 0.03),
                                        "β (MAAL)": ("loss.maal_beta", 0.1)}
SWEEP_NAMES = {"μ": "mu", "α1 (VRA)": "alpha1_vra", "α2 (VRNL)": "alpha2_vrnl", "α3 (UM)": "alpha3_um",
               "β (MAAL)": "beta_maal"}


def baseline(recipe: Recipe) -> Recipe:
    """No. 1: MMCF's recipe with every module switched off (same backbone, clustering, schedule and seeds)."""
    return recipe.override(OFF)


def oracle_control(recipe: Recipe) -> Recipe:
    """The supervised control with MMCF's own network: the clustering baseline trained on the true identities of
    each modality instead of its clusters (``loss.oracle``) — what perfect pseudo-labels would give."""
    return baseline(recipe).override({"loss.oracle": True})


def main_variants(recipe: Recipe) -> dict[str, Recipe]:
    return {BASELINE: baseline(recipe), FULL: recipe}


def comparison_runs(recipe: Recipe, seeds: Sequence[int], agw_seeds: Sequence[int] = (),
                    **train_options) -> dict[tuple[str, int], Run]:
    """Table 1's rows on one benchmark: the baseline, MMCF and the true-label control over ``seeds``, AGW over
    ``agw_seeds`` (none: no AGW row); finished runs come from the run cache, missing ones train together."""
    groups = {"unsupervised": ({**main_variants(recipe), ORACLE: oracle_control(recipe)}, seeds)}
    if agw_seeds:
        groups["AGW"] = ({AGW: supervised_ceiling(recipe)}, agw_seeds)
    return {key: run for runs in train_groups(groups, **train_options).values() for key, run in runs.items()}


def variants(recipe: Recipe, rows: Mapping[str, Mapping]) -> dict[str, Recipe]:
    """``{row: MMCF's recipe with the row's overrides}`` (:data:`ABLATION`, ...)."""
    return {row: recipe.override(dict(changes)) for row, changes in rows.items()}


def _truth(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The training records' true identities and infrared flags (evaluation only)."""
    return (np.array([r.pid for r in run.split.train]), np.array([r.modality != RGB for r in run.split.train]))


def purity(truth: np.ndarray, labels: np.ndarray) -> float:
    """Share of the clustered samples whose identity is their cluster's most frequent one (outliers left out)."""
    kept = labels >= 0
    if not kept.any():
        return float("nan")
    frame = pd.DataFrame({"cluster": labels[kept], "pid": truth[kept]})
    return float(frame.groupby("cluster")["pid"].agg(lambda p: p.value_counts().iloc[0]).sum() / kept.sum())


def label_quality(runs: Mapping[tuple[str, int], Run]) -> pd.DataFrame:
    """Per run, epoch and modality: clusters, outliers, purity, ARI and NMI of the pseudo-labels against the true
    identities (outliers count as one more cluster in ARI / NMI, as DBSCAN's −1 is a label), and the phase."""
    lines = []
    for (row, seed), run in runs.items():
        pids, infrared = _truth(run)
        for epoch, record in sorted(run.criterion.history.items()):
            labels = record["labels"].numpy()
            for modality, side in (("visible", ~infrared), ("infrared", infrared)):
                y, t = labels[side], pids[side]
                lines.append({"row": row, "seed": seed, "epoch": epoch + 1, "modality": modality,
                              "phase": 2 if epoch >= run.criterion.phase2_start else 1,
                              "clusters": int(len(set(y[y >= 0]))), "outliers": float((y < 0).mean()),
                              "true identities": int(len(set(t))), "purity": purity(t, y),
                              "ARI": adjusted_rand_score(t, y), "NMI": normalized_mutual_info_score(t, y)})
    return pd.DataFrame(lines)


def _majority(truth: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    frame = pd.DataFrame({"cluster": labels, "pid": truth})[labels >= 0]
    return frame.groupby("cluster")["pid"].agg(lambda p: p.value_counts().index[0]).to_dict()


def matching_accuracy(truth_v: np.ndarray, labels_v: np.ndarray, truth_r: np.ndarray, labels_r: np.ndarray,
                      v2r: Sequence[int]) -> float:
    """Share of visible clusters whose partner infrared cluster has the same majority identity."""
    major_v, major_r = _majority(truth_v, labels_v), _majority(truth_r, labels_r)
    return float(np.mean([major_v[i] == major_r[j] for i, j in enumerate(v2r)]))


def matching_history(runs: Mapping[tuple[str, int], Run]) -> pd.DataFrame:
    """Per run and phase-2 epoch: the accuracy of the matching the training used (VRA's, from the history)."""
    lines = []
    for (row, seed), run in runs.items():
        pids, infrared = _truth(run)
        for epoch, record in sorted(run.criterion.history.items()):
            if "v2r" in record:
                labels = record["labels"].numpy()
                lines.append({"row": row, "seed": seed, "epoch": epoch + 1, "accuracy": matching_accuracy(
                    pids[~infrared], labels[~infrared], pids[infrared], labels[infrared], record["v2r"].tolist())})
    return pd.DataFrame(lines)


def matching_by_epoch(history: pd.DataFrame) -> pd.DataFrame:
    """:func:`matching_history` summarised per epoch over runs: mean and std of the accuracy."""
    return history.groupby("epoch")["accuracy"].agg(["mean", "std"])


def step_seconds(run: Run) -> pd.Series:
    """Seconds of MMCF's per-epoch step (extraction, clustering, memories, matching), per (1-based) epoch."""
    return pd.Series({e + 1: float(r["seconds"]) for e, r in run.criterion.history.items()}, name="seconds")


def paper_size_cost(num_regions: int = 4, img_size: tuple[int, int] = (384, 128)) -> dict[str, float]:
    """Parameters (M) and GFLOPs of one image's forward pass (``torch.utils.flop_counter``, multiply-add = 2) of the
    paper-size model: ViT-B/16 with the conv stem, N region tokens, PA-CBAM (D_E apart); the paper: ~91.5 M,
    31.6 GFLOPs."""
    model = MMCF("vit_base_patch16_224", num_regions=num_regions, img_size=img_size,
                 embed_layer=ReIDConvStemEmbed).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.encode(torch.randn(1, 3, *img_size), torch.tensor([False]))
    return {"parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            "GFLOPs / image (multiply-add = 2)": counter.get_total_flops() / 1e9}


def matching_comparison(runs: Mapping[tuple[str, int], Run], mu: int = 3) -> pd.DataFrame:
    """VRA's capped greedy matching vs Hungarian (PGM) on the same clusters: each trained model's features of
    the training set, clustered as in training; one line per (run, method) with the accuracy and the clusters."""
    lines = []
    for (row, seed), run in runs.items():
        criterion = run.criterion
        features, tokens = criterion.extract(run.model, run.split.train)
        pids, infrared = _truth(run)
        side = torch.from_numpy(infrared)
        labels = [torch.from_numpy(pseudo_labels(features[rows], **criterion.cluster_options)).long()
                  for rows in (~side, side)]
        regions = features.view(tokens.shape)
        similarity = regional_cluster_similarity(regions[~side], labels[0], regions[side], labels[1])
        for method in ("greedy", "hungarian"):
            v2r, _ = match_clusters(similarity, mu, method)
            accuracy = matching_accuracy(pids[~infrared], labels[0].numpy(), pids[infrared], labels[1].numpy(), v2r)
            lines.append({"row": row, "seed": seed, "matching": f"{method} (μ = {mu})" if method == "greedy"
                          else "Hungarian (PGM)", "accuracy": accuracy,
                          "visible clusters": len(similarity), "infrared clusters": similarity.shape[1]})
    return pd.DataFrame(lines)


def modality_view(run: Run, part: str = "gallery") -> pd.DataFrame:
    """MAAL's classifier D_E on test images: the mean softmax over (visible, infrared, CA) for visible images,
    infrared images and the CA views of the visible images of ``part`` (query or gallery; both modalities are in
    the union of the two). One row per true kind."""
    classifier = run.criterion.classifier
    if classifier is None:
        raise ValueError("this run has no modality classifier (loss.maal = false)")
    batches = [run.batch(part, list(range(len(getattr(run.split, part))))) for part in ("query", "gallery")]
    images = torch.cat([b["images"][b["present"]] for b in batches])
    infrared = torch.cat([b["present"].float().argmax(1) for b in batches]) == 1
    rows = {"visible": images[~infrared], "infrared": images[infrared],
            "CA view of visible": channel_augmented_view(images[~infrared], torch.Generator().manual_seed(0))}
    lines = {}
    with torch.no_grad():
        for name, batch in rows.items():
            feature = run.model.encode(batch, torch.full((len(batch),), name == "infrared"))["feature"]
            lines[name] = F.softmax(classifier(feature), dim=1).mean(0).numpy()
    return pd.DataFrame(lines, index=list(KINDS)).T.rename_axis("images").rename(
        columns={"visible": "P(visible)", "infrared": "P(infrared)", "channel_view": "P(CA)"})


def pair_scores(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every (query, gallery) pair of the run's test split (cross-modal by the protocol) and
    whether the pair is the same identity — the input of Fig. 5's ROC curve."""
    parts = [run.features(part) for part in ("query", "gallery")]
    q, g = (F.normalize(p.select(run.model.default_feature).float(), dim=1) for p in parts)
    same = parts[0].pids[:, None] == parts[1].pids[None, :]
    return (q @ g.t()).numpy().ravel(), same.ravel()


def roc_table(runs: Mapping[str, Run]) -> tuple[pd.DataFrame, Figure]:
    """Fig. 5: ROC curves of the cross-modal pair scores of each model (``{name: run}``) with a chance diagonal,
    and their AUC."""
    aucs = {}
    with style():
        fig, axes = new_figure(1, 1, (4.2, 4.0))
        ax = axes[0][0]
        for name, run in runs.items():
            scores, same = pair_scores(run)
            fpr, tpr, _ = roc_curve(same, scores)
            aucs[name] = 100 * roc_auc_score(same, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.1f} %)")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Cross-modal pairs: ROC")
        ax.legend(loc="lower right")
    return pd.DataFrame({"AUC (%)": aucs}).rename_axis("model"), fig


def ca_examples(split: Split, transform: Transform, count: int = 4) -> Figure:
    """``count`` identities (columns): a visible image, its channel-augmented view (CAJ ChannelExchange, the
    third modality) and an infrared image of the same identity (rows)."""
    pids = [p for p in dict.fromkeys(r.pid for r in split.train)][:count]
    with style():
        fig, axes = new_figure(3, len(pids), (1.3, 2.4))
        for column, pid in enumerate(pids):
            chosen = [next(r for r in split.train if r.pid == pid and (r.modality == RGB) == visible)
                      for visible in (True, False)]
            dataset = ReIDDataset(chosen, transform, split.modalities)
            visible, infrared = (dataset[i]["images"][dataset[i]["present"]][0] for i in range(2))
            ca = channel_augmented_view(visible[None], torch.Generator().manual_seed(column))[0]
            for row, (name, image) in enumerate((("visible", visible), ("CA view", ca), ("infrared", infrared))):
                ax = axes[row][column]
                ax.imshow(denormalize(image, transform.mean, transform.std).permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_xticks([]), ax.set_yticks([])
                if column == 0:
                    ax.set_ylabel(name)
            axes[0][column].set_title(f"id {pid}", fontsize=8)
    return fig


def claims(scores: Mapping[str, pd.DataFrame]) -> list[Claim]:
    """The paper's claims on our scores (``{"main": ...}`` and, where trained, ``"regdb"`` and ``"ablation"`` —
    the lecture trains neither; frames with ``row`` / ``seed`` / metrics). Its tables are lost: every claim is a
    direction stated in the prose."""
    main, ablation = scores["main"], scores.get("ablation")
    text = "§4 text (Table 1 lost)"
    lines = [Claim("MMCF beats its clustering baseline (SYSU all)", main, FULL, BASELINE, expected_sign=1,
                   source=text)]
    if "regdb" in scores:
        lines.append(Claim("MMCF beats its clustering baseline (RegDB V→I)", scores["regdb"], FULL, BASELINE,
                           expected_sign=1, source=text))
    if ablation is None:
        return lines
    table3 = "§4.4 text (Table 3 lost)"
    lines += [Claim(claim, ablation, row, reference, metric=metric, expected_sign=1, source=table3)
              for claim, row, reference, metric in (
                  ("PA-CBAM adds > 1 R-1 (No.2 − No.1)", "No.2 + PA-CBAM", "No.1 baseline", "R-1"),
                  ("UM alone helps (No.3 − No.1)", "No.3 + UM", "No.1 baseline", "mAP"),
                  ("VRNL alone helps markedly (No.4 − No.1)", "No.4 + VRNL", "No.1 baseline", "mAP"),
                  ("VRA (+MAAL) adds > 10 % (No.5 − No.1)", "No.5 + VRA (MAAL)", "No.1 baseline", "mAP"),
                  ("VRNL adds to VRA (No.6 − No.5)", "No.6 + VRA (MAAL) + VRNL", "No.5 + VRA (MAAL)", "mAP"),
                  ("the full model is best (No.7 − No.6)", "No.7 MMCF", "No.6 + VRA (MAAL) + VRNL", "mAP"))]
    return lines


def supervised_ceiling(recipe: Recipe) -> Recipe:
    """The supervised ceiling on ``recipe``'s benchmark: AGW as notebook 02 trains it (PECA's matched baseline, the
    tutorial ResNet or ImageNet ResNet-50, trained *with* the identity labels MMCF never sees)."""
    return agw_baseline(load_recipe("peca", recipe.profile, dataset=recipe.dataset, data_root=recipe.data_root))


def plot_label_quality(quality: pd.DataFrame, phase2_start: int, measures: Sequence[str] = ("ARI", "NMI",
                                                                                           "clusters")) -> Figure:
    """Each measure of :func:`label_quality` over epochs (one panel each): a line per (row, modality), the mean over
    seeds with a ±1 std band, and the start of phase 2 dashed."""
    with style():
        fig, axes = new_figure(1, len(measures), (3.4, 2.8))
        for ax, measure in zip(axes[0], measures, strict=True):
            for (row, modality), frame in quality.groupby(["row", "modality"], sort=False):
                stats = frame.groupby("epoch")[measure].agg(["mean", "std"]).fillna(0.0)
                line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3,
                                linestyle="-" if modality == "visible" else "--", label=f"{row} · {modality}")
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=line.get_color(), alpha=0.15)
            if measure == "clusters":
                ax.axhline(quality["true identities"].iloc[0], color="black", linewidth=0.8, label="identities")
            ax.axvline(phase2_start + 0.5, color="grey", linestyle=":", linewidth=1)
            ax.set(xlabel="epoch", title=measure)
        axes[0][-1].legend(fontsize=7, loc="best")
    return fig
