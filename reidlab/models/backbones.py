"""Backbones from timm by full ``arch.tag`` name, wrapped as ReID feature extractors.

:func:`create_backbone` builds a timm model without its classifier and wraps it:

- :class:`ViTBackbone` (timm ``VisionTransformer`` family: ``vit_*``, ``deit_*``, CLIP ``vit_*_clip_*``) returns
  the final tokens, the tokens before the last block (CoEN feeds these to its per-modality last blocks), the class
  token and the patch tokens. The position embedding is built for ``img_size`` (e.g. 256×128); pretrained weights
  are resampled to that grid by timm's checkpoint filter (``resample_abs_pos_embed``, bicubic).
- :class:`CNNBackbone` (timm ``ResNet`` family: ``resnet*``, ``resnext*``, ``seresnet*``, ...) returns the last
  feature map and exposes ``stem`` (conv1, bn1, act1, maxpool) and ``stages`` (layer1..layer4) so a cross-modal
  model can pair modality-specific stems with a shared body (AGW). ``last_stride=1`` (the default, the ReID
  "last stride" trick of Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person ReID", CVPRW 2019, also
  used by AGW) sets the stride-2 convolutions of ``layer4[0]`` (the 3×3 conv and the downsample 1×1 conv) to
  stride 1 without dilation, exactly as the reference code does (``layer4[0].conv2.stride = (1, 1)``,
  ``layer4[0].downsample[0].stride = (1, 1)``); timm's ``output_stride=16`` would instead dilate layer4.

Weights: ``checkpoint=path`` loads a local ``.pth`` / ``.bin`` / ``.safetensors`` state dict through timm's
``load_pretrained`` with the architecture's checkpoint filter (pos-embed resampling, OpenAI/OpenCLIP key
conversion), the classifier keys dropped and a strict key check; ``pretrained=True`` asks timm (Hugging Face Hub
online, or its local cache — set ``HF_HUB_OFFLINE=1`` to use only the cache); ``pretrained=False`` logs a
warning that the backbone is randomly initialised, once per process (not when a cached run's weights replace it
next, see :func:`weights_loaded_next`). The source grid of a checkpoint's position embedding is read
from the ``input_size`` of the tag's pretrained config (224×224 for the paper tags); for a checkpoint saved at
another size pass ``pretrained_cfg_overlay=dict(input_size=(3, H0, W0))``.

Tutorial presets have one pretrained tag, ``synth`` (:mod:`reidlab.models.pretrained`): ``vit_tutorial.synth``
with ``pretrained=True`` loads the shipped weights (sha256-checked) through the same path; as in timm, the bare
``vit_tutorial`` with ``pretrained=True`` means its default tag, and a tag with ``pretrained=False`` is a random
initialisation of the same architecture.

Paper configurations: ``deit_base_patch16_224.fb_in1k`` (CoEN), ``vit_base_patch16_clip_224.openai`` (CoEN's CLIP
variant, MFRNet; timm notes that OpenAI CLIP natively uses QuickGELU, ``vit_base_patch16_clip_quickgelu_224.openai``
matches the original activations), ``resnet50.tv_in1k`` (PECA/AGW, DENet). :data:`PRESETS` holds the small CPU
configurations of the tutorial profile.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import timm
from timm.layers import resample_abs_pos_embed
from timm.models import get_pretrained_cfg, load_pretrained
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidlab.models.conv_stem import ConvStemEmbed
from reidlab.models.pretrained import PRETRAINED_TAG, VIT_BASE_SIZE, split_tag, verified_weights

logger = logging.getLogger("reidlab")

#: Backbones whose random initialisation this process has already warned about (once per name).
_RANDOM_INIT_WARNED: set[str] = set()
_WEIGHTS_LOADED_NEXT = contextvars.ContextVar("reidlab_weights_loaded_next", default=False)


@contextmanager
def weights_loaded_next() -> Iterator[None]:
    """Build backbones without the random-initialisation warning: the caller loads trained weights into them next.

    :func:`reidlab.engine.experiment.train` builds the model of a finished run under it before the run cache
    replaces every weight with the stored ones.
    """
    token = _WEIGHTS_LOADED_NEXT.set(True)
    try:
        yield
    finally:
        _WEIGHTS_LOADED_NEXT.reset(token)


def _warn_random_init(name: str) -> None:
    """Warn that backbone ``name`` is randomly initialised: once per name and process, never under
    :func:`weights_loaded_next`."""
    if _WEIGHTS_LOADED_NEXT.get() or name in _RANDOM_INIT_WARNED:
        return
    _RANDOM_INIT_WARNED.add(name)
    logger.warning("backbone %s is randomly initialised (pretrained=False, no checkpoint)", name)

#: Small configurations for the CPU tutorial profile: name -> (timm architecture, keyword overrides). Their
#: pretrained tag ``.synth`` is the synthetic pre-training of :mod:`reidlab.models.pretrained`. Measured on the
#: 2-core CPU at 128×64, batch 64, forward + backward: ~0.34 s each.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # ViT-Tiny layout shrunk: 8×8 patches (16×8 tokens at 128×64), width 96, 4 blocks, 3 heads, and the convolutional
    # stem of Xiao et al. 2021 (:mod:`reidlab.models.conv_stem`: three 3×3 stride-2 convolutions instead of one 8×8
    # patchify convolution, same token grid), which doubles what it learns in the same pre-training; ~0.5 M parameters.
    "vit_tutorial": ("vit_tiny_patch16_224", {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3,
                                              "embed_layer": ConvStemEmbed}),
    # ResNet-18 layout with one BasicBlock per stage and stage widths (32, 64, 128, 256) after timm's standard
    # 64-channel 7×7 stem (timm's stem_width only affects deep stems); ~1.2 M parameters.
    "resnet_tutorial": ("resnet18", {"layers": (1, 1, 1, 1), "channels": (32, 64, 128, 256)}),
}


def tokens_to_map(tokens: Tensor, num_prefix_tokens: int, grid_size: tuple[int, int]) -> Tensor:
    """ViT tokens [B, P + h·w, D] -> patch map [B, D, h, w] (drops the P prefix tokens); Grad-CAM's reshape."""
    h, w = grid_size
    patches = tokens[:, num_prefix_tokens:]
    if patches.shape[1] != h * w:
        raise ValueError(f"expected {num_prefix_tokens} prefix + {h}x{w} patch tokens, got {tokens.shape[1]} tokens")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


