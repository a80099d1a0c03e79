"""Engine: the training loop, feature extraction, evaluation wiring and the recipe-to-run glue."""

from reidlab.engine.evaluation import (
    TrialResults,
    evaluate_features,
    evaluate_missing,
    evaluate_missing_rates,
    evaluate_model,
    evaluate_model_features,
    evaluate_regdb_trials,
    evaluate_sysu_trials,
    results_frame,
)
from reidlab.engine.features import FeatureSet, extract_features
from reidlab.engine.trainer import History, TrainConfig, fit

__all__ = [
    "FeatureSet",
    "History",
    "TrainConfig",
    "TrialResults",
    "evaluate_features",
    "evaluate_missing",
    "evaluate_missing_rates",
    "evaluate_model",
    "evaluate_model_features",
    "evaluate_regdb_trials",
    "evaluate_sysu_trials",
    "extract_features",
    "fit",
    "results_frame",
]
