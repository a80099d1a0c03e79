"""Sample transforms: synchronised spatial augmentation, determinism, CAJ/PECA channel operations."""

import pytest
import torch
from PIL import Image

from reidlab.data.transforms import (
    GRAY_WEIGHTS,
    ICAL_KEPT_CHANNELS,
    ZHONG_ERASE_FILL,
    ChannelAdapGray,
    ChannelRandomErasing,
    build_channel_augmented_transform,
    build_cross_modal_train_transform,
    build_test_transform,
    build_train_transform,
    channel_adap_gray,
    channel_aggregation,
    channel_augmented_view,
    channel_exchange,
    draw_erase_box,
    grayscale,
    normalise,
    shifted_window,
)

H, W = 32, 16
UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # no normalisation: outputs are raw [0, 1] pixels


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pil(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor.permute(1, 2, 0).numpy())


def random_uint8(seed: int, low: int = 0, high: int = 256) -> torch.Tensor:
    return torch.randint(low, high, (3, H, W), generator=gen(seed), dtype=torch.uint8)


def marked_modalities(row: int, col: int) -> dict[str, Image.Image]:
    """Three differently-looking, pixel-aligned modality images sharing one bright marker pixel."""
    out = {}
    for i, m in enumerate(("rgb", "nir", "tir")):
        img = random_uint8(10 + i, high=100)
        img[:, row, col] = 255
        out[m] = pil(img)
    return out


def marker_position(image: torch.Tensor) -> tuple[int, int]:
    flat = int(image.sum(0).argmax())
    return divmod(flat, image.shape[-1])


@pytest.mark.parametrize("seed", range(8))
def test_synchronised_transform_keeps_modalities_aligned(seed):
    row, col, pad = 15, 5, 4
    t = build_train_transform((H, W), flip_p=0.5, pad=pad, erase_p=0.0, **UNIT)
    out = t(marked_modalities(row, col), gen(seed))
    draw = t.draw(gen(seed))  # synchronised: the first draws of the call are the shared spatial draw
    c = W - 1 - col if draw.flip else col
    expected = (row + pad - draw.top, c + pad - draw.left)
    assert {m: marker_position(x) for m, x in out.items()} == {m: expected for m in ("rgb", "nir", "tir")}


def test_independent_transform_draws_per_modality():
    t = build_train_transform((H, W), flip_p=0.5, pad=4, erase_p=0.0, synchronised=False, **UNIT)
    positions = [{marker_position(x) for x in t(marked_modalities(15, 5), gen(s)).values()} for s in range(8)]
    assert any(len(p) > 1 for p in positions), "independent draws never moved the modalities apart"


@pytest.mark.parametrize("synchronised", [True, False])
def test_identical_copies_stay_identical_only_when_synchronised(synchronised):
    img = pil(random_uint8(0))
    t = build_train_transform((H, W), flip_p=0.5, pad=4, erase_p=1.0, synchronised=synchronised)
    outs = [t({"rgb": img, "nir": img, "tir": img}, gen(s)) for s in range(6)]
    same = [torch.equal(o["rgb"], o["nir"]) and torch.equal(o["rgb"], o["tir"]) for o in outs]
    assert all(same) if synchronised else not all(same)


def erased_mask(out: torch.Tensor) -> torch.Tensor:
    fill = torch.tensor(ZHONG_ERASE_FILL).view(3, 1, 1)
    return (out == fill).all(0)


