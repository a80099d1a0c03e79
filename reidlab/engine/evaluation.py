"""Evaluation wiring: a model and a :class:`~reidlab.data.records.Split` in, retrieval metrics out.

Every helper extracts features with :func:`~reidlab.engine.features.extract_features` (query and
gallery separately; once when the query and gallery lists hold the same records, as RGBNT201's
test set) and ranks them with :func:`reidlab.eval.evaluate` under the split's protocol.

Tables (:func:`results_frame`, :func:`evaluate_missing`, :func:`evaluate_missing_rates`,
:class:`TrialResults`) report percentages in the columns :data:`COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import pandas as pd
import torch
from torch import nn

from reidlab.data.loading import build_test_loader
from reidlab.data.records import Record, Split
from reidlab.data.transforms import Transform
from reidlab.engine.distributed import resolve_device
from reidlab.engine.features import FeatureSet, extract_features
from reidlab.eval.checks import check_feature_pair
from reidlab.eval.metrics import RetrievalResult, evaluate, mean_std
from reidlab.eval.missing import MISSING_SETTINGS, random_missing_masks
from reidlab.eval.protocols import Protocol

#: Table columns (percent) and the :meth:`RetrievalResult.summary` / :func:`mean_std` key of each.
COLUMNS: dict[str, str] = {"mAP": "mAP", "R-1": "rank1", "R-5": "rank5", "R-10": "rank10", "mINP": "mINP"}


def evaluate_features(query: FeatureSet, gallery: FeatureSet, protocol: str | Protocol, feature: str,
                      device: str | torch.device | None = None) -> RetrievalResult:
    """Rank ``gallery`` for every row of ``query`` on feature ``feature`` under ``protocol``.

    Degenerate features are refused or warned about first (:mod:`reidlab.eval.checks`)."""
    check_feature_pair(query.select(feature).detach().float().cpu().numpy(),
                       gallery.select(feature).detach().float().cpu().numpy(),
                       f"feature {feature!r}")
    return evaluate(query.select(feature), gallery.select(feature), query.pids, gallery.pids, query.camids,
                    gallery.camids, protocol, query.sceneids, gallery.sceneids, device=device)


def evaluate_model_features(model: nn.Module, split: Split, transform: Transform, *,
                            features: Sequence[str] | None = None, flip: bool = False,
                            missing: str | float | None = None, missing_seed: int = 0, batch_size: int = 128,
                            device: str | torch.device = "auto", protocol: str | Protocol | None = None,
                            num_workers: int = 0, progress: bool = True) -> dict[str, RetrievalResult]:
    """Evaluate several features of one extraction (e.g. ``"fused"``, ``"rgb"``, ``"nir"``, ``"tir"``).

    ``features=None`` evaluates every feature ``model.extract`` returns. The loader stacks
    ``model.modalities`` (default: ``split.modalities``). ``missing`` is a setting name or a
    missing rate η applied to query **and** gallery; for a rate, one mask is drawn over the query
    and gallery samples together and split (DENet; a single draw when query = gallery).
    ``protocol`` defaults to ``split.protocol``.
    """
    dev = resolve_device(device)
    modalities = tuple(getattr(model, "modalities", split.modalities))
    shared = split.query == split.gallery
    masks = _rate_masks(missing, len(split.query), 0 if shared else len(split.gallery), missing_seed)

    def extract(records: list[Record], side: str, mask: torch.Tensor | None) -> FeatureSet:
        loader = build_test_loader(records, transform, batch_size, modalities=modalities, num_workers=num_workers)
        return extract_features(model, loader, flip=flip, missing=missing if mask is None else mask,
                                device=dev, progress=progress, names=features, desc=f"{split.benchmark} {side}")

    query = extract(split.query, "query + gallery" if shared else "query", masks[0])
    gallery = query if shared else extract(split.gallery, "gallery", masks[1])
    protocol = split.protocol if protocol is None else protocol
    return {name: evaluate_features(query, gallery, protocol, name, device=dev) for name in query.names}


def evaluate_model(model: nn.Module, split: Split, transform: Transform, *, feature: str | None = None,
                   **kwargs) -> RetrievalResult:
    """Evaluate ``model`` on ``split`` with feature ``feature`` (default ``model.default_feature``).

    ``kwargs``: ``flip``, ``missing``, ``missing_seed``, ``batch_size``, ``device``, ``protocol``,
    ``num_workers``, ``progress`` as in :func:`evaluate_model_features`.
    """
    feature = model.default_feature if feature is None else feature
    return evaluate_model_features(model, split, transform, features=[feature], **kwargs)[feature]


def evaluate_missing(model: nn.Module, split: Split, transform: Transform,
                     settings: Iterable[str] = tuple(MISSING_SETTINGS), **kwargs) -> pd.DataFrame:
    """One row per missing-modality setting (``complete``, ``M(R)`` ... ``M(NT)``), metrics in percent.

    Features are extracted once per setting. ``kwargs`` as in :func:`evaluate_model`.
    """
    return results_frame({s: evaluate_model(model, split, transform, missing=s, **kwargs) for s in settings},
                         index_name="setting")


def evaluate_missing_rates(model: nn.Module, split: Split, transform: Transform, rates: Iterable[float],
                           seeds: Iterable[int] = (0,), **kwargs) -> pd.DataFrame:
    """DENet's random missing rate η (Fig. 5d): mean and std over ``seeds`` of each metric, per rate.

    Index ``rate``; columns ``mAP``, ``mAP_std``, ``R-1``, ``R-1_std``, ... in percent (std with
    ddof=1, 0 for one seed) and ``seeds``. Each seed draws its own mask (see
    :func:`evaluate_model_features`). ``kwargs`` as in :func:`evaluate_model`.
    """
    seeds = list(seeds)
    rows = {}
    for rate in rates:
        results = [evaluate_model(model, split, transform, missing=float(rate), missing_seed=seed, **kwargs)
                   for seed in seeds]
        summary = mean_std(results)
        row = {}
        for column, key in COLUMNS.items():
            row[column] = 100 * summary[key]["mean"]
            row[f"{column}_std"] = 100 * summary[key]["std"]
        rows[float(rate)] = row | {"seeds": len(seeds)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "rate"
    return frame


@dataclass
class TrialResults:
    """Results of repeated trials (SYSU-MM01 gallery draws, RegDB splits) and their mean ± std."""

    results: list[RetrievalResult]
    trials: list[int]

    def summary(self) -> dict:
        """:func:`reidlab.eval.mean_std` of the trials (fractions, JSON-ready)."""
        return mean_std(self.results)

    def to_frame(self) -> pd.DataFrame:
        """One row per trial (index ``trial``), columns :data:`COLUMNS` in percent."""
        return results_frame(dict(zip(self.trials, self.results, strict=True)), index_name="trial")

    def table(self, decimals: int = 2) -> pd.DataFrame:
        """One row ``"mean ± std"`` of strings such as ``"55.12 ± 1.03"`` (percent, std with ddof=1)."""
        summary = self.summary()
        cells = {column: f"{100 * summary[key]['mean']:.{decimals}f} ± {100 * summary[key]['std']:.{decimals}f}"
                 for column, key in COLUMNS.items()}
        return pd.DataFrame([cells], index=["mean ± std"])

    def format(self, decimals: int = 2) -> str:
        return self.table(decimals).to_string()


def evaluate_sysu_trials(model: nn.Module, trials: Iterable[Split], transform: Transform, *,
                         feature: str | None = None, flip: bool = False, batch_size: int = 128,
                         device: str | torch.device = "auto", num_workers: int = 0,
                         progress: bool = True) -> TrialResults:
    """SYSU-MM01's 10 trials (:func:`reidlab.data.formats.sysu_mm01.sysu_trials`): mean ± std.

    The trials must share the query records; the query and the union of the trial galleries are
    extracted once, and each trial's gallery is indexed from the union. ``Split.info["trial"]``
    labels the trials (default 0, 1, ...).
    """
    trials = list(trials)
    if not trials:
        raise ValueError("evaluate_sysu_trials needs at least one trial split")
    for i, split in enumerate(trials[1:], start=1):
        if split.query != trials[0].query:
            raise ValueError(f"trial split {i} has other query records than trial split 0; SYSU-MM01 trials "
                             f"share the query and differ only in the gallery")
    feature = model.default_feature if feature is None else feature
    dev = resolve_device(device)
    modalities = tuple(getattr(model, "modalities", trials[0].modalities))
    position: dict[tuple, int] = {}
    union: list[Record] = []
    for record in (r for split in trials for r in split.gallery):
        if _identity(record) not in position:
            position[_identity(record)] = len(union)
            union.append(record)

    def extract(records: list[Record], side: str) -> FeatureSet:
        loader = build_test_loader(records, transform, batch_size, modalities=modalities, num_workers=num_workers)
        return extract_features(model, loader, flip=flip, device=dev, progress=progress, names=[feature],
                                desc=f"{trials[0].benchmark} {side}")

    query = extract(trials[0].query, "query")
    galleries = extract(union, f"gallery (union of {len(trials)} trials)")
    results = [evaluate_features(query, galleries.take([position[_identity(r)] for r in split.gallery]),
                                 split.protocol, feature, device=dev) for split in trials]
    return TrialResults(results, [split.info.get("trial", i) for i, split in enumerate(trials)])


def evaluate_regdb_trials(model_for_trial: Callable[[int], nn.Module], split_for_trial: Callable[[int], Split],
                          transform: Transform, *, trials: Iterable[int] = range(1, 11),
                          **kwargs) -> TrialResults:
    """RegDB's 10 trials, each with its own model: ``model_for_trial(t)`` evaluated on ``split_for_trial(t)``.

    ``model_for_trial`` typically trains (or loads the cached run of) trial ``t``; it is called
    once per trial, in order, after ``split_for_trial(t)``. ``kwargs`` as in :func:`evaluate_model`.
    """
    trials = list(trials)
    results = []
    for trial in trials:
        split = split_for_trial(trial)
        results.append(evaluate_model(model_for_trial(trial), split, transform, **kwargs))
    return TrialResults(results, trials)


def results_frame(results: Mapping[Hashable, RetrievalResult], index_name: str | None = None) -> pd.DataFrame:
    """Named :class:`RetrievalResult` s as a table: one row per name, columns :data:`COLUMNS` in percent."""
    rows = {name: {column: 100 * result.summary()[key] for column, key in COLUMNS.items()}
            for name, result in results.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    frame.index.name = index_name
    return frame


def _rate_masks(missing: str | float | None, num_query: int, num_gallery: int,
                seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """For a missing rate: one mask over query + gallery, split (``num_gallery=0``: query = gallery)."""
    if missing is None or isinstance(missing, str):
        return None, None
    if isinstance(missing, bool) or not isinstance(missing, Real):
        raise ValueError(f"missing must be a setting name ({', '.join(MISSING_SETTINGS)}) or a missing rate, "
                         f"got {type(missing).__name__}")
    mask = random_missing_masks(num_query + num_gallery, float(missing), seed)
    return mask[:num_query], mask[num_query:]


def _identity(record: Record) -> tuple:
    """A hashable identity of a record (its images, labels and key)."""
    return tuple(sorted(record.images.items())), record.pid, record.camid, record.sceneid, record.key
