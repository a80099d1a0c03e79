"""From a recipe to a trained, evaluated run — the few calls a notebook makes.

    recipe = load_recipe("baseline_multimodal", profile="tutorial")
    run = train(recipe)                 # cached by the hash of the recipe and the code
    run.evaluate().summary()            # {'mAP': ..., 'R-1': ...}
    run.evaluate(missing="M(N)")        # a missing-modality setting

``data.pipeline``: ``multimodal`` (P × K records, every modality), ``cross_modal`` (P identities × K visible + K
infrared), ``unsupervised`` (identity labels hidden; the criterion's ``epoch_hook`` builds each epoch's loader from
its pseudo-labels, e.g. MMCF). ``recipe.data_root=None`` trains on the recipe's synthetic tree (rendered once and
cached, see :mod:`reidlab.data.synthetic.cache`). Under ``torchrun`` the training loader is sharded across processes
and the model wrapped in DDP by the trainer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import default_collate

from reidlab.data.formats import load_split
from reidlab.data.formats.sysu_mm01 import sysu_trials
from reidlab.data.loading import ReIDDataset, build_test_loader, build_train_loader
from reidlab.data.records import Split, relabel
from reidlab.data.synthetic.cache import synthetic_tree
from reidlab.data.transforms import (
    Transform,
    build_cross_modal_train_transform,
    build_test_transform,
    build_train_transform,
)
from reidlab.engine import distributed
from reidlab.engine.cache import run_dir_for
from reidlab.engine.evaluation import (
    TrialResults,
    evaluate_missing,
    evaluate_model,
    evaluate_sysu_trials,
)
from reidlab.engine.features import FeatureSet, extract_features
from reidlab.engine.trainer import DONE, History, TrainConfig, fit
from reidlab.eval.metrics import RetrievalResult
from reidlab.methods import build_method
from reidlab.models.backbones import weights_loaded_next
from reidlab.recipes import Recipe

#: Recipe ``data`` keys that configure the loaders rather than the augmentation.
_LOADER_KEYS = ("size", "p", "k", "iters", "pipeline", "num_workers", "test_batch_size")


def dataset_root(recipe: Recipe) -> Path:
    """The real ``data_root``, or the recipe's synthetic tree (rendered on first use)."""
    if recipe.data_root is not None:
        return Path(recipe.data_root)
    return synthetic_tree(recipe.dataset, **recipe.synthetic)


def load_data(recipe: Recipe) -> Split:
    return load_split(recipe.dataset, dataset_root(recipe), **recipe.dataset_options)


def train_transform(recipe: Recipe) -> Transform:
    size = tuple(recipe.data["size"])
    augment = {k: v for k, v in recipe.data.items() if k not in _LOADER_KEYS}
    if recipe.data.get("pipeline", "multimodal") in ("cross_modal", "unsupervised"):
        return build_cross_modal_train_transform(size, **augment)
    return build_train_transform(size, **augment)


def test_transform(recipe: Recipe) -> Transform:
    """Resize + normalise; ``data.mean``/``data.std`` override ImageNet's (e.g. CLIP's statistics)."""
    stats = {k: recipe.data[k] for k in ("mean", "std") if k in recipe.data}
    return build_test_transform(tuple(recipe.data["size"]), **stats)


