"""Heads (BNNeck, GeM, reference inits) and the two baselines: output contract, shared vs unshared branches, fused
features, AGW stem routing against a per-sample reference, gradients, determinism, Grad-CAM hooks, clear errors."""

import math

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from reidlab.models.baseline import CrossModalBaseline, MultiModalBaseline, NonLocal
from reidlab.models.heads import BNNeck, GeM, init_classifier, init_kaiming

SIZE = (128, 64)
ALL = ("rgb", "nir", "tir")


def multimodal_batch(b: int = 4, m: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, m, 3, *SIZE, generator=g), "present": torch.ones(b, m, dtype=torch.bool),
            "label": torch.arange(b) % 5}


def cross_modal_batch(modality: list[int], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    present = torch.zeros(len(modality), 2, dtype=torch.bool)
    present[torch.arange(len(modality)), torch.tensor(modality)] = True
    images = torch.randn(len(modality), 2, 3, *SIZE, generator=g) * present[:, :, None, None, None]
    return {"images": images, "present": present, "label": torch.arange(len(modality)) % 5}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------- heads

def test_bnneck_freezes_the_bias_has_a_bias_free_classifier_and_reference_init():
    torch.manual_seed(0)
    neck = BNNeck(512, 100)
    assert not neck.bn.bias.requires_grad and neck.classifier.bias is None
    assert torch.equal(neck.bn.weight, torch.ones(512)) and torch.equal(neck.bn.bias, torch.zeros(512))
    assert neck.classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    x = torch.randn(8, 512) * 3 + 1
    bn_feature, logits = neck(x)
    assert bn_feature.shape == (8, 512) and logits.shape == (8, 100)
    torch.testing.assert_close(bn_feature.mean(0), torch.zeros(512), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, bn_feature @ neck.classifier.weight.T)
    optimizer = torch.optim.SGD(neck.parameters(), lr=1.0, weight_decay=0.1)
    logits.logsumexp(1).mean().backward()
    optimizer.step()
    assert neck.bn.bias.grad is None and torch.equal(neck.bn.bias, torch.zeros(512))
    with pytest.raises(ValueError, match=r"features \[B, 512\], got \[8, 3\]"):
        neck(torch.zeros(8, 3))
    with pytest.raises(ValueError, match="num_classes >= 1"):
        BNNeck(16, 0)


def test_reference_kaiming_init():
    torch.manual_seed(0)
    conv, linear, bn = nn.Conv2d(256, 256, 3), nn.Linear(1024, 2048), nn.BatchNorm2d(8)
    nn.init.constant_(bn.weight, 5.0)
    for module in (conv, linear, bn):
        module.apply(init_kaiming)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)  # fan_in
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.02)  # fan_out
    assert not conv.bias.any() and not linear.bias.any() and torch.equal(bn.weight, torch.ones(8))
    classifier = nn.Linear(256, 10)
    classifier.apply(init_classifier)
    assert not classifier.bias.any() and classifier.weight.abs().max() < 0.01


def test_gem_hand_computed_and_limits():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(GeM(p=2.0)(x), torch.tensor([[math.sqrt(7.5)]]))
    torch.testing.assert_close(GeM(p=3.0)(x), torch.tensor([[(100 / 4) ** (1 / 3)]]))
    y = torch.rand(2, 5, 4, 3)
    torch.testing.assert_close(GeM(p=1.0)(y), y.mean(dim=(2, 3)).clamp(min=1e-6), atol=1e-6, rtol=1e-5)
    near_max, top = GeM(p=100.0)(y), y.amax(dim=(2, 3))  # (mean y^p)^(1/p) lies in [max·12^(-1/p), max]
    assert (near_max <= top + 1e-6).all() and (near_max >= 0.975 * top).all()
    assert GeM(p=3.0)(torch.full((1, 2, 2, 2), -1.0)).min() >= 0  # clamped at eps
    learnable = GeM(p=3.0, learnable=True)
    assert isinstance(learnable.p, nn.Parameter) and "learnable=True" in repr(learnable)
    learnable(y).sum().backward()
    assert learnable.p.grad is not None and learnable.p.grad.abs() > 0
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        GeM()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="p > 0"):
        GeM(p=0.0)


# ------------------------------------------------------------------------------------------ multi-modal baseline

