"""DENet (Zheng et al., "Dynamic Enhancement Network for Partial Multi-modality Person Re-identification"):
the model of :mod:`reidlab.models.denet` and the loss of :mod:`reidlab.losses.denet` (Eq. 14).

Recipe keys: ``model.backbone`` and the other :class:`~reidlab.models.denet.DENet` arguments
(``enhancement``, ``generator``, ``dropout``, ``proj_dim``, ``cmft_width``, ``dem_reduction``, ``pretrained``,
backbone options such as ``last_stride``); ``loss.rho`` (ρ, L_rec), ``loss.mu`` (μ, L_sim), ``loss.adversarial``
(GAN variant), and the ReID loss keys of :func:`reidlab.methods.reid_criterion` (``label_smoothing``, ``margin``,
``metric``, ``id_weight``, ``metric_weight``); any other loss key is an error (a typo would silently do nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from reidlab.data.records import MODALITIES
from reidlab.methods import check_loss_keys, register_method, reid_criterion
from reidlab.recipes import Recipe

_LOSS_KEYS = ("rho", "mu", "adversarial", "metric", "margin", "label_smoothing", "id_weight", "metric_weight")


@register_method("denet")
def _denet(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    from reidlab.losses.denet import DENetCriterion
    from reidlab.models.denet import HEADS, DENet

    if tuple(modalities) != MODALITIES:
        raise ValueError(f"DENet needs the three modalities {MODALITIES} (RGBNT201/RGBNT100-style data); the "
                         f"dataset {recipe.dataset!r} has {tuple(modalities)}")
    check_loss_keys(recipe, _LOSS_KEYS, "DENet")
    options = dict(recipe.model)
    model = DENet(options.pop("backbone"), num_classes, img_size=tuple(recipe.data["size"]), **options)
    loss = recipe.loss
    criterion = DENetCriterion(reid_criterion(num_classes, loss, names=HEADS), rho=loss.get("rho", 1.0),
                               mu=loss.get("mu", 1.0), adversarial=loss.get("adversarial", 1.0))
    return model, criterion
