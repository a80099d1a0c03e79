"""Image transforms for one sample: a dict ``{modality: image}`` in, a dict ``{modality: Tensor}`` out.

Training transform (:class:`TrainTransform`), in the order of the reference repos
(TransReID / TOP-ReID family for multi-modal data, AGW / CAJ for visible-infrared data):
resize → horizontal flip → zero pad + random crop → to tensor → colour jitter (optional) →
normalise → random erasing → per-modality tensor ops (e.g. the CAJ channel augmentations).

``synchronised=True`` (default) draws one flip, one crop offset and one erasing box per sample and
applies them to every modality, so pixel-aligned modalities (RGBNT201/100, MSVR310, WMVeID863)
stay aligned — MFRNet's pixel-level fusion needs that. ``synchronised=False`` draws them
independently per modality, as the reference repos do (they run a torchvision pipeline on each
modality image separately). Photometric draws (colour jitter, noise fill) are always per modality.

All randomness comes from the ``generator`` argument (a :class:`torch.Generator`); the same
generator state gives the same output. ``generator=None`` uses torch's global RNG, as torchvision
does. Modalities are processed in canonical order (``rgb``, ``nir``, ``tir``, then any other key
sorted), so the draws do not depend on dict order.

Channel augmentations from CAJ (Ye et al., "Channel Augmented Joint Learning for
Visible-Infrared Recognition", ICCV 2021), as in the authors' ``ChannelAug.py`` / ``data_loader.py``:

* :func:`channel_exchange` (``ChannelExchange(gray=2)``): draw ``i`` uniformly from ``0..gray``;
  ``i`` < 3 replicates channel ``i`` to all three; ``i`` = 3 (only reachable with ``gray=3``)
  replaces the image by its grayscale ``0.2989 R + 0.5870 G + 0.1140 B``. CAJ uses ``gray=2``: the
  channel-exchanged visible view is always one colour channel replicated.
* :func:`channel_adap_gray` (``ChannelAdapGray(probability=0.5)``, applied to infrared images):
  draw ``i`` uniformly from ``0..3``; ``i`` < 3 replicates channel ``i``; ``i`` = 3 converts to
  grayscale with probability ``p`` and otherwise leaves the image unchanged.
* :class:`ChannelRandomErasing`: Zhong et al.'s random erasing (probability 0.5, area 0.02–0.4
  of the image, aspect ratio uniform in [0.3, 1/0.3], 100 attempts) filling the box with the
  per-channel constants (0.4914, 0.4822, 0.4465) — the same operation as ``erase_fill="mean"``.

CAJ applies these to the *normalised* tensor (after ``Normalize``); ``modality_ops`` runs them at
that point. :func:`channel_augmented_view` is MMCF's "channel augmentation as a modality" view
(colour jitter + channel erasing + ChannelExchange, see :func:`build_channel_augmented_transform`),
and :func:`channel_aggregation` is PECA's ICAL (Eq. 2): one or two channels of a visible image
replaced by the same-identity infrared image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode

from reidlab.data.records import MODALITIES

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Fill values of Zhong et al.'s random erasing code (CIFAR-10 means), kept by CAJ and reid-strong-baseline.
ZHONG_ERASE_FILL: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
#: ITU-R 601 luma weights used by CAJ's grayscale conversion.
GRAY_WEIGHTS: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)

ImageLike = Image.Image | Tensor
#: A per-modality tensor op: ``(image [..., 3, H, W], generator) -> image``.
TensorOp = Callable[[Tensor, torch.Generator | None], Tensor]
#: A sample transform: ``(images, generator) -> {modality: Tensor [3, H, W]}``.
Transform = Callable[[Mapping[str, ImageLike], torch.Generator | None], dict[str, Tensor]]


# ---------------------------------------------------------------------------------------------
# Random draws (all from an explicit generator)

def _rand(generator: torch.Generator | None) -> float:
    return torch.rand((), generator=generator).item()


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * _rand(generator)


def _randint(lo: int, hi: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[lo, hi]`` (both inclusive, like :func:`random.randint`)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator).item())


Box = tuple[int, int, int, int]  # top, left, height, width


def draw_erase_box(height: int, width: int, probability: float,
                   area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 1 / 0.3),
                   generator: torch.Generator | None = None, attempts: int = 100) -> Box | None:
    """Zhong et al.'s random-erasing box, or ``None`` (no erasing this time).

    Erases with probability ``probability``; the target area is uniform in ``area`` (fraction of the
    image), the aspect ratio h/w uniform in ``aspect`` (the reference code draws it uniformly, timm
    log-uniformly). A box that does not fit is redrawn, up to ``attempts`` times, then nothing is erased.
    """
    if _rand(generator) >= probability:
        return None
    for _ in range(attempts):
        target = _uniform(*area, generator) * height * width
        ratio = _uniform(*aspect, generator)
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if h < height and w < width:
            return _randint(0, height - h, generator), _randint(0, width - w, generator), h, w
    return None


@dataclass(frozen=True)
class SpatialDraw:
    """The random spatial parameters of one image: flip, crop offset in the padded image, erase box."""

    flip: bool
    top: int
    left: int
    erase: Box | None


# ---------------------------------------------------------------------------------------------
# Deterministic pieces

def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name)
    except ValueError:
        raise ValueError(f"unknown interpolation {name!r}; expected 'bilinear', 'bicubic' or 'nearest'") from None


def resize_to_uint8(image: Image.Image, size: tuple[int, int] | None, interpolation: str = "bicubic") -> Tensor:
    """A PIL image as a uint8 tensor [3, H, W], resized by PIL to ``size`` = (H, W) when given and different
    (as ``torchvision.transforms.Resize`` does on PIL images)."""
    if size is not None and image.size != (size[1], size[0]):
        image = TF.resize(image, list(size), interpolation=_interpolation(interpolation))
    return TF.pil_to_tensor(image.convert("RGB"))


def _pixels(image: ImageLike, size: tuple[int, int], interpolation: str) -> Tensor:
    """``image`` at ``size``: uint8 [3, H, W] for PIL images and uint8 tensors already at ``size`` (so the
    spatial augmentation moves bytes), else a float tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        tensor = resize_to_uint8(image, size, interpolation)
    elif isinstance(image, Tensor):
        tensor = image
        if tuple(tensor.shape[-2:]) != tuple(size):
            tensor = tensor.float() if tensor.is_floating_point() else tensor.float().div(255)
            tensor = TF.resize(tensor, list(size), interpolation=_interpolation(interpolation),
                               antialias=True).clamp(0, 1)
    else:
        raise TypeError(f"expected a PIL image or a tensor, got {type(image).__name__}")
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a 3-channel image [3, H, W], got shape {tuple(tensor.shape)}")
    return tensor