def test_synchronised_erasing_uses_one_box_for_all_modalities():
    images = {m: pil(random_uint8(i)) for i, m in enumerate(("rgb", "nir", "tir"))}
    t = build_train_transform((H, W), flip_p=0.5, pad=2, erase_p=1.0)
    for s in range(5):
        masks = [erased_mask(x) for x in t(images, gen(s)).values()]
        assert masks[0].any()
        assert all(torch.equal(masks[0], m) for m in masks[1:])
        rows, cols = masks[0].nonzero(as_tuple=True)  # the erased region is a rectangle
        assert masks[0].sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_flip_and_normalisation_exact():
    img = random_uint8(3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    t = build_train_transform((H, W), flip_p=1.0, pad=0, erase_p=0.0, mean=mean, std=std)
    out = t({"rgb": pil(img)}, gen(0))["rgb"]
    torch.testing.assert_close(out, normalise(img.float().div(255).flip(-1), mean, std))


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image():
    img = random_uint8(4)
    pad = 3
    t = build_train_transform((H, W), flip_p=0.0, pad=pad, erase_p=0.0, **UNIT)
    padded = torch.nn.functional.pad(img.float().div(255), (pad,) * 4)
    for s in range(4):
        out = t({"rgb": pil(img)}, gen(s))["rgb"]
        d = t.draw(gen(s))
        torch.testing.assert_close(out, padded[:, d.top:d.top + H, d.left:d.left + W])


@pytest.mark.parametrize("pad", [0, 1, 3, 20])
def test_shifted_window_equals_cropping_the_zero_padded_image(pad):
    img = random_uint8(5)
    padded = torch.nn.functional.pad(img, (pad,) * 4)
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            assert torch.equal(shifted_window(img, pad, top, left), padded[:, top:top + H, left:left + W])


def test_uint8_tensors_and_pil_images_give_bit_identical_augmentations():
    """The dataset hands cached uint8 tensors to the transforms; the output is that of the PIL image."""
    tensors = {m: random_uint8(i) for i, m in enumerate(("rgb", "nir", "tir"))}
    for synchronised in (True, False):
        t = build_train_transform((H, W), pad=4, erase_p=0.7, synchronised=synchronised, erase_fill="pixel",
                                  color_jitter=(0.3, 0.3, 0.3, 0.1), modality_ops={"nir": [ChannelAdapGray(0.5)]})
        for s in range(6):
            a, b = t(tensors, gen(s)), t({m: pil(x) for m, x in tensors.items()}, gen(s))
            assert all(torch.equal(a[m], b[m]) for m in a)
    test = build_test_transform((H, W))
    a, b = test(tensors), test({m: pil(x) for m, x in tensors.items()})
    assert all(torch.equal(a[m], b[m]) for m in a)


def test_same_seed_same_output_and_seeds_differ():
    images = {"rgb": pil(random_uint8(0)), "tir": pil(random_uint8(1))}
    t = build_train_transform((24, 12), erase_p=0.5, color_jitter=(0.3, 0.3, 0.3, 0.1), erase_fill="pixel")
    a, b = t(images, gen(7)), t(images, gen(7))
    assert all(torch.equal(a[m], b[m]) for m in a)
    assert any(not torch.equal(a["rgb"], t(images, gen(s))["rgb"]) for s in range(8, 12))


def test_without_generator_the_global_rng_is_used():
    images = {"rgb": pil(random_uint8(0))}
    t = build_train_transform((H, W))
    torch.manual_seed(5)
    a = t(images)
    torch.manual_seed(5)
    assert torch.equal(a["rgb"], t(images)["rgb"])


def test_dict_order_does_not_change_draws():
    imgs = {m: pil(random_uint8(i)) for i, m in enumerate(("rgb", "nir", "tir"))}
    reversed_imgs = dict(reversed(list(imgs.items())))
    t = build_train_transform((H, W), synchronised=False, erase_p=0.5)
    a, b = t(imgs, gen(1)), t(reversed_imgs, gen(1))
    assert list(a) == list(b) == ["rgb", "nir", "tir"]
    assert all(torch.equal(a[m], b[m]) for m in a)


def test_resize_accepts_pil_and_tensors_of_other_sizes():
    big = random_uint8(0)
    big = torch.nn.functional.interpolate(big[None].float(), size=(64, 32)).round().to(torch.uint8)[0]
    t = build_test_transform((H, W))
    out = t({"rgb": pil(big), "nir": big, "tir": big.float() / 255})
    assert {m: tuple(x.shape) for m, x in out.items()} == {m: (3, H, W) for m in ("rgb", "nir", "tir")}
    torch.testing.assert_close(out["nir"], out["tir"])
    assert (out["rgb"] - out["nir"]).abs().mean() < 0.05  # PIL and tensor bicubic resizing agree closely


def test_test_transform_is_deterministic_resize_and_normalise():
    img = random_uint8(2)
    out = build_test_transform((H, W))({"rgb": pil(img)}, gen(0))["rgb"]
    torch.testing.assert_close(out, normalise(img.float() / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(ValueError, match="erase_fill"):
        build_train_transform(erase_fill="noise")
    with pytest.raises(ValueError, match="pad >= 0"):
        build_train_transform(pad=-1)
    with pytest.raises(ValueError, match="interpolation"):
        build_test_transform(interpolation="cubic-ish")
    with pytest.raises(ValueError, match="3-channel"):
        build_test_transform((H, W))({"rgb": torch.zeros(1, H, W)})
    with pytest.raises(TypeError, match="PIL image or a tensor"):
        build_test_transform((H, W))({"rgb": [[0]]})


def test_erase_box_respects_area_aspect_and_probability():
    g = gen(0)
    assert all(draw_erase_box(100, 50, 0.0, generator=g) is None for _ in range(20))
    for _ in range(200):
        top, left, h, w = draw_erase_box(100, 50, 1.0, generator=g)
        assert 0 <= top <= 100 - h and 0 <= left <= 50 - w
        assert h < 100 and w < 50
        assert 0.02 * 5000 * 0.8 <= h * w <= 0.4 * 5000 * 1.2  # rounding of h and w
        assert 0.3 * 0.7 <= h / w <= (1 / 0.3) * 1.4


# ---------------------------------------------------------------------------------------------
# Channel augmentations on hand-made tensors: channel c holds the constant c + 1.

def striped(n: int = 1) -> torch.Tensor:
    return torch.arange(1.0, 4.0).view(1, 3, 1, 1).expand(n, 3, 4, 2).clone()


GRAY = sum(w * v for w, v in zip(GRAY_WEIGHTS, (1.0, 2.0, 3.0), strict=True))


def outcomes(batch: torch.Tensor) -> list[str]:
    """Name what happened to each image of a striped batch."""
    names = []
    for img in batch:
        values = tuple(round(float(img[c, 0, 0]), 4) for c in range(3))
        assert all(torch.all(img[c] == img[c, 0, 0]) for c in range(3))
        names.append({(1.0, 1.0, 1.0): "R", (2.0, 2.0, 2.0): "G", (3.0, 3.0, 3.0): "B",
                      (1.0, 2.0, 3.0): "same", (round(GRAY, 4),) * 3: "gray"}[values])
    return names


def test_grayscale_uses_caj_weights():
    torch.testing.assert_close(grayscale(striped())[0, :, 0, 0], torch.full((3,), GRAY))


def test_channel_exchange_gray2_always_replicates_one_channel():
    names = outcomes(channel_exchange(striped(300), gray=2, generator=gen(0)))
    assert set(names) == {"R", "G", "B"}
    assert all(60 < names.count(o) < 140 for o in ("R", "G", "B"))


def test_channel_augmentations_return_images_on_their_own_device():
    # Draws stay on the CPU (same views for a seed on any device); the results follow the images. The meta device
    # stands in for CUDA: PECA's channel view failed on CUDA with "found at least two devices" before.
    images = torch.empty(4, 3, 8, 4, device="meta")
    outputs = [channel_exchange(images, gray=3, generator=gen(0)), channel_adap_gray(images, generator=gen(0)),
               channel_augmented_view(images, generator=gen(0)), grayscale(images),
               channel_aggregation(images, images, generator=gen(0)),
               channel_aggregation(images, images, variant=torch.tensor([0, 1, 2, 5]))]
    assert all(out.device.type == "meta" and out.shape == images.shape for out in outputs)


def test_channel_exchange_gray3_adds_grayscale():
    names = outcomes(channel_exchange(striped(400), gray=3, generator=gen(0)))
    assert set(names) == {"R", "G", "B", "gray"}
    with pytest.raises(ValueError, match="gray"):
        channel_exchange(striped(), gray=5)


def test_channel_adap_gray_outcomes_follow_probability():
    always = outcomes(channel_adap_gray(striped(400), probability=1.0, generator=gen(0)))
    never = outcomes(channel_adap_gray(striped(400), probability=0.0, generator=gen(0)))
    assert set(always) == {"R", "G", "B", "gray"} and 60 < always.count("gray") < 140
    assert set(never) == {"R", "G", "B", "same"} and 60 < never.count("same") < 140
    half = outcomes(torch.stack([ChannelAdapGray(0.5)(striped()[0], gen(s)) for s in range(400)]))
    assert 20 < half.count("gray") < 80 and 60 < half.count("same") + half.count("gray") < 140


def test_channel_ops_do_not_modify_their_input_and_are_seeded():
    x = striped(16)
    before = x.clone()
    a = channel_exchange(x, generator=gen(3))
    channel_adap_gray(x, generator=gen(3))
    assert torch.equal(x, before)
    assert torch.equal(a, channel_exchange(x, generator=gen(3)))
    assert torch.equal(channel_augmented_view(x, gen(3)), a)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        channel_exchange(torch.zeros(2, 4, 4))


def test_channel_random_erasing_fills_a_box_with_zhong_constants():
    x = torch.zeros(3, 20, 10)
    assert torch.equal(ChannelRandomErasing(probability=0.0)(x, gen(0)), x)
    out = ChannelRandomErasing(probability=1.0)(x, gen(0))
    mask = erased_mask(out)
    assert mask.any() and torch.equal(out[:, ~mask], x[:, ~mask])


def test_channel_aggregation_variants_follow_peca_eq2():
    vis = torch.ones(len(ICAL_KEPT_CHANNELS), 3, 4, 2)
    ir = torch.zeros_like(vis)
    out = channel_aggregation(vis, ir, variant=torch.arange(len(ICAL_KEPT_CHANNELS)))
    for v, kept in enumerate(ICAL_KEPT_CHANNELS):
        assert [bool(out[v, c].all()) for c in range(3)] == [c in kept for c in range(3)]
        assert all(not out[v, c].any() for c in range(3) if c not in kept)
    drawn = channel_aggregation(torch.ones(200, 3, 1, 1), torch.zeros(200, 3, 1, 1), gen(0))
    kept_counts = drawn.flatten(1).sum(1)
    assert set(kept_counts.tolist()) == {1.0, 2.0}  # one or two visible channels, never 0 or 3
    with pytest.raises(ValueError, match="same shape"):
        channel_aggregation(torch.ones(3, 4, 2), torch.ones(3, 4, 3))


def test_modality_ops_apply_to_their_modality_only():
    img = pil(random_uint8(0))
    t = build_train_transform((H, W), erase_p=0.0, modality_ops={"nir": [lambda x, g: x * 0]})
    out = t({"rgb": img, "nir": img}, gen(0))
    assert not out["nir"].any() and out["rgb"].any()


def test_cross_modal_and_channel_augmented_builders():
    img = pil(random_uint8(1))
    ca = build_channel_augmented_transform((H, W), color_jitter=(0.5, 0.5, 0.5, 0.0))
    for s in range(5):
        out = ca({"rgb": img}, gen(s))["rgb"]
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # one channel replicated
    cm = build_cross_modal_train_transform((H, W))
    assert [type(op).__name__ for op in cm.modality_ops["nir"]] == ["ChannelAdapGray"]
    assert "rgb" not in cm.modality_ops and cm.erase_fill == "mean"