class Backbone(nn.Module):
    """Common interface: ``kind`` ("vit" | "cnn"), ``name``, ``feature_dim``, ``img_size``, ``mean`` / ``std`` (the
    normalisation the weights were trained with), ``cam_layer``, ``cam_reshape``; ``forward(x) -> dict``."""

    kind: str

    def __init__(self, name: str, img_size: tuple[int, int], feature_dim: int, pretrained_cfg: dict) -> None:
        super().__init__()
        self.name = name
        self.img_size = img_size
        self.feature_dim = feature_dim
        self.mean = tuple(pretrained_cfg["mean"])
        self.std = tuple(pretrained_cfg["std"])

    def _check_input(self, x: Tensor, exact_size: bool) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or (exact_size and tuple(x.shape[-2:]) != self.img_size):
            size = "x".join(map(str, self.img_size)) if exact_size else "H x W"
            raise ValueError(f"backbone {self.name!r} expects images [B, 3, {size}], got {list(x.shape)}")


class ViTBackbone(Backbone):
    """A timm ``VisionTransformer`` (classifier removed) at a fixed ``img_size``.

    ``forward(x)`` -> ``{"tokens": [B, P+N, D] (after the last block and the final norm), "penultimate": [B, P+N, D]
    (output of block L-1, the input of the last block), "cls": [B, D] (tokens[:, 0]), "patches": [B, N, D]}``.
    """

    kind = "vit"

    def __init__(self, name: str, vit: VisionTransformer, img_size: tuple[int, int]) -> None:
        if not vit.has_class_token:
            raise ValueError(f"backbone {name!r}: ReID ViT backbones need a class token (class_token=True)")
        super().__init__(name, img_size, vit.num_features, vit.pretrained_cfg)
        self.vit = vit
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.grid_size = tuple(vit.patch_embed.grid_size)

    @property
    def blocks(self) -> nn.Sequential:
        return self.vit.blocks

    @property
    def norm(self) -> nn.Module:
        return self.vit.norm

    @property
    def cam_layer(self) -> nn.Module:
        """The last block's ``norm1`` (its output is what the last block's attention reads)."""
        return self.blocks[-1].norm1

    @property
    def cam_reshape(self) -> Callable[[Tensor], Tensor]:
        return functools.partial(tokens_to_map, num_prefix_tokens=self.num_prefix_tokens, grid_size=self.grid_size)

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """Patch + position embedding and blocks 1..L-1: the tokens that enter the last block."""
        self._check_input(x, exact_size=True)
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        return vit.blocks[:-1](x)

    def forward_last(self, tokens: Tensor) -> Tensor:
        """The last block and the final norm."""
        return self.vit.norm(self.vit.blocks[-1](tokens))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        penultimate = self.forward_penultimate(x)
        tokens = self.forward_last(penultimate)
        return {"tokens": tokens, "penultimate": penultimate, "cls": tokens[:, 0],
                "patches": tokens[:, self.num_prefix_tokens:]}


