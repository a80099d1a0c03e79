"""Missing-modality settings and DENet's random missing rate."""

import pytest
import torch

from reidlab.eval import MISSING_SETTINGS, apply_missing, missing_mask, random_missing_masks


def test_settings_name_the_missing_modalities():
    assert MISSING_SETTINGS == {
        "complete": (),
        "M(R)": ("rgb",), "M(N)": ("nir",), "M(T)": ("tir",),
        "M(RN)": ("rgb", "nir"), "M(RT)": ("rgb", "tir"), "M(NT)": ("nir", "tir"),
    }
    assert missing_mask("M(NT)", 2).tolist() == [[False, True, True]] * 2
    assert not missing_mask("complete", 3).any()


def test_apply_missing_zeroes_only_the_missing_modalities():
    images = torch.randn(2, 3, 3, 4, 2)
    original = images.clone()
    out, presence = apply_missing(images, "M(RT)")
    assert presence.tolist() == [[False, True, False]] * 2
    assert torch.equal(out[:, 1], images[:, 1])
    assert not out[:, 0].any() and not out[:, 2].any()
    assert torch.equal(images, original)  # input untouched


def test_apply_missing_with_a_per_sample_mask_and_existing_presence():
    images = torch.ones(2, 3, 1, 2, 2)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    presence = torch.tensor([[True, True, False], [True, True, True]])
    out, new_presence = apply_missing(images, mask, presence)
    assert new_presence.tolist() == [[False, True, False], [True, True, False]]
    assert out.sum(dim=(2, 3, 4)).tolist() == [[0, 4, 0], [4, 4, 0]]


def test_apply_missing_errors():
    images = torch.ones(1, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="no modality left"):
        apply_missing(images, "M(NT)", presence=torch.tensor([[False, True, True]]))
    with pytest.raises(ValueError, match="unknown missing-modality setting 'M\\(X\\)'"):
        apply_missing(images, "M(X)")
    with pytest.raises(ValueError, match="images must be"):
        apply_missing(torch.ones(1, 2, 1, 2, 2), "M(R)")
    with pytest.raises(ValueError, match="bool tensor of shape \\(1, 3\\)"):
        apply_missing(images, torch.zeros(1, 3))


def test_random_missing_masks_follow_the_rate_exactly_and_keep_a_modality():
    mask = random_missing_masks(1000, 0.25, seed=0)
    assert mask.shape == (1000, 3) and mask.dtype == torch.bool
    assert int(mask.sum()) == 750  # eta = M / N with N = 3000 images
    assert not mask.all(1).any()
    full = random_missing_masks(50, 2 / 3, seed=1)
    assert full.sum(1).tolist() == [2] * 50
    assert not random_missing_masks(20, 0.0, seed=1).any()


def test_random_missing_masks_are_deterministic_and_uniform_over_modalities():
    assert torch.equal(random_missing_masks(200, 0.4, seed=3), random_missing_masks(200, 0.4, seed=3))
    assert not torch.equal(random_missing_masks(200, 0.4, seed=3), random_missing_masks(200, 0.4, seed=4))
    per_modality = random_missing_masks(30000, 0.3, seed=5).float().mean(0)
    assert torch.allclose(per_modality, torch.full((3,), 0.3), atol=0.01)


@pytest.mark.parametrize("rate", [-0.1, 0.7, 1.0])
def test_random_missing_rate_out_of_range(rate):
    with pytest.raises(ValueError, match="missing rate must be in \\[0, 0.667\\]"):
        random_missing_masks(10, rate, seed=0)
