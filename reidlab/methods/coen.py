"""CoEN (Zheng et al., "Collaborative Enhancement Network for Low-quality Multi-spectral Vehicle
Re-identification"): :class:`~reidlab.models.coen.CoEN` with the Eq. 16 criterion
:class:`~reidlab.losses.coen.CoENCriterion`.

Recipe keys: ``model`` — ``backbone`` (a ViT), ``pretrained``, ``checkpoint``, ``proxy`` (Table 4), ``sort``
(Table 6), ``enhancement`` (Tables 3 and 7), ``dropout`` (γ, Eq. 9–10) and any timm keyword (``drop_path_rate``);
``loss`` — ``lambda`` (λ, Eq. 16), ``margin`` (triplet, None = soft margin), ``label_smoothing``.
"""

from __future__ import annotations

from collections.abc import Sequence

from reidlab.methods import check_loss_keys, register_method
from reidlab.recipes import Recipe

_LOSS_KEYS = ("lambda", "margin", "label_smoothing")


@register_method("coen")
def _coen(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    from reidlab.losses.coen import CoENCriterion
    from reidlab.models.coen import MODALITIES, CoEN

    if tuple(modalities) != MODALITIES:
        raise ValueError(f"CoEN needs the three modalities {MODALITIES}, the dataset {recipe.dataset!r} has "
                         f"{tuple(modalities)}")
    check_loss_keys(recipe, _LOSS_KEYS, "CoEN")
    options = dict(recipe.model)
    model = CoEN(options.pop("backbone"), num_classes, img_size=tuple(recipe.data["size"]), **options)
    criterion = CoENCriterion(num_classes, lambda_=recipe.loss.get("lambda", 0.5),
                              margin=recipe.loss.get("margin", 0.3),
                              label_smoothing=recipe.loss.get("label_smoothing", 0.1))
    return model, criterion
