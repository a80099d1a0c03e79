"""Attention measures: object mass and spatial entropy, against hand-computed values."""

import numpy as np
import pytest

from reidlab.analysis.attention import attention_entropy, object_mass, resize_maps


def box_mask(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def test_a_map_on_the_mask_scores_one_off_the_mask_zero_and_a_uniform_map_the_area_fraction():
    mask = box_mask((16, 8), slice(2, 14), slice(2, 6))          # 48 of 128 pixels
    masks = np.stack([mask, mask, mask])
    cams = np.stack([mask.astype(float), (~mask).astype(float), np.full((16, 8), 0.3)])
    assert object_mass(cams, masks) == pytest.approx([1.0, 0.0, 48 / 128])
    # a uniform map at another resolution is still uniform after resizing: the chance level
    assert object_mass(np.ones((3, 4, 2)), masks) == pytest.approx(masks.mean(axis=(1, 2)))


def test_object_mass_weights_the_mass_and_resizes_the_map_bilinearly_to_the_mask():
    mask = box_mask((2, 2), 0, 0)
    assert object_mass(np.array([[[3.0, 1.0], [0.0, 0.0]]]), mask[None]) == pytest.approx([0.75])
    # enlarging [1, 0] to four columns with half-pixel centres gives [1, 0.75, 0.25, 0]; left half: 1.75 of 2
    left = box_mask((1, 4), 0, slice(0, 2))
    assert resize_maps(np.array([[[1.0, 0.0]]]), (1, 4)) == pytest.approx(np.array([[[1.0, 0.75, 0.25, 0.0]]]))
    assert object_mass(np.array([[[1.0, 0.0]]]), left[None]) == pytest.approx([0.875])
    # shrinking is antialiased (triangle filter): rows of an 8-row map whose top half is 1 -> [1, 7/8, 1/8, 0]
    top_half = np.zeros((1, 8, 4))
    top_half[:, :4] = 1.0
    assert resize_maps(top_half, (4, 2))[0, :, 0] == pytest.approx([1.0, 0.875, 0.125, 0.0])
    assert object_mass(top_half, box_mask((4, 2), slice(0, 2), slice(None))[None]) == pytest.approx([1.875 / 2])


def test_entropy_is_one_for_a_uniform_map_zero_for_a_delta_and_log_k_over_log_n_for_k_equal_pixels():
    delta = np.zeros((4, 4))
    delta[1, 2] = 5.0
    two = np.zeros((4, 4))
    two[0, 0] = two[3, 3] = 0.5
    mixed = np.array([[0.75, 0.25], [0.0, 0.0]])
    expected_mixed = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(4)
    assert attention_entropy(np.stack([np.ones((4, 4)), delta, two])) == pytest.approx([1.0, 0.0, 0.25])
    assert attention_entropy(mixed[None]) == pytest.approx([expected_mixed])
    # scale does not matter, scatter does
    assert attention_entropy(np.stack([2 * two, two]))[0] == pytest.approx(attention_entropy(two[None])[0])


def test_an_all_zero_map_is_nan_in_both_measures_and_the_others_are_unaffected():
    mask = box_mask((4, 4), slice(0, 2), slice(None))
    cams = np.stack([np.zeros((4, 4)), mask.astype(float)])
    with np.errstate(all="raise"):                                   # no warning on the way
        mass, entropy = object_mass(cams, np.stack([mask, mask])), attention_entropy(cams)
    assert np.isnan(mass[0]) and mass[1] == pytest.approx(1.0)
    assert np.isnan(entropy[0]) and entropy[1] == pytest.approx(np.log(8) / np.log(16))


@pytest.mark.parametrize("cams, masks, message", [
    (np.ones((4, 4)), np.ones((1, 4, 4), bool), r"expected maps \[N, H, W\]"),
    (-np.ones((1, 4, 4)), np.ones((1, 4, 4), bool), "non-negative"),
    (np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), bool), "NaN or infinite"),
    (np.ones((1, 4, 4)), np.ones((1, 4, 4)), "boolean masks"),
    (np.ones((2, 4, 4)), np.ones((1, 4, 4), bool), "2 maps and 1 masks"),
])
def test_bad_inputs_are_rejected_with_a_clear_message(cams, masks, message):
    with pytest.raises(ValueError, match=message):
        object_mass(cams, masks)


def test_a_one_pixel_map_has_no_entropy_to_normalise():
    with pytest.raises(ValueError, match="need at least 2"):
        attention_entropy(np.ones((1, 1, 1)))
