"""DENet's Dynamic Enhancement Module (DEM): Zheng et al., "Dynamic Enhancement Network for Partial
Multi-modality Person Re-identification", §III-C, Eq. 5–6, Figs. 3–4.

**Graph (Fig. 3).** The modalities (rgb, nir, tir) are the nodes of a complete directed enhancement graph: six
edges ``s -> t`` ("rgb2nir", ...), each an enhancement operation in which the *source* (arc tail) ``s`` enhances
the *target* (arc head) ``t``. **Dynamic cut (Fig. 3b):** "if a modality is missing, we cut two edges that take
this node as the arc tail" — a missing modality no longer enhances the others. Its node stays in the graph: in
DENet its feature is the CMFT recovery, and that recovered feature is still enhanced by the available modalities
(the edges into it are kept). So "missing" here means *its image is absent* (``present`` is False), whether or
not its feature was recovered. The cut is evaluated per sample (``present`` [B, 3]), with masks, so one batch
may mix missing states.

**Enhancement operation (Fig. 4, Eq. 5–6).** Three 1×1 convolutions give F'_source, F''_source (from the source
map) and F'_target (from the target map); ``F'''_source = (F'_source ⊗ F'_target) ⊗ F''_source`` (Eq. 5) — a
non-local (Wang et al., CVPR 2018) cross-attention in which the target positions attend to the source positions;
then a 1×1 convolution back to the input width and the residual ``F_enhance = F''' + F_target`` (Eq. 6).

Ambiguities resolved here (each tested in ``tests/test_denet.py``):

- Normalisation of the products: the paper writes plain products (no softmax). We use the dot-product form of
  the non-local block, the affinity divided by the number of source positions N (as the repository's AGW
  ``NonLocal``), so the scale does not grow with the map size.
- Inner width: not given; we use C / ``reduction`` with ``reduction=2`` (the non-local default).
- "After convolution": the output 1×1 convolution is followed by a BatchNorm whose weight starts at zero (as the
  non-local block and AGW), so every edge starts as the identity and a pretrained branch is not disturbed.
- A node with two incoming (uncut) edges: the paper gives Eq. 6 for one source. We add both messages to one
  residual, ``F_t + Σ_s F'''_{s->t}``, and every edge reads the *un-enhanced* features (one simultaneous step of
  message passing), so the result does not depend on an edge order.

Variants (Table VII and Table V): ``dynamic`` (ours: all six edges, cut by the missing state), ``fixed`` (only
rgb -> nir and rgb -> tir; "TIR and NIR will not enhance other modalities, given that they may be missing"),
``cycle`` (single-direction cyclic enhancement rgb -> nir -> tir -> rgb) and ``none`` (no DEM). The dynamic cut
applies to every variant (a missing rgb cuts the fixed variant's two edges too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from reidlab.data.records import MODALITIES

Edge = tuple[str, str]

#: The six directed edges of the complete enhancement graph (source, target), in canonical order.
ALL_EDGES: tuple[Edge, ...] = tuple((s, t) for s in MODALITIES for t in MODALITIES if s != t)

#: Edge set of every enhancement variant (before the dynamic cut).
ENHANCEMENT_EDGES: dict[str, tuple[Edge, ...]] = {
    "dynamic": ALL_EDGES,
    "fixed": (("rgb", "nir"), ("rgb", "tir")),
    "cycle": (("rgb", "nir"), ("nir", "tir"), ("tir", "rgb")),
    "none": (),
}


def edge_name(edge: Edge) -> str:
    """``("rgb", "nir") -> "rgb2nir"`` (the paper's R2N)."""
    return f"{edge[0]}2{edge[1]}"


def active_edges(edges: Sequence[Edge], present: Sequence[bool]) -> tuple[Edge, ...]:
    """The edges of ``edges`` that survive the dynamic cut for one sample's presence row (rgb, nir, tir)."""
    if len(present) != len(MODALITIES):
        raise ValueError(f"a presence row has {len(MODALITIES)} entries (rgb, nir, tir), got {len(present)}")
    return tuple(e for e in edges if bool(present[MODALITIES.index(e[0])]))


def edge_masks(edges: Sequence[Edge], present: Tensor) -> dict[Edge, Tensor]:
    """Per-sample keep mask of every edge: ``present[:, tail]`` ([B] bool) — the dynamic cut, vectorised."""
    if present.ndim != 2 or present.shape[1] != len(MODALITIES) or present.dtype != torch.bool:
        raise ValueError(f"present must be a bool tensor [B, {len(MODALITIES)}], got {present.dtype} "
                         f"{tuple(present.shape)}")
    return {e: present[:, MODALITIES.index(e[0])] for e in edges}


class EnhancementOp(nn.Module):
    """Fig. 4 / Eq. 5: the message ``F'''_source`` by which ``source`` enhances ``target`` (maps [B, C, h, w]).

    ``F'_source = conv_k(source)``, ``F''_source = conv_v(source)``, ``F'_target = conv_q(target)`` (1×1, width C /
    ``reduction``); affinity ``A = F'_sourceᵀ F'_target / N`` ([N_source, N_target] per sample); output
    ``W((A ᵀ F''_source))`` reshaped to [B, C, h, w], with W = 1×1 conv + BatchNorm (weight initialised to zero).
    The residual of Eq. 6 is added by :class:`DynamicEnhancement`.
    """

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        if channels < 1 or reduction < 1 or channels // reduction < 1:
            raise ValueError(f"EnhancementOp needs channels >= reduction >= 1, got {channels} and {reduction}")
        inner = channels // reduction
        self.source_key = nn.Conv2d(channels, inner, kernel_size=1)
        self.source_value = nn.Conv2d(channels, inner, kernel_size=1)
        self.target_query = nn.Conv2d(channels, inner, kernel_size=1)
        self.out = nn.Sequential(nn.Conv2d(inner, channels, kernel_size=1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        if source.shape != target.shape or source.ndim != 4:
            raise ValueError(f"EnhancementOp expects source and target maps of one shape [B, C, h, w], got "
                             f"{tuple(source.shape)} and {tuple(target.shape)}")
        b, _, h, w = target.shape
        key = self.source_key(source).flatten(2)                     # F'_source  [B, C', N]
        value = self.source_value(source).flatten(2)                 # F''_source [B, C', N]
        query = self.target_query(target).flatten(2)                 # F'_target  [B, C', N]
        affinity = key.transpose(1, 2) @ query / key.shape[-1]       # F'_source ⊗ F'_target [B, N_s, N_t]
        message = value @ affinity                                   # (…) ⊗ F''_source [B, C', N_t]
        return self.out(message.reshape(b, -1, h, w))                # "convolution and unsqueeze"


class DynamicEnhancement(nn.Module):
    """DEM over the modality maps: ``F_t^enhance = F_t + Σ_{s->t kept} F'''_{s->t}`` (Eq. 6 with the dynamic cut).

    ``edges``: the variant's edge set (see :data:`ENHANCEMENT_EDGES`); one :class:`EnhancementOp` per edge.
    ``forward(maps {m: [B, C, h, w]}, present [B, 3] bool) -> {m: enhanced map}``: edge ``s -> t`` contributes to
    sample ``i`` only when ``present[i, s]`` (its tail is not missing).
    """

    def __init__(self, channels: int, edges: Sequence[Edge], reduction: int = 2) -> None:
        super().__init__()
        unknown = [e for e in edges if e not in ALL_EDGES]
        if unknown or len(set(edges)) != len(edges):
            raise ValueError(f"edges must be distinct pairs of different modalities of {MODALITIES}, got {edges}")
        self.edges = tuple(edges)
        self.ops = nn.ModuleDict({edge_name(e): EnhancementOp(channels, reduction) for e in self.edges})

    def forward(self, maps: Mapping[str, Tensor], present: Tensor) -> dict[str, Tensor]:
        keep = edge_masks(self.edges, present)
        out = dict(maps)
        for (source, target), mask in keep.items():
            if not bool(mask.any()):
                continue
            message = self.ops[edge_name((source, target))](maps[source], maps[target])
            out[target] = out[target] + message * mask.to(message.dtype)[:, None, None, None]
        return out
