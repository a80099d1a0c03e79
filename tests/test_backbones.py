"""timm backbones: presets, token / feature-map outputs, last stride, checkpoint loading with pos-embed resampling,
the no-weights error, and the paper-size configurations at the papers' input sizes."""

import logging
import socket

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import OPENAI_CLIP_MEAN
from timm.layers import resample_abs_pos_embed

from reidlab.models import backbones
from reidlab.models.backbones import (
    PRESETS,
    CNNBackbone,
    ViTBackbone,
    create_backbone,
    tokens_to_map,
    weights_loaded_next,
)

SIZE = (128, 64)


def timm_source(name: str, seed: int, **kwargs) -> torch.nn.Module:
    """A timm model (with its classifier) built like the preset / tag ``name``, with seeded random weights."""
    arch, preset = PRESETS.get(name, (name, {}))
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, **{**preset, **kwargs})


def test_vit_preset_returns_tokens_penultimate_cls_and_patches():
    torch.manual_seed(0)
    backbone = create_backbone("vit_tutorial", img_size=SIZE).eval()
    assert isinstance(backbone, ViTBackbone) and backbone.kind == "vit"
    assert (backbone.feature_dim, backbone.num_prefix_tokens, backbone.grid_size, len(backbone.blocks)) == \
        (96, 1, (16, 8), 4)
    x = torch.randn(2, 3, *SIZE)
    out = backbone(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "tokens": (2, 129, 96), "penultimate": (2, 129, 96), "cls": (2, 96), "patches": (2, 128, 96)}
    vit = backbone.vit
    by_hand = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    for block in vit.blocks[:-1]:
        by_hand = block(by_hand)
    torch.testing.assert_close(out["penultimate"], by_hand)
    torch.testing.assert_close(out["tokens"], vit.norm(vit.blocks[-1](by_hand)))
    torch.testing.assert_close(out["tokens"], vit.forward_features(x))
    torch.testing.assert_close(out["cls"], out["tokens"][:, 0])
    assert backbone.cam_layer is backbone.blocks[-1].norm1
    feature_map = backbone.cam_reshape(out["tokens"])
    assert feature_map.shape == (2, 96, 16, 8)
    torch.testing.assert_close(feature_map[1, :, 3, 5], out["patches"][1, 3 * 8 + 5])


def test_vit_preset_has_the_convolutional_stem_with_the_patchify_grid():
    """Xiao et al. 2021: three 3x3 stride-2 conv-BN-ReLU (widths 24, 48, 96) and a 1x1 projection replace the
    8x8 patchify convolution; the token grid is the patchify one, and each token sees only its own image region
    plus a 7-pixel receptive-field margin."""
    from reidlab.models.conv_stem import ConvStemEmbed

    torch.manual_seed(0)
    backbone = create_backbone("vit_tutorial", img_size=(24, 48)).eval()
    stem = backbone.vit.patch_embed
    assert isinstance(stem, ConvStemEmbed) and backbone.grid_size == (3, 6)
    convs = [m for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (24, (3, 3), (2, 2)), (48, (3, 3), (2, 2)), (96, (3, 3), (2, 2)), (96, (1, 1), (1, 1))]
    x = torch.randn(1, 3, 24, 48)
    y = x.clone()
    y[..., 16:, :] = torch.randn_like(y[..., 16:, :])    # change only the bottom third (token row 2)
    tokens = stem.proj(x), stem.proj(y)
    torch.testing.assert_close(tokens[0][..., 0, :], tokens[1][..., 0, :])    # row 0 (pixels 0-7, field to 14)
    assert not torch.allclose(tokens[0][..., 2, :], tokens[1][..., 2, :])
    with pytest.raises(ValueError, match="power-of-two patch size"):
        ConvStemEmbed(img_size=24, patch_size=6, embed_dim=96)


def test_cnn_preset_stem_and_stages_compose_to_the_feature_map():
    torch.manual_seed(0)
    backbone = create_backbone("resnet_tutorial", img_size=SIZE).eval()
    assert isinstance(backbone, CNNBackbone) and backbone.kind == "cnn"
    assert backbone.feature_dim == 256 and backbone.stage_channels == (32, 64, 128, 256)
    assert list(backbone.stem.named_children())[0][0] == "conv1" and len(backbone.stages) == 4
    assert sum(p.numel() for p in backbone.parameters()) == pytest.approx(1.25e6, rel=0.01)
    x = torch.randn(2, 3, *SIZE)
    out = backbone(x)
    assert list(out) == ["feature_map"]
    torch.testing.assert_close(out["feature_map"], backbone.stages(backbone.stem(x)))
    assert backbone.cam_layer is backbone.stages.layer4 and backbone.cam_reshape is None


