"""The method registry: recipe ``method`` name -> builder of ``(model, criterion)``.

A builder receives the resolved :class:`~reidlab.recipes.Recipe`, the number of training identities
and the dataset's modalities, and returns a model and a criterion that follow the contracts of
:mod:`reidlab.engine.trainer` (``model(batch) -> outputs``, ``criterion(outputs, batch) -> {term: loss}``;
a criterion's ``epoch_hook(epoch, model, loader)`` method, if it has one, runs at the start of every epoch,
e.g. to fill a memory).
Each method lives in its own module of this package (``baselines``, ``coen``, ``denet``, ...) and
registers itself with :func:`register_method`, like timm's model registry. Every module of the
package is imported with the package (adding a method is adding a file); a module imports its model and
loss code inside the builder, so filling the registry (:func:`list_methods`) loads no model code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence

from torch import nn

from reidlab.losses.reid import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss, WeightedRegularizedTriplet
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


def list_methods() -> list[str]:
    """The registered method names (the ``method`` of a recipe), sorted."""
    return sorted(METHODS)


def build_method(recipe: Recipe, num_classes: int, modalities: Sequence[str]) -> tuple[nn.Module, nn.Module]:
    """The model and criterion of ``recipe.method`` for ``num_classes`` training identities."""
    if recipe.method not in METHODS:
        raise ValueError(f"unknown method {recipe.method!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[recipe.method](recipe, num_classes, modalities)


def check_loss_keys(recipe: Recipe, allowed: Sequence[str], method: str) -> None:
    """Reject ``recipe.loss`` keys that ``method`` does not read: a typo would otherwise be ignored silently."""
    unknown = sorted(set(recipe.loss) - set(allowed))
    if unknown:
        raise ValueError(f"recipe {recipe.name!r}: unknown loss keys {unknown} for {method}; "
                         f"expected {', '.join(allowed)}")


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


for _module in pkgutil.iter_modules(__path__):  # fill the registry (after the names the modules import)
    importlib.import_module(f"{__name__}.{_module.name}")
