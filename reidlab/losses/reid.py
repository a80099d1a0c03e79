"""The ReID losses every baseline uses, and the criterion that applies them to a model's outputs.

* :class:`CrossEntropyLabelSmooth` — identity cross-entropy with label smoothing (Szegedy et al.,
  "Rethinking the Inception Architecture", CVPR 2016, §7; used for ReID by Luo et al., "Bag of Tricks
  and a Strong Baseline for Deep Person Re-identification", CVPRW 2019, ε = 0.1).
* :class:`TripletLoss` — batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss
  for Person Re-Identification", 2017), with a hard margin or the soft margin ``log(1 + exp(d_ap - d_an))``.
* :class:`WeightedRegularizedTriplet` — AGW's weighted regularised triplet (Ye et al., "Deep Learning
  for Person Re-identification: A Survey and Outlook", TPAMI 2021, Eq. 5).

Distances are Euclidean (not squared) on the raw features, as in Bag of Tricks' ``euclidean_dist``
(``sqrt(clamp(||x||² + ||y||² - 2 x·y, 1e-12))``); ``normalize=True`` L2-normalises the features first.
They are computed in float32 with autocast disabled, so bf16 training does not round them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def euclidean_distances(features: Tensor, normalize: bool = False) -> Tensor:
    """``[N, N]`` Euclidean distances between the rows of ``features`` (Bag of Tricks' ``euclidean_dist``).

    Squared distances are clamped at 1e-12 before the square root so the gradient stays finite on the
    diagonal. Computed in float32 outside autocast.
    """
    with torch.autocast(features.device.type, enabled=False):
        x = features.float()
        if normalize:
            x = F.normalize(x, dim=1)
        squared = x.pow(2).sum(dim=1, keepdim=True)
        dist = squared + squared.t() - 2.0 * x @ x.t()
        return dist.clamp(min=1e-12).sqrt()


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Positive (same label, the anchor itself included) and negative masks, ``[N, N]`` bool.

    Raises when an anchor has no negative: a metric loss needs at least two identities per batch.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    if not bool((~same).any(dim=1).all()):
        raise ValueError(f"a metric loss needs at least two identities per batch, got labels {labels.tolist()}")
    return same, ~same


def _ranking(dist_ap: Tensor, dist_an: Tensor, margin: float | None) -> Tensor:
    """Mean of ``max(0, d_ap - d_an + margin)``, or of ``softplus(d_ap - d_an)`` when ``margin`` is None
    (``nn.MarginRankingLoss`` / ``nn.SoftMarginLoss`` with target 1, as in the reference code)."""
    if margin is None:
        return F.softplus(dist_ap - dist_an).mean()
    return F.relu(dist_ap - dist_an + margin).mean()


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against smoothed targets ``q = (1 - ε) onehot(y) + ε / C`` (Szegedy et al. 2016).

    ``loss = mean_i sum_c -q_ic log softmax(z_i)_c``, Bag of Tricks' ``CrossEntropyLabelSmooth``
    (identical to ``F.cross_entropy(..., label_smoothing=ε)``). ``epsilon=0`` is plain cross-entropy.
    ``num_classes`` is checked against the logits; labels must lie in ``[0, C)``.
    """

    term = "id"

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.num_classes, self.epsilon = num_classes, epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} classes, the loss expects num_classes={self.num_classes}")
        if bool((labels < 0).any() or (labels >= self.num_classes).any()):
            raise ValueError(f"identity labels must be in [0, {self.num_classes}), got min {int(labels.min())}, "
                             f"max {int(labels.max())} (unlabelled samples carry -1)")
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.epsilon)


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017, Eq. 5): for each anchor, its farthest positive and
    nearest negative in the batch; ``mean max(0, d_ap - d_an + margin)``.

    ``margin=None`` is the soft margin ``mean log(1 + exp(d_ap - d_an))`` (Hermans et al. §3.1).
    Euclidean distances on the raw features (Bag of Tricks); ``normalize=True`` L2-normalises first.
    """

    term = "tri"

    def __init__(self, margin: float | None = 0.3, normalize: bool = False) -> None:
        super().__init__()
        self.margin, self.normalize = margin, normalize

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        dist = euclidean_distances(features, self.normalize)
        positive, negative = _masks(labels)
        dist_ap = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
        dist_an = dist.masked_fill(~negative, float("inf")).amin(dim=1)
        return _ranking(dist_ap, dist_an, self.margin)


class WeightedRegularizedTriplet(nn.Module):
    """AGW's weighted regularised triplet (Ye et al. TPAMI 2021, Eq. 5; ``WeightedRegularizedTriplet``
    of the ReID-Survey / Cross-Modal-Re-ID-baseline code).

    Per anchor ``i``: ``d_p = sum_j w_ij d_ij`` over positives with ``w_ij = softmax_j(d_ij)`` (far
    positives weigh more), ``d_n = sum_k w_ik d_ik`` over negatives with ``w_ik = softmax_k(-d_ik)``
    (near negatives weigh more); ``loss = mean log(1 + exp(d_p - d_n))``, no margin to tune. As in the
    reference code the positives include the anchor itself (distance ~0) and the softmax weights get
    a 1e-6 added to their normaliser.
    """

    term = "wrt"

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize

    @staticmethod
    def _softmax_weights(dist: Tensor, mask: Tensor) -> Tensor:
        masked = dist * mask
        shifted = dist - masked.max(dim=1, keepdim=True).values
        exp = torch.exp(shifted) * mask
        return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        dist = euclidean_distances(features, self.normalize)
        positive, negative = (m.float() for m in _masks(labels))
        dist_ap, dist_an = dist * positive, dist * negative
        farthest = (dist_ap * self._softmax_weights(dist_ap, positive)).sum(dim=1)
        closest = (dist_an * self._softmax_weights(-dist_an, negative)).sum(dim=1)
        return _ranking(farthest, closest, None)


class ReIDCriterion(nn.Module):
    """Identity loss on every ``outputs["logits"][name]`` and metric loss on every ``outputs["features"][name]``.

    Returns ``{"id/<name>": id_weight * id_loss(logits, label), "<term>/<name>": metric_weight *
    metric_loss(features, label)}`` with labels from ``batch["label"]`` and ``<term>`` the metric loss's
    ``term`` attribute (``tri``, ``wrt``; ``metric`` if it has none). ``names`` restricts both the
    logits and the features used (a name must occur in at least one of them); ``None`` uses all.
    Either loss may be None to leave it out. This is the Bag of Tricks loss (CE + triplet per head) applied
    per branch, as the multi-branch baselines of TOP-ReID / CoEN / MFRNet and AGW do.
    """

    def __init__(self, id_loss: Callable[[Tensor, Tensor], Tensor] | None,
                 metric_loss: Callable[[Tensor, Tensor], Tensor] | None,
                 id_weight: float = 1.0, metric_weight: float = 1.0, names: Sequence[str] | None = None) -> None:
        super().__init__()
        if id_loss is None and metric_loss is None:
            raise ValueError("ReIDCriterion needs an id_loss, a metric_loss or both")
        self.id_loss, self.metric_loss = id_loss, metric_loss
        self.id_weight, self.metric_weight = id_weight, metric_weight
        self.names = None if names is None else tuple(names)

    def _selected(self, outputs: Mapping[str, Mapping[str, Tensor]], key: str) -> dict[str, Tensor]:
        tensors = outputs.get(key, {})
        return dict(tensors) if self.names is None else {n: tensors[n] for n in self.names if n in tensors}

    def forward(self, outputs: Mapping[str, Mapping[str, Tensor]], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        labels = batch["label"]
        logits, features = self._selected(outputs, "logits"), self._selected(outputs, "features")
        if self.names is not None:
            unknown = [n for n in self.names if n not in logits and n not in features]
            if unknown:
                raise ValueError(f"ReIDCriterion names {unknown} are in neither outputs['logits'] "
                                 f"({list(outputs.get('logits', {}))}) nor outputs['features'] "
                                 f"({list(outputs.get('features', {}))})")
        terms: dict[str, Tensor] = {}
        if self.id_loss is not None:
            for name, z in logits.items():
                terms[f"{getattr(self.id_loss, 'term', 'id')}/{name}"] = self.id_weight * self.id_loss(z, labels)
        if self.metric_loss is not None:
            term = getattr(self.metric_loss, "term", "metric")
            for name, f in features.items():
                terms[f"{term}/{name}"] = self.metric_weight * self.metric_loss(f, labels)
        if not terms:
            raise ValueError(f"ReIDCriterion found nothing to apply its losses to: outputs have logits "
                             f"{list(outputs.get('logits', {}))} and features {list(outputs.get('features', {}))}")
        return terms
