"""CoEN — Collaborative Enhancement Network (Zheng et al., "Collaborative Enhancement Network for Low-quality
Multi-spectral Vehicle Re-identification"; equation numbers below are the paper's).

Pipeline for one batch of RGB, NIR and TIR images (canonical order ``rgb, nir, tir`` everywhere):

1. **Shared feature extraction** (§3.1, Eq. 1): one ViT runs on the three modalities (stacked into one batch);
   F_R, F_N, F_T ∈ R^{(N_p+1)×D} are the tokens *entering the last block* (the output of block L−1). Their class
   token is the modality's prefix; the N_p patch tokens are the embedding tokens F^emb.
2. **ViT branch** — the features of the (1−λ) term of Eq. 16 (the "backbone features" of §3.5, the ViT baseline
   of Table 3 (a)): each F_m through the backbone's own last block and final norm, class token → ``vit_<m>``.
3. **Proxy Generator** (§3.2, Eq. 2–3): F_P^Init = Concat(F^emb_R, F^emb_N, F^emb_T) along the channel dimension
   (N_p × 3D), then F_P = Proj_B(Proj_A(F_P^Init)) ∈ R^{N_p×D}. Variants (Table 4): ``progressive`` (Eq. 3),
   ``direct`` (one projection 3D → D), ``sum`` (F^emb_R + F^emb_N + F^emb_T, no parameters).
4. **Dynamic Quality Sort** (§3.3, Eq. 4–7): Q_m = mean over the N_p token pairs of cos(F_P,i, F^emb_m,i);
   per sample, the modalities are ranked by Q (F_1st = highest). Variants (Table 6): ``dynamic``, ``none``
   ("w/o DQSM"), fixed primaries ``rgb`` / ``nir`` / ``tir``.
5. **Collaborative Enhancement** (§3.4, Eq. 8–12, Fig. 4): primary-based enhancement F^1st_2nd, F^1st_3rd
   (query = the lower-ranked modality, key/value = F_1st; Eq. 8–9) and proxy-based enhancement F^P_1st, F^P_2nd,
   F^P_3rd (query = the modality, key/value = F_P; Eq. 10), residual sums (Eq. 11), inverse sort back to R, N, T
   (Eq. 12). Variants (Tables 3 and 7): ``both``, ``primary`` (PriE only), ``proxy`` (ProE only), ``none`` (no CEM).
6. **Per-modality last blocks** (§3.1, end of §3.4): three independent copies of the backbone's last block (and
   final norm), one per modality, turn [class token of F_m, enhanced F^emb'_m] into the class token F^cls'_m →
   ``<m>`` (the "CEM features" of Eq. 16).

Outputs (model contract of :mod:`reidlab.models.baseline`): ``features`` (pre-BNNeck) and ``embeddings``
(post-BNNeck) for ``vit_rgb``, ``vit_nir``, ``vit_tir``, ``rgb``, ``nir``, ``tir``, ``proxy`` and the
concatenations ``vit`` (vit_rgb|vit_nir|vit_tir), ``rnt`` (rgb|nir|tir) and ``rnt_proxy`` (rgb|nir|tir|proxy) — the
inference variants of Table 5; ``logits`` for the seven single features (one BNNeck each); ``quality`` [B, 3]
(Q_R, Q_N, Q_T of Eq. 5–6, canonical order, no gradient) and ``order`` [B, 3] (long: modality indices by rank,
primary first, the permutation actually used by the CEM). ``default_feature`` is ``rnt_proxy`` (Table 5's best
row, §4.2 "we concatenate the features ... of three parallel branches" plus the proxy).

Choices the paper leaves open (each is tested in ``tests/test_coen.py``):

- Ambiguity: the width of Proj_A. We choose 3D → 2D (Proj_A: linear + GELU) then 2D → D (Proj_B: linear), an even
  two-step reduction. The GELU is ours: without a non-linearity Proj_B∘Proj_A is one linear map of the same
  rank as the ``direct`` projection, so Table 4's progressive/direct contrast would only be a re-parametrisation.
- Ambiguity: where the proxy's global feature (trained by the proxy term of Eq. 16 and used at inference, Table 5)
  comes from. The paper defines F_P on the N_p embedding tokens only (Eq. 2–3) and gives it no class token and no
  block. We choose the mean of the proxy tokens followed by a LayerNorm (a read-out norm like the ViT's final
  norm), so the identity loss supervises exactly the tokens that DQSM and the CEM use.
- Ambiguity: the ViT-branch features of Eq. 16 ("backbone features", §3.5). We choose each modality's class
  token after the backbone's own last block and final norm — the features the multi-branch ViT baseline (Table 3 (a),
  Table 1 "ViT") is trained on; the three per-modality last blocks are copies of that block (pretrained weights)
  that read the enhanced tokens instead.
- Ambiguity: the class token of the enhanced branches. Eq. 8–12 act on the N_p embedding tokens only; the
  per-modality last block needs a class token to produce F^cls'_m. We prepend the modality's own penultimate
  prefix tokens (class token) to F^emb'_m.
- Ambiguity: Fig. 4 lists, per cross-attention unit, "Cross Attention, linear, LayerNorm, Dropout, linear", while
  Eq. 8–10 write Dropout_γ(softmax(QK^T/√d_C) V) with one symbol W. We read the first linear as Eq. 8's three
  D×D projections W_q, W_k, W_v (Fig. 4 draws three "linear" boxes), then LayerNorm, Dropout_γ and an output
  linear: F = W_o · Dropout_γ(LN(softmax(Q K^T / √D) V)). One head, d_C = D (as the paper states).
- Ambiguity: which weights are shared. Fig. 4 draws five cross-attention units (two primary-based, three
  proxy-based); we give each rank slot its own unit: PriE for the 2nd and the 3rd slot, ProE for the 1st, 2nd and
  3rd slot. The ranking therefore also decides which weights enhance a modality.
- Ambiguity: what "w/o DQSM" (Table 6) is. §4.4 describes it as "the primary spectrum selected by DQSM is not used
  for enhancement", and its row (70.4 / 78.3 / 82.4 / 85.4) matches Table 3 (d) (70.3 / 78.3 / 82.4 / 85.4), which
  §4.4's text calls the proxy-only model (Table 3's check marks put PriE on (d) and ProE on (c), the text the
  other way round; we follow the text). So ``sort="none"`` keeps the canonical order R, N, T (ProE slot k enhances
  modality k) and drops the primary-based terms of Eq. 11 — with ``enhancement="both"`` it is the proxy-only CEM
  without sorting; ``enhancement="primary"`` with ``sort="none"`` is an error (no primary to enhance from).
- Note: nothing in the paper's losses ties the proxy to the modality tokens' feature space — the sort is discrete,
  so Q_m gets no gradient. Whether Q tracks image quality is therefore an empirical question (notebook 01).
- Ambiguity: the order of the two lower-ranked modalities under a fixed primary. Table 6 writes RGB→(NIR,TIR),
  NIR→(RGB,TIR), TIR→(RGB,NIR): the other two follow in canonical order, e.g. ``sort="tir"`` is (T, R, N).
- ``enhancement="none"`` (Table 7 "w/o CEM" = Table 3 (b), PG only) sets F^emb'_m = F^emb_m: the model, its
  losses and its inference features keep their structure; only the enhancement is gone.
- Batch handling of the per-sample sort: the modality tokens are stacked [B, 3, N_p, D] and permuted per sample
  with ``gather`` (Eq. 7) and the inverse permutation (Eq. 12); no Python loop over samples. Ties keep the
  canonical order (stable sort). The quality scores are computed without gradient: the sort is discrete.
- Missing modalities arrive as zero images (data contract) and run through the model unchanged, as in the baseline.

:func:`count_parameters` and :func:`count_flops` measure any model of the contract (FLOPs of one sample with all its
modalities, ``torch.utils.flop_counter``; a multiply-add counts 2).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from reidlab.models.backbones import ViTBackbone, create_backbone
from reidlab.models.baseline import _batch_images
from reidlab.models.heads import BNNeck

MODALITIES: tuple[str, ...] = ("rgb", "nir", "tir")
PROXIES: tuple[str, ...] = ("progressive", "direct", "sum")
SORTS: tuple[str, ...] = ("dynamic", "none", "rgb", "nir", "tir")
ENHANCEMENTS: tuple[str, ...] = ("both", "primary", "proxy", "none")
#: Rank order (modality indices, primary first) of the non-dynamic sorts (Table 6).
FIXED_ORDERS: dict[str, tuple[int, int, int]] = {"none": (0, 1, 2), "rgb": (0, 1, 2), "nir": (1, 0, 2),
                                                 "tir": (2, 0, 1)}
#: The seven single features, each with its own BNNeck: ViT branch, CEM branches, proxy.
BRANCHES: tuple[str, ...] = ("vit_rgb", "vit_nir", "vit_tir", "rgb", "nir", "tir", "proxy")
#: Concatenated inference features (Table 5): name -> parts.
CONCATS: dict[str, tuple[str, ...]] = {"vit": ("vit_rgb", "vit_nir", "vit_tir"), "rnt": ("rgb", "nir", "tir"),
                                       "rnt_proxy": ("rgb", "nir", "tir", "proxy")}


def _init_linear(module: nn.Module) -> None:
    """timm's ViT initialisation for the new layers: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ProxyGenerator(nn.Module):
    """Proxy Generator (Eq. 2–3): modality tokens [B, 3, N, D] -> proxy tokens F_P [B, N, D].

    ``progressive``: F_P = Proj_B(Proj_A(Concat)), Proj_A = Linear(3D, 2D) + GELU, Proj_B = Linear(2D, D);
    ``direct``: F_P = Linear(3D, D)(Concat) (the one projection is ``proj_b``); ``sum``: F_P = F_R + F_N + F_T.
    Concat (Eq. 2) puts the three modalities' channels side by side per token, in the order R, N, T.
    """

    def __init__(self, dim: int, mode: str = "progressive") -> None:
        super().__init__()
        if mode not in PROXIES:
            raise ValueError(f"proxy must be one of {', '.join(PROXIES)}, got {mode!r}")
        self.mode = mode
        self.proj_a: nn.Module | None = None
        self.proj_b: nn.Module | None = None
        if mode == "progressive":
            self.proj_a = nn.Sequential(nn.Linear(3 * dim, 2 * dim), nn.GELU())
            self.proj_b = nn.Linear(2 * dim, dim)
        elif mode == "direct":
            self.proj_b = nn.Linear(3 * dim, dim)
        self.apply(_init_linear)

    @staticmethod
    def concat(tokens: Tensor) -> Tensor:
        """Eq. 2: [B, 3, N, D] -> F_P^Init [B, N, 3D] (channels of R, then N, then T)."""
        b, m, n, d = tokens.shape
        return tokens.permute(0, 2, 1, 3).reshape(b, n, m * d)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 4 or tokens.shape[1] != 3:
            raise ValueError(f"the proxy generator expects tokens [B, 3, N, D], got {list(tokens.shape)}")
        if self.mode == "sum":
            return tokens.sum(dim=1)
        x = self.concat(tokens)
        if self.proj_a is not None:
            x = self.proj_a(x)
        return self.proj_b(x)


