"""Checks that features can be ranked meaningfully, run before :func:`reidlab.eval.evaluate`.

Ranking L2-normalises every row, then sorts the gallery by distance. Degenerate features make that
silent nonsense: a row of zeros has no direction (every gallery item ties and the order of the
gallery file decides the ranks), a row whose norm overflows normalises to zero or NaN, and a side whose
rows are all the same vector ranks nothing. The policy (:func:`check_features`):

* **refused** (:class:`~reidlab.errors.FeaturesError`): a NaN or infinite value; a row whose norm
  overflows in the features' own dtype (rescale them); every row of a side zero, or every row of a
  side (more than one) the same vector — no ranking is possible;
* **warned** (:class:`DegenerateFeaturesWarning`, the count given): some but not all rows zero. This
  is legitimate when a model emits zero features for an absent modality; those queries (or gallery
  items) are still scored, and their ranks follow the gallery order.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from reidlab.data.records import DataFormatError
from reidlab.errors import FeaturesError


class DegenerateFeaturesWarning(UserWarning):
    """Some rows are zero: scored, but ranked by gallery order (see the module policy)."""


def check_features(feats: np.ndarray, name: str, source: str = "features") -> int:
    """Apply the module's policy to one side ``[N, D]``; return the number of zero rows (warned about).

    ``name`` (``query_feats``) and ``source`` (a file) go into the messages.
    """
    feats = np.asarray(feats)
    where = f"{source}: {name}"
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise FeaturesError(f"{where}: expected a non-empty [num_rows, dim] array, got shape {feats.shape}")
    finite = np.isfinite(feats)
    if not finite.all():
        rows = int((~finite).any(axis=1).sum())
        raise FeaturesError(f"{where}: {rows} of {len(feats)} rows contain NaN or infinite values; "
                            "fix the feature extraction (a diverged model?)")
    dtype = feats.dtype if np.issubdtype(feats.dtype, np.floating) else np.dtype(np.float64)
    with np.errstate(over="ignore"):
        norms = np.sqrt(np.square(feats, dtype=dtype).sum(axis=1, dtype=dtype))
    overflow = int((~np.isfinite(norms)).sum())
    if overflow:
        raise FeaturesError(f"{where}: the L2 norm of {overflow} of {len(feats)} rows overflows {dtype} "
                            f"(largest |value| {float(np.abs(feats).max()):.3g}); rescale the features "
                            "(e.g. divide by their maximum) before saving them")
    zero = int((norms == 0).sum())
    if zero == len(feats):
        raise FeaturesError(f"{where}: all {len(feats)} rows are zero; they have no direction, so any ranking "
                            "would only follow the gallery order")
    if len(feats) > 1 and (feats == feats[0]).all():
        raise FeaturesError(f"{where}: all {len(feats)} rows are the same vector; every distance ties, so any "
                            "ranking would only follow the gallery order")
    if zero:
        warnings.warn(f"{where}: {zero} of {len(feats)} rows are zero; they are scored, but their ranks follow "
                      "the gallery order (expected only for absent modalities)", DegenerateFeaturesWarning,
                      stacklevel=2)
    return zero


def check_feature_pair(query: np.ndarray, gallery: np.ndarray, source: str = "features") -> None:
    """:func:`check_features` on the query and the gallery side."""
    check_features(query, "query_feats", source)
    check_features(gallery, "gallery_feats", source)


def check_features_file(path: str | Path) -> None:
    """Open the ``.npz`` of ``reidlab evaluate`` and check its ``query_feats``/``gallery_feats`` (when present;
    :func:`reidlab.eval.evaluate_features_file` names missing keys). An empty, truncated or foreign file is a
    :class:`~reidlab.data.records.DataFormatError` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            sides = {key: npz[key] for key in ("query_feats", "gallery_feats") if key in npz.files}
    except FileNotFoundError:
        raise DataFormatError(f"{path}: features file not found") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, AttributeError, TypeError) as e:
        raise DataFormatError(f"{path}: not a readable .npz archive of named arrays ({type(e).__name__}: {e}); "
                              "it is empty, truncated or another format: save it again with numpy.savez") from None
    for key, feats in sides.items():
        if feats.ndim == 2 and np.issubdtype(feats.dtype, np.floating):  # other shapes: the evaluator's message
            check_features(feats, key, str(path))


__all__ = ["DegenerateFeaturesWarning", "check_feature_pair", "check_features", "check_features_file"]
