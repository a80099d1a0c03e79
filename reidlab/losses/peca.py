"""PECA's losses (Jing & Li, IEICE Trans. Inf. & Syst. E108-D(1), 2025, §3, Eq. 1, 3–11).

    L_PECA = L_ce + L_sim + L_mix + L_imcl,   L_imcl = L_ins + λ_m · L_mod                  (Eq. 11, 5)

- :func:`global_local_similarity` — L_sim, Eq. 1: ``−<f^g/‖f^g‖, stopgrad(f^s/‖f^s‖)>`` on the concatenated
  6144-d (3 × d) vectors, mean over the real visible and infrared samples.
- :func:`ical_consistency` — L_mix, Eq. 3. As printed, ``max[‖D − m‖₂, 0]`` is vacuous (a norm is never negative)
  and would pull every distance to exactly m. We read it as the hinge ``max(D − m, 0)`` (spec A4): an ICAL image is
  pulled within radius m = 0.7 of both of its sources, D the Euclidean distance of L2-normalised features (§3.2:
  "all features are normalized"). ``squared=True`` squares each of the two hinges.
- :func:`instance_contrast` — L_ins, Eq. 6: for every anchor, its farthest positive against its |Q| = 50 closest
  negatives (mined on detached distances, over the whole step, any modality), InfoNCE at τ_ins = 0.15 on
  L2-normalised features; |Q| is capped at the anchor's number of negatives.
- :class:`ModalityCentroidMemory` — Eq. 7–9: one centroid per (identity, modality), initialised as the mean of the
  L2-normalised training features (Eq. 7–8, one pass before the first epoch, spec A7) and moved after each step by
  ``m ← (1 − α) m + α f`` (Eq. 9, α = 0.8, sample by sample in batch order, then re-normalised as a cluster memory
  does). Only real visible / infrared samples update it (Eq. 7–8 define only those centroids, A6).
- :func:`modality_contrast` — L_mod, Eq. 10: positives P = the sample's identity's centroids in every modality,
  negatives U = other identities' centroids **of the sample's own modality** only; multi-positive InfoNCE at
  τ_mod = 0.10 averaged over P.
- L_ce, Eq. 4: the sum of the mean identity loss over visible-side samples and over infrared samples (the paper's
  two separate means). The CA view and the ICAL images are visible-side augmentations and join the visible mean
  (A6); plain cross-entropy (``label_smoothing`` 0 as in Eq. 4 and AGW/CAJ, A10).

:class:`PECACriterion` applies them to a :class:`~reidlab.models.peca.PECA` output with switches for every Table 3
row: ``metric`` (``ins`` = L_ins; ``triplet`` / ``wrt`` = M1's triplet, spec A11) and ``modality`` (L_mod); L_sim
and L_mix are computed when the model produced GSL / ICAL outputs. Features are the pooled (pre-BNNeck) ones, the
identity loss is on the BNNeck logits (A14).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlab.data.loading import ReIDDataset
from reidlab.data.transforms import Transform
from reidlab.losses.reid import TripletLoss, WeightedRegularizedTriplet

METRICS = ("ins", "triplet", "wrt")
VISIBLE, INFRARED, CHANNEL_VIEW, ICAL = 0, 1, 2, 3  # the ``kind`` codes of reidlab.models.peca.KINDS


def global_local_similarity(global_projection: Tensor, local: Tensor) -> Tensor:
    """L_sim (Eq. 1): mean over samples of ``−cos(f^g, stopgrad(f^s))``; no gradient reaches ``local``."""
    return -(F.normalize(global_projection, dim=1) * F.normalize(local.detach(), dim=1)).sum(dim=1).mean()


def _distance(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Euclidean distance of L2-normalised features (finite gradient at 0)."""
    return ((F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(dim=1) + 1e-12).sqrt()


def ical_consistency(visible: Tensor, ical: Tensor, infrared: Tensor, margin: float = 0.7,
                     squared: bool = False) -> Tensor:
    """L_mix (Eq. 3, hinge reading): mean of ``max(D(v, g) − m, 0) + max(D(ir, g) − m, 0)`` over ICAL images g,
    each paired with the visible and the infrared image it was built from (rows of the three tensors)."""
    hinges = torch.stack([F.relu(_distance(visible, ical) - margin), F.relu(_distance(infrared, ical) - margin)])
    return (hinges.pow(2) if squared else hinges).sum(dim=0).mean()


def instance_contrast(features: Tensor, labels: Tensor, negatives: int = 50, tau: float = 0.15) -> Tensor:
    """L_ins (Eq. 6): per anchor, ``−log exp(f_i·f_j/τ) / Σ_{k ∈ {j} ∪ Q} exp(f_i·f_k/τ)`` with j the farthest
    positive and Q the ``negatives`` closest other-identity samples; mean over anchors that have a positive."""
    if negatives < 1 or tau <= 0:
        raise ValueError(f"instance_contrast needs negatives >= 1 and tau > 0, got {negatives} and {tau}")
    f = F.normalize(features.float(), dim=1)
    similarity = f @ f.t()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    negative = ~same
    anchors = positive.any(dim=1) & negative.any(dim=1)
    if not bool(anchors.any()):
        raise ValueError("instance_contrast needs an anchor with a positive and a negative in the batch")
    with torch.no_grad():  # mining: farthest positive = lowest similarity; closest negatives = highest
        hard_positive = similarity.masked_fill(~positive, float("inf")).argmin(dim=1)
        k = min(negatives, int(negative.sum(dim=1).max()))
        mined = similarity.masked_fill(~negative, float("-inf")).topk(k, dim=1)
    logits = torch.cat([similarity.gather(1, hard_positive.unsqueeze(1)), similarity.gather(1, mined.indices)], 1)
    logits = logits.masked_fill(torch.cat([torch.zeros_like(anchors).unsqueeze(1), mined.values.isinf()], 1),
                                float("-inf")) / tau
    return -F.log_softmax(logits[anchors], dim=1)[:, 0].mean()


def modality_contrast(features: Tensor, labels: Tensor, modality: Tensor, centroids: Tensor,
                      available: Tensor | None = None, tau: float = 0.10) -> Tensor:
    """L_mod (Eq. 10) against ``centroids`` [C, M, d] (``available`` [C, M] masks centroids not yet set).

    For sample i (identity y, modality μ): P = {m_y^ν for every ν}, U = {m_c^μ : c ≠ y};
    ``−(1/|P|) Σ_{p ∈ P} log exp(f_i·m_p/τ) / Σ_{k ∈ P ∪ U} exp(f_i·m_k/τ)``, averaged over the samples.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    num_classes, num_modalities, dim = centroids.shape
    available = torch.ones(num_classes, num_modalities, dtype=torch.bool, device=centroids.device) \
        if available is None else available
    f = F.normalize(features.float(), dim=1)
    logits = (f @ centroids.reshape(-1, dim).t().float()).view(-1, num_classes, num_modalities) / tau
    own_class = torch.arange(num_classes, device=labels.device).unsqueeze(0) == labels.unsqueeze(1)   # [B, C]
    own_modality = torch.arange(num_modalities, device=labels.device).unsqueeze(0) == modality.unsqueeze(1)  # [B, M]
    positive = own_class.unsqueeze(2) & available.unsqueeze(0)
    allowed = (own_class.unsqueeze(2) | own_modality.unsqueeze(1)) & available.unsqueeze(0)
    log_prob = F.log_softmax(logits.masked_fill(~allowed, float("-inf")).flatten(1), dim=1).view_as(logits)
    counts = positive.flatten(1).sum(dim=1)
    rows = counts > 0
    if not bool(rows.any()):  # an empty memory (before any update): nothing to contrast with yet
        return features.sum() * 0.0
    per_sample = log_prob.masked_fill(~positive, 0.0).flatten(1).sum(dim=1)[rows] / counts[rows]
    return -per_sample.mean()


class ModalityCentroidMemory(nn.Module):
    """Per (identity, modality) centroids of L2-normalised features (Eq. 7–9); buffers, so checkpoints keep them."""

    def __init__(self, num_classes: int, dim: int, num_modalities: int = 2, alpha: float = 0.8) -> None:
        super().__init__()
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"the updating rate alpha (Eq. 9) must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.register_buffer("centroids", torch.zeros(num_classes, num_modalities, dim))
        self.register_buffer("available", torch.zeros(num_classes, num_modalities, dtype=torch.bool))

    @torch.no_grad()
    def initialise(self, features: Tensor, labels: Tensor, modality: Tensor) -> None:
        """Eq. 7–8: every centroid = the mean of its samples' normalised features (then normalised)."""
        f = F.normalize(features.float(), dim=1).to(self.centroids.device)
        slot = (labels * self.centroids.shape[1] + modality).to(self.centroids.device)
        sums = torch.zeros(self.centroids.shape[0] * self.centroids.shape[1], f.shape[1], device=f.device)
        sums.index_add_(0, slot, f)
        counts = torch.bincount(slot, minlength=sums.shape[0])
        self.centroids.copy_(F.normalize(sums, dim=1).view_as(self.centroids))
        self.available.copy_((counts > 0).view_as(self.available))

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor, modality: Tensor) -> None:
        """Eq. 9 for each sample in order: ``m ← (1 − α) m + α f`` (an unset centroid becomes f), normalised."""
        f = F.normalize(features.detach().float(), dim=1)
        for x, y, m in zip(f, labels.tolist(), modality.tolist(), strict=True):
            old = self.centroids[y, m] if bool(self.available[y, m]) else x
            self.centroids[y, m] = F.normalize((1 - self.alpha) * old + self.alpha * x, dim=0)
            self.available[y, m] = True

    def extra_repr(self) -> str:
        c, m, d = self.centroids.shape
        return f"classes={c}, modalities={m}, dim={d}, alpha={self.alpha:g}"