def quality_scores(proxy: Tensor, tokens: Tensor) -> Tensor:
    """Eq. 4–6: Q_m = (1/N) Σ_i cos(F_P,i, F_m,i) for proxy [B, N, D] and tokens [B, M, N, D] -> [B, M]."""
    return F.cosine_similarity(proxy.unsqueeze(1), tokens, dim=-1).mean(dim=-1)


def rank_order(quality: Tensor) -> Tensor:
    """Eq. 7: modality indices per sample by decreasing quality [B, M] (long); ties keep the canonical order."""
    return torch.sort(quality, dim=1, descending=True, stable=True).indices


def sort_modalities(tokens: Tensor, order: Tensor) -> Tensor:
    """Eq. 7: tokens [B, M, N, D] in canonical order -> ranked tokens, ranked[b, k] = tokens[b, order[b, k]]."""
    index = order[:, :, None, None].expand(-1, -1, *tokens.shape[2:])
    return tokens.gather(1, index)


def inverse_sort(ranked: Tensor, order: Tensor) -> Tensor:
    """Eq. 12: ranked [B, M, N, D] back to canonical order (the inverse permutation of :func:`sort_modalities`)."""
    return sort_modalities(ranked, torch.argsort(order, dim=1))


class EnhancementAttention(nn.Module):
    """One cross-attention unit of the CEM (Eq. 8–10, Fig. 4), single head with d_C = D.

    ``forward(query [B, N, D], context [B, N', D]) = W_o · Dropout_γ(LayerNorm(softmax(Q K^T / √D) V))`` with
    Q = query W_q, K = context W_k, V = context W_v (Eq. 8). :meth:`attend` is the bare softmax(Q K^T / √D) V.
    """

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.scale = dim ** -0.5
        self.apply(_init_linear)

    def attend(self, query: Tensor, context: Tensor) -> Tensor:
        q, k, v = self.q(query), self.k(context), self.v(context)
        return torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1) @ v

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        return self.proj(self.drop(self.norm(self.attend(query, context))))


