"""Torch datasets and data loaders over :class:`~reidlab.data.records.Record` lists.

A sample is a dict: ``images`` [M, 3, H, W] stacked in canonical modality order (zeros for a
modality the record lacks — the reference code's convention for a missing modality), ``present``
[M] bool, ``label`` (contiguous training label, -1 without a label map or for an unmapped pid),
``pid``, ``camid``, ``sceneid`` (-1 when unknown), ``index`` (position in ``records``), and
``views`` ({name: [M, 3, H, W]}) when extra views are configured.

Reproducibility: a training loader from :func:`build_train_loader` feeds the dataset
``(index, sample_seed)`` pairs from a :class:`~reidlab.data.samplers.SeededSampler`; each sample's
augmentation runs on a private ``torch.Generator`` seeded with ``sample_seed``, and the seeds of an
epoch depend only on ``(seed, epoch, rank)``. Batches are therefore identical for any number of
workers (0, 1, 2, ...), with or without persistent workers. Call
``loader.sampler.set_epoch(epoch)`` before each epoch to get new batches and new augmentations.
A plain integer index (test loaders, ad-hoc ``dataset[i]``) uses torch's global RNG instead.

Decoding: by default every image is decoded once per process and kept in the process-wide
:func:`~reidlab.data.images.image_cache` — resized by PIL to the transform's ``size`` for a
:class:`~reidlab.data.transforms.TrainTransform` / :class:`~reidlab.data.transforms.TestTransform`,
which is what those transforms would do first — so samples are bit-identical to decoding every
time (``cache=False``), only faster from the second epoch (and the second evaluation) on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from reidlab.data.images import DecodedImageCache, image_cache, read_image
from reidlab.data.records import MODALITIES, DataFormatError, Record, relabel
from reidlab.data.samplers import CrossModalSampler, PKSampler, SeededSampler
from reidlab.data.transforms import TestTransform, TrainTransform, Transform, resize_to_tensor

SampleKey = int | tuple[int, int]


class ReIDDataset(Dataset):
    """Records as a torch dataset of stacked multi-modal images (see the module docstring).

    ``modalities`` selects and orders the stacked modalities (default ``rgb, nir, tir``); a
    record's images of other modalities are not read. ``transform`` maps ``{modality: image}``
    to ``{modality: Tensor [3, H, W]}`` (see :mod:`reidlab.data.transforms`); without one, images
    become float tensors in [0, 1] at their own size. ``views`` adds extra transforms of the same
    images (e.g. CAJ / MMCF's channel-augmented visible view), each with its own random draw.
    ``cache``: ``True`` (default) reads images through this process's
    :func:`~reidlab.data.images.image_cache`, a :class:`~reidlab.data.images.DecodedImageCache`
    through that one; transforms then get uint8 tensors [3, H, W] (already at their ``size`` for
    ``TrainTransform`` / ``TestTransform``). ``False`` decodes every time and passes PIL images.
    ``identities=False`` hides the identity labels (``pid`` and ``label`` are -1): what unsupervised training reads.
    """

    def __init__(self, records: Sequence[Record], transform: Transform | None = None,
                 modalities: Sequence[str] = MODALITIES, label_map: Mapping[int, int] | None = None,
                 views: Mapping[str, Transform] | None = None, cache: DecodedImageCache | bool = True,
                 identities: bool = True) -> None:
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {tuple(modalities)}")
        for r in records:
            if not any(m in r.images for m in modalities):
                raise DataFormatError(f"record {r.key!r} has none of the modalities {tuple(modalities)} "
                                      f"(it has {r.modalities})")
        self.records = list(records)
        self.transform = transform
        self.modalities = tuple(modalities)
        self.label_map = dict(label_map) if label_map is not None else None
        self.views = dict(views or {})
        self.cache = cache
        self.identities = identities

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: SampleKey) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        generator = None if sample_seed is None else torch.Generator().manual_seed(int(sample_seed))
        record = self.records[index]
        present = [m for m in self.modalities if m in record.images]
        read = self._reader(record, present)
        sample = {
            "images": self._stack(self._apply(self.transform, read(self.transform), generator), record),
            "present": torch.tensor([m in record.images for m in self.modalities]),
            "label": self.label_map.get(record.pid, -1) if self.label_map is not None and self.identities else -1,
            "pid": record.pid if self.identities else -1,
            "camid": record.camid,
            "sceneid": -1 if record.sceneid is None else record.sceneid,
            "index": index,
        }
        if self.views:
            sample["views"] = {name: self._stack(self._apply(t, read(t), generator), record)
                               for name, t in self.views.items()}
        return sample

    def _reader(self, record: Record, present: list[str]) -> Callable[[Transform | None], dict]:
        """The record's images for a transform: PIL images decoded now (no cache), or cached uint8 tensors
        resized to what the transform resizes to first."""
        if self.cache is False:
            decoded = {m: read_image(record.images[m]) for m in present}
            return lambda transform: decoded
        cache = image_cache() if self.cache is True else self.cache

        def read(transform: Transform | None) -> dict:
            size, interpolation = ((transform.size, transform.interpolation)
                                   if isinstance(transform, TrainTransform | TestTransform) else (None, "bicubic"))
            return {m: cache.get(record.images[m], size, interpolation) for m in present}
        return read

    @staticmethod
    def _apply(transform: Transform | None, images: dict, generator: torch.Generator | None) -> dict[str, Tensor]:
        if transform is None:
            return {m: resize_to_tensor(img, _own_size(img)) for m, img in images.items()}
        return transform(images, generator)

    def _stack(self, tensors: dict[str, Tensor], record: Record) -> Tensor:
        shapes = {tuple(t.shape) for t in tensors.values()}
        if len(shapes) != 1:
            raise DataFormatError(f"record {record.key!r}: modality images differ in size after the transform "
                                  f"({ {m: tuple(t.shape) for m, t in tensors.items()} }); use a transform that "
                                  f"resizes to a common size")
        reference = next(iter(tensors.values()))
        return torch.stack([tensors[m] if m in tensors else torch.zeros_like(reference) for m in self.modalities])


def _own_size(image: Image.Image | Tensor) -> tuple[int, int]:
    return (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape[-2:])


def single_modality_images(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """For cross-modal batches (one image per record): ``images`` [B, 3, H, W] and the index of each
    sample's modality in the dataset's ``modalities`` [B]. Raises if a sample has 0 or 2+ modalities."""
    present = batch["present"]
    counts = present.sum(dim=1)
    if not bool((counts == 1).all()):
        bad = (counts != 1).nonzero().flatten().tolist()
        raise ValueError(f"samples at batch positions {bad[:10]} do not have exactly one modality")
    return batch["images"][present], present.float().argmax(dim=1)


def build_train_loader(records: Sequence[Record], transform: Transform, p: int, k: int, seed: int = 0, *,
                       cross_modal: bool = False, modalities: Sequence[str] = MODALITIES,
                       label_map: Mapping[int, int] | None = None, views: Mapping[str, Transform] | None = None,
                       sampler: Sampler[int] | None = None, num_workers: int = 0, num_replicas: int = 1,
                       rank: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
                       cache: DecodedImageCache | bool = True, identities: bool = True) -> DataLoader:
    """A P × K identity-balanced training loader, deterministic for a given ``seed``.

    ``cross_modal=False`` uses :class:`PKSampler` over record pids; ``cross_modal=True`` uses
    :class:`CrossModalSampler` (one modality per record). ``sampler`` replaces either (e.g. a
    :class:`PKSampler` over pseudo-labels); it must expose ``batch_size``. ``label_map`` defaults to
    :func:`relabel` of ``records``. ``cache``, ``identities``: see :class:`ReIDDataset`. Call
    ``loader.sampler.set_epoch(epoch)`` before each epoch.
    """
    if sampler is None:
        pids = [r.pid for r in records]
        if cross_modal:
            sampler = CrossModalSampler(pids, [r.modality for r in records], p, k, seed, num_replicas, rank)
        else:
            sampler = PKSampler(pids, p, k, seed, num_replicas, rank)
    batch_size = getattr(sampler, "batch_size", None)
    if not batch_size:
        raise ValueError("the training sampler must expose its batch_size")
    dataset = ReIDDataset(records, transform, modalities, relabel(records) if label_map is None else label_map, views,
                          cache, identities)
    return DataLoader(dataset, batch_size=batch_size, sampler=SeededSampler(sampler, seed), drop_last=True,
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=persistent_workers and num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def build_test_loader(records: Sequence[Record], transform: Transform, batch_size: int = 128, *,
                      modalities: Sequence[str] = MODALITIES, label_map: Mapping[int, int] | None = None,
                      num_workers: int = 0, pin_memory: bool = False,
                      cache: DecodedImageCache | bool = True, identities: bool = True) -> DataLoader:
    """Records in their given order, all of them (no shuffling, last batch kept); ``cache``, ``identities``: see
    :class:`ReIDDataset`."""
    dataset = ReIDDataset(records, transform, modalities, label_map, cache=cache, identities=identities)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      num_workers=num_workers, pin_memory=pin_memory)
