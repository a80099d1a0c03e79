"""PECA (Jing & Li, "Partial Enhancement and Channel Aggregation for Visible-Infrared Person Re-Identification",
IEICE 2025): :class:`~reidlab.models.peca.PECA` with the Eq. 11 criterion :class:`~reidlab.losses.peca.PECACriterion`.

Recipe keys: ``model`` — ``backbone`` (a ResNet), ``pretrained``, ``checkpoint``, ``pooling``, ``non_local``,
``channel_view`` (CAJ's view), ``ical``, ``ical_variants``, ``gsl``, ``gsl_target``, ``gsl_hidden`` and any timm
keyword; ``loss`` — ``metric`` (``ins`` | ``triplet`` | ``wrt``), ``negatives`` (|Q|), ``tau_ins``, ``modality``
(L_mod on/off), ``tau_mod``, ``lambda_m``, ``alpha``, ``mix_margin``, ``mix_squared``, ``triplet_margin``,
``label_smoothing``, ``refresh`` (re-initialise the centroid memory every epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

from reidlab.data.transforms import build_test_transform
from reidlab.methods import check_loss_keys, register_method
from reidlab.recipes import Recipe

_LOSS_KEYS = ("metric", "negatives", "tau_ins", "modality", "tau_mod", "lambda_m", "alpha", "mix_margin",
              "mix_squared", "triplet_margin", "label_smoothing", "refresh")


@register_method("peca")
def _peca(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    from reidlab.losses.peca import PECACriterion
    from reidlab.models.peca import PECA

    check_loss_keys(recipe, _LOSS_KEYS, "PECA")
    options = dict(recipe.model)
    size = tuple(recipe.data["size"])
    model = PECA(options.pop("backbone"), num_classes, modalities=tuple(modalities), img_size=size, **options)
    stats = {k: recipe.data[k] for k in ("mean", "std") if k in recipe.data}
    criterion = PECACriterion(num_classes, model.feature_dim, init_transform=build_test_transform(size, **stats),
                              **recipe.loss)
    return model, criterion