class CollaborativeEnhancement(nn.Module):
    """Eq. 11 on ranked tokens [B, 3, N, D] and proxy tokens [B, N, D] -> enhanced ranked tokens [B, 3, N, D].

    F'_1st = F_1st + F^P_1st;  F'_k = F_k + F^P_k + F^1st_k for k = 2nd, 3rd. ``primary`` / ``proxy`` switch the
    F^1st (PriE, units ``primary[0]`` for the 2nd slot and ``primary[1]`` for the 3rd) and F^P (ProE, ``proxy[k]``
    for slot k) terms; with both off the module is the identity.
    """

    def __init__(self, dim: int, dropout: float, primary: bool = True, proxy: bool = True) -> None:
        super().__init__()
        self.primary = nn.ModuleList([EnhancementAttention(dim, dropout) for _ in range(2)]) if primary else None
        self.proxy = nn.ModuleList([EnhancementAttention(dim, dropout) for _ in range(3)]) if proxy else None

    def forward(self, ranked: Tensor, proxy: Tensor) -> Tensor:
        slots = list(ranked.unbind(dim=1))
        out = list(slots)
        if self.proxy is not None:
            out = [x + unit(x, proxy) for x, unit in zip(out, self.proxy, strict=True)]
        if self.primary is not None:
            for k, unit in enumerate(self.primary, start=1):
                out[k] = out[k] + unit(slots[k], slots[0])
        return torch.stack(out, dim=1)