class CNNBackbone(Backbone):
    """A timm ``ResNet`` split into ``stem`` (conv1, bn1, act1, maxpool) and ``stages`` (layer1..layer4, output
    widths ``stage_channels``); classifier and pooling removed. ``forward(x)`` -> ``{"feature_map": [B, C, h, w]}``."""

    kind = "cnn"

    def __init__(self, name: str, resnet: ResNet, img_size: tuple[int, int], last_stride: int) -> None:
        super().__init__(name, img_size, resnet.num_features, resnet.pretrained_cfg)
        self.stage_channels = tuple(info["num_chs"] for info in resnet.feature_info[1:])
        self.stem = nn.Sequential(OrderedDict(conv1=resnet.conv1, bn1=resnet.bn1, act1=resnet.act1,
                                              maxpool=resnet.maxpool))
        self.stages = nn.Sequential(OrderedDict((f"layer{i}", getattr(resnet, f"layer{i}")) for i in range(1, 5)))
        if last_stride == 1:
            unstride(self.stages.layer4[0])

    @property
    def cam_layer(self) -> nn.Module:
        """The last stage (layer4)."""
        return self.stages[-1]

    @property
    def cam_reshape(self) -> None:
        return None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self._check_input(x, exact_size=False)
        return {"feature_map": self.stages(self.stem(x))}


def unstride(block: nn.Module) -> None:
    """Stride 1 for a residual block's stride-2 convolutions; a stride-2 average pool in an avg-downsample path
    (``resnet*d``) becomes the identity. A block already at stride 1 is left as it is."""
    downsample = getattr(block, "downsample", None)
    if isinstance(downsample, nn.Sequential) and isinstance(downsample[0], nn.AvgPool2d):
        if downsample[0].stride in (2, (2, 2)):
            downsample[0] = nn.Identity()
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def _resolve(name: str, timm_kwargs: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """(timm name, kwargs, the preset's tagged name or None) for a preset (``vit_tutorial``,
    ``vit_tutorial.synth``) or a timm ``arch.tag`` name."""
    preset, tag = split_tag(name)
    if preset in PRESETS:
        if tag not in (None, PRETRAINED_TAG):
            raise ValueError(f"unknown tag {tag!r} of preset {preset!r}: its pretrained tag is {PRETRAINED_TAG!r} "
                             f"({preset}.{PRETRAINED_TAG})")
        arch, preset_kwargs = PRESETS[preset]
        return arch, {**preset_kwargs, **timm_kwargs}, f"{preset}.{PRETRAINED_TAG}"
    if not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}: expected a preset {sorted(PRESETS)} or a timm model name "
                         f"such as 'deit_base_patch16_224.fb_in1k' (see timm.list_models(pretrained=True))")
    return name, dict(timm_kwargs), None


def _no_weights_error(name: str, arch: str, error: Exception) -> RuntimeError:
    from huggingface_hub import constants

    cfg = get_pretrained_cfg(arch)
    if cfg is not None and cfg.hf_hub_id:  # timm prefers the Hub whenever the tag has a Hub id
        tried = f"the Hugging Face Hub ({cfg.hf_hub_id}) and its local cache ({constants.HF_HUB_CACHE})"
    else:
        tried = f"the URL {cfg.url} and the torch hub cache" if cfg is not None and cfg.url else "timm's registry"
    return RuntimeError(
        f"could not obtain pretrained weights for backbone {name!r}: timm tried {tried} and failed with "
        f"{type(error).__name__}: {str(error).rstrip('.')}. Fix: run once with network access (e.g. python -c "
        f"\"import timm; timm.create_model('{name}', pretrained=True)\") and reuse the cache (HF_HOME, "
        f"HF_HUB_OFFLINE=1), or pass checkpoint='path/to/weights.safetensors|.pth', or pass pretrained=False for a "
        f"randomly initialised backbone")