@pytest.mark.parametrize("backbone,dim", [("vit_tutorial", 96), ("resnet_tutorial", 256)])
@pytest.mark.parametrize("shared", [False, True])
def test_multimodal_outputs_follow_the_contract(backbone, dim, shared):
    torch.manual_seed(0)
    model = MultiModalBaseline(backbone, ALL, num_classes=5, img_size=SIZE, shared=shared)
    assert model.modalities == ALL and model.default_feature == "fused" and model.feature_dim == dim
    batch = multimodal_batch()
    batch["images"][1, 2] = 0  # a missing TIR image: zeros, the model just runs on them
    for mode in (model.train, model.eval):
        mode()
        out = model(batch)
        assert {k: {n: tuple(t.shape) for n, t in v.items()} for k, v in out.items()} == {
            "features": {"rgb": (4, dim), "nir": (4, dim), "tir": (4, dim), "fused": (4, 3 * dim)},
            "embeddings": {"rgb": (4, dim), "nir": (4, dim), "tir": (4, dim), "fused": (4, 3 * dim)},
            "logits": {"rgb": (4, 5), "nir": (4, 5), "tir": (4, 5)}}
        for key in ("features", "embeddings"):
            assert torch.equal(out[key]["fused"], torch.cat([out[key][m] for m in ALL], dim=1))
            assert all(torch.isfinite(t).all() for t in out[key].values())
    extracted = model.extract(batch)
    assert extracted.keys() == out["embeddings"].keys()
    assert torch.equal(extracted["fused"], out["embeddings"]["fused"])  # eval mode: deterministic


def test_shared_backbone_has_a_third_of_the_backbone_parameters():
    shared = MultiModalBaseline("vit_tutorial", ALL, 5, img_size=SIZE, shared=True)
    unshared = MultiModalBaseline("vit_tutorial", ALL, 5, img_size=SIZE)
    assert list(shared.backbones) == ["shared"] and list(unshared.backbones) == list(ALL)
    assert n_params(unshared.backbones) == 3 * n_params(shared.backbones)
    assert n_params(unshared.heads) == n_params(shared.heads) == 3 * (2 * 96 + 96 * 5)


def test_branches_are_independent_and_the_shared_backbone_matches_its_unshared_copy():
    torch.manual_seed(0)
    shared = MultiModalBaseline("resnet_tutorial", ALL, 5, img_size=SIZE, shared=True).eval()
    unshared = MultiModalBaseline("resnet_tutorial", ALL, 5, img_size=SIZE).eval()
    for m in ALL:
        unshared.backbones[m].load_state_dict(shared.backbones["shared"].state_dict())
    unshared.heads.load_state_dict(shared.heads.state_dict())
    batch = multimodal_batch()
    out = shared(batch)
    torch.testing.assert_close(unshared(batch)["embeddings"], out["embeddings"])
    changed = {**batch, "images": batch["images"].clone()}
    changed["images"][:, 1] = torch.randn(4, 3, *SIZE)
    after = shared(changed)
    assert torch.equal(after["embeddings"]["rgb"], out["embeddings"]["rgb"])
    assert torch.equal(after["embeddings"]["tir"], out["embeddings"]["tir"])
    assert not torch.allclose(after["embeddings"]["nir"], out["embeddings"]["nir"])


def test_single_modality_baseline_and_determinism():
    torch.manual_seed(7)
    a = MultiModalBaseline("vit_tutorial", ("tir",), 5, img_size=SIZE).eval()
    torch.manual_seed(7)
    b = MultiModalBaseline("vit_tutorial", ("tir",), 5, img_size=SIZE).eval()
    batch = multimodal_batch(m=1)
    out = a(batch)
    assert set(out["embeddings"]) == {"tir", "fused"} and set(out["logits"]) == {"tir"}
    assert torch.equal(out["embeddings"]["fused"], out["embeddings"]["tir"])
    assert torch.equal(b(batch)["embeddings"]["fused"], out["embeddings"]["fused"])
    assert torch.equal(a(batch)["logits"]["tir"], out["logits"]["tir"])


