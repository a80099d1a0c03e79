"""The two baselines: the multi-modal multi-branch model and the cross-modal two-stream model."""

from __future__ import annotations

from collections.abc import Sequence

from reidlab.methods import register_method, reid_criterion
from reidlab.recipes import Recipe


@register_method("baseline_multimodal")
def _multimodal_baseline(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    """Each branch is trained on its own (CE + triplet on its features), as in the reference multi-branch
    baselines; the concatenated ``fused`` feature is used at test time only. So a single-modality model
    gets exactly the loss of one branch of the three-modality model."""
    from reidlab.models.baseline import MultiModalBaseline

    options = dict(recipe.model)
    chosen = tuple(options.pop("modalities", modalities))
    model = MultiModalBaseline(options.pop("backbone"), chosen, num_classes,
                               img_size=tuple(recipe.data["size"]), **options)
    return model, reid_criterion(num_classes, recipe.loss, names=chosen)


@register_method("baseline_crossmodal")
def _crossmodal_baseline(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    from reidlab.models.baseline import CrossModalBaseline

    options = dict(recipe.model)
    model = CrossModalBaseline(options.pop("backbone"), num_classes, modalities=tuple(modalities),
                               img_size=tuple(recipe.data["size"]), **options)
    return model, reid_criterion(num_classes, recipe.loss)
