"""Feature extraction: run a model over a test loader and keep its inference features with the labels.

A model follows the contract of :mod:`reidlab.models`: ``model.extract(batch)`` returns
``{name: Tensor [B, D]}`` (e.g. ``"fused"`` and ``"rgb"``/``"nir"``/``"tir"`` for multi-modal models).

* **Flip averaging** (``flip=True``): the features of the batch and of its horizontally flipped
  images are averaged, *before* any normalisation — the raw features, as the reference repos do
  (TransReID / TOP-ReID ``feat = (f(x) + f(flip(x))) / 2``); evaluation then L2-normalises.
* **Missing modalities** (``missing=...``), the protocol of :mod:`reidlab.eval.missing`: the
  missing images are zeroed *after* normalisation and the batch's ``present`` mask is updated,
  so a model with a recovery path (MFRNet, DENet) can read which modalities are absent. It needs
  batches of the three canonical modalities (``rgb, nir, tir``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlab.data.records import MODALITIES
from reidlab.engine.distributed import resolve_device
from reidlab.eval.missing import MISSING_SETTINGS, apply_missing, random_missing_masks

#: What ``missing=`` accepts: a setting name, a missing rate η, or a bool ``[N, 3]`` missing mask.
Missing = str | float | Tensor | np.ndarray | None


@dataclass(repr=False)
class FeatureSet:
    """Features of ``N`` samples, in loader order, with their labels.

    ``features``: ``{name: float32 CPU Tensor [N, D]}``; ``pids``, ``camids``, ``sceneids`` (-1 when
    unknown) and ``indices`` (position of each row in the loader's dataset): int64 arrays ``[N]``;
    ``present``: bool array ``[N, M]`` of the modalities the model was given (after any missing
    setting), columns in the order of ``modalities``.
    """

    features: dict[str, Tensor]
    pids: np.ndarray
    camids: np.ndarray
    sceneids: np.ndarray
    present: np.ndarray
    indices: np.ndarray
    modalities: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.pids)

    def __repr__(self) -> str:
        dims = {name: tuple(f.shape[1:]) for name, f in self.features.items()}
        return f"FeatureSet({len(self)} samples, features={dims}, modalities={self.modalities})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.features)

    def select(self, name: str) -> Tensor:
        """The ``[N, D]`` features called ``name``; an unknown name is a ``ValueError`` listing the known ones."""
        if name not in self.features:
            raise ValueError(f"no feature named {name!r}; this feature set has {', '.join(self.features)}")
        return self.features[name]

    def take(self, rows: Sequence[int] | np.ndarray) -> FeatureSet:
        """The rows ``rows`` (positions in this set), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        index = torch.from_numpy(rows)
        return FeatureSet({name: f[index] for name, f in self.features.items()}, self.pids[rows], self.camids[rows],
                          self.sceneids[rows], self.present[rows], self.indices[rows], self.modalities)

    @staticmethod
    def concat(sets: Sequence[FeatureSet]) -> FeatureSet:
        """Rows of ``sets`` one after the other (same feature names and modalities required).

        ``indices`` are kept as they are: they refer to each set's own dataset.
        """
        if not sets:
            raise ValueError("concat needs at least one FeatureSet")
        first = sets[0]
        for other in sets[1:]:
            if other.names != first.names or other.modalities != first.modalities:
                raise ValueError(f"cannot concatenate feature sets with features {first.names} / {other.names} "
                                 f"and modalities {first.modalities} / {other.modalities}")
        return FeatureSet({name: torch.cat([s.features[name] for s in sets]) for name in first.names},
                          *(np.concatenate([getattr(s, a) for s in sets])
                            for a in ("pids", "camids", "sceneids", "present", "indices")),
                          first.modalities)

    def save_npz(self, path: str | Path, name: str, *, gallery: FeatureSet | None = None) -> Path:
        """Write feature ``name`` as an ``.npz`` that ``reidlab evaluate --features`` reads.

        This set is the query side and ``gallery`` the gallery side; ``gallery=None`` writes this set
        on both sides (query = gallery, as RGBNT201's test set is used). Keys:
        ``{query,gallery}_{feats,pids,camids,sceneids}`` (see
        :func:`reidlab.eval.metrics.evaluate_features_file`).
        """
        gallery = self if gallery is None else gallery
        arrays = {}
        for side, fs in (("query", self), ("gallery", gallery)):
            arrays[f"{side}_feats"] = fs.select(name).numpy().astype(np.float32)
            for label in ("pids", "camids", "sceneids"):
                arrays[f"{side}_{label}"] = getattr(fs, label).astype(np.int64)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, **arrays)
        return path