@pytest.mark.parametrize("shared", [False, True])
def test_gradients_reach_every_branch(shared):
    torch.manual_seed(0)
    model = MultiModalBaseline("vit_tutorial", ALL, 5, img_size=SIZE, shared=shared).train()
    batch = multimodal_batch()
    out = model(batch)
    loss = sum(nn.functional.cross_entropy(out["logits"][m], batch["label"]) for m in ALL)
    (loss + out["features"]["fused"].pow(2).mean()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name in ALL if not shared else ("shared",):
        assert model.backbones[name].vit.patch_embed.proj[0].weight.grad.abs().sum() > 0
    assert all(not model.heads[m].bn.bias.requires_grad for m in ALL)


def test_multimodal_errors_name_what_was_expected():
    model = MultiModalBaseline("vit_tutorial", ("rgb", "tir"), 5, img_size=SIZE)
    expected = r"\[B, 2, 3, H, W\] for modalities \('rgb', 'tir'\), got \[4, 3, 3, 128, 64\]"
    with pytest.raises(ValueError, match=expected):
        model(multimodal_batch())
    with pytest.raises(ValueError, match=r"got \[4, 3, 128, 64\]"):
        model({"images": torch.zeros(4, 3, *SIZE)})
    with pytest.raises(ValueError, match=r"expects images \[B, 3, 128x64\]"):
        model({"images": torch.zeros(2, 2, 3, 64, 64)})
    with pytest.raises(ValueError, match="in that order"):
        MultiModalBaseline("vit_tutorial", ("tir", "rgb"), 5, img_size=SIZE)
    with pytest.raises(ValueError, match="subset of"):
        MultiModalBaseline("vit_tutorial", ("rgb", "depth"), 5, img_size=SIZE)
    with pytest.raises(ValueError, match="'nir' is not one of"):
        model.cam_target_layers("nir")


def grad_cam(model: nn.Module, batch: dict, modality: str, key: str) -> np.ndarray:
    """Grad-CAM of ``modality``'s images for the identity logits ``key`` (labels as targets)."""
    index = model.modalities.index(modality)

    class OneModality(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            images = [x if j == index else batch["images"][:, j] for j in range(len(model.modalities))]
            present = batch["present"] if key != "embedding" else torch.nn.functional.one_hot(
                torch.full((len(x),), index), len(model.modalities)).bool()
            return self.model({"images": torch.stack(images, dim=1), "present": present})["logits"][key]

    cam = GradCAM(model=OneModality(), target_layers=model.cam_target_layers(modality),
                  reshape_transform=model.cam_reshape)
    return cam(input_tensor=batch["images"][:, index], targets=[ClassifierOutputTarget(int(c)) for c in batch["label"]])


def test_grad_cam_of_a_shared_vit_sees_only_the_chosen_modality():
    torch.manual_seed(0)
    shared = MultiModalBaseline("vit_tutorial", ALL, 5, img_size=SIZE, shared=True)
    unshared = MultiModalBaseline("vit_tutorial", ALL, 5, img_size=SIZE)
    for m in ALL:
        unshared.backbones[m].load_state_dict(shared.backbones["shared"].state_dict())
    unshared.heads.load_state_dict(shared.heads.state_dict())
    assert unshared.cam_target_layers("nir") == [unshared.backbones["nir"].blocks[-1].norm1]
    assert shared.cam_target_layers("nir") == [shared.cam_taps["nir"]]
    batch = multimodal_batch()
    for modality in ("nir", "tir"):
        maps = grad_cam(shared, batch, modality, modality)
        assert maps.shape == (4, *SIZE) and np.isfinite(maps).all() and maps.max() > 0
        np.testing.assert_allclose(maps, grad_cam(unshared, batch, modality, modality), atol=1e-5)


# ------------------------------------------------------------------------------------------ cross-modal baseline

def test_cross_modal_outputs_and_routing_match_a_per_sample_reference():
    torch.manual_seed(0)
    model = CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE).eval()
    assert model.modalities == ("rgb", "nir") and model.default_feature == "embedding" and model.cam_reshape is None
    batch = cross_modal_batch([1, 0, 0, 1, 1, 0])
    out = model(batch)
    assert {k: {n: tuple(t.shape) for n, t in v.items()} for k, v in out.items() if k != "modality"} == {
        "features": {"embedding": (6, 256)}, "embeddings": {"embedding": (6, 256)}, "logits": {"embedding": (6, 5)}}
    assert out["modality"].tolist() == [1, 0, 0, 1, 1, 0]
    with torch.no_grad():
        for i, m in enumerate([1, 0, 0, 1, 1, 0]):
            x = batch["images"][i : i + 1, m]
            pooled = model.pool(model.body(model.stems[model.modalities[m]](x)))
            torch.testing.assert_close(out["features"]["embedding"][i : i + 1], pooled, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["embeddings"]["embedding"][i : i + 1], model.head(pooled)[0],
                                       atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        model.stems["nir"].conv1.weight.add_(torch.randn_like(model.stems["nir"].conv1.weight))
    after = model(batch)["embeddings"]["embedding"]
    rgb = torch.tensor([False, True, True, False, False, True])
    assert torch.equal(after[rgb], out["embeddings"]["embedding"][rgb])
    assert not torch.allclose(after[~rgb], out["embeddings"]["embedding"][~rgb])
    assert torch.equal(model.extract(batch)["embedding"], after)


def test_cross_modal_structure_follows_agw():
    torch.manual_seed(0)
    model = CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE)
    for m in ("rgb", "nir"):  # both stems start from the same weights, and are separate modules
        assert torch.equal(model.stems[m].conv1.weight, model.stems["rgb"].conv1.weight)
    assert model.stems["rgb"].conv1 is not model.stems["nir"].conv1
    assert [sum(isinstance(b, NonLocal) for b in stage) for stage in model.body] == [0, 1, 1, 0]
    assert isinstance(model.pool, GeM) and model.pool.p == 3.0
    assert model.cam_target_layers("nir") == [model.body.layer4]
    plain = CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE, pooling="avg", non_local=False)
    assert not any(isinstance(b, NonLocal) for b in plain.modules())
    batch = cross_modal_batch([0, 1])
    plain.eval()
    torch.testing.assert_close(plain(batch)["features"]["embedding"],
                               plain.body(torch.stack([plain.stems["rgb"](batch["images"][:1, 0])[0],
                                                       plain.stems["nir"](batch["images"][1:, 1])[0]])).mean((2, 3)))