def _unit(image: Tensor) -> Tensor:
    """Float in [0, 1]: uint8 scaled by 1/255, float taken as it is."""
    return image.float() if image.is_floating_point() else image.float().div(255)


def resize_to_tensor(image: ImageLike, size: tuple[int, int], interpolation: str = "bicubic") -> Tensor:
    """Resize to ``size`` = (H, W) and return a float tensor [3, H, W] in [0, 1].

    PIL images are resized by PIL (as ``torchvision.transforms.Resize`` does); uint8 tensors are
    scaled to [0, 1]; float tensors are taken as already in [0, 1]. Resized tensors are clamped to
    [0, 1], as PIL's uint8 output is.
    """
    return _unit(_pixels(image, size, interpolation))


def shifted_window(image: Tensor, pad: int, top: int, left: int) -> Tensor:
    """The window of ``image`` [C, H, W] at (``top``, ``left``) in its zero-padded copy (``pad`` on every side),
    of the image's own size — ``pad(image, pad)[:, top:top + H, left:left + W]`` without building the padding."""
    _, height, width = image.shape
    out = image.new_zeros(image.shape)
    dy, dx = top - pad, left - pad  # source row / column of the window's first row / column
    rows, cols = slice(max(0, -dy), min(height, height - dy)), slice(max(0, -dx), min(width, width - dx))
    src_rows, src_cols = slice(rows.start + dy, rows.stop + dy), slice(cols.start + dx, cols.stop + dx)
    if rows.start < rows.stop and cols.start < cols.stop:
        out[:, rows, cols] = image[:, src_rows, src_cols]
    return out


