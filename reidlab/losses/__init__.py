"""Losses: ReID losses shared by every method, plus per-method losses."""

from reidlab.losses.reid import (
    CrossEntropyLabelSmooth,
    ReIDCriterion,
    TripletLoss,
    WeightedRegularizedTriplet,
    euclidean_distances,
)

__all__ = ["CrossEntropyLabelSmooth", "ReIDCriterion", "TripletLoss", "WeightedRegularizedTriplet",
           "euclidean_distances"]
