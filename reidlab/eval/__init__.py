"""Evaluation: retrieval metrics (CMC, mAP, mINP), protocols, missing-modality settings."""

from reidlab.eval.metrics import (
    RetrievalResult,
    evaluate,
    evaluate_distmat,
    evaluate_features_file,
    mean_std,
    pairwise_distance,
)
from reidlab.eval.missing import MISSING_SETTINGS, apply_missing, missing_mask, random_missing_masks
from reidlab.eval.protocols import PROTOCOLS, Labels, Protocol, get_protocol

__all__ = [
    "MISSING_SETTINGS",
    "PROTOCOLS",
    "Labels",
    "Protocol",
    "RetrievalResult",
    "apply_missing",
    "evaluate",
    "evaluate_distmat",
    "evaluate_features_file",
    "get_protocol",
    "mean_std",
    "missing_mask",
    "pairwise_distance",
    "random_missing_masks",
]
