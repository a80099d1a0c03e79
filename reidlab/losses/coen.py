"""CoEN's training loss (Zheng et al., "Collaborative Enhancement Network for Low-quality Multi-spectral Vehicle
Re-identification", §3.5, Eq. 13–16).

    L_total = (1 − λ) · L^ViT_ReID + λ · L^CEM_ReID + L^P_ReID                       (Eq. 16)
    L_ReID  = L_id + L_tri                                                          (Eq. 15)

L_id is the identity cross-entropy (Eq. 13, label-smoothed as in the reference ReID code, ε = 0.1) and L_tri the
batch-hard triplet loss (Eq. 14, margin 0.3 by default, ``None`` = soft margin) of :mod:`reidlab.losses.reid`.

Ambiguity: whether L^ViT_ReID and L^CEM_ReID act on each modality's feature or on their concatenation. We choose
per branch — L^ViT = Σ_m L_ReID(vit_m), L^CEM = Σ_m L_ReID(m) over m ∈ {rgb, nir, tir}, each with its own
BNNeck classifier — as the multi-branch ViT baseline of Table 3 (a) is trained and as TOP-ReID (whose code base the
multi-spectral ViT methods share) trains its backbone branches for vehicles (``DIRECT: 0``); L^P is the ReID loss of
the proxy feature. Every term is returned weighted, named ``id/<name>`` and ``tri/<name>``; terms with weight 0
(λ = 0 or 1) are still returned, so histories of a λ sweep have the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from reidlab.losses.reid import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss

VIT_NAMES: tuple[str, ...] = ("vit_rgb", "vit_nir", "vit_tir")
CEM_NAMES: tuple[str, ...] = ("rgb", "nir", "tir")
PROXY_NAMES: tuple[str, ...] = ("proxy",)


class CoENCriterion(nn.Module):
    """Eq. 16 on a :class:`~reidlab.models.coen.CoEN` output: ``{"id/<name>", "tri/<name>"}`` for the ViT branch
    (weight 1 − λ), the CEM branches (weight λ) and the proxy (weight 1)."""

    def __init__(self, num_classes: int, *, lambda_: float = 0.5, margin: float | None = 0.3,
                 label_smoothing: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda (Eq. 16) must be in [0, 1], got {lambda_}")
        self.lambda_ = float(lambda_)
        id_loss = CrossEntropyLabelSmooth(num_classes, epsilon=label_smoothing)
        triplet = TripletLoss(margin=margin)
        self.groups = nn.ModuleDict({
            group: ReIDCriterion(id_loss, triplet, id_weight=weight, metric_weight=weight, names=names)
            for group, weight, names in (("vit", 1.0 - self.lambda_, VIT_NAMES), ("cem", self.lambda_, CEM_NAMES),
                                         ("proxy", 1.0, PROXY_NAMES))})

    def forward(self, outputs: Mapping[str, Mapping[str, Tensor]], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        for criterion in self.groups.values():
            terms.update(criterion(outputs, batch))
        return terms

    def extra_repr(self) -> str:
        return f"lambda={self.lambda_:g}"


__all__ = ["CEM_NAMES", "PROXY_NAMES", "VIT_NAMES", "CoENCriterion"]
