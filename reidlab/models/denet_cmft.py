"""DENet's Cross-Modality Feature Transformation (CMFT) and the GAN-style feature generator it is compared with:
Zheng et al., "Dynamic Enhancement Network for Partial Multi-modality Person Re-identification", §III-B, Eq. 1–4,
Table VI.

**CMFT (Eq. 1–2).** For a direction ``s -> t`` (R2N, R2T, N2R, N2T, T2R, T2N) the source feature map goes
through an *up-sample block* to a fake image of the target modality, ``X'_t = UpSample(F_s)`` (Eq. 1), then
through a *down-sample block* back to a feature map, ``F'_t = DownSample(X'_t)`` (Eq. 2). The fake image is
compared with the real (normalised) target image by L_rec (Eq. 3) and the pooled recovered feature with the
pooled real one through the projections θ_t, θ'_t by L_sim (Eq. 4); both losses are in
:mod:`reidlab.losses.denet`, the projections (:class:`Projection`) here.

Ambiguities resolved here:

- Block layouts are not given. UpSample: 1×1 conv to ``width`` channels (BN, ReLU), then ``stages − 1`` × (2×
  bilinear up-sampling, 3×3 conv halving the width (at least 8), BN, ReLU), a 3×3 conv to 3 channels at half the
  input resolution (a linear output: the target is the *normalised* image) and a parameter-free bilinear resize to
  the input resolution, so L_rec compares at the input size (a full-resolution convolution cost ~40 % of a
  tutorial training step on CPU for little gain).
  DownSample mirrors it: ``stages`` × (3×3 stride-2 conv, BN, ReLU) from 3 channels up to ``width``, a 1×1 conv
  to the backbone width C with BN and ReLU (the real features are post-ReLU), and an adaptive average pool to the
  source map's size so the recovered map can enter the DEM. ``stages`` = log2 of the backbone's output stride.
- The down-sample block is a separate small encoder, not the target modality's ResNet branch: Eq. 4 projects real
  and recovered features with *different* functions θ_t and θ'_t, which suggests different feature extractors.
- θ(x) = ReLU(BN(W x)) (Eq. 4) with the BatchNorm **without** affine parameters: with a learnable scale and shift,
  θ and θ' could both collapse to the constant ReLU(β) and make L_sim vanish without recovering anything. One θ'_t
  per target modality is shared by its two source directions (the paper indexes θ'_n by the target only).
- Where L_sim compares (``DENet(sim_projection=...)``). ``"separate"`` is Eq. 4 as written: θ_t on the real and
  θ'_t on the recovered pooled feature, each with its own weights and BatchNorm. Both projections are invariant to
  the scale and offset of their input, so L_sim aligns the recovered feature with the real one only up to a
  linear change of basis (like CCA) — yet the recovered feature *replaces* the real one in F_c1 at test time. On
  the tutorial tree (4 runs) recovered features had 2–6× the real features' norm and cosine 0.5–0.7 to them, and
  recovery beat zero-filling in one seed and lost in the other. ``"identity"`` (a deviation: θ = identity) takes
  the L1 directly between the pooled real and recovered features, so the recovered feature is a stand-in in the
  space where it is used (tutorial: cosine ~0.8, recovery ahead of zero-filling under M(N) and M(T) by 1–6 mAP in
  every run, complete-data mAP +9). ``"tied"`` reads "the two functions are equivalent" as θ'_t = θ_t (one
  projection, BatchNorm statistics over the joint real + recovered batch); it did not help (the projection's null
  space and the ReLU leave the raw scale free). The paper profile uses ``separate``, the tutorial ``identity``.

**GAN feature generator (Table VI's "Feature Generation", ``generator="gan"``).** A small conv generator maps the
source feature map directly to the target feature map (1×1 conv to C/4, 3×3 conv, 1×1 conv back to C, each with BN,
ReLU after each), with no image in between, so no L_rec; a discriminator per target modality (an MLP on the pooled
feature, C -> 256 -> 1) tells real from generated pooled features. It is trained with the non-saturating GAN loss
plus the same L1 (L_sim) as CMFT, in the single optimiser step of the shared training loop (see
:mod:`reidlab.losses.denet`). The paper's comparison follows a GAN-based alignment method ([52], Wang et al.,
ICCV 2019) whose generators and discriminators are much larger and trained with alternating updates; ours is a
minimal stand-in that isolates "adversarial feature generation vs. CMFT's image bottleneck + L_rec".
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: Narrowest up-/down-sample stage.
MIN_WIDTH = 8


def _widths(width: int, stages: int) -> list[int]:
    """Channel widths from the feature side to the image side: width, width/2, ... (at least MIN_WIDTH)."""
    return [max(MIN_WIDTH, width // 2**i) for i in range(stages + 1)]


class UpSample(nn.Module):
    """Eq. 1: feature map [B, C, h, w] -> fake image [B, 3, H, W] (see the module docstring for the layout)."""

    def __init__(self, channels: int, width: int, stages: int) -> None:
        super().__init__()
        widths = _widths(width, stages)
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[:-2], widths[1:-1], strict=True):
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(widths[-2], 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, feature_map: Tensor, image_size: tuple[int, int]) -> Tensor:
        image = self.body(feature_map)
        if tuple(image.shape[-2:]) != tuple(image_size):
            image = F.interpolate(image, size=tuple(image_size), mode="bilinear", align_corners=False)
        return image


class DownSample(nn.Module):
    """Eq. 2: (fake) image [B, 3, H, W] -> recovered feature map [B, C, h, w]."""

    def __init__(self, channels: int, width: int, stages: int) -> None:
        super().__init__()
        widths = _widths(width, stages)[::-1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip([3, *widths[1:-1]], widths[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(widths[-1], channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, image: Tensor, map_size: tuple[int, int]) -> Tensor:
        return F.adaptive_avg_pool2d(self.body(image), tuple(map_size))


class CMFT(nn.Module):
    """One direction's transformation: ``forward(source_map, image_size) -> (fake_image, recovered_map)``."""

    def __init__(self, channels: int, width: int, stages: int) -> None:
        super().__init__()
        if stages < 1:
            raise ValueError(f"CMFT needs at least one up-/down-sample stage, got {stages}")
        self.up = UpSample(channels, width, stages)
        self.down = DownSample(channels, width, stages)

    def forward(self, source_map: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        fake = self.up(source_map, image_size)
        return fake, self.down(fake, tuple(source_map.shape[-2:]))


class FeatureGenerator(nn.Module):
    """The GAN variant's generator: ``forward(source_map, image_size) -> (None, generated_map)`` (no image)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(MIN_WIDTH, channels // 4)
        self.body = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, source_map: Tensor, image_size: tuple[int, int]) -> tuple[None, Tensor]:
        return None, self.body(source_map)


class Discriminator(nn.Module):
    """Real-vs-generated logit of a pooled feature [B, C] -> [B] (the GAN variant)."""

    def __init__(self, channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(channels, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1))

    def forward(self, pooled: Tensor) -> Tensor:
        return self.body(pooled).squeeze(1)


class Projection(nn.Module):
    """θ(x) = ReLU(BN(W x)) of Eq. 4 (BatchNorm without affine parameters; see the module docstring)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, pooled: Tensor) -> Tensor:
        return F.relu(self.bn(self.linear(pooled)))
