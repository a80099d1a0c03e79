"""The decoded-image cache: same pixels and same batches as decoding every time, its bound, tiles, rewrites."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reidlab.data import images as images_module
from reidlab.data.images import DecodedImageCache, image_cache, read_image
from reidlab.data.loading import build_test_loader, build_train_loader
from reidlab.data.records import DataFormatError, ImageRef, Record
from reidlab.data.transforms import build_test_transform, build_train_transform, resize_to_tensor, resize_to_uint8
from reidlab.engine.trainer import TrainConfig, fit
from reidlab.losses import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss

FILE_H, FILE_W = 20, 10  # files on disk
H, W = 16, 8  # transform size: every sample is resized by PIL first


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def noise(seed: int, shape=(FILE_H, FILE_W, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def aligned_records(root: Path, n_ids: int = 4, per_id: int = 4) -> list[Record]:
    """Pixel-aligned R/N/T triplets: one scene per record, each modality a different transform of it."""
    records = []
    for pid in range(n_ids):
        for n in range(per_id):
            scene = noise(100 * pid + n)
            views = {"rgb": scene, "nir": 255 - scene, "tir": scene[..., ::-1].copy()}
            refs = {m: ImageRef(save(root / m / f"{pid:04d}_{n}.png", v)) for m, v in views.items()}
            records.append(Record(refs, pid=pid, camid=n % 2, key=f"{pid:04d}_{n}.png"))
    return records


def tiled_records(root: Path, n_ids: int = 4, per_id: int = 4) -> list[Record]:
    """RGBNT100-style records: RGB|NIR|TIR side by side in one JPEG."""
    records = []
    for pid in range(n_ids):
        for n in range(per_id):
            path = root / f"{pid:04d}_c00{n % 2 + 1}_{n}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noise(10 * pid + n, (FILE_H, 3 * FILE_W, 3))).save(path, quality=90)
            refs = {m: ImageRef(path, tile=t, num_tiles=3) for t, m in enumerate(("rgb", "nir", "tir"))}
            records.append(Record(refs, pid=pid, camid=n % 2, key=path.name))
    return records


@pytest.mark.parametrize("size", [None, (FILE_H, FILE_W), (H, W), (32, 24)])
def test_cached_pixels_are_those_of_decoding_and_resizing_every_time(tmp_path, size):
    ref = ImageRef(save(tmp_path / "a.png", noise(0)))
    cache = DecodedImageCache(2**20)
    first, again = cache.get(ref, size), cache.get(ref, size)
    assert first is again and (cache.hits, cache.misses) == (1, 1)
    assert first.dtype == torch.uint8 and torch.equal(first, resize_to_uint8(read_image(ref), size))
    if size is not None:
        assert torch.equal(first.float().div(255), resize_to_tensor(read_image(ref), size))


def test_a_tiled_file_is_decoded_once_for_all_its_tiles(tmp_path):
    record = tiled_records(tmp_path, n_ids=1, per_id=1)[0]
    cache = DecodedImageCache(2**20)
    pixels = {m: cache.get(ref, (H, W)) for m, ref in record.images.items()}
    assert (cache.misses, cache.hits, len(cache)) == (1, 2, 3)
    for m, ref in record.images.items():
        assert torch.equal(pixels[m], resize_to_uint8(read_image(ref), (H, W)))
    assert not torch.equal(pixels["rgb"], pixels["nir"])
    with pytest.raises(DataFormatError, match=f"{record.key}: tile 3 is outside"):
        cache.get(ImageRef(record.images["rgb"].path, tile=3, num_tiles=3), (H, W))


def test_a_bounded_cache_evicts_the_least_recently_used_and_never_passes_its_bound(tmp_path):
    refs = [ImageRef(save(tmp_path / f"{i}.png", noise(i))) for i in range(4)]
    one = 3 * FILE_H * FILE_W  # bytes of one decoded image
    cache = DecodedImageCache(int(2.5 * one))
    for ref in (refs[0], refs[1], refs[0], refs[2]):  # refs[1] is the least recently used when refs[2] comes
        cache.get(ref)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 2 and cache.nbytes == 2 * one
    misses = cache.misses
    cache.get(refs[0]), cache.get(refs[2])
    assert cache.misses == misses  # both kept
    cache.get(refs[1])
    assert cache.misses == misses + 1 and len(cache) == 2
    for ref in refs * 3:
        cache.get(ref)
        assert cache.nbytes <= cache.max_bytes and len(cache) <= 2
    nothing = DecodedImageCache(one - 1)  # an image larger than the bound is returned, not stored
    assert torch.equal(nothing.get(refs[3]), resize_to_uint8(read_image(refs[3]), None)) and len(nothing) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        DecodedImageCache(-1)


def test_a_rewritten_file_is_decoded_again_and_a_missing_one_is_named(tmp_path):
    path = save(tmp_path / "a.png", noise(0))
    cache = DecodedImageCache(2**20)
    before = cache.get(ImageRef(path))
    save(path, np.zeros((FILE_H + 2, FILE_W, 3), np.uint8))
    after = cache.get(ImageRef(path))
    assert after.shape == (3, FILE_H + 2, FILE_W) and not after.any() and before.any()
    path.unlink()
    with pytest.raises(DataFormatError, match="a.png: image file is missing"):
        cache.get(ImageRef(path))


def test_the_process_cache_takes_its_bound_from_the_environment(monkeypatch):
    monkeypatch.setattr(images_module, "_PROCESS_CACHE", None)
    monkeypatch.setenv("REIDLAB_IMAGE_CACHE_MB", "1.5")
    assert image_cache().max_bytes == int(1.5 * 2**20) and image_cache() is image_cache()
    monkeypatch.setattr(images_module, "_PROCESS_CACHE", None)
    monkeypatch.setenv("REIDLAB_IMAGE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="REIDLAB_IMAGE_CACHE_MB must be a number"):
        image_cache()


def epochs_of(loader, epochs=(0, 1)) -> list[dict]:
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.extend(loader)
    return out


def assert_same(xs: list[dict], ys: list[dict]) -> None:
    assert len(xs) == len(ys) > 0
    for x, y in zip(xs, ys, strict=True):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["images"], y["images"])
        assert x.keys() == y.keys()
        for name in x.get("views", {}):
            assert torch.equal(x["views"][name], y["views"][name])


@pytest.mark.parametrize("layout", ["aligned", "tiled"])
def test_cached_batches_are_bit_identical_to_decoding_every_time(tmp_path, layout):
    records = (aligned_records if layout == "aligned" else tiled_records)(tmp_path)
    transform = build_train_transform((H, W), pad=3, erase_p=0.7, synchronised=True, erase_fill="pixel",
                                      color_jitter=(0.3, 0.3, 0.3, 0.05))
    views = {"plain": build_train_transform((H, W), pad=2, erase_p=0.5)}
    make = lambda cache: build_train_loader(records, transform, p=2, k=2, seed=5, views=views,  # noqa: E731
                                            cache=cache)
    reference = epochs_of(make(False))
    cache = DecodedImageCache(2**20)
    assert_same(epochs_of(make(cache)), reference)  # epoch 0 fills the cache, epoch 1 reads it
    assert cache.hits > 0 and cache.misses == (len(records) if layout == "tiled" else 3 * len(records))
    assert_same(epochs_of(make(cache)), reference)  # all from the cache
    assert_same(epochs_of(make(True)), reference)  # the process-wide cache
    test = build_test_transform((H, W))
    assert_same(list(build_test_loader(records, test, 5, cache=cache)), list(build_test_loader(records, test, 5,
                                                                                                 cache=False)))


def test_synchronised_augmentation_keeps_cached_modalities_aligned(tmp_path):
    """The same scene in all three modalities stays the same after augmentation: one flip, crop and erase box."""
    records = []
    for i in range(4):
        path = save(tmp_path / f"{i}.png", noise(i))
        records.append(Record({m: ImageRef(path) for m in ("rgb", "nir", "tir")}, pid=i // 2, camid=i % 2,
                              key=path.name))
    transform = build_train_transform((H, W), pad=3, erase_p=1.0, synchronised=True)
    batches = epochs_of(build_train_loader(records, transform, p=2, k=2, seed=0, cache=DecodedImageCache(2**20)))
    images = torch.cat([b["images"] for b in batches])
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])


class TinyReID(nn.Module):
    """Linear embedding of the three stacked modalities (enough to check that training sees the same data)."""

    def __init__(self, num_ids: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(3 * 3 * H * W, 8))
        self.classifier = nn.Linear(8, num_ids, bias=False)

    def forward(self, batch):
        features = self.embed(batch["images"])
        return {"features": {"x": features}, "embeddings": {"x": features}, "logits": {"x": self.classifier(features)}}


def test_a_tiny_training_run_is_deterministic_and_the_cache_does_not_change_it(tmp_path):
    records = aligned_records(tmp_path)
    transform = build_train_transform((H, W), pad=2, erase_p=0.5)
    config = TrainConfig(epochs=3, optimizer="adam", lr=1e-2, schedule="constant", seed=1)
    states = []
    for cache in (False, DecodedImageCache(2**20), DecodedImageCache(2**20), True):
        torch.manual_seed(0)
        model, criterion = TinyReID(4), ReIDCriterion(CrossEntropyLabelSmooth(4), TripletLoss(0.3))
        fit(model, criterion, build_train_loader(records, transform, p=2, k=2, seed=1, cache=cache), config,
            progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])