class CoEN(nn.Module):
    """Collaborative Enhancement Network (module docstring): shared ViT, PG, DQSM, CEM, per-modality last blocks.

    ``proxy`` ∈ :data:`PROXIES` (Table 4), ``sort`` ∈ :data:`SORTS` (Table 6), ``enhancement`` ∈
    :data:`ENHANCEMENTS` (Tables 3 and 7), ``dropout`` = γ of Eq. 9–10 (0.5 in the paper). ``backbone_name`` must
    be a ViT (:func:`~reidlab.models.backbones.create_backbone`; the paper uses ``deit_base_patch16_224.fb_in1k``).
    """

    modalities = MODALITIES
    default_feature = "rnt_proxy"

    def __init__(self, backbone_name: str, num_classes: int, *, img_size: tuple[int, int], pretrained: bool = False,
                 checkpoint: str | Path | None = None, proxy: str = "progressive", sort: str = "dynamic",
                 enhancement: str = "both", dropout: float = 0.5, **backbone_kwargs: Any) -> None:
        super().__init__()
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        if enhancement not in ENHANCEMENTS:
            raise ValueError(f"enhancement must be one of {', '.join(ENHANCEMENTS)}, got {enhancement!r}")
        if sort == "none" and enhancement == "primary":
            raise ValueError("sort='none' is Table 6's 'w/o DQSM' (no primary spectrum), so the primary-based "
                             "enhancement has nothing to enhance from; use enhancement='proxy' or 'both'")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout (γ) must be in [0, 1], got {dropout}")
        backbone = create_backbone(backbone_name, img_size=img_size, pretrained=pretrained, checkpoint=checkpoint,
                                   **backbone_kwargs)
        if not isinstance(backbone, ViTBackbone):
            raise ValueError(f"CoEN needs a ViT backbone (it splits the last block off), got the {backbone.kind} "
                             f"{backbone_name!r}")
        self.proxy_mode, self.sort, self.enhancement, self.dropout = proxy, sort, enhancement, dropout
        self.backbone = backbone
        dim = self.feature_dim = backbone.feature_dim
        self.last_blocks = nn.ModuleDict({m: copy.deepcopy(backbone.blocks[-1]) for m in MODALITIES})
        self.last_norms = nn.ModuleDict({m: copy.deepcopy(backbone.norm) for m in MODALITIES})
        self.proxy_generator = ProxyGenerator(dim, proxy)
        self.proxy_norm = nn.LayerNorm(dim, eps=1e-6)
        self.cem = CollaborativeEnhancement(dim, dropout, primary=enhancement in ("both", "primary") and sort != "none",
                                            proxy=enhancement in ("both", "proxy"))
        self.heads = nn.ModuleDict({name: BNNeck(dim, num_classes) for name in BRANCHES})
        self.cam_reshape: Callable[[Tensor], Tensor] = backbone.cam_reshape

    def _order(self, quality: Tensor) -> Tensor:
        if self.sort == "dynamic":
            return rank_order(quality)
        return torch.tensor(FIXED_ORDERS[self.sort], device=quality.device).repeat(quality.shape[0], 1)

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        images = _batch_images(batch, MODALITIES)
        b, m = images.shape[:2]
        stacked = self.backbone.forward_penultimate(images.transpose(0, 1).reshape(m * b, *images.shape[2:]))
        tokens = stacked.reshape(m, b, *stacked.shape[1:]).transpose(0, 1)          # Eq. 1: [B, 3, P + N, D]
        p = self.backbone.num_prefix_tokens
        prefix, patches = tokens[:, :, :p], tokens[:, :, p:]
        features = {f"vit_{mod}": self.backbone.forward_last(tokens[:, i])[:, 0] for i, mod in enumerate(MODALITIES)}
        proxy = self.proxy_generator(patches)                                         # Eq. 2–3
        with torch.no_grad():
            quality = quality_scores(proxy, patches)                                  # Eq. 4–6
        order = self._order(quality)                                                  # Eq. 7
        enhanced = inverse_sort(self.cem(sort_modalities(patches, order), proxy), order)  # Eq. 8–12
        for i, mod in enumerate(MODALITIES):
            x = self.last_blocks[mod](torch.cat([prefix[:, i], enhanced[:, i]], dim=1))
            features[mod] = self.last_norms[mod](x)[:, 0]
        features["proxy"] = self.proxy_norm(proxy.mean(dim=1))
        embeddings, logits = {}, {}
        for name in BRANCHES:
            embeddings[name], logits[name] = self.heads[name](features[name])
        for name, parts in CONCATS.items():
            features[name] = torch.cat([features[n] for n in parts], dim=1)
            embeddings[name] = torch.cat([embeddings[n] for n in parts], dim=1)
        return {"features": features, "embeddings": embeddings, "logits": logits, "quality": quality, "order": order}

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    def cam_target_layers(self, modality: str, branch: str = "cem") -> list[nn.Module]:
        """Grad-CAM layer holding ``modality``'s tokens: ``branch="cem"`` (default) the ``norm1`` of the modality's
        own last block — its enhanced tokens as that block reads them, the analogue of the baseline's cam layer
        (targets on ``rgb``/``nir``/``tir`` and the concatenations); ``branch="vit"`` the backbone's last-block
        ``norm1``, run once per modality (targets on ``vit_<m>``)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {MODALITIES}")
        if branch == "cem":
            return [self.last_blocks[modality].norm1]
        if branch == "vit":
            return [self.backbone.cam_layer]
        raise ValueError(f"branch must be 'cem' or 'vit', got {branch!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: tuple[int, int]) -> int:
    """FLOPs of one forward pass (eval mode, no gradient) on one sample with all of ``model.modalities`` at
    ``img_size`` (H, W), counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs;
    matrix products, convolutions and attention — element-wise ops are not counted)."""
    num = len(model.modalities)
    device = next(model.parameters()).device
    batch = {"images": torch.zeros(1, num, 3, *img_size, device=device),
             "present": torch.ones(1, num, dtype=torch.bool, device=device),
             "label": torch.zeros(1, dtype=torch.long, device=device)}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(batch)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


__all__ = ["BRANCHES", "CONCATS", "ENHANCEMENTS", "FIXED_ORDERS", "MODALITIES", "PROXIES", "SORTS", "CoEN",
           "CollaborativeEnhancement", "EnhancementAttention", "ProxyGenerator", "count_flops", "count_parameters",
           "inverse_sort", "quality_scores", "rank_order", "sort_modalities"]
