"""MMCF — Sun, Du & Gao, "A Multimodule Collaborative Framework for Unsupervised Visible–Infrared Person
Re-Identification with Channel Enhancement Modality" (spec ``specs/mmcf.md``; every equation of the paper was lost in
its text extraction, so the spec rebuilds them from the prose and from the parent code, TokenMatcher, tagged
[S] stated · [R] reconstructed · [G] guess · [P] parent/peer code).

The network (spec §2):

- **Backbone** [S: "ViT"]: a timm ViT from :func:`~reidlab.models.backbones.create_backbone`. **Modality-specific
  patch embeddings** [P: TokenMatcher]: the backbone's own for visible images (and their channel-augmented views),
  a copy of it for infrared. At paper size the embedding is TransReID-SSL's convolutional stem
  (:class:`ReIDConvStemEmbed`, 7×7/2 + 2 × 3×3 at width 64, then a (p/2)×(p/2) projection) [P]; the parent's
  first two stem norms are IBN (half instance, half batch norm), here plain BatchNorm [G].
- **N region class tokens** [S: N "regional spaces", N = 4 SYSU-MM01, 6 RegDB]: the backbone's class token plus
  N − 1 learnable prefix tokens inserted after it; every token attends to every other token (plain ViT attention).
  *Reconstruction:* each extra token starts as the (pretrained) class token plus its position embedding plus
  N(0, 0.02²) noise, so the tokens are not copies of each other (the parent copies the pretrained class token into
  every token and gives each a fresh N(0, 0.02²) position embedding: the same symmetry breaking). The parent
  duplicates the last block into a head ``b1`` and leaves the original unused; here the backbone's own last block
  and norm produce the final tokens (the same function, without a dead copy of the block in the parameter count).
- **PA-CBAM** (§3.3, Eq. ~4–13). The paper's words [S]: PI-CA "segment[s] the input feature map into K distinct
  horizontal region blocks", average- and max-pools each block, concatenates the part-level descriptors "along the
  channel dimension", passes them through an MLP with weights W0, W1 and reduction coefficient r, and a sigmoid gives
  the channel weights, multiplied element-wise into the map; M-SA average- and max-pools along the channels, runs
  1×1, 3×3 and 7×7 convolutions, combines them "into a single-channel feature map using a 1×1 convolution" and a
  sigmoid gives the spatial map. Reconstruction: where it sits — on the patch-token map [B, D, h, w] right after
  the patch embedding, before block 1 (spec A4); K = N and r = 16 (A5, CBAM's r); one MLP shared by both poolings
  and ``M_c = σ(MLP(P_avg) + MLP(P_max))`` (CBAM's form); one output channel per M-SA branch [G]. The channel
  weights M_c are returned for the identity-consistency regulariser (:func:`reidlab.losses.mmcf.identity_consistency`).
- **Feature** [P]: the N final class tokens, a BatchNorm per feature (bias frozen, as a BNNeck), concatenated:
  F ∈ R^{N·D} (3072 on SYSU at ViT-B). The raw (pre-BN) tokens are returned too. No identity classifier
  (unsupervised: the losses are memory contrasts).
- **Modality classifier D_E** (:class:`ModalityClassifier`, MAAL) [S: three classes v / r / CA; form G]: a separate
  module with its own optimiser, so it is not part of :class:`MMCF`'s parameters.

A training forward also builds the **channel-augmented (CA) view** of every visible image
(:func:`~reidlab.data.transforms.channel_augmented_view`, CAJ ChannelExchange gray = 2) through the visible stem
[S: CA is the third modality; A3: it takes its visible image's pseudo-label].
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import Tensor, nn

from reidlab.data.loading import single_modality_images
from reidlab.data.transforms import channel_augmented_view
from reidlab.models.backbones import ViTBackbone, create_backbone, tokens_to_map
from reidlab.models.baseline import _batch_images, _check_modalities
from reidlab.models.heads import init_kaiming

#: ``kind`` codes of the rows of a training forward: real visible, real infrared, channel-augmented visible view.
KINDS: dict[str, int] = {"visible": 0, "infrared": 1, "channel_view": 2}


class ReIDConvStemEmbed(PatchEmbed):
    """TransReID-SSL's convolutional patch embedding (the parent's ``stem_conv``) [P]: Conv 7×7 stride 2 (3 → 64),
    two Conv 3×3 (64 → 64), each with BN and ReLU, then a (p/2)×(p/2) stride-p/2 projection to the embedding width;
    the token grid is timm's for patch size p."""

    def __init__(self, *args: Any, hidden: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        patch, in_chans, embed_dim = self.patch_size[0], self.proj.in_channels, self.proj.out_channels
        if self.patch_size[0] != self.patch_size[1] or patch % 2:
            raise ValueError(f"ReIDConvStemEmbed needs a square, even patch size, got {self.patch_size}")
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, hidden, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(True),
            nn.Conv2d(hidden, embed_dim, patch // 2, stride=patch // 2))


class PartChannelAttention(nn.Module):
    """PI-CA (spec §3.3, Eq. ~4–8, [S] prose / [R] formula): ``σ(MLP(P_avg) + MLP(P_max))`` over K horizontal blocks.

    ``forward(x [B, C, H, W]) -> M_c [B, C]``; P_avg / P_max are the K blocks' pooled channel vectors concatenated
    block by block (K·C); the MLP (shared by both poolings) is ``W1·ReLU(W0·P)``, ``W0`` of shape (C/r)×KC.
    """

    def __init__(self, channels: int, parts: int, reduction: int = 16) -> None:
        super().__init__()
        if parts < 1 or reduction < 1:
            raise ValueError(f"PI-CA needs parts >= 1 and reduction >= 1, got {parts} and {reduction}")
        self.parts = parts
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(parts * channels, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] < self.parts:
            raise ValueError(f"PI-CA cuts the map into {self.parts} horizontal blocks: height {x.shape[2]} is too "
                             f"small")
        avg = F.adaptive_avg_pool2d(x, (self.parts, 1)).transpose(1, 2).flatten(1)  # [B, K·C], block-major
        mx = F.adaptive_max_pool2d(x, (self.parts, 1)).transpose(1, 2).flatten(1)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class MultiScaleSpatialAttention(nn.Module):
    """M-SA (spec §3.3, Eq. ~9–12, [S] prose / [R] formula): ``σ(Conv1×1([Conv_k([mean_c, max_c])]_{k=1,3,7}))``.

    ``forward(x [B, C, H, W]) -> M_s [B, 1, H, W]``; one output channel per branch [G: widths lost].
    """

    def __init__(self, kernels: Sequence[int] = (1, 3, 7)) -> None:
        super().__init__()
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"M-SA kernels must be odd and >= 1, got {tuple(kernels)}")
        self.branches = nn.ModuleList(nn.Conv2d(2, 1, k, padding=k // 2) for k in kernels)
        self.fuse = nn.Conv2d(len(self.branches), 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.fuse(torch.cat([branch(s) for branch in self.branches], dim=1)))


class PACBAM(nn.Module):
    """PA-CBAM (spec §3.3 [S]): ``X' = M_c ⊙ X`` (PI-CA), then ``X'' = M_s ⊙ X'`` (M-SA).

    ``forward(x) -> (X'', M_c [B, C])``.

    ``identity_init=True`` [G] (the default of :class:`MMCF`): the last layer of the channel MLP and M-SA's fusing
    convolution start at zero and the maps are applied as ``2 M`` (``X' = 2 M_c ⊙ X``, ``X'' = 2 M_s ⊙ X'``), so
    the block starts as the identity (σ(0) = 1/2) and a pretrained ViT behind it sees its own tokens. The paper
    does not say how the block is initialised; literally (``identity_init=False``, PyTorch's default
    initialisation) it multiplies every patch token by about 1/4 at the start, which cost 4.4 mAP on the tutorial
    SYSU-MM01 tree (2 seeds, lr 1e-4) — a pretrained network disturbed, not the attention's effect.
    """

    def __init__(self, channels: int, parts: int, reduction: int = 16, kernels: Sequence[int] = (1, 3, 7),
                 identity_init: bool = True) -> None:
        super().__init__()
        self.channel = PartChannelAttention(channels, parts, reduction)
        self.spatial = MultiScaleSpatialAttention(kernels)
        self.gain = 2.0 if identity_init else 1.0
        if identity_init:
            nn.init.zeros_(self.channel.mlp[-1].weight)
            nn.init.zeros_(self.spatial.fuse.weight)
            nn.init.zeros_(self.spatial.fuse.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.channel(x)
        x = x * (self.gain * weights[:, :, None, None])
        return x * (self.gain * self.spatial(x)), weights


class ModalityClassifier(nn.Module):
    """MAAL's modality classifier D_E (spec §3.4): F [B, in_dim] -> logits over (visible, infrared, CA).

    [S] three classes; [G] the form: Linear(in_dim, hidden) – ReLU – Linear(hidden, 3) (PCAL's is a deeper 1-D
    convolution stack for a 2048-d CNN feature; no BatchNorm, so its adversarial forward changes no statistics).
    """

    def __init__(self, in_dim: int, hidden: int = 256, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class MMCF(nn.Module):
    """The MMCF network (module docstring): two patch embeddings, N region tokens, PA-CBAM, BN'd concatenated tokens.

    ``encode(images, infrared)`` is the core (``infrared`` [B] bool selects the stem). ``forward(batch)`` follows
    the model contract (``features`` = raw concatenated tokens, ``embeddings`` = BN'd, key "embedding"; no logits)
    and, in training, adds the CA views and the entry ``"mmcf"`` for the losses: per row (visible, infrared, then the
    CA views of the visible rows) the BN'd feature ``features`` [R, N·D], the raw ``tokens`` [R, N, D], ``kind``
    (:data:`KINDS`), ``source`` (the batch position the row comes from) and PI-CA's ``channel_attention`` [R, D]
    (absent with ``pa_cbam=False``).
    """

    default_feature = "embedding"

    def __init__(self, backbone_name: str, *, num_regions: int = 4, img_size: tuple[int, int],
                 modalities: Sequence[str] = ("rgb", "nir"), pretrained: bool = False,
                 checkpoint: str | Path | None = None, pa_cbam: bool = True, reduction: int = 16,
                 kernels: Sequence[int] = (1, 3, 7), pa_cbam_identity_init: bool = True, channel_view: bool = True,
                 **backbone_kwargs: Any) -> None:
        super().__init__()
        self.modalities = _check_modalities(modalities)
        if len(self.modalities) != 2 or self.modalities[0] != "rgb":
            raise ValueError(f"MMCF is visible-infrared: modalities must be ('rgb', infrared), got {self.modalities}")
        if num_regions < 1:
            raise ValueError(f"num_regions must be >= 1, got {num_regions}")
        backbone = create_backbone(backbone_name, img_size=img_size, pretrained=pretrained, checkpoint=checkpoint,
                                   **backbone_kwargs)
        if not isinstance(backbone, ViTBackbone) or backbone.num_prefix_tokens != 1:
            raise ValueError(f"MMCF needs a ViT backbone with one class token and no other prefix token, got "
                             f"{backbone_name!r}")
        self.backbone, self.num_regions, self.channel_view = backbone, num_regions, channel_view
        vit = backbone.vit
        self.dim = vit.embed_dim
        self.feature_dim = num_regions * self.dim
        self.infrared_embed = copy.deepcopy(vit.patch_embed)
        with torch.no_grad():
            start = (vit.cls_token + vit.pos_embed[:, :1]).expand(1, num_regions - 1, self.dim)
            self.region_tokens = nn.Parameter(start + 0.02 * torch.randn_like(start))
        self.pa_cbam = PACBAM(self.dim, num_regions, reduction, kernels, pa_cbam_identity_init) if pa_cbam else None
        self.bn = nn.BatchNorm1d(self.feature_dim)
        self.bn.apply(init_kaiming)
        self.bn.bias.requires_grad_(False)
        self.cam_reshape = functools.partial(tokens_to_map, num_prefix_tokens=num_regions,
                                             grid_size=backbone.grid_size)

    def encode(self, images: Tensor, infrared: Tensor) -> dict[str, Tensor]:
        """Images [B, 3, H, W] (``infrared`` [B] bool: which stem) -> ``tokens`` [B, N, D] (raw final region
        tokens), ``feature`` [B, N·D] (BN'd, concatenated) and, with PA-CBAM, ``channel_attention`` [B, D]."""
        self.backbone._check_input(images, exact_size=True)
        vit = self.backbone.vit
        parts, positions = [], []
        for embed, rows in ((vit.patch_embed, ~infrared), (self.infrared_embed, infrared)):
            index = rows.nonzero(as_tuple=True)[0]
            if index.numel():
                parts.append(embed(images[index]))
                positions.append(index)
        x = torch.cat(parts)[torch.argsort(torch.cat(positions))]  # [B, h·w, D]
        out: dict[str, Tensor] = {}
        if self.pa_cbam is not None:
            h, w = self.backbone.grid_size
            x, out["channel_attention"] = self.pa_cbam(tokens_to_map(x, 0, (h, w)))
            x = x.flatten(2).transpose(1, 2)
        x = vit._pos_embed(x)  # class token + position embedding
        x = torch.cat([x[:, :1], self.region_tokens.expand(len(x), -1, -1), x[:, 1:]], dim=1)
        x = vit.norm(vit.blocks(vit.norm_pre(vit.patch_drop(x))))
        tokens = x[:, :self.num_regions]
        out.update(tokens=tokens, feature=self.bn(tokens.flatten(1)))
        return out

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        _batch_images(batch, self.modalities)
        images, modality = single_modality_images(batch)
        infrared = modality == 1
        if not self.training:
            out = self.encode(images, infrared)
            return {"features": {"embedding": out["tokens"].flatten(1)}, "embeddings": {"embedding": out["feature"]},
                    "logits": {}, "modality": modality}
        visible_rows, infrared_rows = (~infrared).nonzero(as_tuple=True)[0], infrared.nonzero(as_tuple=True)[0]
        blocks, sources = [images[visible_rows], images[infrared_rows]], [visible_rows, infrared_rows]
        kinds = [torch.full((len(visible_rows),), KINDS["visible"]), torch.full((len(infrared_rows),),
                                                                                 KINDS["infrared"])]
        if self.channel_view:
            blocks.append(channel_augmented_view(images[visible_rows]))
            sources.append(visible_rows)
            kinds.append(torch.full((len(visible_rows),), KINDS["channel_view"]))
        kind = torch.cat(kinds).to(images.device)
        out = self.encode(torch.cat(blocks), kind == KINDS["infrared"])
        real = len(visible_rows) + len(infrared_rows)
        order = torch.argsort(torch.cat(sources[:2]))  # real rows back in batch order
        return {"features": {"embedding": out["tokens"][:real].flatten(1)[order]},
                "embeddings": {"embedding": out["feature"][:real][order]}, "logits": {}, "modality": modality,
                "mmcf": {"features": out["feature"], "tokens": out["tokens"], "kind": kind,
                         "source": torch.cat(sources), **({"channel_attention": out["channel_attention"]}
                                                          if "channel_attention" in out else {})}}

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    @torch.no_grad()
    def calibrate_feature_norm(self, raw_features: Tensor) -> Tensor:
        """Set the feature BatchNorm's running statistics to those of ``raw_features`` [M, N·D] (the concatenated raw
        tokens of the training images) and return their normalised features — for a BNNeck that has not yet seen
        data (see :mod:`reidlab.engine.mmcf`)."""
        raw = raw_features.to(self.bn.running_mean.device, torch.float32)
        self.bn.running_mean.copy_(raw.mean(0))
        self.bn.running_var.copy_(raw.var(0))
        self.bn.num_batches_tracked.add_(1)
        training = self.bn.training
        self.bn.eval()
        out = self.bn(raw)
        self.bn.train(training)
        return out

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        """The last block's ``norm1``: every sample passes it, whatever its modality."""
        if modality not in self.modalities:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {self.modalities}")
        return [self.backbone.cam_layer]


__all__ = ["KINDS", "MMCF", "PACBAM", "ModalityClassifier", "MultiScaleSpatialAttention", "PartChannelAttention",
           "ReIDConvStemEmbed"]