def test_last_stride_one_is_the_default_and_doubles_the_last_map():
    x = torch.randn(1, 3, *SIZE)
    reid = create_backbone("resnet_tutorial", img_size=SIZE)
    imagenet = create_backbone("resnet_tutorial", img_size=SIZE, last_stride=2)
    assert reid(x)["feature_map"].shape[-2:] == (8, 4)
    assert imagenet(x)["feature_map"].shape[-2:] == (4, 2)
    assert reid.stages.layer4[0].conv1.stride == (1, 1) and reid.stages.layer4[0].downsample[0].stride == (1, 1)
    avg_down = create_backbone("resnet_tutorial", img_size=SIZE, avg_down=True)  # resnet*d style downsample
    assert avg_down(x)["feature_map"].shape[-2:] == (8, 4)


def test_timm_kwargs_override_presets_and_bad_names_or_options_are_clear_errors():
    assert len(create_backbone("vit_tutorial", img_size=SIZE, depth=2).blocks) == 2
    with pytest.raises(ValueError, match="unknown backbone 'vit_nope'.*preset"):
        create_backbone("vit_nope", img_size=SIZE)
    with pytest.raises(RuntimeError, match="vit_tutorial.synth.safetensors does not fit backbone 'vit_tutorial'"):
        create_backbone("vit_tutorial", img_size=SIZE, pretrained=True, depth=2)   # the .synth weights have 4
    with pytest.raises(ValueError, match="last_stride applies to CNN"):
        create_backbone("vit_tutorial", img_size=SIZE, last_stride=1)
    with pytest.raises(ValueError, match="last_stride must be 1 or 2"):
        create_backbone("resnet_tutorial", img_size=SIZE, last_stride=3)
    with pytest.raises(ValueError, match="supported families"):
        create_backbone("mobilenetv3_small_050", img_size=SIZE)


def test_wrong_input_shape_names_the_expected_shape():
    vit = create_backbone("vit_tutorial", img_size=SIZE)
    with pytest.raises(ValueError, match=r"expects images \[B, 3, 128x64\], got \[1, 3, 64, 64\]"):
        vit(torch.zeros(1, 3, 64, 64))
    cnn = create_backbone("resnet_tutorial", img_size=SIZE)
    with pytest.raises(ValueError, match=r"\[B, 3, H x W\], got \[3, 128, 64\]"):
        cnn(torch.zeros(3, 128, 64))
    with pytest.raises(ValueError, match="1 prefix \\+ 16x8 patch tokens"):
        tokens_to_map(torch.zeros(1, 10, 4), 1, (16, 8))


def test_random_init_logs_one_warning_per_process_and_a_checkpoint_none(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(backbones, "_RANDOM_INIT_WARNED", set())  # as in a fresh process
    path = tmp_path / "w.pth"
    torch.save(timm_source("resnet_tutorial", 0).state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="reidlab"):
        with weights_loaded_next():
            create_backbone("resnet_tutorial", img_size=SIZE)  # the caller loads weights next: no warning
        for _ in range(3):
            create_backbone("resnet_tutorial", img_size=SIZE)
        create_backbone("vit_tutorial", img_size=SIZE)
    assert [r.getMessage() for r in caplog.records if r.name == "reidlab"] == [
        "backbone resnet_tutorial is randomly initialised (pretrained=False, no checkpoint)",
        "backbone vit_tutorial is randomly initialised (pretrained=False, no checkpoint)"]
    monkeypatch.setattr(backbones, "_RANDOM_INIT_WARNED", set())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reidlab"):
        create_backbone("resnet_tutorial", img_size=SIZE, checkpoint=path)
    assert not [r for r in caplog.records if r.name == "reidlab"]


@pytest.mark.parametrize("name,suffix", [("vit_tutorial", ".pth"), ("resnet_tutorial", ".safetensors")])
def test_checkpoint_round_trip_loads_every_weight_and_drops_the_classifier(tmp_path, name, suffix):
    source = timm_source(name, seed=3, **({"img_size": SIZE} if name == "vit_tutorial" else {}))
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    torch.manual_seed(99)
    backbone = create_backbone(name, img_size=SIZE, checkpoint=path)
    loaded = backbone.vit.state_dict() if name == "vit_tutorial" else {
        **{f"{k}": v for k, v in backbone.stem.state_dict().items()},
        **{k: v for k, v in backbone.stages.state_dict().items()}}
    classifier = {"head.weight", "head.bias", "fc.weight", "fc.bias"}
    assert set(loaded) == set(state) - classifier
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


def test_checkpoint_at_another_size_is_resampled_through_timm(tmp_path):
    source = timm_source("deit_tiny_patch16_224", seed=1)  # 14x14 grid, ImageNet classifier head
    path = tmp_path / "deit_tiny.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("deit_tiny_patch16_224.fb_in1k", img_size=(256, 128), checkpoint=path)
    assert backbone.vit.pos_embed.shape == (1, 1 + 16 * 8, 192)
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=(16, 8), old_size=(14, 14),
                                      num_prefix_tokens=1)
    torch.testing.assert_close(backbone.vit.pos_embed.detach(), expected)
    torch.testing.assert_close(backbone.vit.pos_embed[:, 0], source.pos_embed[:, 0])  # class position kept
    assert not torch.allclose(backbone.vit.pos_embed[:, 1:3], source.pos_embed[:, 1:3])  # grid interpolated
    assert torch.equal(backbone.blocks[5].mlp.fc2.weight, source.blocks[5].mlp.fc2.weight)


