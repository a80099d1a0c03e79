"""MFRNet (Feng et al., "Multi-Modal Object Re-Identification via Sparse Mixture-of-Experts", ICML 2025):
:class:`~reidlab.models.mfrnet.MFRNet` with the Eq. 15 criterion :class:`~reidlab.losses.mfrnet.MFRNetCriterion`.

Recipe keys (every one is declared in ``reidlab/recipes/mfrnet.yaml``'s defaults, so overrides are type-checked):

``model`` — ``backbone`` (a ViT), ``pretrained``, ``checkpoint``; FFM: ``ffm`` (on/off, Table 5), ``ffm_position``
(Table 10: 0 = before the ViT blocks, k = after block k), ``ffm_experts`` (Table 8), ``ffm_hidden``, ``lambda``
(λ of Eq. 2, Table 9; passed as ``lambda_``), ``ffm_aux_calls`` (``mean`` | ``last``); FRM: ``frm`` (Table 5),
``frm_experts`` (Table 6), ``frm_layers`` (Table 7, block indices, negative from the end), ``frm_hidden``,
``frm_scale``; both MoEs: ``shared_experts`` (the code: true), ``capacity_factor`` (0 or null = dropless; the
code: 1.0), ``expert_dropout``, ``router_dim``, ``router_tau``, ``router_learnable_tau``, ``router_min_tau``,
``router_noise``, ``load_loss`` (``logit`` | ``tutel``); ``head`` (``concat`` | ``per_modality``), ``missing``
(``reconstruct`` | ``zero_fill``), ``missing_rule`` (``paper`` | ``code``); any timm keyword (``drop_path_rate``).

``loss`` — ``id_weight`` (the paper 1, the code 0.25), ``metric_weight`` (triplet), ``margin`` (null = soft
margin), ``label_smoothing``, ``ffm_aux_weight`` (0.01 on the mean of the calls; the code 0.12 on the last call),
``frm_aux_weight`` (0.01).
"""

from __future__ import annotations

from collections.abc import Sequence

from reidlab.methods import check_loss_keys, register_method
from reidlab.recipes import Recipe

_LOSS_KEYS = ("id_weight", "metric_weight", "margin", "label_smoothing", "ffm_aux_weight", "frm_aux_weight")


@register_method("mfrnet")
def _mfrnet(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    from reidlab.losses.mfrnet import MFRNetCriterion
    from reidlab.models.mfrnet import MODALITIES, MFRNet

    if tuple(modalities) != MODALITIES:
        raise ValueError(f"MFRNet needs the three modalities {MODALITIES}, the dataset {recipe.dataset!r} has "
                         f"{tuple(modalities)}")
    check_loss_keys(recipe, _LOSS_KEYS, "MFRNet")
    options = dict(recipe.model)
    if "lambda" in options:
        options["lambda_"] = options.pop("lambda")
    if "frm_layers" in options:
        options["frm_layers"] = tuple(options["frm_layers"])
    model = MFRNet(options.pop("backbone"), num_classes, img_size=tuple(recipe.data["size"]), **options)
    criterion = MFRNetCriterion(num_classes, head=model.head, **{k: recipe.loss[k] for k in _LOSS_KEYS
                                                                 if k in recipe.loss})
    return model, criterion
