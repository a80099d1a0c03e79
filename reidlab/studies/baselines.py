"""The matched baseline of a method recipe: the same backbone, data, solver and schedule, without the method.

A paper's gain is only meaningful against a baseline trained exactly like the method: same dataset and
synthetic tree, same augmentation and sampler (``data``), same optimiser, learning rate, schedule, epochs and
seed (``train``), same evaluation options, and the same backbone with the same pre-trained weights. Only the
method's own modules (and its loss) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reidlab.recipes import Recipe, load_recipe

#: Recipe sections copied from the method to its baseline unchanged.
MATCHED_SECTIONS = ("dataset_options", "synthetic", "data", "train", "eval")


def matched_baseline(recipe: Recipe, *, method_only: Sequence[str], baseline: str = "baseline_multimodal",
                     **model: Any) -> Recipe:
    """``baseline`` (a recipe name) in ``recipe``'s profile and dataset, with ``recipe``'s sections
    :data:`MATCHED_SECTIONS` and its ``model`` keys except ``method_only`` (the method's own switches, where a
    profile sets them), then ``model`` overrides (e.g. ``shared=True``). The baseline keeps its own loss."""
    base = load_recipe(baseline, recipe.profile, dataset=recipe.dataset, data_root=recipe.data_root)
    shared = {k: v for k, v in recipe.model.items() if k not in method_only}
    same = {section: getattr(recipe, section) for section in MATCHED_SECTIONS}
    return base.override({**same, "model": {**base.model, **shared, **model}})
