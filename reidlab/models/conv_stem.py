"""A convolutional stem for small ViTs: the "ViT_C" patch embedding.

Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021, replace ViT's patchify stem
(one ``p×p`` convolution with stride ``p``) by a stack of 3×3 stride-2 convolutions with BatchNorm and ReLU,
then a 1×1 convolution to the embedding width; the token grid stays the same (total stride ``p``), and the
models train faster, are less sensitive to the optimiser and learn well from less data. That is the tutorial
ViT's situation — tiny images (64×32), a few thousand training images, minutes of CPU — so the tutorial preset
uses it (:data:`reidlab.models.backbones.PRESETS`); paper backbones keep timm's own patch embedding.

Widths: ``embed_dim / 2^(n-i)`` for the ``n = log2(p)`` stride-2 convolutions (the paper doubles the width at
each stride, ending at the embedding width before the 1×1 projection).
"""

from __future__ import annotations

import math
from typing import Any

from timm.layers import PatchEmbed
from torch import nn


class ConvStemEmbed(PatchEmbed):
    """timm's :class:`~timm.layers.PatchEmbed` with ``proj`` = [3×3 conv (stride 2), BN, ReLU] × log2(p) + 1×1 conv.

    Everything else (grid size, dynamic image size, output format, norm) is timm's, so it drops into
    ``VisionTransformer(embed_layer=ConvStemEmbed)`` and keeps the patch grid of ``patch_size``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        patch, in_chans, embed_dim = self.patch_size[0], self.proj.in_channels, self.proj.out_channels
        strides = int(round(math.log2(patch)))
        if self.patch_size[0] != self.patch_size[1] or 2 ** strides != patch:
            raise ValueError(f"ConvStemEmbed needs a square power-of-two patch size, got {self.patch_size}")
        layers: list[nn.Module] = []
        width = in_chans
        for i in range(strides):
            out = max(8, embed_dim // 2 ** (strides - 1 - i))
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            width = out
        layers.append(nn.Conv2d(width, embed_dim, 1, bias=self.proj.bias is not None))
        self.proj = nn.Sequential(*layers)


__all__ = ["ConvStemEmbed"]
