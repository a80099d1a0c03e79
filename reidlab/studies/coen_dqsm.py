"""Does CoEN's Dynamic Quality Sort rank the modalities by their real quality?

CoEN's DQSM (paper §3.3, Eq. 4–7) scores each modality m of a sample by the mean, over the N_p
patch tokens, of the cosine similarity between the proxy's token and m's token,
Q_m = 1/N_p Σ_i S_i(F_P, F_m^emb) (Eq. 5–6), and sorts the modalities by Q (Eq. 7): the first is
the *primary* that enhances the others. The paper has no quality labels, so it cannot check that
the ranking follows image quality. The synthetic sidecar (:func:`reidlab.data.synthetic.read_metadata`)
can: it records, per record and modality, the degradation applied, its severity and the
ground-truth quality 1 − severity. These functions join the two and return tidy frames.

* :func:`dqsm_scores` — the model's per-sample Q_R, Q_N, Q_T and order over parts of a split.
* :func:`with_ground_truth` — the same rows joined with the sidecar.
* :func:`primary_by_degradation` — how often each modality is primary, per degradation of each modality.
* :func:`rank_agreement` / :func:`agreement_summary` — Spearman ρ and Kendall τ between Q and the
  ground-truth quality per sample, and their means per condition.
* :func:`ranked_below` — how often a degraded modality is scored below a clean one, against chance.
* :func:`dqsm_summary` — all of it in one row per model (for comparing models and seeds).

Ambiguity: a sample whose three ground-truth qualities are equal (all clean, say) has no true
ranking; its ρ and τ are undefined. We keep it in the frame with NaN and leave it out of the
means, reporting how many samples were ranked. Partial ties use average ranks (Spearman) and
τ-b (Kendall), scipy's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from reidlab.data.loading import build_test_loader
from reidlab.data.records import MODALITIES

#: The per-sample quality score columns (Q_R, Q_N, Q_T of Eq. 5–6).
SCORE_COLUMNS: tuple[str, ...] = tuple(f"q_{m}" for m in MODALITIES)
CLEAN = "none"


def dqsm_scores(run, part: str | Sequence[str] = "query", *, batch_size: int = 128) -> pd.DataFrame:
    """CoEN's quality scores and sort order for every record of ``part`` (one name or several) of ``run``.

    ``run`` is a :class:`~reidlab.engine.experiment.Run` (anything with ``model``, ``split``, ``transform``)
    whose model returns ``quality`` [B, 3] (Q_R, Q_N, Q_T) and ``order`` [B, 3] (modality indices, primary
    first). Index: record key. Columns: part, pid, camid, q_rgb, q_nir, q_tir, primary, second, third.
    """
    parts = (part,) if isinstance(part, str) else tuple(part)
    return pd.concat([_part_scores(run, p, batch_size) for p in parts])


def _part_scores(run, part: str, batch_size: int) -> pd.DataFrame:
    records = getattr(run.split, part)
    model = run.model
    device = next(model.parameters()).device
    loader = build_test_loader(records, run.transform, batch_size, modalities=MODALITIES)
    quality, order = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                out = model({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
                quality.append(out["quality"].float().cpu())
                order.append(out["order"].cpu())
    finally:
        model.train(was_training)
    return scores_frame(torch.cat(quality).numpy(), torch.cat(order).numpy(), records, part)


def scores_frame(quality: np.ndarray, order: np.ndarray, records: Sequence, part: str) -> pd.DataFrame:
    """The frame of :func:`dqsm_scores` from ``quality`` [N, 3], ``order`` [N, 3] and the N ``records``."""
    quality, order = np.asarray(quality, dtype=np.float64), np.asarray(order, dtype=np.int64)
    if quality.shape != (len(records), len(MODALITIES)) or order.shape != quality.shape:
        raise ValueError(f"expected quality and order of shape ({len(records)}, {len(MODALITIES)}), "
                         f"got {quality.shape} and {order.shape}")
    names = np.asarray(MODALITIES)[order]
    frame = pd.DataFrame({"part": part, "pid": [r.pid for r in records], "camid": [r.camid for r in records],
                          **dict(zip(SCORE_COLUMNS, quality.T, strict=True)),
                          "primary": names[:, 0], "second": names[:, 1], "third": names[:, 2]},
                         index=pd.Index([r.key for r in records], name="key"))
    return frame


def with_ground_truth(scores: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (indexed by record key) with each modality's sidecar degradation, severity and quality."""
    missing = scores.index.difference(metadata.index)
    if len(missing):
        raise ValueError(f"{len(missing)} scored records are absent from the sidecar (e.g. {missing[0]!r}); "
                         "was the metadata read from the tree the run was evaluated on?")
    columns = [f"{m}_{c}" for m in MODALITIES for c in ("degradation", "severity", "quality")]
    return scores.join(metadata[columns])


