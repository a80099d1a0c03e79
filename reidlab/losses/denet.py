"""DENet's objective (Zheng et al., "Dynamic Enhancement Network for Partial Multi-modality Person
Re-identification", §III-B and §III-D, Eq. 3, 4, 10–14):

    L = L_ReID + ρ·L_rec + μ·L_sim        (Eq. 14, ρ = μ = 1)

- **L_ReID** (Eq. 10–13): the label-smoothed cross-entropy (β = ``label_smoothing``) on the BN features' logits
  and the batch-hard triplet loss (margin α) on the pooled features before BN, applied to each of the heads
  ``rgb``, ``nir``, ``tir`` (the F_c1 parts) and ``final`` (F_final) — the paper's "all the triplet loss and
  cross entropy loss we used" (:class:`reidlab.losses.reid.ReIDCriterion`).
- **L_rec** (Eq. 3): ``||X_t − X'_t||²`` between the real (normalised) target image and CMFT's fake image, for
  every direction ``s -> t``.
- **L_sim** (Eq. 4): ``||θ_t(G(F_t)) − θ'_t(G(F'_t))||₁`` between the projected pooled real and recovered
  features, for every direction.

Ambiguities: the paper writes Eq. 3–4 for one direction and one image, as norms. We use *means* — the pixel mean
squared error of each image (MSE) and the mean absolute difference of each projected vector — averaged over every
(sample, direction) pair whose source and target images are both present (all pairs on complete training data),
so ρ and μ keep their meaning whatever the image size, projection width or number of directions. A term whose
weight is 0 is left out (not computed). The targets are not detached (the paper trains end to end).

The GAN variant (``generator="gan"``, Table VI) has no fake image and so no L_rec; it adds the non-saturating
adversarial loss ``adv = adversarial·BCE(D(G(F_s)), 1)`` for the generators and ``disc = [BCE(D(F_t), 1) +
BCE(D(G(F_s)), 0)] / 2`` for the discriminators (unweighted: it trains the discriminators only), reading the
logits the model computed with detached inputs (``real``/``fake``) and detached discriminator parameters
(``generated``), so one backward pass of the summed terms updates each side with its own loss only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlab.data.records import MODALITIES
from reidlab.losses.reid import ReIDCriterion


def _direction(name: str) -> tuple[int, int]:
    source, _, target = name.partition("2")
    if source not in MODALITIES or target not in MODALITIES or source == target:
        raise ValueError(f"unknown CMFT direction {name!r}; expected names like 'rgb2nir'")
    return MODALITIES.index(source), MODALITIES.index(target)


def _pair_mask(name: str, present: Tensor) -> Tensor:
    s, t = _direction(name)
    return present[:, s] & present[:, t]


def _masked_mean(values: dict[str, Tensor], present: Tensor) -> Tensor:
    """Mean of the per-sample values [B] of every direction over the (sample, direction) pairs with both images."""
    if not values:
        raise ValueError("no CMFT directions to compute the loss on")
    masks = {name: _pair_mask(name, present).to(v.dtype) for name, v in values.items()}
    total = sum((v * masks[name]).sum() for name, v in values.items())
    return total / sum(m.sum() for m in masks.values()).clamp(min=1.0)


def reconstruction_loss(fake_images: Mapping[str, Tensor], images: Tensor, present: Tensor) -> Tensor:
    """L_rec (Eq. 3): pixel MSE between each fake image ``fake_images["s2t"]`` [B, 3, H, W] and the real target
    image ``images[:, t]`` (``images`` [B, 3, 3, H, W]), averaged over the present (source, target) pairs."""
    per_sample = {}
    for name, fake in fake_images.items():
        target = images[:, _direction(name)[1]]
        if fake.shape != target.shape:
            raise ValueError(f"fake image {name!r} has shape {tuple(fake.shape)}, the real target image "
                             f"{tuple(target.shape)}; L_rec compares them at the input resolution")
        per_sample[name] = (fake.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return _masked_mean(per_sample, present)


def similarity_loss(pairs: Mapping[str, tuple[Tensor, Tensor]], present: Tensor) -> Tensor:
    """L_sim (Eq. 4): mean absolute difference between θ_t(G(F_t)) and θ'_t(G(F'_t)) ([B, P] each), averaged over
    the present (source, target) pairs."""
    per_sample = {name: (real.float() - recovered.float()).abs().mean(dim=1)
                  for name, (real, recovered) in pairs.items()}
    return _masked_mean(per_sample, present)


def adversarial_losses(logits: Mapping[str, Mapping[str, Tensor]], present: Tensor) -> tuple[Tensor, Tensor]:
    """(generator loss, discriminator loss) of the GAN variant, averaged over the present pairs."""
    def bce(x: Tensor, target: float) -> Tensor:
        return F.binary_cross_entropy_with_logits(x.float(), torch.full_like(x.float(), target), reduction="none")

    generator = _masked_mean({n: bce(d["generated"], 1.0) for n, d in logits.items()}, present)
    discriminator = _masked_mean({n: (bce(d["real"], 1.0) + bce(d["fake"], 0.0)) / 2 for n, d in logits.items()},
                                 present)
    return generator, discriminator


class DENetCriterion(nn.Module):
    """Eq. 14: ``reid`` terms (``id/<head>``, ``tri/<head>``) + ``rec`` = ρ·L_rec + ``sim`` = μ·L_sim (+ ``adv``,
    ``disc`` for the GAN variant). ``criterion(outputs, batch) -> {term: weighted scalar}``."""

    def __init__(self, reid: ReIDCriterion, rho: float = 1.0, mu: float = 1.0, adversarial: float = 1.0) -> None:
        super().__init__()
        for name, value in (("rho", rho), ("mu", mu), ("adversarial", adversarial)):
            if value < 0:
                raise ValueError(f"DENet loss weight {name} must be >= 0, got {value}")
        self.reid, self.rho, self.mu, self.adversarial = reid, float(rho), float(mu), float(adversarial)

    def forward(self, outputs: Mapping[str, object], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        terms = dict(self.reid(outputs, batch))
        images = batch["images"]
        present = batch.get("present")
        if present is None:
            present = torch.ones(images.shape[0], len(MODALITIES), dtype=torch.bool, device=images.device)
        if self.rho > 0 and outputs.get("fake_images"):
            terms["rec"] = self.rho * reconstruction_loss(outputs["fake_images"], images, present)
        if self.mu > 0:
            terms["sim"] = self.mu * similarity_loss(outputs["sim_pairs"], present)
        if self.adversarial > 0 and "adversarial" in outputs:
            generator, discriminator = adversarial_losses(outputs["adversarial"], present)
            terms["adv"] = self.adversarial * generator
            terms["disc"] = discriminator
        return terms