def extract_features(model: nn.Module, loader: DataLoader, *, flip: bool = False, missing: Missing = None,
                     missing_seed: int = 0, device: str | torch.device = "auto", progress: bool = True,
                     names: Iterable[str] | None = None, desc: str = "features") -> FeatureSet:
    """Run ``model.extract`` over every batch of ``loader`` and collect the features.

    The model is moved to ``device`` and run in eval mode under ``torch.inference_mode()``; its
    previous train/eval mode is restored afterwards. ``flip`` averages the raw features of the
    images and of their horizontal flip (see the module docstring). ``missing`` is ``None``, a
    setting of :data:`~reidlab.eval.missing.MISSING_SETTINGS` (``"M(N)"``), a missing rate η
    (``random_missing_masks(len(dataset), η, missing_seed)``, looked up by each sample's
    ``batch["index"]`` so it does not depend on the batch size or order) or a bool ``[N, 3]`` missing
    mask over the dataset (also looked up by ``batch["index"]``). ``names`` keeps only those
    features (default: all that ``model.extract`` returns).
    """
    extract = getattr(model, "extract", None)
    if not callable(extract):
        raise TypeError(f"{type(model).__name__} has no extract(batch) method; expected a reidlab model")
    dataset = loader.dataset
    modalities = tuple(getattr(dataset, "modalities", MODALITIES))
    masks = _dataset_masks(missing, len(dataset), missing_seed, modalities)
    wanted = None if names is None else list(names)
    dev = resolve_device(device)
    from tqdm.auto import tqdm

    was_training = model.training
    model.to(dev).eval()
    chunks: dict[str, list[Tensor]] = {}
    labels: dict[str, list[Tensor]] = {key: [] for key in ("pid", "camid", "sceneid", "present", "index")}
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress):
                if batch["images"].shape[1] != len(modalities):
                    raise ValueError(f"batch images have {batch['images'].shape[1]} modalities but the dataset "
                                     f"declares {modalities}")
                batch = _to_device(batch, dev)
                if missing is not None:
                    setting = missing if isinstance(missing, str) else masks[batch["index"].cpu()]
                    images, present = apply_missing(batch["images"], setting, batch["present"])
                    batch = dict(batch, images=images, present=present)
                output = _extract(extract, batch, wanted)
                if flip:
                    flipped = _extract(extract, dict(batch, images=batch["images"].flip(-1)), wanted)
                    output = {name: (f + flipped[name]) / 2 for name, f in output.items()}
                for name, f in output.items():
                    chunks.setdefault(name, []).append(f.float().cpu())
                for key in labels:
                    labels[key].append(torch.as_tensor(batch[key]).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("the loader yielded no batch; nothing to extract")
    columns = {key: torch.cat(values).numpy() for key, values in labels.items()}
    return FeatureSet({name: torch.cat(c) for name, c in chunks.items()}, columns["pid"].astype(np.int64),
                      columns["camid"].astype(np.int64), columns["sceneid"].astype(np.int64),
                      columns["present"].astype(bool), columns["index"].astype(np.int64), modalities)


def _dataset_masks(missing: Missing, size: int, seed: int, modalities: tuple[str, ...]) -> Tensor | None:
    """Validate ``missing``; for a rate or a mask, return the ``[size, 3]`` missing mask of the dataset."""
    if missing is None:
        return None
    if modalities != MODALITIES:
        raise ValueError(f"missing-modality evaluation needs batches of the modalities {MODALITIES}; this "
                         f"loader's dataset has {modalities} (cross-modal benchmarks have no missing settings)")
    if isinstance(missing, str):
        if missing not in MISSING_SETTINGS:
            raise ValueError(f"unknown missing-modality setting {missing!r}; expected one of "
                             f"{', '.join(MISSING_SETTINGS)}, a missing rate or a bool [N, 3] mask")
        return None
    if isinstance(missing, Real) and not isinstance(missing, bool):
        return random_missing_masks(size, float(missing), seed)
    mask = torch.as_tensor(missing)
    if mask.dtype != torch.bool or tuple(mask.shape) != (size, len(MODALITIES)):
        raise ValueError(f"a missing mask must be a bool array of shape ({size}, {len(MODALITIES)}) — one row per "
                         f"dataset sample —, got {mask.dtype} {tuple(mask.shape)}")
    return mask


def _extract(extract, batch: dict, wanted: list[str] | None) -> dict[str, Tensor]:
    output = extract(batch)
    if not isinstance(output, Mapping):
        raise TypeError(f"model.extract must return a dict {{name: Tensor [B, D]}}, got {type(output).__name__}")
    if wanted is not None:
        unknown = [name for name in wanted if name not in output]
        if unknown:
            raise ValueError(f"model.extract returned no feature named {', '.join(map(repr, unknown))}; "
                             f"it returns {', '.join(output)}")
        output = {name: output[name] for name in wanted}
    size = batch["images"].shape[0]
    for name, f in output.items():
        if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] != size:
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"model.extract feature {name!r} must be a Tensor [{size}, D], got {shape}")
    return dict(output)


def _to_device(batch: Mapping, device: torch.device) -> dict:
    def move(value):
        if isinstance(value, Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, Mapping):
            return {k: move(v) for k, v in value.items()}
        return value

    return {key: move(value) for key, value in batch.items()}
