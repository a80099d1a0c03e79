"""MFRNet's training loss (Feng et al., "Multi-Modal Object Re-Identification via Sparse Mixture-of-Experts", §3.3,
Eq. 11–15; spec §1.7).

    L = id_weight · L_ce + metric_weight · L_tri + ffm_aux_weight · L_aux^FFM + frm_aux_weight · L_aux^FRM   (Eq. 15)

L_ce is the label-smoothed identity cross-entropy (ε = 0.1) on the classifier of the head, L_tri the batch-hard
triplet loss (``margin=None``: the soft margin log(1 + exp(d_ap − d_an)) of the code's ``NO_MARGIN=True``,
Euclidean distances on the un-normalised pre-BN features) of :mod:`reidlab.losses.reid`. Per head mode
(:data:`reidlab.models.mfrnet.HEADS`): ``concat`` (the code's ``DIRECT=1``) applies both to the concatenated
feature ``fused``; ``per_modality`` (``DIRECT=0``) to each of ``rgb``, ``nir``, ``tir`` (summed). The balancing
losses are the model's ``outputs["aux"]`` (:class:`reidlab.models.mfrnet.SparseMoE`, Eq. 11–14).

Where the paper and the code disagree, and the defaults:

- Identity weight: Eq. 15 writes L_ce + L_tri (1 : 1); every config of the code uses ``ID_LOSS_WEIGHT = 0.25``.
  Default ``id_weight = 1.0`` (the paper); 0.25 is the code's.
- Balancing weights: Eq. 15 adds the three auxiliary losses unweighted; the code weights FRM's by 0.01 and FFM's
  by 0.12 (0.01 added in each of the 12 block iterations, on the last call of each mixture). Defaults:
  ``frm_aux_weight = 0.01`` (the code) and ``ffm_aux_weight = 0.01`` on the per-mixture mean over the three calls
  (the model's ``ffm_aux_calls="mean"``); the code is ``ffm_aux_weight = 0.12`` with ``ffm_aux_calls="last"``.

Terms (weighted, like :class:`reidlab.losses.coen.CoENCriterion`): ``id/<name>``, ``tri/<name>``, ``aux/ffm``,
``aux/frm``. The two ``aux`` terms are always returned (0 when the module is off), so the histories of an ablation
have the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from reidlab.losses.reid import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss
from reidlab.models.mfrnet import HEADS, MODALITIES

#: The features (and logits) the ReID losses read, per head mode.
HEAD_NAMES: dict[str, tuple[str, ...]] = {"concat": ("fused",), "per_modality": MODALITIES}
AUX_NAMES: tuple[str, ...] = ("ffm", "frm")


class MFRNetCriterion(nn.Module):
    """Eq. 15 on an :class:`~reidlab.models.mfrnet.MFRNet` output (module docstring)."""

    def __init__(self, num_classes: int, *, head: str = "concat", id_weight: float = 1.0, metric_weight: float = 1.0,
                 margin: float | None = None, label_smoothing: float = 0.1, ffm_aux_weight: float = 0.01,
                 frm_aux_weight: float = 0.01) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        weights = {"id_weight": id_weight, "metric_weight": metric_weight, "ffm_aux_weight": ffm_aux_weight,
                   "frm_aux_weight": frm_aux_weight}
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}")
        self.head = head
        self.id_weight, self.metric_weight = float(id_weight), float(metric_weight)
        self.aux_weights = {"ffm": float(ffm_aux_weight), "frm": float(frm_aux_weight)}
        self.reid = ReIDCriterion(CrossEntropyLabelSmooth(num_classes, epsilon=label_smoothing),
                                  TripletLoss(margin=margin), id_weight=id_weight, metric_weight=metric_weight,
                                  names=HEAD_NAMES[head])

    def forward(self, outputs: Mapping[str, Mapping[str, Tensor]], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        terms = self.reid(outputs, batch)
        aux = outputs.get("aux")
        if aux is None or set(AUX_NAMES) - set(aux):
            raise ValueError(f"MFRNetCriterion expects outputs['aux'] with {AUX_NAMES} (an MFRNet output), got "
                             f"{None if aux is None else sorted(aux)}")
        for name in AUX_NAMES:
            terms[f"aux/{name}"] = self.aux_weights[name] * aux[name]
        return terms

    def extra_repr(self) -> str:
        return (f"head={self.head}, id_weight={self.id_weight:g}, metric_weight={self.metric_weight:g}, "
                f"ffm_aux_weight={self.aux_weights['ffm']:g}, frm_aux_weight={self.aux_weights['frm']:g}")


__all__ = ["AUX_NAMES", "HEAD_NAMES", "MFRNetCriterion"]