def condition(frame: pd.DataFrame) -> pd.Series:
    """Per row, the degraded modalities and their degradation, e.g. ``"rgb:flare"``, ``"rgb:flare+nir:flare"``
    or ``"clean"``."""
    def label(row: pd.Series) -> str:
        parts = [f"{m}:{row[f'{m}_degradation']}" for m in MODALITIES if row[f"{m}_degradation"] != CLEAN]
        return "+".join(parts) or "clean"
    return frame.apply(label, axis=1).rename("condition")


def primary_by_degradation(frame: pd.DataFrame) -> pd.DataFrame:
    """How often (in %) each modality is DQSM's primary, per (modality, degradation of that modality).

    Index: (modality, degradation), plus ("all", "all") for every sample. Columns: ``n`` and one
    column per modality (% of those samples whose primary it is; each row sums to 100).
    """
    rows = {("all", "all"): frame}
    for m in MODALITIES:
        for degradation, group in frame.groupby(f"{m}_degradation", sort=True):
            rows[(m, degradation)] = group
    table = pd.DataFrame({key: {"n": len(group),
                                **{p: 100.0 * float((group["primary"] == p).mean()) for p in MODALITIES}}
                          for key, group in rows.items()}).T
    table.index = pd.MultiIndex.from_tuples(table.index, names=["modality", "degradation"])
    return table.astype({"n": int})


