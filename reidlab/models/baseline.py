"""The two baselines every paper notebook starts from.

- :class:`MultiModalBaseline` — the multi-branch "ViT baseline" of the multi-modal ReID papers (TOP-ReID, CoEN,
  MFRNet; DENet's ResNet-50 branches): one backbone per modality (or one shared), a per-modality global feature,
  a per-modality BNNeck, and the concatenation of the per-modality embeddings as the retrieval feature.
- :class:`CrossModalBaseline` — the AGW two-stream network for visible–infrared ReID (Ye et al., "Deep Learning
  for Person Re-identification: A Survey and Outlook", TPAMI 2021; code github.com/mangye16/Cross-Modal-Re-ID-baseline,
  ``model.py:embed_net``): modality-specific ResNet stems, a shared body (layer1..layer4, last stride 1) with
  non-local blocks, GeM pooling and a BNNeck.

Both follow the model contract: ``model(batch)`` returns ``features`` (pre-BN, for metric losses), ``embeddings``
(post-BN, for retrieval) and ``logits`` dicts; ``extract``, ``default_feature``, ``modalities``,
``cam_target_layers(modality)`` and ``cam_reshape`` serve evaluation and Grad-CAM.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reidlab.data.loading import single_modality_images
from reidlab.data.records import MODALITIES
from reidlab.models.backbones import Backbone, CNNBackbone, create_backbone
from reidlab.models.heads import BNNeck, GeM


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    modalities = tuple(modalities)
    canonical = tuple(m for m in MODALITIES if m in modalities)
    if not modalities or modalities != canonical or len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES} in that order, got {modalities}")
    return modalities


def _batch_images(batch: Mapping[str, Tensor], modalities: tuple[str, ...]) -> Tensor:
    images = batch.get("images") if isinstance(batch, Mapping) else None
    if not isinstance(images, Tensor) or images.ndim != 5 or images.shape[1] != len(modalities) or images.shape[2] != 3:
        got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected batch['images'] of shape [B, {len(modalities)}, 3, H, W] for modalities "
                         f"{modalities}, got {got}")
    return images


class MultiModalBaseline(nn.Module):
    """Multi-branch multi-modal baseline; with one modality (e.g. ``("tir",)``) the single-modality baseline.

    Per modality m: backbone -> global feature f_m (ViT: the class token; CNN: global average pooling, as DENet's
    ResNet-50 branches) -> BNNeck_m -> (e_m, logits_m). ``shared=True`` runs one backbone on all modalities
    (stacked into one batch, so a CNN's BatchNorm sees all modalities); the BNNecks stay per modality.
    Outputs: ``features`` {m: f_m, "fused": concat f_m}, ``embeddings`` {m: e_m, "fused": concat e_m} (canonical
    modality order), ``logits`` {m: logits_m} — one classifier per branch, as in the reference baselines; the fused
    feature has no classifier. ``default_feature`` is "fused".

    A modality missing at test time arrives as zero images (the data contract) and the model simply runs on them,
    as the reference code does; it does not read ``batch["present"]``.
    """

    default_feature = "fused"

    def __init__(self, backbone_name: str, modalities: Sequence[str], num_classes: int, *,
                 img_size: tuple[int, int], shared: bool = False, pretrained: bool = False,
                 checkpoint: str | Path | None = None, **backbone_kwargs: Any) -> None:
        super().__init__()
        self.modalities = _check_modalities(modalities)
        self.shared = shared
        names = ("shared",) if shared else self.modalities
        self.backbones = nn.ModuleDict({n: create_backbone(backbone_name, img_size=img_size, pretrained=pretrained,
                                                           checkpoint=checkpoint, **backbone_kwargs) for n in names})
        backbone = self.backbones[names[0]]
        self.feature_dim = backbone.feature_dim
        self.heads = nn.ModuleDict({m: BNNeck(backbone.feature_dim, num_classes) for m in self.modalities})
        self.cam_reshape: Callable[[Tensor], Tensor] | None = backbone.cam_reshape
        if shared:
            # Grad-CAM needs a module whose activation holds one modality: the shared backbone's cam layer sees
            # the stacked batch, so a forward hook routes each modality's slice through its own identity tap.
            self.cam_taps = nn.ModuleDict({m: nn.Identity() for m in self.modalities})
            self._stacked = False
            backbone.cam_layer.register_forward_hook(self._route_taps)

    def _route_taps(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if not self._stacked:
            return None
        chunks = output.chunk(len(self.modalities), dim=0)
        return torch.cat([self.cam_taps[m](c) for m, c in zip(self.modalities, chunks, strict=True)])

    @staticmethod
    def _global(backbone: Backbone, out: dict[str, Tensor]) -> Tensor:
        return out["cls"] if backbone.kind == "vit" else out["feature_map"].mean(dim=(2, 3))

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        images = _batch_images(batch, self.modalities)
        b, m = images.shape[:2]
        if self.shared:
            backbone = self.backbones["shared"]
            self._stacked = True
            try:
                out = backbone(images.transpose(0, 1).reshape(m * b, *images.shape[2:]))
            finally:
                self._stacked = False
            feats = dict(zip(self.modalities, self._global(backbone, out).reshape(m, b, -1), strict=True))
        else:
            feats = {mod: self._global(self.backbones[mod], self.backbones[mod](images[:, i]))
                     for i, mod in enumerate(self.modalities)}
        embeddings, logits = {}, {}
        for mod in self.modalities:
            embeddings[mod], logits[mod] = self.heads[mod](feats[mod])
        feats["fused"] = torch.cat([feats[mod] for mod in self.modalities], dim=1)
        embeddings["fused"] = torch.cat([embeddings[mod] for mod in self.modalities], dim=1)
        return {"features": feats, "embeddings": embeddings, "logits": logits}

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        """The module whose activation holds ``modality``'s images at the backbone's cam layer."""
        if modality not in self.modalities:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {self.modalities}")
        if self.shared:
            return [self.cam_taps[modality]]
        return [self.backbones[modality].cam_layer]


class NonLocal(nn.Module):
    """AGW's non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018, dot-product form):
    z = W(f(x) g(x)) + x with f = θ(x)ᵀφ(x) / N over the N = h·w positions, inner width C / 2, and the BN of W
    initialised to zero so the block starts as the identity (reference ``Non_local``)."""

    def __init__(self, in_channels: int, reduction: int = 2) -> None:
        super().__init__()
        inner = in_channels // reduction
        self.g = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.W = nn.Sequential(nn.Conv2d(inner, in_channels, kernel_size=1), nn.BatchNorm2d(in_channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)          # [B, N, C']
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, C']
        phi = self.phi(x).flatten(2)                      # [B, C', N]
        y = (theta @ phi / (h * w)) @ g                   # [B, N, C']
        return self.W(y.transpose(1, 2).reshape(b, -1, h, w)) + x


#: AGW's non-local placement: after the last 2 blocks of layer2 and the last 3 blocks of layer3 (ResNet-50 has 4
#: and 6 blocks there); a shallower stage gets one after each of its blocks.
AGW_NON_LOCAL = (0, 2, 3, 0)


def _with_non_local(stages: nn.Sequential, channels: Sequence[int], counts: Sequence[int]) -> nn.Sequential:
    out = OrderedDict()
    for (name, stage), c, n in zip(stages.named_children(), channels, counts, strict=True):
        blocks = OrderedDict()
        for i, block in enumerate(stage):
            blocks[str(i)] = block
            if i >= len(stage) - n:
                blocks[f"non_local{i}"] = NonLocal(c)
        out[name] = nn.Sequential(blocks)
    return nn.Sequential(out)


class CrossModalBaseline(nn.Module):
    """AGW two-stream baseline for visible–infrared ReID (one modality per sample).

    Each sample goes through the stem (conv1, bn1, act1, maxpool) of its own modality — the batch is split by
    modality index, each stem runs once on its part, and the results are put back in batch order — then through the
    shared body (layer1..layer4 with ``last_stride=1`` and, with ``non_local=True``, AGW's non-local blocks), then
    ``pooling`` ("gem": GeM with p = 3 as AGW; "avg") and a BNNeck. All stems start from the same (pretrained)
    weights, as in the reference. Outputs use the single key "embedding" (``default_feature``); ``modality`` [B] is
    each sample's modality index into ``modalities``. AGW's backbone is ``resnet50.tv_in1k`` (ImageNet ResNet-50).
    """

    default_feature = "embedding"

    def __init__(self, backbone_name: str, num_classes: int, *, modalities: Sequence[str] = ("rgb", "nir"),
                 img_size: tuple[int, int], pretrained: bool = False, checkpoint: str | Path | None = None,
                 pooling: str = "gem", non_local: bool = True, **backbone_kwargs: Any) -> None:
        super().__init__()
        self.modalities = _check_modalities(modalities)
        if len(self.modalities) < 2:
            raise ValueError(f"a cross-modal baseline needs at least two modalities, got {self.modalities}")
        if pooling not in ("gem", "avg"):
            raise ValueError(f"pooling must be 'gem' or 'avg', got {pooling!r}")
        backbone = create_backbone(backbone_name, img_size=img_size, pretrained=pretrained, checkpoint=checkpoint,
                                   **backbone_kwargs)
        if not isinstance(backbone, CNNBackbone):
            raise ValueError(f"the cross-modal baseline needs a CNN (ResNet) backbone, got the {backbone.kind} "
                             f"{backbone_name!r}")
        self.stems = nn.ModuleDict({m: copy.deepcopy(backbone.stem) for m in self.modalities})
        self.body = (_with_non_local(backbone.stages, backbone.stage_channels, AGW_NON_LOCAL) if non_local
                     else backbone.stages)
        self.pool = GeM(3.0) if pooling == "gem" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = backbone.feature_dim
        self.head = BNNeck(backbone.feature_dim, num_classes)
        self.cam_reshape = None

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        _batch_images(batch, self.modalities)
        images, modality = single_modality_images(batch)
        parts, positions = [], []
        for i, m in enumerate(self.modalities):
            index = (modality == i).nonzero(as_tuple=True)[0]
            if index.numel():
                parts.append(self.stems[m](images[index]))
                positions.append(index)
        x = torch.cat(parts)[torch.argsort(torch.cat(positions))]
        pooled = self.pool(self.body(x))
        embedding, logits = self.head(pooled)
        return {"features": {"embedding": pooled}, "embeddings": {"embedding": embedding},
                "logits": {"embedding": logits}, "modality": modality}

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        """The shared body's last stage: every sample passes it once, whatever its modality."""
        if modality not in self.modalities:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {self.modalities}")
        return [self.body[-1]]
