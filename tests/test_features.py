"""extract_features: flip averaging, missing settings / rates / masks, FeatureSet and bad inputs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidlab.data.formats import load_split
from reidlab.data.loading import build_test_loader
from reidlab.data.records import MODALITIES
from reidlab.data.synthetic import synthesize
from reidlab.data.transforms import build_test_transform
from reidlab.engine.features import FeatureSet, extract_features
from reidlab.eval import MISSING_SETTINGS, evaluate_features_file, random_missing_masks

SIZE = (32, 16)
TRANSFORM = build_test_transform(SIZE)
GRID = (4, 2)


class PooledColour(nn.Module):
    """A contract-compliant toy model: each modality's image average-pooled to a 4 x 2 grid of colours.

    Features are flip-sensitive and zero for a zeroed modality; ``fused`` concatenates the
    modalities. Every ``extract`` call is logged (mode, inference mode, presence) for the tests.
    """

    default_feature = "fused"

    def __init__(self, modalities: tuple[str, ...] = MODALITIES, scale: float = 1.0) -> None:
        super().__init__()
        self.modalities = modalities
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.calls: list[dict] = []

    def forward(self, batch: dict) -> dict:
        images = batch["images"]
        pooled = F.adaptive_avg_pool2d(images.flatten(0, 1), GRID).flatten(1) * self.scale
        per_modality = pooled.view(images.shape[0], images.shape[1], -1)
        embeddings = {m: per_modality[:, i] for i, m in enumerate(self.modalities)}
        embeddings["fused"] = per_modality.flatten(1)
        return {"features": embeddings, "embeddings": embeddings, "logits": {}}

    def extract(self, batch: dict) -> dict:
        self.calls.append({"training": self.training, "inference": torch.is_inference_mode_enabled(),
                           "present": batch["present"].cpu().clone(), "size": batch["images"].shape[0]})
        return self(batch)["embeddings"]


def synthetic_split(root: Path, like: str, num_ids: int = 6, **options):
    """A small synthetic tree of ``like`` under ``root`` (written once), loaded with its real loader."""
    if not root.exists():
        synthesize(like, root, num_ids=num_ids, image_size=SIZE, progress=False)
    return load_split(like, root, **options)


@pytest.fixture(scope="module")
def rgbnt201(tmp_path_factory):
    return synthetic_split(tmp_path_factory.getbasetemp() / "rgbnt201", "rgbnt201")


def loader_of(split, batch_size: int = 8, modalities=MODALITIES):
    return build_test_loader(split.query, TRANSFORM, batch_size, modalities=modalities)


def test_features_and_labels_follow_the_loader_and_the_model_mode_is_restored(rgbnt201):
    model = PooledColour().train()
    loader = loader_of(rgbnt201, batch_size=8)
    fs = extract_features(model, loader, progress=False)
    n = len(rgbnt201.query)
    assert len(fs) == n and fs.names == ("rgb", "nir", "tir", "fused")
    assert fs.select("fused").shape == (n, 3 * 3 * 8) and fs.select("fused").dtype == torch.float32
    assert fs.pids.tolist() == [r.pid for r in rgbnt201.query]
    assert fs.camids.tolist() == [r.camid for r in rgbnt201.query]
    assert fs.sceneids.tolist() == [-1] * n and fs.indices.tolist() == list(range(n))
    assert fs.present.all() and fs.present.shape == (n, 3) and fs.modalities == MODALITIES
    assert len(model.calls) == math.ceil(n / 8)
    assert all(not c["training"] and c["inference"] for c in model.calls)
    assert model.training
    torch.testing.assert_close(fs.select("fused"), torch.cat([fs.select(m) for m in MODALITIES], 1))


def test_names_keep_only_the_requested_features(rgbnt201):
    fs = extract_features(PooledColour(), loader_of(rgbnt201), names=["tir"], progress=False)
    assert fs.names == ("tir",)
    with pytest.raises(ValueError, match=r"no feature named 'nope'.*rgb, nir, tir, fused"):
        extract_features(PooledColour(), loader_of(rgbnt201), names=["nope"], progress=False)


def test_flip_averages_the_raw_features_of_the_images_and_their_mirror(rgbnt201):
    model = PooledColour(scale=3.0)
    loader = loader_of(rgbnt201, batch_size=5)
    plain, flipped = [], []
    with torch.no_grad():
        for batch in loader:
            plain.append(model.extract(batch)["fused"])
            flipped.append(model.extract(dict(batch, images=batch["images"].flip(-1)))["fused"])
    expected = (torch.cat(plain) + torch.cat(flipped)) / 2
    model.calls.clear()
    fs = extract_features(model, loader, flip=True, progress=False)
    torch.testing.assert_close(fs.select("fused"), expected)
    assert not torch.allclose(torch.cat(plain), expected)  # the images are not mirror-symmetric
    assert len(model.calls) == 2 * len(loader)


@pytest.mark.parametrize("setting", list(MISSING_SETTINGS))
def test_missing_settings_zero_the_named_modalities_and_update_present(rgbnt201, setting):
    loader = loader_of(rgbnt201)
    complete = extract_features(PooledColour(), loader, progress=False)
    model = PooledColour()
    fs = extract_features(model, loader, missing=setting, progress=False)
    missing = MISSING_SETTINGS[setting]
    for i, m in enumerate(MODALITIES):
        assert fs.present[:, i].all() == (m not in missing)
        if m in missing:
            assert not fs.select(m).any()
        else:
            torch.testing.assert_close(fs.select(m), complete.select(m))
    seen = torch.cat([c["present"] for c in model.calls]).numpy()
    np.testing.assert_array_equal(seen, fs.present)


def test_missing_rate_masks_are_looked_up_by_sample_index_whatever_the_batch_size(rgbnt201):
    n = len(rgbnt201.query)
    runs = [extract_features(PooledColour(), loader_of(rgbnt201, batch_size=b), missing=0.4, missing_seed=3,
                             progress=False) for b in (3, 7, n)]
    expected = ~random_missing_masks(n, 0.4, 3).numpy()
    for fs in runs:
        np.testing.assert_array_equal(fs.present, expected)
        torch.testing.assert_close(fs.select("fused"), runs[0].select("fused"))
    other_seed = extract_features(PooledColour(), loader_of(rgbnt201), missing=0.4, missing_seed=4, progress=False)
    assert not np.array_equal(other_seed.present, expected)


def test_an_explicit_mask_is_applied_per_dataset_row(rgbnt201):
    n = len(rgbnt201.query)
    mask = np.zeros((n, 3), dtype=bool)
    mask[::2, 0] = True
    mask[1::2, 1:] = True
    fs = extract_features(PooledColour(), loader_of(rgbnt201, batch_size=4), missing=mask, progress=False)
    np.testing.assert_array_equal(fs.present, ~mask)
    assert not fs.select("rgb")[::2].any() and fs.select("rgb")[1::2].abs().sum(1).gt(0).all()


@pytest.mark.parametrize("missing, message", [
    ("M(X)", r"unknown missing-modality setting 'M\(X\)'"),
    (np.zeros((3, 3), dtype=bool), r"shape \(28, 3\)"),
    (torch.zeros(28, 3), r"must be a bool array"),
    (0.9, r"missing rate must be in \[0, 0.667\]"),
])
def test_bad_missing_arguments_are_rejected(rgbnt201, missing, message):
    assert len(rgbnt201.query) == 28
    with pytest.raises(ValueError, match=message):
        extract_features(PooledColour(), loader_of(rgbnt201), missing=missing, progress=False)


def test_missing_settings_need_the_three_canonical_modalities(tmp_path):
    split = synthetic_split(tmp_path / "sysu", "sysu_mm01")
    loader = build_test_loader(split.query, TRANSFORM, modalities=split.modalities)
    extract_features(PooledColour(split.modalities), loader, progress=False)
    with pytest.raises(ValueError, match=r"needs batches of the modalities \('rgb', 'nir', 'tir'\).*\('rgb', 'nir'\)"):
        extract_features(PooledColour(split.modalities), loader, missing="M(R)", progress=False)


def test_a_model_returning_a_bad_feature_is_named(rgbnt201):
    class Flat(PooledColour):
        def extract(self, batch):
            return {"fused": batch["images"].sum((1, 2, 3, 4))}

    with pytest.raises(ValueError, match=r"feature 'fused' must be a Tensor \[8, D\], got \(8,\)"):
        extract_features(Flat(), loader_of(rgbnt201), progress=False)
    with pytest.raises(TypeError, match="no extract"):
        extract_features(nn.Linear(2, 2), loader_of(rgbnt201), progress=False)


def test_take_and_concat_rebuild_the_same_set(rgbnt201):
    fs = extract_features(PooledColour(), loader_of(rgbnt201), missing="M(T)", progress=False)
    back = FeatureSet.concat([fs.take(range(0, 10)), fs.take(range(10, len(fs)))])
    for name in fs.names:
        torch.testing.assert_close(back.select(name), fs.select(name))
    for attr in ("pids", "camids", "sceneids", "present", "indices"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(fs, attr))
    reordered = fs.take([3, 0])
    assert reordered.pids.tolist() == [fs.pids[3], fs.pids[0]] and reordered.indices.tolist() == [3, 0]
    with pytest.raises(ValueError, match="cannot concatenate"):
        FeatureSet.concat([fs, extract_features(PooledColour(), loader_of(rgbnt201), names=["rgb"], progress=False)])
    with pytest.raises(ValueError, match="no feature named 'x'; this feature set has rgb, nir, tir, fused"):
        fs.select("x")


def test_save_npz_round_trips_through_evaluate_features_file(rgbnt201, tmp_path):
    from reidlab.eval import evaluate

    fs = extract_features(PooledColour(), loader_of(rgbnt201), progress=False)
    path = fs.save_npz(tmp_path / "out" / "feats.npz", "fused")  # query = gallery
    direct = evaluate(fs.select("fused"), fs.select("fused"), fs.pids, fs.pids, fs.camids, fs.camids, "market")
    loaded = evaluate_features_file(path, "market")
    np.testing.assert_array_equal(loaded.cmc, direct.cmc)
    assert (loaded.mAP, loaded.mINP) == (direct.mAP, direct.mINP)
    with np.load(path) as npz:
        assert set(npz.files) == {f"{s}_{k}" for s in ("query", "gallery") for k in ("feats", "pids", "camids",
                                                                                         "sceneids")}
        assert npz["query_feats"].dtype == np.float32 and npz["gallery_pids"].dtype == np.int64