def rank_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Per sample: Spearman ρ and Kendall τ-b between (Q_R, Q_N, Q_T) and the ground-truth qualities,
    whether the primary is (one of) the truly best modality(ies), the chance of that for a random
    primary (#best / 3), and the sample's :func:`condition`. ρ and τ are NaN when the truth is all tied."""
    predicted = frame[list(SCORE_COLUMNS)].to_numpy(np.float64)
    truth = frame[[f"{m}_quality" for m in MODALITIES]].to_numpy(np.float64)
    ranked = truth.max(axis=1) > truth.min(axis=1)
    rho, tau = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    for i in np.flatnonzero(ranked):
        rho[i] = stats.spearmanr(predicted[i], truth[i]).statistic
        tau[i] = stats.kendalltau(predicted[i], truth[i]).statistic
    best = truth == truth.max(axis=1, keepdims=True)
    primary = frame["primary"].map({m: i for i, m in enumerate(MODALITIES)}).to_numpy()
    return pd.DataFrame({"spearman": rho, "kendall": tau,
                         "primary_is_best": best[np.arange(len(frame)), primary],
                         "chance_best": best.sum(axis=1) / len(MODALITIES),
                         "condition": condition(frame).to_numpy()}, index=frame.index)


def agreement_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`rank_agreement` per condition and overall ("all"): ``n``, ``n_ranked`` (truth not all tied),
    mean ``spearman`` and ``kendall`` over the ranked samples (0 for a ranking that ignores the images),
    ``primary_is_best`` and its ``chance`` (both %)."""
    per_sample = rank_agreement(frame)
    groups = {"all": per_sample, **dict(tuple(per_sample.groupby("condition", sort=True)))}
    return pd.DataFrame({name: {"n": len(g), "n_ranked": int(g["spearman"].notna().sum()),
                                "spearman": g["spearman"].mean(), "kendall": g["kendall"].mean(),
                                "primary_is_best": 100.0 * g["primary_is_best"].mean(),
                                "chance": 100.0 * g["chance_best"].mean()}
                         for name, g in groups.items()}).T.astype({"n": int, "n_ranked": int})


def dqsm_summary(frame: pd.DataFrame, low: str = "rgb", high: str = "tir", degradation: str = "flare") -> pd.Series:
    """One model's DQSM in a few numbers (for a table with one row per model and seed).

    ``Q_R``, ``Q_N``, ``Q_T``: the mean scores (cosines in [-1, 1]); ``|Q|``: their mean magnitude;
    ``<low> <degradation> below <high> (%)`` and ``<low> clean below <high> (%)``: the two rates of
    :func:`ranked_below`; ``<low> primary | <degradation> (%)`` and ``<low> primary | clean (%)``; the
    mean ``Spearman ρ`` and ``Kendall τ`` of :func:`rank_agreement` over the ranked samples.
    """
    below = ranked_below(frame, low, high, degradation)["rate"]
    agreement = rank_agreement(frame)
    scores = frame[list(SCORE_COLUMNS)]
    primary = frame["primary"] == low
    degraded, clean = frame[f"{low}_degradation"] == degradation, frame[f"{low}_degradation"] == CLEAN
    return pd.Series({**{f"Q_{m[0].upper()}": scores[f"q_{m}"].mean() for m in MODALITIES},
                      "|Q|": float(np.abs(scores.to_numpy()).mean()),
                      f"{low} {degradation} below {high} (%)": below.iloc[0],
                      f"{low} clean below {high} (%)": below.iloc[1],
                      f"{low} primary | {degradation} (%)": 100.0 * primary[degraded].mean(),
                      f"{low} primary | clean (%)": 100.0 * primary[clean].mean(),
                      "Spearman ρ": agreement["spearman"].mean(), "Kendall τ": agreement["kendall"].mean()})


def ranked_below(frame: pd.DataFrame, low: str = "rgb", high: str = "tir", degradation: str = "flare") -> pd.DataFrame:
    """How often DQSM scores ``low`` below ``high`` (Q_low < Q_high), against chance.

    Rows: ``"<low> <degradation>"`` — samples whose ``low`` image has ``degradation`` and whose
    ``high`` image is clean, so the truth says ``low`` is worse — and the control ``"<low> clean"``,
    where both are clean. Columns: ``n``, ``rate`` (%), ``chance`` (50: a ranking that ignores the
    images puts either first equally often) and ``p_value`` (one-sided binomial test of rate > 50 %).
    A model that always puts ``high`` first passes the first row too; the control row tells the two apart.
    """
    for m in (low, high):
        if m not in MODALITIES:
            raise ValueError(f"unknown modality {m!r}; expected one of {MODALITIES}")
    clean_high = frame[f"{high}_degradation"] == CLEAN
    subsets = {f"{low} {degradation}": frame[clean_high & (frame[f"{low}_degradation"] == degradation)],
               f"{low} clean": frame[clean_high & (frame[f"{low}_degradation"] == CLEAN)]}
    rows = {}
    for name, subset in subsets.items():
        hits = int((subset[f"q_{low}"] < subset[f"q_{high}"]).sum())
        p_value = stats.binomtest(hits, len(subset), 0.5, alternative="greater").pvalue if len(subset) else np.nan
        rows[name] = {"n": len(subset), "rate": 100.0 * hits / len(subset) if len(subset) else np.nan,
                      "chance": 50.0, "p_value": p_value}
    return pd.DataFrame(rows).T.astype({"n": int})
