"""DENet: Zheng et al., "Dynamic Enhancement Network for Partial Multi-modality Person Re-identification" (Fig. 2).

Pipeline, per sample (all steps vectorised over the batch, so one batch may mix missing states):

1. **Multi-branch feature extraction (§III-A).** Three *unshared* CNN (ResNet) branches, one per modality, each
   followed by channel + spatial attention — CBAM (Woo et al., ECCV 2018, the paper's [39]): channel attention
   ``σ(MLP(avgpool) + MLP(maxpool))`` (reduction 16) then spatial attention ``σ(BN(conv7×7([mean_c; max_c])))``.
   Ambiguity: the paper adds "the channel and spatial attention layer" to each branch without saying where; we
   place one CBAM after the last stage (layer4), so the pretrained ResNet is untouched and the attended map F_m is
   what CMFT and DEM read. Every branch runs on its (possibly zeroed) image.
2. **CMFT (§III-B, Eq. 1–4; :mod:`reidlab.models.denet_cmft`)** for all six directions, computed on every forward
   (training is on complete data, so every direction is supervised by L_rec and L_sim every step). A modality
   whose image is missing (``batch["present"]`` False) gets the *recovered* map: the transformation from the one
   available source, or, with two sources available, **the mean of the two recovered maps** (ambiguity: the paper
   only shows one source; a recovered feature never serves as a source). ``model.recovery = False`` keeps the
   feature computed from the zero image instead (zero-filling, the baseline's behaviour) — with the same weights.
3. **DEM (§III-C, Eq. 5–6; :mod:`reidlab.models.denet_dem`)**: the enhancement graph over the three maps, edges
   whose tail is missing cut per sample. Recovered nodes keep their incoming edges.
4. **Representation (Eq. 7–9).** ``F_c1 = Concat(F_rgb^e, F_nir^e, F_tir^e)``: the pooled DEM outputs of the
   current features (real where present, recovered where missing). ``F_c2 = Concat(F_rgb, F_nir'^e, F_tir'^e)``:
   we read the primes as in Eq. 2 (F'_nir is the *recovered* NIR): the RGB feature with NIR' and TIR' recovered
   from it by R2N and R2T and enhanced through the same DEM cut as if NIR and TIR were missing (so RGB receives
   nothing: its incoming edges have missing tails — which is why F_rgb carries no "enhance" in Eq. 8). Under M(NT)
   F_c1 equals F_c2. This reading also explains Table V's first row: without L_rec and L_sim the CMFT is still
   trained, through F_c2, by the ReID loss. When RGB itself is missing, F_c2 uses its recovered map (and R2N/R2T
   of it). ``F_final = Concat(F_c1, F_c2)`` (Eq. 9), 6·C dimensions (12 288 for ResNet-50).
5. **Heads.** BNNecks (Bag of Tricks) on ``rgb``/``nir``/``tir`` (the F_c1 parts) and on ``final``; dropout
   (0.5 in the paper, §III-E) before each classifier — ambiguity: the paper does not say where its dropout sits.

Outputs (model contract): ``features`` (pre-BN, triplet loss) and ``embeddings`` (post-BN, retrieval) with keys
``rgb``, ``nir``, ``tir``, ``c1``, ``c2``, ``final`` (``c1``/``c2`` embeddings are the two halves of the final
BN feature); ``embeddings`` also holds ``recovered_<m>`` (pooled recovered feature of every modality from its
available sources, un-normalised; for Fig. 6's before/after-recovery t-SNE and Fig. 7's Grad-CAM) and ``real_<m>``
(pooled branch feature before recovery and DEM); ``logits`` for ``rgb``/``nir``/``tir``/``final``;
``recovered`` {m: [B, C]}; ``fake_images`` {"rgb2nir": [B, 3, H, W], ...} (CMFT only; ``{}`` for the GAN
variant); ``sim_pairs`` {direction: (θ_t(G(F_t)), θ'_t(G(F'_t)))} for L_sim; and, for the GAN variant,
``adversarial`` {direction: {"real", "fake", "generated"}} discriminator logits (see :mod:`reidlab.losses.denet`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from reidlab.data.records import MODALITIES
from reidlab.models.backbones import CNNBackbone, create_backbone
from reidlab.models.denet_cmft import CMFT, Discriminator, FeatureGenerator, Projection
from reidlab.models.denet_dem import ALL_EDGES, ENHANCEMENT_EDGES, DynamicEnhancement, edge_name
from reidlab.models.heads import BNNeck

GENERATORS = ("cmft", "gan")
SIM_PROJECTIONS = ("separate", "tied", "identity")
#: The heads with a classifier (and the names the ReID loss is applied to).
HEADS = (*MODALITIES, "final")


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
                                     nn.BatchNorm2d(1))

    def forward(self, x: Tensor) -> Tensor:
        x = x * torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)) + self.mlp(x.amax(dim=(2, 3), keepdim=True)))
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def _gap(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3))


class DENet(nn.Module):
    """Dynamic Enhancement Network (see the module docstring). ``model(batch) -> outputs``.

    ``backbone_name``: a CNN preset or timm ResNet (``resnet50.tv_in1k`` in the paper), one unshared copy per
    modality. ``enhancement``: ``dynamic`` | ``fixed`` | ``cycle`` | ``none`` (Tables V, VII). ``generator``:
    ``cmft`` (ours) | ``gan`` (Table VI's feature generation). ``proj_dim``: width of θ (Eq. 4).
    ``sim_projection``: ``separate`` (Eq. 4 as written) | ``identity`` | ``tied`` — what L_sim compares, see
    :mod:`reidlab.models.denet_cmft`.
    ``cmft_width``: widest up-/down-sample stage. ``dem_reduction``: DEM inner width C / reduction.
    ``recovery`` (attribute, default True): recover missing modalities with CMFT, or zero-fill them.
    """

    modalities = MODALITIES
    default_feature = "final"

    def __init__(self, backbone_name: str, num_classes: int, *, img_size: tuple[int, int], pretrained: bool = False,
                 checkpoint: str | Path | None = None, enhancement: str = "dynamic", generator: str = "cmft",
                 dropout: float = 0.5, proj_dim: int = 256, cmft_width: int = 256, dem_reduction: int = 2,
                 sim_projection: str = "separate", **backbone_kwargs: Any) -> None:
        super().__init__()
        if enhancement not in ENHANCEMENT_EDGES:
            raise ValueError(f"enhancement must be one of {', '.join(ENHANCEMENT_EDGES)}, got {enhancement!r}")
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
        if sim_projection not in SIM_PROJECTIONS:
            raise ValueError(f"sim_projection must be one of {', '.join(SIM_PROJECTIONS)}, got {sim_projection!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.enhancement, self.generator = enhancement, generator
        self.recovery = True
        self.backbones = nn.ModuleDict()
        for m in MODALITIES:
            backbone = create_backbone(backbone_name, img_size=self.img_size, pretrained=pretrained,
                                       checkpoint=checkpoint, **backbone_kwargs)
            if not isinstance(backbone, CNNBackbone):
                raise ValueError(f"DENet needs CNN (ResNet) branches, got the {backbone.kind} {backbone_name!r}")
            self.backbones[m] = backbone
        c = self.feature_dim = self.backbones["rgb"].feature_dim
        self.attention = nn.ModuleDict({m: CBAM(c) for m in MODALITIES})
        stages = self._stride_stages()
        self.transforms = nn.ModuleDict({
            edge_name(e): CMFT(c, cmft_width, stages) if generator == "cmft" else FeatureGenerator(c)
            for e in ALL_EDGES})
        self.sim_projection = sim_projection
        if sim_projection != "identity":
            self.proj_real = nn.ModuleDict({m: Projection(c, proj_dim) for m in MODALITIES})
        if sim_projection == "separate":
            self.proj_recovered = nn.ModuleDict({m: Projection(c, proj_dim) for m in MODALITIES})
        if generator == "gan":
            self.discriminators = nn.ModuleDict({m: Discriminator(c) for m in MODALITIES})
        self.dem = DynamicEnhancement(c, ENHANCEMENT_EDGES[enhancement], dem_reduction)
        self.heads = nn.ModuleDict({m: BNNeck(c, num_classes) for m in MODALITIES})
        self.heads["final"] = BNNeck(6 * c, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.cam_reshape = None

    def _stride_stages(self) -> int:
        """log2 of the branches' output stride (the number of up-/down-sample stages of CMFT)."""
        backbone = self.backbones["rgb"]
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            h = backbone(torch.zeros(1, 3, *self.img_size))["feature_map"].shape[-2]
        backbone.train(was_training)
        return max(1, round(math.log2(self.img_size[0] / h)))

    # ---------------------------------------------------------------------------------------------- forward

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        images, present = self._inputs(batch)
        image_size = tuple(images.shape[-2:])
        real = {m: self.attention[m](self.backbones[m](images[:, i])["feature_map"]) for i, m in enumerate(MODALITIES)}
        generated = {e: self.transforms[edge_name(e)](real[e[0]], image_size) for e in ALL_EDGES}
        recovered = self._recover({e: g[1] for e, g in generated.items()}, present)
        keep = present[:, :, None, None, None]
        current = {m: torch.where(keep[:, i], real[m], recovered[m]) if self.recovery else real[m]
                   for i, m in enumerate(MODALITIES)}

        c1 = self.dem(current, present)
        rgb = current["rgb"]
        if not self.recovery or bool(present[:, 0].all()):  # F_c2 reads the branch's own RGB map
            from_rgb = {t: generated[("rgb", t)][1] for t in ("nir", "tir")}
        else:
            from_rgb = {t: self.transforms[edge_name(("rgb", t))](rgb, image_size)[1] for t in ("nir", "tir")}
        c2_present = torch.stack([present[:, 0], torch.zeros_like(present[:, 0]), torch.zeros_like(present[:, 0])], 1)
        c2 = self.dem({"rgb": rgb, **from_rgb}, c2_present)

        features = {m: _gap(c1[m]) for m in MODALITIES}
        features["c1"] = torch.cat([features[m] for m in MODALITIES], dim=1)
        features["c2"] = torch.cat([_gap(c2[m]) for m in MODALITIES], dim=1)
        features["final"] = torch.cat([features["c1"], features["c2"]], dim=1)
        embeddings, logits = {}, {}
        for name in HEADS:
            neck = self.heads[name]
            embeddings[name] = neck.bn(features[name])
            logits[name] = neck.classifier(self.dropout(embeddings[name]))
        c = self.feature_dim
        embeddings["c1"], embeddings["c2"] = embeddings["final"][:, :3 * c], embeddings["final"][:, 3 * c:]
        pooled_recovered = {m: _gap(recovered[m]) for m in MODALITIES}
        pooled_real = {m: _gap(real[m]) for m in MODALITIES}
        embeddings |= {f"recovered_{m}": pooled_recovered[m] for m in MODALITIES}
        embeddings |= {f"real_{m}": pooled_real[m] for m in MODALITIES}

        outputs = {"features": features, "embeddings": embeddings, "logits": logits, "recovered": pooled_recovered,
                   "fake_images": {edge_name(e): g[0] for e, g in generated.items() if g[0] is not None},
                   "sim_pairs": {edge_name(e): self._projected(e[1], pooled_real[e[1]], _gap(g[1]))
                                 for e, g in generated.items()}}
        if self.generator == "gan":
            outputs["adversarial"] = self._adversarial(pooled_real, {e: _gap(g[1]) for e, g in generated.items()})
        return outputs

    def _inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        images = batch.get("images") if isinstance(batch, Mapping) else None
        if not isinstance(images, Tensor) or images.ndim != 5 or images.shape[1:3] != (len(MODALITIES), 3):
            got = list(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"DENet expects batch['images'] of shape [B, 3, 3, H, W] (rgb, nir, tir), got {got}")
        present = batch.get("present")
        if present is None:
            present = torch.ones(images.shape[0], len(MODALITIES), dtype=torch.bool, device=images.device)
        present = torch.as_tensor(present, device=images.device)
        if present.shape != (images.shape[0], len(MODALITIES)) or present.dtype != torch.bool:
            raise ValueError(f"batch['present'] must be a bool tensor [{images.shape[0]}, 3], got {present.dtype} "
                             f"{tuple(present.shape)}")
        if not bool(present.any(dim=1).all()):
            raise ValueError("every sample needs at least one present modality")
        return images, present

    @staticmethod
    def _recover(maps: Mapping[tuple[str, str], Tensor], present: Tensor) -> dict[str, Tensor]:
        """Recovered map of every modality: the mean of its transformations from the *present* sources (per
        sample); a sample with no present source gets zeros (never used: its own image is then present)."""
        out = {}
        for t in MODALITIES:
            sources = [s for s in MODALITIES if s != t]
            weights = torch.stack([present[:, MODALITIES.index(s)] for s in sources], 1).to(maps[(sources[0], t)].dtype)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
            out[t] = sum(weights[:, j, None, None, None] * maps[(s, t)] for j, s in enumerate(sources))
        return out

    def _projected(self, target: str, real: Tensor, recovered: Tensor) -> tuple[Tensor, Tensor]:
        """(θ_t(G(F_t)), θ'_t(G(F'_t))) of Eq. 4; ``tied``: one θ_t on the joint batch (shared BN statistics)."""
        if self.sim_projection == "identity":
            return real, recovered
        if self.sim_projection == "separate":
            return self.proj_real[target](real), self.proj_recovered[target](recovered)
        joint = self.proj_real[target](torch.cat([real, recovered]))
        return joint[:real.shape[0]], joint[real.shape[0]:]

    def _adversarial(self, real: Mapping[str, Tensor], generated: Mapping[tuple[str, str], Tensor]) -> dict:
        """Discriminator logits per direction: ``real`` / ``fake`` (inputs detached: trains the discriminator only)
        and ``generated`` (discriminator parameters detached: trains the generator only), so one backward pass of
        the summed losses performs both GAN updates."""
        out = {}
        for (s, t), g in generated.items():
            d = self.discriminators[t]
            frozen = {name: p.detach() for name, p in d.named_parameters()}
            out[edge_name((s, t))] = {"real": d(real[t].detach()), "fake": d(g.detach()),
                                      "generated": functional_call(d, frozen, (g,))}
        return out

    # -------------------------------------------------------------------------------------------- contract

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        """The CBAM of ``modality``'s branch: its output F_m feeds the heads, CMFT and the DEM, so a recovered
        feature's Grad-CAM on the RGB branch (Fig. 7) is ``cam_target_layers("rgb")`` with a target on
        ``embeddings["nir"]`` (or ``"recovered_nir"``) while NIR is missing."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {MODALITIES}")
        return [self.attention[modality]]
