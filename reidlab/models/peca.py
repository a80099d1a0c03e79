"""PECA — Partial Enhancement and Channel Aggregation (Jing & Li, "Partial Enhancement and Channel Aggregation for
Visible-Infrared Person Re-Identification", IEICE Trans. Inf. & Syst. E108-D(1), 2025), the network of Fig. 2.

The encoder is AGW's two-stream network (:class:`~reidlab.models.baseline.CrossModalBaseline`) with a **third stem**
for the ICAL-generated auxiliary modality (Fig. 2: "a three-stream encoder, where the first layer is responsible for
learning modality-specific features, and the subsequent layers share their weights"). Inference uses only the encoder
(§4.1.2): the BNNeck feature of an image through its own modality's stem, exactly as the baseline.

A training forward builds, from a cross-modal batch (visible and infrared images of the same identities):

- **CA view** (``channel_view``): CAJ's channel-exchanged copy of every visible image (ChannelExchange, gray = 2),
  through the visible stem — PECA's "random channel exchangeable augmentation" (§4.1.2). *Choice:* CAJ draws the
  CA view with its own crop/flip; here it is the same augmented image with its channels exchanged (one decode, one
  spatial draw), applied after normalisation as CAJ does.
- **ICAL images** (``ical``, Eq. 2): each visible image with one or two channels replaced by the channel of a random
  infrared image *of the same identity from the batch* (spec A13), the variant drawn uniformly from the six of Eq. 2
  (or from ``ical_variants``, indices into :data:`~reidlab.data.transforms.ICAL_KEPT_CHANNELS`), through the ICAL
  stem. Composing normalised tensors equals composing pixels: channel c of both images is normalised with the same
  mean and std. No "progressive" schedule is given in the paper (A5): the draw is uniform throughout.
- **GSL** (``gsl``, Eq. 1): three unshared MLPs map the global feature f_i to the upper / middle / lower part spaces
  (``f^g``); the targets ``f^s`` are the features of the three horizontal thirds of the image through the same
  encoder (its own modality's stem) under ``torch.no_grad`` with BatchNorm in eval mode (A1, A2: stop-gradient is
  stated; eval-mode BN keeps crop statistics out of the running statistics used at test). "MLP contains two fully
  connected layers, excluding BN and ReLU" is read as Linear–BN–ReLU–Linear with a ``gsl_hidden`` = 512 wide hidden
  layer (A3, the SimSiam predictor the paper cites [36]). ``gsl_target`` selects the part features: ``crops`` (the
  paper), ``stripes`` (GeM over three horizontal stripes of the global feature map, detached: parts without
  extra forward passes) or ``global`` (the global feature itself, detached, three times: the same MLP capacity and
  loss with no part information — the control that separates parts from capacity).

All images of a step share one pass through the body, as CAJ concatenates its views (BatchNorm sees the whole step).
The output adds ``"peca"``: every sample's pooled feature, logits, label and ``kind`` (:data:`KINDS`), the positions
of the real visible / infrared samples, each ICAL image's sources and variant, and the GSL pair.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlab.data.loading import single_modality_images
from reidlab.data.transforms import ICAL_KEPT_CHANNELS, channel_aggregation, channel_augmented_view
from reidlab.models.baseline import CrossModalBaseline, _batch_images
from reidlab.models.heads import GeM, init_kaiming

#: ``kind`` codes of the samples of a training step: real visible, real infrared, CA view, ICAL image.
KINDS: dict[str, int] = {"visible": 0, "infrared": 1, "channel_view": 2, "ical": 3}
GSL_TARGETS = ("crops", "stripes", "global")
PARTS = ("upper", "middle", "lower")


class PartProjector(nn.Module):
    """One GSL MLP (Eq. 1): Linear(d, h) – BN – ReLU – Linear(h, d) (the SimSiam predictor form, spec A3)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, dim))
        self.net.apply(init_kaiming)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PECA(CrossModalBaseline):
    """AGW with an ICAL stem, a CA view, ICAL images and the GSL heads; switches for every Table 3 row.

    ``ical`` / ``gsl`` switch the two modules (Table 3: M3 has neither, M4 GSL, M5 ICAL, PECA both);
    ``channel_view`` the CAJ view (on in every Table 3 row: "M1 follows CAJ").
    """

    def __init__(self, backbone_name: str, num_classes: int, *, modalities: Sequence[str] = ("rgb", "nir"),
                 img_size: tuple[int, int], pretrained: bool = False, checkpoint: str | Path | None = None,
                 pooling: str = "gem", non_local: bool = True, channel_view: bool = True, ical: bool = True,
                 ical_variants: Sequence[int] | None = None, gsl: bool = True, gsl_target: str = "crops",
                 gsl_hidden: int = 512, **backbone_kwargs: Any) -> None:
        super().__init__(backbone_name, num_classes, modalities=modalities, img_size=img_size, pretrained=pretrained,
                         checkpoint=checkpoint, pooling=pooling, non_local=non_local, **backbone_kwargs)
        if len(self.modalities) != 2 or self.modalities[0] != "rgb":
            raise ValueError(f"PECA is visible-infrared: modalities must be ('rgb', infrared), got {self.modalities}")
        if gsl_target not in GSL_TARGETS:
            raise ValueError(f"gsl_target must be one of {', '.join(GSL_TARGETS)}, got {gsl_target!r}")
        variants = tuple(range(len(ICAL_KEPT_CHANNELS))) if ical_variants is None else tuple(ical_variants)
        if not variants or any(not 0 <= v < len(ICAL_KEPT_CHANNELS) for v in variants):
            raise ValueError(f"ical_variants must be indices into ICAL_KEPT_CHANNELS (0..5), got {ical_variants}")
        if img_size[0] < 3:
            raise ValueError(f"GSL cuts images into three horizontal parts: need a height >= 3, got {img_size}")
        self.channel_view, self.ical, self.gsl, self.gsl_target = channel_view, ical, gsl, gsl_target
        self.register_buffer("ical_variants", torch.tensor(variants), persistent=False)
        # The ICAL stem starts from the same weights as the others (they are all copies of the backbone's stem).
        self.ical_stem = copy.deepcopy(self.stems[self.modalities[0]]) if ical else None
        self.projectors = (nn.ModuleDict({p: PartProjector(self.feature_dim, gsl_hidden) for p in PARTS})
                           if gsl else None)

    # ------------------------------------------------------------------ training forward
    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        if not self.training:
            return super().forward(batch)
        _batch_images(batch, self.modalities)
        images, modality = single_modality_images(batch)
        labels = batch["label"].to(images.device)
        visible = (modality == 0).nonzero(as_tuple=True)[0]
        infrared = (modality == 1).nonzero(as_tuple=True)[0]
        stems = {"visible": self.stems[self.modalities[0]], "infrared": self.stems[self.modalities[1]]}
        blocks = [(stems["visible"], images[visible]), (stems["infrared"], images[infrared])]
        kinds = [torch.full((len(visible),), KINDS["visible"]), torch.full((len(infrared),), KINDS["infrared"])]
        sample_labels = [labels[visible], labels[infrared]]
        extras: dict[str, Tensor] = {}
        if self.channel_view:
            blocks.append((stems["visible"], channel_augmented_view(images[visible])))
            kinds.append(torch.full((len(visible),), KINDS["channel_view"]))
            sample_labels.append(labels[visible])
        if self.ical:
            partner = self._ical_partners(labels[visible], labels[infrared])
            pick = torch.randint(len(self.ical_variants), (len(visible),))
            variant = self.ical_variants.cpu()[pick]
            blocks.append((self.ical_stem, channel_aggregation(images[visible], images[infrared][partner],
                                                               variant=variant)))
            kinds.append(torch.full((len(visible),), KINDS["ical"]))
            sample_labels.append(labels[visible])
            extras.update(ical_visible=torch.arange(len(visible)), ical_infrared=len(visible) + partner,
                          ical_variant=variant)
        feature_map = self.body(torch.cat([stem(x) for stem, x in blocks]))
        pooled = self.pool(feature_map)
        embedding, logits = self.head(pooled)
        kind = torch.cat(kinds).to(images.device)
        real = len(visible) + len(infrared)
        if self.gsl:
            extras.update(self._gsl(pooled[:real], feature_map[:real], images, visible, infrared, stems))
        # Real samples back in batch order for the generic outputs (the first `real` rows are visible then infrared).
        order = torch.argsort(torch.cat([visible, infrared]))
        return {"features": {"embedding": pooled[:real][order]}, "embeddings": {"embedding": embedding[:real][order]},
                "logits": {"embedding": logits[:real][order]}, "modality": modality,
                "peca": {"features": pooled, "logits": logits, "labels": torch.cat(sample_labels), "kind": kind,
                         **extras}}

    @staticmethod
    def _ical_partners(visible_labels: Tensor, infrared_labels: Tensor) -> Tensor:
        """For each visible sample, a uniformly random infrared sample of the same identity (its batch position)."""
        same = visible_labels.unsqueeze(1) == infrared_labels.unsqueeze(0)
        missing = (~same.any(dim=1)).nonzero(as_tuple=True)[0]
        if missing.numel():
            raise ValueError(f"ICAL needs an infrared image of the same identity in the batch for every visible one; "
                             f"labels {visible_labels[missing].unique().tolist()} have none (use the cross-modal "
                             f"sampler)")
        scores = torch.rand(same.shape).to(same.device).masked_fill(~same, -1.0)
        return scores.argmax(dim=1)

    def _gsl(self, pooled: Tensor, feature_map: Tensor, images: Tensor, visible: Tensor, infrared: Tensor,
             stems: Mapping[str, nn.Module]) -> dict[str, Tensor]:
        """Eq. 1's two sides for the real samples: ``gsl_global`` = concat MLP_u/m/l(f_i), ``gsl_local`` = f^s."""
        projected = torch.cat([self.projectors[p](pooled) for p in PARTS], dim=1)
        if self.gsl_target == "global":
            local = pooled.detach().repeat(1, len(PARTS))
        elif self.gsl_target == "stripes":
            local = self._stripes(feature_map.detach())
        else:
            local = self._crop_features(images, visible, infrared, stems)
        return {"gsl_global": projected, "gsl_local": local}

    def _stripes(self, feature_map: Tensor) -> Tensor:
        """The pooled upper / middle / lower thirds of a feature map, concatenated (adaptive bins, so a map fewer
        than three cells high still gives three, overlapping, stripes)."""
        p = self.pool.p if isinstance(self.pool, GeM) else 1.0
        stripes = F.adaptive_avg_pool2d(feature_map.clamp(min=1e-6).pow(p), (len(PARTS), 1)).pow(1.0 / p)
        return stripes.squeeze(-1).transpose(1, 2).flatten(1)

    @torch.no_grad()
    def _crop_features(self, images: Tensor, visible: Tensor, infrared: Tensor,
                       stems: Mapping[str, nn.Module]) -> Tensor:
        """f^s: the pooled features of the upper / middle / lower thirds, concatenated (no gradient, BN in eval)."""
        batchnorms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        for m in batchnorms:
            m.eval()
        try:
            parts = []
            for crop in torch.tensor_split(images, 3, dim=2):
                x = torch.cat([stems["visible"](crop[visible]), stems["infrared"](crop[infrared])])
                parts.append(self.pool(self.body(x)))
            return torch.cat(parts, dim=1)
        finally:
            for m in batchnorms:
                m.train()


__all__ = ["GSL_TARGETS", "KINDS", "PARTS", "PECA", "PartProjector"]
