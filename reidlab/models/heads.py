"""ReID heads: BNNeck, GeM pooling and the reference weight initialisations.

- BNNeck and the initialisations follow Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
  Re-identification" (CVPRW 2019; code github.com/michuanhaohao/reid-strong-baseline, ``modeling/baseline.py``):
  the metric losses use the pooled feature *before* a BatchNorm1d whose bias is frozen at zero ("no shift"), the
  identity classifier (a bias-free linear layer) and inference use the feature *after* it.
- GeM is the generalised-mean pooling of Radenović et al., "Fine-tuning CNN Image Retrieval with No Human
  Annotation" (TPAMI 2019), used by AGW (Ye et al., "Deep Learning for Person Re-identification: A Survey and
  Outlook", TPAMI 2021; code github.com/mangye16/Cross-Modal-Re-ID-baseline) with a fixed p = 3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def init_kaiming(module: nn.Module) -> None:
    """Reference ``weights_init_kaiming`` (use with ``module.apply``): conv weights Kaiming-normal (fan_in), linear
    weights Kaiming-normal (fan_out), biases zero; affine BatchNorm weight 1, bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_out")
    elif isinstance(module, nn.modules.conv._ConvNd):
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        nn.init.ones_(module.weight)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def init_classifier(module: nn.Module) -> None:
    """Reference ``weights_init_classifier`` (use with ``module.apply``): linear weights N(0, 0.001²), biases zero."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.001)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class BNNeck(nn.Module):
    """BatchNorm1d with a frozen zero bias, then a bias-free identity classifier (Luo et al. 2019).

    ``forward(feature [B, in_dim]) -> (bn_feature [B, in_dim], logits [B, num_classes])``.
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"BNNeck needs in_dim >= 1 and num_classes >= 1, got {in_dim} and {num_classes}")
        self.bn = nn.BatchNorm1d(in_dim)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        self.bn.apply(init_kaiming)
        self.classifier.apply(init_classifier)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        if feature.ndim != 2 or feature.shape[1] != self.bn.num_features:
            raise ValueError(f"BNNeck expects features [B, {self.bn.num_features}], got {list(feature.shape)}")
        bn_feature = self.bn(feature)
        return bn_feature, self.classifier(bn_feature)


class GeM(nn.Module):
    """Generalised-mean pooling [B, C, H, W] -> [B, C]: ``(mean_hw clamp(x, eps)^p)^(1/p)``.

    p = 1 is average pooling, p -> ∞ approaches max pooling. ``learnable=False`` (default) keeps p fixed as AGW
    does; ``learnable=True`` makes p a parameter (Radenović et al.). Values are clamped at ``eps`` (Radenović et
    al.; AGW instead adds 1e-12 after the mean — the same on its non-negative post-ReLU maps up to ~eps).
    """

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM needs p > 0, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p))) if learnable else float(p)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"GeM expects feature maps [B, C, H, W], got {list(x.shape)}")
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        p = self.p.item() if isinstance(self.p, Tensor) else self.p
        return f"p={p:.4g}, learnable={isinstance(self.p, Tensor)}, eps={self.eps}"
