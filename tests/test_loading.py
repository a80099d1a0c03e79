"""ReIDDataset samples (stacking, presence mask, tiles) and reproducible train / test loaders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data.loading import ReIDDataset, build_test_loader, build_train_loader, single_modality_images
from reidlab.data.records import DataFormatError, ImageRef, Record, relabel
from reidlab.data.transforms import build_test_transform, build_train_transform

H, W = 16, 8
UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def write(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def noisy(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def multimodal_records(root: Path, n_ids: int = 4, per_id: int = 3) -> list[Record]:
    records = []
    for pid in range(n_ids):
        for n in range(per_id):
            name = f"{pid:06d}_cam{n % 2 + 1}_{n}.png"
            images = {m: ImageRef(noisy(root / folder / name, 100 * pid + 10 * n + j))
                      for j, (m, folder) in enumerate((("rgb", "RGB"), ("nir", "NI"), ("tir", "TI")))}
            records.append(Record(images, pid=pid + 100, camid=n % 2, key=f"train/RGB/{name}"))
    return records


def test_sample_stacks_modalities_with_presence_mask_and_zeros_for_missing(tmp_path):
    rgb = write(tmp_path / "RGB/a.png", (255, 0, 0))
    tir = write(tmp_path / "TI/a.png", (0, 0, 255))
    record = Record({"rgb": ImageRef(rgb), "tir": ImageRef(tir)}, pid=7, camid=1, sceneid=3, key="RGB/a.png")
    sample = ReIDDataset([record], build_test_transform((H, W), **UNIT), label_map={7: 0})[0]
    assert sample["images"].shape == (3, 3, H, W)
    assert sample["present"].tolist() == [True, False, True]
    assert not sample["images"][1].any()
    torch.testing.assert_close(sample["images"][0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(sample["images"][2, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert (sample["label"], sample["pid"], sample["camid"], sample["sceneid"], sample["index"]) == (0, 7, 1, 3, 0)


def test_rgbnt100_style_tiles_are_cut_per_modality(tmp_path):
    path = tmp_path / "rgbir/bounding_box_train/0001_c002_00000001.jpg"
    path.parent.mkdir(parents=True)
    tiled = Image.new("RGB", (3 * W, H))
    for tile, colour in enumerate([(250, 10, 10), (10, 250, 10), (10, 10, 250)]):
        tiled.paste(Image.new("RGB", (W, H), colour), (tile * W, 0))
    tiled.save(path, quality=100)
    record = Record({m: ImageRef(path, tile=t, num_tiles=3) for t, m in enumerate(("rgb", "nir", "tir"))},
                    pid=1, camid=1, key=path.name)
    sample = ReIDDataset([record])[0]  # no transform: raw [0, 1] tensors at their own size
    assert sample["images"].shape == (3, 3, H, W) and sample["present"].all()
    assert sample["label"] == -1 and sample["sceneid"] == -1
    centre = sample["images"][:, :, H // 2, W // 2]
    assert torch.equal(centre.argmax(dim=1), torch.tensor([0, 1, 2]))  # rgb tile red, nir green, tir blue


def test_modality_subset_and_records_without_any_selected_modality(tmp_path):
    records = multimodal_records(tmp_path, n_ids=1, per_id=1)
    sample = ReIDDataset(records, build_test_transform((H, W)), modalities=("rgb", "tir"))[0]
    assert sample["images"].shape == (2, 3, H, W) and sample["present"].tolist() == [True, True]
    nir_only = Record({"nir": ImageRef(tmp_path / "x.png")}, pid=0, camid=0, key="NI/x.png")
    with pytest.raises(DataFormatError, match=r"NI/x.png.*none of the modalities \('rgb', 'tir'\)"):
        ReIDDataset([nir_only], modalities=("rgb", "tir"))
    with pytest.raises(ValueError, match="subset"):
        ReIDDataset(records, modalities=("rgb", "depth"))


def test_missing_image_file_and_size_mismatch_are_reported(tmp_path):
    missing = Record({"rgb": ImageRef(tmp_path / "gone.png")}, pid=0, camid=0, key="gone.png")
    with pytest.raises(DataFormatError, match="gone.png"):
        ReIDDataset([missing])[0]
    rgb = write(tmp_path / "a.png", (1, 2, 3), size=(W, H))
    nir = write(tmp_path / "b.png", (1, 2, 3), size=(W, H + 2))
    uneven = Record({"rgb": ImageRef(rgb), "nir": ImageRef(nir)}, pid=0, camid=0, key="a.png")
    with pytest.raises(DataFormatError, match="a.png.*differ in size"):
        ReIDDataset([uneven])[0]


def test_seeded_key_makes_the_augmentation_reproducible_and_views_draw_separately(tmp_path):
    records = multimodal_records(tmp_path, n_ids=1, per_id=1)
    transform = build_train_transform((H, W), pad=2, erase_p=0.5)
    dataset = ReIDDataset(records, transform, views={"again": transform})
    a, b, c = dataset[(0, 11)], dataset[(0, 11)], dataset[(0, 12)]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["views"]["again"], b["views"]["again"])
    assert not torch.equal(a["images"], c["images"])
    assert a["views"]["again"].shape == a["images"].shape
    assert not torch.equal(a["images"], a["views"]["again"])  # the view has its own random draw


def batches_of(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys, strict=True):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["images"], y["images"])


def test_train_loader_is_deterministic_across_worker_counts_and_reshuffles(tmp_path):
    records = multimodal_records(tmp_path)
    transform = build_train_transform((H, W), pad=2, erase_p=0.5)
    make = lambda workers: build_train_loader(records, transform, p=2, k=2, seed=3,  # noqa: E731
                                              num_workers=workers)
    single = batches_of(make(0), 0)
    assert all(b["images"].shape == (4, 3, 3, H, W) for b in single)
    labels = relabel(records)
    assert all(b["label"].tolist() == [labels[p] for p in b["pid"].tolist()] for b in single)
    assert_same_batches(single, batches_of(make(0), 0))
    assert_same_batches(single, batches_of(make(2), 0))
    other = batches_of(make(0), 1)
    assert any(not torch.equal(x["images"], y["images"]) for x, y in zip(single, other, strict=False))


def test_cross_modal_train_loader_and_single_modality_view(tmp_path):
    records = []
    for pid in range(3):
        for n, modality in enumerate(("rgb", "rgb", "nir", "nir")):
            folder = "cam1" if modality == "rgb" else "cam3"
            path = noisy(tmp_path / folder / f"{pid:04d}" / f"{n:04d}.jpg", pid * 10 + n)
            records.append(Record({modality: ImageRef(path)}, pid=pid, camid=1 if modality == "rgb" else 3,
                                  key=f"{folder}/{pid:04d}/{n:04d}.jpg"))
    loader = build_train_loader(records, build_train_transform((H, W)), p=2, k=2, seed=0,
                                cross_modal=True, modalities=("rgb", "nir"))
    batch = next(iter(loader))
    images, modality = single_modality_images(batch)
    assert images.shape == (8, 3, H, W)
    assert modality.tolist() == [0] * 4 + [1] * 4  # visible half, then infrared half
    assert batch["pid"][:4].tolist() == batch["pid"][4:].tolist()
    two = {"images": torch.zeros(1, 2, 3, H, W), "present": torch.tensor([[True, True]])}
    with pytest.raises(ValueError, match="exactly one modality"):
        single_modality_images(two)


def test_test_loader_keeps_order_and_every_record(tmp_path):
    records = multimodal_records(tmp_path, n_ids=2, per_id=3)
    loader = build_test_loader(records, build_test_transform((H, W)), batch_size=4)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [4, 2]
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(6))
    assert torch.cat([b["label"] for b in batches]).tolist() == [-1] * 6
    again = torch.cat([b["images"] for b in build_test_loader(records, build_test_transform((H, W)), 4)])
    assert torch.equal(torch.cat([b["images"] for b in batches]), again)


def test_train_loader_rejects_a_sampler_without_batch_size(tmp_path):
    records = multimodal_records(tmp_path, n_ids=2, per_id=2)
    with pytest.raises(ValueError, match="batch_size"):
        build_train_loader(records, build_train_transform((H, W)), p=2, k=2, sampler=list(range(4)))