@dataclass
class Run:
    """A trained model with its recipe, data split and training history."""

    recipe: Recipe
    split: Split
    model: nn.Module
    criterion: nn.Module
    history: History
    run_dir: Path
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def transform(self) -> Transform:
        return test_transform(self.recipe)

    def _eval_options(self, overrides: dict) -> dict:
        options = {"flip": self.recipe.eval.get("flip", False),
                   "batch_size": self.recipe.data.get("test_batch_size", 128), "progress": False}
        options.update({k: v for k, v in overrides.items() if v is not None})
        return options

    def evaluate(self, *, feature: str | None = None, missing: str | float | None = None,
                 flip: bool | None = None, split: Split | None = None) -> RetrievalResult:
        """Query vs gallery under the split's protocol (``missing``: a setting like ``"M(N)"`` or a rate η)."""
        options = self._eval_options({"feature": feature, "missing": missing, "flip": flip})
        return evaluate_model(self.model, split or self.split, self.transform, **options)

    def evaluate_missing(self, settings=None, *, feature: str | None = None) -> pd.DataFrame:
        """Every missing-modality setting (default: all seven), one row each, metrics in percent."""
        options = self._eval_options({"feature": feature})
        if settings is not None:
            options["settings"] = settings
        return evaluate_missing(self.model, self.split, self.transform, **options)

    def evaluate_trials(self, num_trials: int = 10, *, feature: str | None = None) -> TrialResults:
        """SYSU-MM01's ten gallery trials (same query, one random gallery draw per trial)."""
        if self.recipe.dataset != "sysu_mm01":
            raise ValueError(f"evaluate_trials is the SYSU-MM01 protocol; this run is on {self.recipe.dataset!r} "
                             "(RegDB trials each need their own model: train one run per trial)")
        options = {k: v for k, v in self.recipe.dataset_options.items() if k != "trial"}
        trials = list(sysu_trials(dataset_root(self.recipe), num_trials=num_trials, **options))
        return evaluate_sysu_trials(self.model, trials, self.transform, **self._eval_options({"feature": feature}))

    def batch(self, part: str, indices: list[int]) -> dict:
        """Test-transformed samples ``indices`` of ``part`` (``train``, ``query``, ``gallery``) as one batch,
        with training labels (-1 for identities not in training) — for Grad-CAM and rank lists."""
        records = getattr(self.split, part)
        dataset = ReIDDataset([records[i] for i in indices], self.transform, self.model.modalities,
                              label_map=relabel(self.split.train))
        return default_collate([dataset[i] for i in range(len(dataset))])

    def features(self, part: str = "query", *, missing: str | float | None = None,
                 flip: bool | None = None) -> FeatureSet:
        """Features of one part of the split (``train``, ``query`` or ``gallery``)."""
        records = getattr(self.split, part)
        loader = build_test_loader(records, self.transform, self.recipe.data.get("test_batch_size", 128),
                                   modalities=getattr(self.model, "modalities", self.split.modalities))
        return extract_features(self.model, loader, flip=self.recipe.eval.get("flip", False) if flip is None else flip,
                                missing=missing, progress=False)


def train(recipe: Recipe, *, force: bool = False, device: str = "auto", progress: bool = True) -> Run:
    """Train ``recipe`` (or load its finished run from the cache) and return the :class:`Run`."""
    split = load_data(recipe)
    label_map = relabel(split.train)
    config = TrainConfig.from_dict(recipe.train)
    torch.manual_seed(config.seed)
    directory = run_dir(recipe)
    finished = not force and (directory / DONE).exists()  # fit loads its weights: no random-init warning
    with weights_loaded_next() if finished else contextlib.nullcontext():
        model, criterion = build_method(recipe, len(label_map), split.modalities)
    modalities = getattr(model, "modalities", split.modalities)
    if recipe.data.get("pipeline") == "unsupervised":
        # every record, identities hidden: the criterion's epoch_hook clusters them and returns the epoch's loader
        loader = build_test_loader(split.train, train_transform(recipe), modalities=modalities, identities=False)
    else:
        loader = build_train_loader(
            split.train, train_transform(recipe), recipe.data["p"], recipe.data["k"], seed=config.seed,
            cross_modal=recipe.data.get("pipeline") == "cross_modal", modalities=modalities,
            label_map=label_map, num_workers=recipe.data.get("num_workers", 0),
            num_replicas=distributed.world_size(), rank=distributed.rank())
    history = fit(model, criterion, loader, config, run_dir=directory, force=force, device=device, progress=progress,
                  epoch_hook=getattr(criterion, "epoch_hook", None))
    return Run(recipe, split, model.eval(), criterion, history, directory)


def run_dir(recipe: Recipe) -> Path:
    """The run-cache directory of ``recipe`` (see :mod:`reidlab.engine.cache`)."""
    return run_dir_for(recipe.to_dict(), name=f"{recipe.name}-{recipe.profile}-{recipe.dataset}")
