"""MMCF (Sun, Du & Gao, "A Multimodule Collaborative Framework for Unsupervised Visible–Infrared Person
Re-Identification with Channel Enhancement Modality"; spec ``specs/mmcf.md``): :class:`~reidlab.models.mmcf.MMCF`
trained without identity labels by :class:`~reidlab.engine.mmcf.MMCFCriterion` (per-epoch clustering, two phases).

Recipe keys: ``model`` — ``backbone`` (a ViT), ``pretrained``, ``checkpoint``, ``num_regions`` (N), ``pa_cbam``,
``reduction`` (r), ``kernels`` (M-SA), ``channel_view`` (the CA modality), ``conv_stem`` (TransReID-SSL's
convolutional patch embedding, paper size) and any timm keyword; ``loss`` — every keyword of
:class:`~reidlab.engine.mmcf.MMCFCriterion` (``phase2_start``, the loss weights ``vra`` / ``vrnl`` / ``um`` /
``lambda_id`` / ``diversity``, ``maal`` and its settings, ``mu``, ``matching``, the clustering ``k1`` / ``k2`` /
``eps`` / ``min_samples``, ...); ``data`` — ``pipeline: unsupervised``, ``p`` × ``k`` clusters per modality and
``iters`` batches per epoch. A weight of 0 (or ``maal: false``, ``pa_cbam: false``) removes a module: the
ablation rows of Table 3 (:data:`reidlab.studies.mmcf.ABLATION`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from reidlab.data.transforms import build_test_transform
from reidlab.methods import check_loss_keys, register_method
from reidlab.recipes import Recipe

_BUILDER_KEYS = ("feature_dim", "init_transform", "p", "k", "iters", "seed")


@register_method("mmcf")
def _mmcf(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    """``num_classes`` is not used: MMCF learns from pseudo-labels, never from the training identities."""
    from reidlab.engine.mmcf import MMCFCriterion
    from reidlab.models.mmcf import MMCF, ReIDConvStemEmbed

    allowed = [name for name in inspect.signature(MMCFCriterion).parameters if name not in _BUILDER_KEYS]
    check_loss_keys(recipe, allowed, "MMCF")
    if recipe.data.get("pipeline") != "unsupervised":
        raise ValueError(f"recipe {recipe.name!r}: MMCF needs data.pipeline = unsupervised (no identity labels)")
    restarts = recipe.train.get("restarts", [])
    if restarts and restarts[0] != recipe.loss.get("phase2_start"):
        raise ValueError(f"recipe {recipe.name!r}: the learning rate restarts at epoch {restarts[0]} but phase 2 "
                         f"starts at loss.phase2_start = {recipe.loss.get('phase2_start')}")
    options = dict(recipe.model)
    if options.pop("conv_stem", False):
        options["embed_layer"] = ReIDConvStemEmbed
    size = tuple(recipe.data["size"])
    model = MMCF(options.pop("backbone"), img_size=size, modalities=tuple(modalities), **options)
    stats = {k: recipe.data[k] for k in ("mean", "std") if k in recipe.data}
    criterion = MMCFCriterion(model.feature_dim, init_transform=build_test_transform(size, **stats),
                              p=recipe.data["p"], k=recipe.data["k"], iters=recipe.data["iters"],
                              seed=recipe.train.get("seed", 0), **recipe.loss)
    return model, criterion