def test_non_local_block_starts_as_identity_and_matches_its_formula():
    torch.manual_seed(0)
    block = NonLocal(8).eval()
    x = torch.randn(2, 8, 4, 3)
    torch.testing.assert_close(block(x), x)
    nn.init.ones_(block.W[1].weight)
    theta, phi, g = (conv(x).flatten(2) for conv in (block.theta, block.phi, block.g))
    y = torch.einsum("bcn,bcm,bdm->bdn", theta, phi, g) / 12
    expected = block.W(y.reshape(2, 4, 4, 3)) + x
    torch.testing.assert_close(block(x), expected)


def test_cross_modal_gradients_reach_both_stems_and_the_body():
    torch.manual_seed(0)
    model = CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE).train()
    batch = cross_modal_batch([0, 1, 0, 1])
    out = model(batch)
    nn.functional.cross_entropy(out["logits"]["embedding"], batch["label"]).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
    # timm zero-initialises each residual branch's last BN (zero_init_last), so test the parts that get a signal
    for part in (model.stems["rgb"].conv1, model.stems["nir"].conv1, model.body.layer1[0].downsample[0],
                 model.body.layer2[0].bn2, model.body.layer4[0].downsample[0], model.head.bn):
        assert part.weight.grad.abs().sum() > 0
    assert model.head.bn.bias.grad is None


def test_cross_modal_grad_cam_and_errors():
    torch.manual_seed(0)
    model = CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE)
    batch = cross_modal_batch([1, 1, 1])
    maps = grad_cam(model, batch, "nir", "embedding")
    assert maps.shape == (3, *SIZE) and np.isfinite(maps).all()
    both = {**batch, "present": torch.ones(3, 2, dtype=torch.bool)}
    with pytest.raises(ValueError, match="do not have exactly one modality"):
        model(both)
    with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\]"):
        model(multimodal_batch())
    with pytest.raises(ValueError, match="needs a CNN"):
        CrossModalBaseline("vit_tutorial", 5, img_size=SIZE)
    with pytest.raises(ValueError, match="at least two modalities"):
        CrossModalBaseline("resnet_tutorial", 5, modalities=("rgb",), img_size=SIZE)
    with pytest.raises(ValueError, match="pooling must be"):
        CrossModalBaseline("resnet_tutorial", 5, img_size=SIZE, pooling="max")


def test_paper_size_agw_runs_at_288x144():
    torch.manual_seed(0)
    model = CrossModalBaseline("resnet50.tv_in1k", 395, img_size=(288, 144)).eval()  # SYSU-MM01: 395 ids
    assert [sum(isinstance(b, NonLocal) for b in stage) for stage in model.body] == [0, 2, 3, 0]
    present = torch.tensor([[True, False], [False, True]])
    with torch.no_grad():
        out = model({"images": torch.randn(2, 2, 3, 288, 144), "present": present})
    assert out["embeddings"]["embedding"].shape == (2, 2048) and out["logits"]["embedding"].shape == (2, 395)