def test_non_square_source_grid_comes_from_the_pretrained_cfg_overlay(tmp_path):
    source = timm_source("vit_tutorial", seed=2, img_size=SIZE)  # 16x8 grid
    path = tmp_path / "tutorial.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("vit_tutorial", img_size=(256, 128), checkpoint=path,
                               pretrained_cfg_overlay=dict(input_size=(3, *SIZE)))
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=(32, 16), old_size=(16, 8),
                                      num_prefix_tokens=1)
    torch.testing.assert_close(backbone.vit.pos_embed.detach(), expected)


def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm_source("resnet_tutorial", 0).state_dict(), path)
    with pytest.raises(RuntimeError, match=r"(?s)resnet.pth does not fit backbone 'vit_tutorial' \(timm vit_tiny.*"
                                           r"Missing key\(s\)"):
        create_backbone("vit_tutorial", img_size=SIZE, checkpoint=path)
    with pytest.raises(FileNotFoundError, match="checkpoint for backbone 'vit_tutorial' not found"):
        create_backbone("vit_tutorial", img_size=SIZE, checkpoint=tmp_path / "missing.pth")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """No network at all (sockets refuse), Hugging Face offline mode, and an empty cache at ``tmp_path/hf/hub``."""
    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


def test_pretrained_true_reads_the_hugging_face_cache_offline_and_resamples(offline_hub, caplog):
    source = timm_source("deit_tiny_patch16_224", seed=4)
    snapshot = offline_hub / "models--timm--deit_tiny_patch16_224.fb_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, snapshot / "model.safetensors")
    (offline_hub / "models--timm--deit_tiny_patch16_224.fb_in1k" / "refs").mkdir()
    (offline_hub / "models--timm--deit_tiny_patch16_224.fb_in1k" / "refs" / "main").write_text("0" * 40)
    with caplog.at_level(logging.WARNING, logger="reidlab"):
        backbone = create_backbone("deit_tiny_patch16_224.fb_in1k", img_size=(256, 128), pretrained=True)
    assert not [r for r in caplog.records if r.name == "reidlab"]
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=(16, 8), old_size=(14, 14),
                                      num_prefix_tokens=1)
    torch.testing.assert_close(backbone.vit.pos_embed.detach(), expected)
    assert torch.equal(backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_pretrained_without_network_or_cache_is_a_clear_error(offline_hub):
    with pytest.raises(RuntimeError) as info:
        create_backbone("resnet50.tv_in1k", img_size=(256, 128), pretrained=True)
    message = str(info.value)
    for part in ("'resnet50.tv_in1k'", "timm/resnet50.tv_in1k", str(offline_hub), "checkpoint=",
                 "pretrained=False"):
        assert part in message


def test_paper_backbones_build_at_the_paper_input_sizes():
    """DeiT-B/16, CLIP ViT-B/16 and ResNet-50 at 256x128, 288x144 and 384x128, one forward each. The ViTs skip
    timm's extra truncated-normal init pass (PyTorch's default init remains), which is most of their build time."""
    torch.manual_seed(0)
    with torch.no_grad():
        for size in [(256, 128), (288, 144), (384, 128)]:
            grid = (size[0] // 16, size[1] // 16)
            for name in ["deit_base_patch16_224.fb_in1k", "vit_base_patch16_clip_224.openai"]:
                vit = create_backbone(name, img_size=size, weight_init="skip").eval()
                out = vit(torch.randn(1, 3, *size))
                assert vit.grid_size == grid and vit.vit.pos_embed.shape == (1, 1 + grid[0] * grid[1], 768)
                assert out["tokens"].shape == (1, 1 + grid[0] * grid[1], 768) and out["cls"].shape == (1, 768)
                assert vit.mean == (OPENAI_CLIP_MEAN if "clip" in name else (0.485, 0.456, 0.406))
            cnn = create_backbone("resnet50.tv_in1k", img_size=size).eval()
            assert cnn(torch.randn(1, 3, *size))["feature_map"].shape == (1, 2048, size[0] // 16, size[1] // 16)