def _load_checkpoint(model: nn.Module, name: str, arch: str, checkpoint: str | Path) -> None:
    """Load a local state dict through timm's loader: the architecture's checkpoint filter (pos-embed resampling,
    CLIP key conversion), the classifier keys dropped, then a strict key match."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint for backbone {name!r} not found: {path}")
    cfg = dict(model.pretrained_cfg)
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    head_keys = {f"{h}.{p}" for h in heads for p in ("weight", "bias")}
    arch_filter = getattr(importlib.import_module(type(model).__module__), "checkpoint_filter_fn", None)

    def filter_fn(state_dict: dict[str, Tensor], target: nn.Module) -> dict[str, Tensor]:
        state_dict = _conv_stem_pos_embed(state_dict, target)
        if arch_filter is not None:
            state_dict = arch_filter(state_dict, target)
        return {k: v for k, v in state_dict.items() if k not in head_keys}

    cfg.update(file=str(path), source=None, state_dict=None, custom_load=False, num_classes=0)
    try:
        load_pretrained(model, pretrained_cfg=cfg, num_classes=0, filter_fn=filter_fn, strict=True)
    except RuntimeError as e:
        where = f"backbone {name!r}" + (f" (timm {arch})" if arch != name else "")
        raise RuntimeError(f"checkpoint {path} does not fit {where}: {e}") from e


def _conv_stem_pos_embed(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Resample a convolutional-stem ViT's position embedding from its source grid (``input_size`` of the
    pretrained cfg // patch size) to the model's grid. timm's filter reads the source grid off the patchify
    kernel (``patch_embed.proj.weight``), which a conv stem does not have, and would assume a square grid."""
    embed = getattr(model, "patch_embed", None)
    if not isinstance(embed, ConvStemEmbed) or "pos_embed" not in state_dict:
        return state_dict
    pos_embed, prefix = state_dict["pos_embed"], model.num_prefix_tokens
    size = model.pretrained_cfg.get("input_size", (3, *embed.img_size))[-2:]
    source = tuple(s // p for s, p in zip(size, embed.patch_size, strict=True))
    if source[0] * source[1] != pos_embed.shape[1] - prefix or source == tuple(embed.grid_size):
        return state_dict
    resampled = resample_abs_pos_embed(pos_embed, new_size=embed.grid_size, old_size=source, num_prefix_tokens=prefix)
    return {**state_dict, "pos_embed": resampled}


def create_timm_model(name: str, **timm_kwargs: Any) -> nn.Module:
    """The bare, randomly initialised timm model (no classifier) of a preset or timm name — what
    ``reidlab pretrain`` trains before :func:`create_backbone` wraps its weights."""
    arch, kwargs, _ = _resolve(name, timm_kwargs)
    return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)


def create_backbone(name: str, *, img_size: tuple[int, int], pretrained: bool = False,
                    checkpoint: str | Path | None = None, last_stride: int | None = None,
                    **timm_kwargs: Any) -> Backbone:
    """Build a backbone by preset name (:data:`PRESETS`, optionally tagged ``.synth``) or timm ``arch.tag`` name.

    ``img_size`` (H, W) fixes a ViT's token grid (position embeddings are resampled to it); CNNs accept any size.
    ``checkpoint`` loads weights from that local file (whatever ``pretrained`` says); otherwise ``pretrained=True``
    loads timm's weights for the tag and raises a :class:`RuntimeError` explaining the fixes when they cannot be
    obtained, and ``pretrained=False`` logs a warning that the backbone is randomly initialised (once per name and
    process; not under :func:`weights_loaded_next`). ``last_stride``
    (CNNs only, default 1: the ReID last-stride trick; 2 keeps the ImageNet layout). ``timm_kwargs`` go to
    ``timm.create_model`` (e.g. ``drop_path_rate=0.1``, or preset overrides such as ``depth=2``).
    """
    arch, kwargs, tagged = _resolve(name, timm_kwargs)
    img_size = (int(img_size[0]), int(img_size[1]))
    if tagged is not None and pretrained and checkpoint is None:
        checkpoint = verified_weights(tagged)
        # The synthetic pre-training's normalisation and (ViT) source grid of the position embedding.
        kwargs.setdefault("pretrained_cfg_overlay", dict(input_size=(3, *VIT_BASE_SIZE), mean=IMAGENET_MEAN,
                                                         std=IMAGENET_STD))
    cfg = get_pretrained_cfg(arch)
    if cfg is not None and cfg.fixed_input_size:
        kwargs.setdefault("img_size", img_size)
    load_online = pretrained and checkpoint is None
    try:
        model = timm.create_model(arch, pretrained=load_online, num_classes=0, **kwargs)
    except OSError as e:
        if not load_online:
            raise
        raise _no_weights_error(name, arch, e) from e
    if checkpoint is not None:
        _load_checkpoint(model, name, arch, checkpoint)
    elif not pretrained:
        _warn_random_init(name)

    if isinstance(model, VisionTransformer):
        if last_stride is not None:
            raise ValueError(f"last_stride applies to CNN backbones, not to the ViT {name!r}")
        return ViTBackbone(name, model, img_size)
    if isinstance(model, ResNet):
        last_stride = 1 if last_stride is None else last_stride
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        return CNNBackbone(name, model, img_size, last_stride)
    raise ValueError(f"backbone {name!r} is a timm {type(model).__name__}; supported families are VisionTransformer "
                     f"(vit_*, deit_*, CLIP ViTs) and ResNet (resnet*, resnext*, seresnet*, ...)")


__all__ = ["PRESETS", "Backbone", "CNNBackbone", "ViTBackbone", "create_backbone", "create_timm_model",
           "tokens_to_map", "weights_loaded_next"]