class PECACriterion(nn.Module):
    """Eq. 11 on a :class:`~reidlab.models.peca.PECA` training output (its ``"peca"`` entry).

    Terms: ``id`` (Eq. 4), ``ins`` (Eq. 6) or ``triplet`` (M1), ``mod`` (λ_m · Eq. 10), ``sim`` (Eq. 1), ``mix``
    (Eq. 3). ``init_transform`` (the test transform) makes :meth:`epoch_hook` initialise the memory from one pass
    over the training images before the first epoch; without it the memory starts empty and each centroid is set
    by its first sample. ``refresh=True`` re-initialises it at every epoch start (spec A7's option).
    """

    def __init__(self, num_classes: int, feature_dim: int, *, metric: str = "ins", negatives: int = 50,
                 tau_ins: float = 0.15, modality: bool = True, tau_mod: float = 0.10, lambda_m: float = 0.5,
                 alpha: float = 0.8, mix_margin: float = 0.7, mix_squared: bool = False,
                 triplet_margin: float | None = 0.3, label_smoothing: float = 0.0,
                 init_transform: Transform | None = None, refresh: bool = False) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if lambda_m < 0:
            raise ValueError(f"lambda_m must be >= 0, got {lambda_m}")
        self.metric, self.negatives, self.tau_ins = metric, negatives, tau_ins
        self.modality, self.tau_mod, self.lambda_m = modality, tau_mod, float(lambda_m)
        self.mix_margin, self.mix_squared = mix_margin, mix_squared
        self.label_smoothing = label_smoothing
        self.triplet = {"triplet": TripletLoss(margin=triplet_margin), "wrt": WeightedRegularizedTriplet()}.get(metric)
        self.memory = ModalityCentroidMemory(num_classes, feature_dim, alpha=alpha) if modality else None
        self.init_transform, self.refresh = init_transform, refresh

    def forward(self, outputs: Mapping[str, object], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        o = outputs["peca"]
        features, labels, kind = o["features"], o["labels"], o["kind"]
        infrared = kind == INFRARED
        ce = F.cross_entropy(o["logits"].float(), labels, reduction="none", label_smoothing=self.label_smoothing)
        terms = {"id": ce[~infrared].mean() + ce[infrared].mean()}
        if self.metric == "ins":
            terms["ins"] = instance_contrast(features, labels, self.negatives, self.tau_ins)
        else:
            terms["triplet"] = self.triplet(features, labels)
        real = (kind == VISIBLE) | infrared
        if self.memory is not None:
            modality = infrared[real].long()
            memory = self.memory
            terms["mod"] = self.lambda_m * modality_contrast(features[real], labels[real], modality,
                                                             memory.centroids.clone(), memory.available.clone(),
                                                             self.tau_mod)
            self.memory.update(features[real], labels[real], modality)  # after the loss used a copy (Eq. 9)
        if "gsl_global" in o:
            terms["sim"] = global_local_similarity(o["gsl_global"], o["gsl_local"])
        if "ical_visible" in o:
            ical = features[kind == ICAL]
            terms["mix"] = ical_consistency(features[real][o["ical_visible"]], ical, features[real][o["ical_infrared"]],
                                            self.mix_margin, self.mix_squared)
        return terms

    @torch.no_grad()
    def epoch_hook(self, epoch: int, model: nn.Module, loader: DataLoader) -> None:
        """Before the first epoch (every epoch with ``refresh``): the memory from one pass over the training
        images (Eq. 7–8), model in eval mode, test transform. A resumed run keeps its checkpointed memory."""
        if self.memory is None or self.init_transform is None or (epoch > 0 and not self.refresh):
            return None
        train = loader.dataset
        plain = ReIDDataset(train.records, self.init_transform, train.modalities, train.label_map)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        features, labels, modality = [], [], []
        for batch in DataLoader(plain, batch_size=128, shuffle=False):
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            out = model(batch)
            features.append(out["features"]["embedding"])
            labels.append(batch["label"])
            modality.append(out["modality"])
        model.train(was_training)
        self.memory.initialise(torch.cat(features), torch.cat(labels), torch.cat(modality).clamp(max=1))
        return None

    def extra_repr(self) -> str:
        return (f"metric={self.metric}, negatives={self.negatives}, tau_ins={self.tau_ins:g}, "
                f"modality={self.modality}, tau_mod={self.tau_mod:g}, lambda_m={self.lambda_m:g}, "
                f"mix_margin={self.mix_margin:g}")


__all__ = ["METRICS", "ModalityCentroidMemory", "PECACriterion", "global_local_similarity", "ical_consistency",
           "instance_contrast", "modality_contrast"]