def _channel_tensor(values: Sequence[float], dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(values, dtype=dtype).view(-1, 1, 1)


def normalise(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    return (image - _channel_tensor(mean, image.dtype)) / _channel_tensor(std, image.dtype)


def ordered_modalities(keys: Iterable[str]) -> list[str]:
    """Canonical processing order: ``rgb``, ``nir``, ``tir``, then other keys sorted."""
    keys = list(keys)
    return [m for m in MODALITIES if m in keys] + sorted(k for k in keys if k not in MODALITIES)


# ---------------------------------------------------------------------------------------------
# Colour jitter with explicit randomness

@dataclass(frozen=True)
class ColorJitter:
    """torchvision's ``ColorJitter`` semantics with an explicit generator.

    Factors are uniform in ``[max(0, 1 - x), 1 + x]`` (hue: ``[-hue, hue]``) and the four
    adjustments run in a random order; a zero strength skips that adjustment.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        order = torch.randperm(4, generator=generator).tolist()
        factors = [_uniform(max(0.0, 1 - s), 1 + s, generator) if s > 0 else None
                   for s in (self.brightness, self.contrast, self.saturation)]
        hue = _uniform(-self.hue, self.hue, generator) if self.hue > 0 else None
        adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for i in order:
            value = factors[i] if i < 3 else hue
            if value is not None:
                image = adjust[i](image, value)
        return image


# ---------------------------------------------------------------------------------------------
# CAJ channel augmentations (tensor ops; a leading batch dimension gets one draw per sample)

def _per_sample_choice(image: Tensor, high: int, generator: torch.Generator | None) -> Tensor:
    """One integer in ``[0, high)`` per image of ``image`` [..., 3, H, W], shaped to broadcast, on the image's
    device. Every draw of these augmentations is made on the CPU, so a seed gives the same views on any device."""
    lead = image.shape[:-3]
    return torch.randint(0, high, lead, generator=generator).view(*lead, 1, 1, 1).to(image.device)


def _check_rgb(image: Tensor) -> None:
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"expected images [..., 3, H, W], got shape {tuple(image.shape)}")


def grayscale(image: Tensor) -> Tensor:
    """CAJ's grayscale: ``0.2989 R + 0.5870 G + 0.1140 B`` replicated to three channels."""
    _check_rgb(image)
    w = torch.as_tensor(GRAY_WEIGHTS, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * w).sum(dim=-3, keepdim=True).expand_as(image).clone()


def _select(image: Tensor, choice: Tensor, gray: Tensor | None = None) -> Tensor:
    """Per image: ``choice`` 0/1/2 → that channel replicated, 3 → ``gray`` (or unchanged if None)."""
    out = image.clone()
    for c in range(3):
        out = torch.where(choice == c, image[..., c:c + 1, :, :].expand_as(image), out)
    if gray is not None:
        out = torch.where(choice == 3, gray, out)
    return out


def channel_exchange(image: Tensor, gray: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """CAJ ``ChannelExchange(gray)``: replicate a random channel, or (index 3) go grayscale.

    The index is uniform in ``0..gray``: ``gray=2`` (CAJ's setting) always replicates one of
    R, G, B; ``gray=3`` makes grayscale a fourth equally likely outcome.
    """
    _check_rgb(image)
    if gray not in (2, 3):
        raise ValueError(f"gray must be 2 (channels only) or 3 (channels or grayscale), got {gray}")
    choice = _per_sample_choice(image, gray + 1, generator)
    return _select(image, choice, grayscale(image) if gray == 3 else None)


def channel_adap_gray(image: Tensor, probability: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """CAJ ``ChannelAdapGray(probability)``: each of R, G, B replicated with chance 1/4; otherwise
    grayscale with probability ``probability`` (overall ``probability / 4``), else unchanged."""
    _check_rgb(image)
    choice = _per_sample_choice(image, 4, generator)
    keep = (torch.rand(choice.shape, generator=generator) >= probability).to(image.device)
    choice = torch.where((choice == 3) & keep, torch.full_like(choice, 4), choice)  # 4 = unchanged
    return _select(image, choice, grayscale(image))


def erase(image: Tensor, box: Box, fill: str | Sequence[float] = ZHONG_ERASE_FILL,
          generator: torch.Generator | None = None) -> Tensor:
    """Copy of ``image`` [C, H, W] with ``box`` filled: per-channel constants, ``"zero"``, or
    ``"pixel"`` (standard-normal noise per pixel, timm's ``mode='pixel'``)."""
    top, left, h, w = box
    out = image.clone()
    region = out[..., top:top + h, left:left + w]
    if fill == "pixel":
        region.copy_(torch.randn(region.shape, generator=generator, dtype=region.dtype))
    elif fill == "zero":
        region.zero_()
    else:
        region.copy_(torch.as_tensor(fill, dtype=region.dtype).view(-1, 1, 1).expand_as(region))
    return out


@dataclass(frozen=True)
class ChannelExchange:
    """Tensor op form of :func:`channel_exchange` (for ``modality_ops``)."""

    gray: int = 2

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return channel_exchange(image, self.gray, generator)


@dataclass(frozen=True)
class ChannelAdapGray:
    """Tensor op form of :func:`channel_adap_gray` (CAJ applies it to infrared images)."""

    probability: float = 0.5

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return channel_adap_gray(image, self.probability, generator)


@dataclass(frozen=True)
class ChannelRandomErasing:
    """CAJ's ``ChannelRandomErasing``: Zhong et al. random erasing on one image [3, H, W]."""

    probability: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    aspect: tuple[float, float] = (0.3, 1 / 0.3)
    fill: tuple[float, float, float] = ZHONG_ERASE_FILL

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        box = draw_erase_box(image.shape[-2], image.shape[-1], self.probability, self.area, self.aspect, generator)
        return image if box is None else erase(image, box, self.fill, generator)


def channel_augmented_view(visible: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The channel-augmented (CA) view of visible images [..., 3, H, W]: CAJ ``ChannelExchange(gray=2)``.

    MMCF treats such views as a third modality beside visible and infrared. Use this on already
    augmented tensors (e.g. inside a training step); :func:`build_channel_augmented_transform`
    builds the full CA pipeline with its own spatial draw, as the reference data loaders do.
    """
    return channel_exchange(visible, gray=2, generator=generator)


#: ICAL variants of PECA Eq. (2): the visible channels kept (0 = R, 1 = G, 2 = B); the rest come from infrared.
ICAL_KEPT_CHANNELS: tuple[tuple[int, ...], ...] = ((0, 1), (0, 2), (1, 2), (0,), (1,), (2,))


def channel_aggregation(visible: Tensor, infrared: Tensor, generator: torch.Generator | None = None,
                        variant: Tensor | int | None = None) -> Tensor:
    """PECA's inter-modality channel aggregation (ICAL, Eq. 2).

    ``visible`` and ``infrared`` are [..., 3, H, W] images of the *same identity*, paired by position
    (the :class:`~reidlab.data.samplers.CrossModalSampler` batch layout pairs position ``i`` of the
    visible half with position ``i`` of the infrared half). Each output keeps one or two visible
    channels and takes the others from the infrared image (whose three channels are replicas; channel
    ``c`` is taken from infrared channel ``c``). ``variant`` indexes :data:`ICAL_KEPT_CHANNELS`; when
    ``None`` it is drawn uniformly per image (the paper does not give the proportions).
    """
    _check_rgb(visible)
    if visible.shape != infrared.shape:
        raise ValueError(f"visible {tuple(visible.shape)} and infrared {tuple(infrared.shape)} "
                         "must have the same shape")
    kept = torch.tensor([[c in k for c in range(3)] for k in ICAL_KEPT_CHANNELS])  # [6, 3]
    lead = visible.shape[:-3]
    if variant is None:
        variant = torch.randint(0, len(ICAL_KEPT_CHANNELS), lead, generator=generator)
    variant = torch.as_tensor(variant).expand(lead)
    mask = kept[variant.cpu()].view(*lead, 3, 1, 1).to(visible.device)
    return torch.where(mask, visible, infrared)


# ---------------------------------------------------------------------------------------------
# Sample transforms

class TrainTransform:
    """Training augmentation of one sample ``{modality: image}`` (see the module docstring).

    Parameters follow the reference configs: ``size`` (H, W), ``flip_p``, ``pad`` (zero padding
    before the random crop back to ``size``), ``erase_p`` with ``erase_area`` / ``erase_aspect`` and
    ``erase_fill`` (``"mean"`` = Zhong's constants as in CAJ / reid-strong-baseline, ``"pixel"`` =
    per-pixel normal noise as timm's ``RandomErasing(mode='pixel')`` used by TOP-ReID-style
    multi-modal repos, ``"zero"``), optional ``color_jitter`` (brightness, contrast, saturation,
    hue), and ``modality_ops``: extra tensor ops per modality applied last, on the normalised
    image (e.g. ``{"nir": [ChannelAdapGray(0.5)]}`` for CAJ's infrared branch). Resizing is bicubic
    by default, as in the TransReID-family configs (``interpolation=3``).
    """

    def __init__(self, size: tuple[int, int] = (256, 128), flip_p: float = 0.5, pad: int = 10,
                 erase_p: float = 0.5, synchronised: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: tuple[float, float] = (0.3, 1 / 0.3),
                 erase_fill: str = "mean", color_jitter: tuple[float, float, float, float] | None = None,
                 modality_ops: Mapping[str, Sequence[TensorOp]] | None = None,
                 interpolation: str = "bicubic") -> None:
        if erase_fill not in ("mean", "pixel", "zero"):
            raise ValueError(f"erase_fill must be 'mean', 'pixel' or 'zero', got {erase_fill!r}")
        if pad < 0 or not 0 <= flip_p <= 1 or not 0 <= erase_p <= 1:
            raise ValueError(f"need pad >= 0 and probabilities in [0, 1]; got pad={pad}, "
                             f"flip_p={flip_p}, erase_p={erase_p}")
        _interpolation(interpolation)
        self.size = (int(size[0]), int(size[1]))
        self.flip_p, self.pad, self.erase_p = flip_p, pad, erase_p
        self.synchronised = synchronised
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean, self._std = _channel_tensor(self.mean), _channel_tensor(self.std)
        self.erase_area, self.erase_aspect = erase_area, erase_aspect
        self.erase_fill = erase_fill
        self.color_jitter = ColorJitter(*color_jitter) if color_jitter else None
        self.modality_ops = {m: list(ops) for m, ops in (modality_ops or {}).items()}
        self.interpolation = interpolation

    def draw(self, generator: torch.Generator | None = None) -> SpatialDraw:
        """Draw flip, crop offset and erase box for one image of size ``self.size``."""
        flip = _rand(generator) < self.flip_p
        top = _randint(0, 2 * self.pad, generator)
        left = _randint(0, 2 * self.pad, generator)
        box = draw_erase_box(*self.size, self.erase_p, self.erase_area, self.erase_aspect, generator)
        return SpatialDraw(flip, top, left, box)

    def __call__(self, images: Mapping[str, ImageLike], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        shared = self.draw(generator) if self.synchronised else None
        out = {}
        for m in ordered_modalities(images):
            spatial = shared or self.draw(generator)
            out[m] = self._apply(m, _pixels(images[m], self.size, self.interpolation), spatial, generator)
        return out

    def _apply(self, modality: str, x: Tensor, spatial: SpatialDraw, generator: torch.Generator | None) -> Tensor:
        # Flip and crop move uint8 pixels when the input is uint8: the same values as on the [0, 1] floats.
        if spatial.flip:
            x = x.flip(-1)
        if self.pad:
            x = shifted_window(x, self.pad, spatial.top, spatial.left)
        x = _unit(x)
        if self.color_jitter is not None:
            x = self.color_jitter(x, generator)
        x = (x - self._mean) / self._std
        if spatial.erase is not None:
            x = erase(x, spatial.erase, ZHONG_ERASE_FILL if self.erase_fill == "mean" else self.erase_fill, generator)
        for op in self.modality_ops.get(modality, ()):
            x = op(x, generator)
        return x.contiguous()

    def __repr__(self) -> str:
        return (f"TrainTransform(size={self.size}, flip_p={self.flip_p}, pad={self.pad}, erase_p={self.erase_p}, "
                f"synchronised={self.synchronised}, erase_fill={self.erase_fill!r}, color_jitter={self.color_jitter}, "
                f"modality_ops={self.modality_ops})")


class TestTransform:
    """Evaluation transform: resize → to tensor → normalise, per modality (no randomness)."""

    __test__ = False  # not a pytest class

    def __init__(self, size: tuple[int, int] = (256, 128), mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, interpolation: str = "bicubic") -> None:
        _interpolation(interpolation)
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = tuple(mean), tuple(std)
        self._mean, self._std = _channel_tensor(self.mean), _channel_tensor(self.std)
        self.interpolation = interpolation

    def __call__(self, images: Mapping[str, ImageLike], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return {m: (resize_to_tensor(images[m], self.size, self.interpolation) - self._mean) / self._std
                for m in ordered_modalities(images)}

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size}, mean={self.mean}, std={self.std})"


def build_train_transform(size: tuple[int, int] = (256, 128), flip_p: float = 0.5, pad: int = 10,
                          erase_p: float = 0.5, synchronised: bool = True,
                          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                          **options) -> TrainTransform:
    """Training transform; ``options`` are the remaining :class:`TrainTransform` arguments."""
    return TrainTransform(size, flip_p, pad, erase_p, synchronised, mean, std, **options)


def build_test_transform(size: tuple[int, int] = (256, 128), mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD, interpolation: str = "bicubic") -> TestTransform:
    return TestTransform(size, mean, std, interpolation)


def build_cross_modal_train_transform(size: tuple[int, int] = (288, 144), erase_p: float = 0.5,
                                      infrared_gray_p: float = 0.5, **options) -> TrainTransform:
    """CAJ's training pipeline for one-modality records: pad 10, crop, flip, normalise, channel
    random erasing (p=0.5); infrared (``nir``/``tir``) images also get ``ChannelAdapGray(0.5)``."""
    ops = {m: [ChannelAdapGray(infrared_gray_p)] for m in ("nir", "tir")}
    return TrainTransform(size, erase_p=erase_p, erase_fill="mean", modality_ops=ops, **options)


def build_channel_augmented_transform(size: tuple[int, int] = (288, 144), erase_p: float = 0.5,
                                      color_jitter: tuple[float, float, float, float] | None = None,
                                      **options) -> TrainTransform:
    """The channel-augmented (CA) view of a visible image with its own spatial draw.

    CAJ's ``transform_color1``: pad 10, crop, flip, normalise, channel random erasing (p=0.5), then
    ``ChannelExchange(gray=2)``. MMCF adds colour jitter (brightness = contrast = saturation = 0.5):
    pass ``color_jitter=(0.5, 0.5, 0.5, 0.0)``. Applies to the ``rgb`` entry; use it as a
    :class:`~reidlab.data.loading.ReIDDataset` extra view.
    """
    return TrainTransform(size, erase_p=erase_p, erase_fill="mean", color_jitter=color_jitter,
                          modality_ops={"rgb": [ChannelExchange(gray=2)]}, **options)
