"""The method registry: recipe ``method`` name -> builder of ``(model, criterion)``.

A builder receives the resolved :class:`~reidlab.recipes.Recipe`, the number of training identities
and the dataset's modalities, and returns a model and a criterion that follow the contracts of
:mod:`reidlab.engine.trainer` (``model(batch) -> outputs``, ``criterion(outputs, batch) -> {term: loss}``).
Each paper module registers its method here, like timm's model registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from reidlab.losses.reid import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss, WeightedRegularizedTriplet
from reidlab.models.baseline import CrossModalBaseline, MultiModalBaseline
from reidlab.recipes import Recipe

MethodBuilder = Callable[[Recipe, int, Sequence[str]], tuple[nn.Module, nn.Module]]
METHODS: dict[str, MethodBuilder] = {}


def register_method(name: str) -> Callable[[MethodBuilder], MethodBuilder]:
    def decorator(builder: MethodBuilder) -> MethodBuilder:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = builder
        return builder
    return decorator


def build_method(recipe: Recipe, num_classes: int, modalities: Sequence[str]) -> tuple[nn.Module, nn.Module]:
    """The model and criterion of ``recipe.method`` for ``num_classes`` training identities."""
    if recipe.method not in METHODS:
        raise ValueError(f"unknown method {recipe.method!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[recipe.method](recipe, num_classes, modalities)


def reid_criterion(num_classes: int, loss: dict, names: Sequence[str] | None = None) -> ReIDCriterion:
    """Label-smoothed CE + a metric loss (``metric``: ``triplet`` with ``margin`` (None = soft margin) or
    ``wrt``), each with its weight — the loss of every baseline (Bag of Tricks; AGW for ``wrt``).
    ``names`` restricts both losses to those outputs (default: every output)."""
    metric = loss.get("metric", "triplet")
    if metric == "triplet":
        metric_loss = TripletLoss(margin=loss.get("margin", 0.3))
    elif metric == "wrt":
        metric_loss = WeightedRegularizedTriplet()
    else:
        raise ValueError(f"loss.metric must be 'triplet' or 'wrt', got {metric!r}")
    return ReIDCriterion(CrossEntropyLabelSmooth(num_classes, epsilon=loss.get("label_smoothing", 0.1)),
                         metric_loss, id_weight=loss.get("id_weight", 1.0),
                         metric_weight=loss.get("metric_weight", 1.0), names=names)


@register_method("baseline_multimodal")
def _multimodal_baseline(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    """Each branch is trained on its own (CE + triplet on its features), as in the reference multi-branch
    baselines; the concatenated ``fused`` feature is used at test time only. So a single-modality model
    gets exactly the loss of one branch of the three-modality model."""
    options = dict(recipe.model)
    chosen = tuple(options.pop("modalities", modalities))
    model = MultiModalBaseline(options.pop("backbone"), chosen, num_classes,
                               img_size=tuple(recipe.data["size"]), **options)
    return model, reid_criterion(num_classes, recipe.loss, names=chosen)


@register_method("baseline_crossmodal")
def _crossmodal_baseline(recipe: Recipe, num_classes: int, modalities: Sequence[str]):
    options = dict(recipe.model)
    model = CrossModalBaseline(options.pop("backbone"), num_classes, modalities=tuple(modalities),
                               img_size=tuple(recipe.data["size"]), **options)
    return model, reid_criterion(num_classes, recipe.loss)
