"""Grad-CAM per modality for reidlab models (ViT and CNN) through pytorch-grad-cam.

pytorch-grad-cam (1.5.7, ``BaseCAM.forward``) calls ``model(input_tensor)`` with one image tensor
and back-propagates ``sum(target(output[i]) for i, target in enumerate(targets))``: it needs a
*tensor* output whose row ``i`` belongs to sample ``i``. Our models take a batch dict and return a
dict, so :class:`ModalityInput` puts the CAM's input tensor in place of ``batch["images"][:, m]``
and returns the tensor the targets read — ``outputs["logits"][name]`` for
:class:`IdentityLogitTarget`, ``outputs["embeddings"][name]`` for
:class:`EmbeddingSimilarityTarget` (each target's :meth:`select`) — and each target maps one row
to a scalar.

Layers come from the model contract: ``model.cam_target_layers(modality)`` and ``model.cam_reshape``
(``None`` for CNN feature maps; :func:`vit_reshape_transform` for ViT tokens). When a target layer
runs several times in one forward pass (one backbone shared by the modalities, called once per
modality), the call used is the only one whose output depends on the modality's input, or — when
several do — the modality's position in ``model.modalities`` (the contract's processing order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from torch import Tensor, nn

from reidlab.viz.style import (
    CAM_COLORMAP,
    ImageSource,
    finish,
    fit_image_cells,
    image_axis,
    image_cell_size,
    new_figure,
    row_label,
    style,
    to_display,
)

#: ``method`` names accepted by :func:`gradcam_maps`.
CAM_METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM, "layercam": LayerCAM,
               "xgradcam": XGradCAM, "eigencam": EigenCAM}


@dataclass(frozen=True)
class ViTReshape:
    """Token activations ``[B, P + h*w, D]`` → feature maps ``[B, D, h, w]``, dropping the ``P`` prefix tokens.

    The prefix is the class token plus any register/distillation tokens (timm's
    ``num_prefix_tokens``); patch tokens are in row-major order over the ``grid_size`` (h, w).
    """

    num_prefix_tokens: int
    grid_size: tuple[int, int]

    def __call__(self, tokens: Tensor) -> Tensor:
        h, w = self.grid_size
        if tokens.ndim != 3 or tokens.shape[1] != self.num_prefix_tokens + h * w:
            raise ValueError(f"expected tokens [B, {self.num_prefix_tokens} + {h}*{w}, D], got {tuple(tokens.shape)}")
        patches = tokens[:, self.num_prefix_tokens:, :]
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def vit_reshape_transform(num_prefix_tokens: int, grid_size: tuple[int, int]) -> ViTReshape:
    """pytorch-grad-cam ``reshape_transform`` for a ViT (see :class:`ViTReshape`)."""
    return ViTReshape(int(num_prefix_tokens), (int(grid_size[0]), int(grid_size[1])))


class IdentityLogitTarget:
    """Grad-CAM target: identity logit ``class_index`` of ``outputs["logits"][name]``."""

    def __init__(self, class_index: int, name: str) -> None:
        self.class_index, self.name = int(class_index), name

    def select(self, outputs: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
        """The ``[B, num_classes]`` logits this target reads from a model's output dict."""
        return _lookup(outputs, "logits", self.name)

    def __call__(self, logits: Tensor) -> Tensor:
        return logits[..., self.class_index]


class EmbeddingSimilarityTarget:
    """Grad-CAM target: cosine similarity between ``outputs["embeddings"][name]`` and a reference vector.

    With the embedding of another image (e.g. the gallery match) as reference, the map shows which
    regions make the two images look alike.
    """

    def __init__(self, reference_embedding: Tensor | np.ndarray, name: str) -> None:
        self.reference = torch.as_tensor(reference_embedding).detach().flatten().float()
        self.name = name

    def select(self, outputs: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
        """The ``[B, D]`` embeddings this target reads from a model's output dict."""
        embeddings = _lookup(outputs, "embeddings", self.name)
        if embeddings.shape[-1] != self.reference.numel():
            raise ValueError(f"embeddings[{self.name!r}] have dimension {embeddings.shape[-1]}, "
                             f"the reference embedding {self.reference.numel()}")
        return embeddings

    def __call__(self, embedding: Tensor) -> Tensor:
        reference = self.reference.to(embedding.device, embedding.dtype)
        return F.cosine_similarity(embedding, reference, dim=-1)


Target = IdentityLogitTarget | EmbeddingSimilarityTarget


def _lookup(outputs: Mapping[str, Mapping[str, Tensor]], group: str, name: str) -> Tensor:
    if group not in outputs or name not in outputs[group]:
        found = sorted(outputs[group]) if group in outputs else f"no {group!r} group"
        raise KeyError(f"model output has no {group}[{name!r}] (found: {found})")
    return outputs[group][name]


class ModalityInput(nn.Module):
    """Adapter for pytorch-grad-cam: ``forward(images [B, 3, H, W])`` runs ``model`` on ``batch`` with
    ``batch["images"][:, m]`` replaced by ``images`` (m = ``model.modalities.index(modality)``).

    Returns the model's output dict, or ``select(outputs)`` (the tensor pytorch-grad-cam's targets
    index per sample) when ``select`` is given. The batch's ``present`` mask is left unchanged.
    """

    def __init__(self, model: nn.Module, batch: Mapping[str, object], modality: str,
                 select: Callable[[Mapping], Tensor] | None = None) -> None:
        super().__init__()
        modalities = tuple(getattr(model, "modalities", ()))
        if modality not in modalities:
            raise ValueError(f"modality {modality!r} is not among the model's modalities {modalities}")
        self.model, self.batch, self.index, self.select = model, batch, modalities.index(modality), select

    def forward(self, images: Tensor) -> Mapping | Tensor:
        parts = list(self.batch["images"].unbind(1))
        if images.shape != parts[self.index].shape:
            raise ValueError(f"expected images of shape {tuple(parts[self.index].shape)}, got {tuple(images.shape)}")
        parts[self.index] = images
        outputs = self.model({**self.batch, "images": torch.stack(parts, 1)})
        return outputs if self.select is None else self.select(outputs)


class _SelectedCalls(ActivationsAndGradients):
    """pytorch-grad-cam's activation/gradient recorder keeping only call ``calls[j]`` of target layer ``j``."""

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module], reshape_transform: Callable | None,
                 calls: Sequence[int]) -> None:
        self.chosen = {id(layer): call for layer, call in zip(target_layers, calls, strict=True)}
        self.seen: dict[int, int] = {}
        super().__init__(model, target_layers, reshape_transform)

    def _chosen_call(self, module: nn.Module) -> bool:
        return self.seen.get(id(module), 0) - 1 == self.chosen[id(module)]

    def save_activation(self, module: nn.Module, input: object, output: Tensor) -> None:
        self.seen[id(module)] = self.seen.get(id(module), 0) + 1
        if self._chosen_call(module):
            super().save_activation(module, input, output)

    def save_gradient(self, module: nn.Module, input: object, output: Tensor) -> None:
        if self._chosen_call(module):
            super().save_gradient(module, input, output)

    def __call__(self, x: Tensor) -> Tensor:
        self.seen = {}
        return super().__call__(x)


def _layer_calls(adapter: ModalityInput, layers: Sequence[nn.Module], images: Tensor, modality: str) -> list[int]:
    """Which forward call of each target layer belongs to ``modality`` (module docstring)."""
    recorded: dict[int, list[Tensor]] = {id(layer): [] for layer in layers}
    handles = [layer.register_forward_hook(lambda m, i, o: recorded[id(m)].append(o)) for layer in layers]
    x = images.detach().clone().requires_grad_(True)
    try:
        adapter(x)
    finally:
        for handle in handles:
            handle.remove()
    calls = []
    for layer in layers:
        outs = recorded[id(layer)]
        if not outs or not all(isinstance(o, Tensor) for o in outs):
            raise ValueError(f"Grad-CAM target layer {type(layer).__name__} output no tensor in the forward pass")
        if len(outs) == 1:
            calls.append(0)
            continue
        depends = [o.requires_grad and torch.autograd.grad(o.sum(), x, retain_graph=True, allow_unused=True)[0]
                   is not None for o in outs]
        if sum(depends) == 1:
            calls.append(depends.index(True))
        elif len(outs) == len(adapter.model.modalities):
            calls.append(adapter.index)
        else:
            raise ValueError(f"Grad-CAM target layer {type(layer).__name__} runs {len(outs)} times per forward and "
                             f"{sum(depends)} of the calls depend on the {modality!r} input; cannot tell which is "
                             f"{modality!r}'s; make model.cam_target_layers({modality!r}) return a layer run once")
    return calls


def gradcam_maps(model: nn.Module, batch: Mapping[str, object], modality: str, target: Target | Sequence[Target], *,
                 method: str = "gradcam") -> np.ndarray:
    """Class-activation maps ``[B, H, W]`` in [0, 1] (per image min-max) of ``modality``'s input images.

    ``target`` is one target for every sample or a sequence of ``B`` (e.g. each sample's own
    identity logit); all must read the same output (same class and ``name``). Uses
    ``model.cam_target_layers(modality)`` and ``model.cam_reshape``; ``method`` is one of
    :data:`CAM_METHODS`. For a cross-modal model (one modality per sample) pass samples of
    ``modality`` only: the others do not read the substituted images and get all-zero maps. The
    model's train/eval mode is restored afterwards and its parameter gradients are cleared (set to ``None``).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; expected one of {', '.join(CAM_METHODS)}")
    images = batch["images"]
    targets = list(target) if isinstance(target, Sequence) else [target] * images.shape[0]
    if len(targets) != images.shape[0]:
        raise ValueError(f"got {len(targets)} targets for a batch of {images.shape[0]} samples")
    if len({(type(t), t.name) for t in targets}) != 1:
        raise ValueError("all targets of one call must be of the same class and read the same output name")
    device = next(model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    adapter = ModalityInput(model, batch, modality, select=targets[0].select)
    layers = list(model.cam_target_layers(modality))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            inputs = batch["images"][:, adapter.index].detach().clone().requires_grad_(True)
            calls = _layer_calls(adapter, layers, inputs, modality)
            cam = CAM_METHODS[method](model=adapter, target_layers=layers, reshape_transform=model.cam_reshape)
            cam.activations_and_grads.release()
            cam.activations_and_grads = _SelectedCalls(adapter, layers, model.cam_reshape, calls)
            try:
                maps = cam(input_tensor=inputs, targets=targets)
            finally:
                cam.activations_and_grads.release()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    expected = (images.shape[0], *images.shape[-2:])
    if maps.shape != expected:
        raise ValueError(f"Grad-CAM produced maps of shape {maps.shape}, expected {expected}: the target layer's "
                         "activations must have one row per sample of the batch")
    return maps


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``[H, W]`` map in [0, 1] (colormap ``CAM_COLORMAP``) over an ``[H, W, 3]`` image in [0, 1]."""
    if cam.shape != image.shape[:2]:
        raise ValueError(f"map of shape {cam.shape} does not match the image's {image.shape[:2]}")
    heat = matplotlib.colormaps[CAM_COLORMAP](np.clip(cam, 0, 1))[..., :3]
    return (1 - alpha) * image + alpha * heat


Images = Tensor | np.ndarray | Sequence[ImageSource]


def plot_gradcam(images: Images | Mapping[str, Images], maps: np.ndarray | Mapping[str, np.ndarray], *,
                 titles: Sequence[str] | None = None, show_input: bool = True, alpha: float = 0.5,
                 save: str | Path | None = None) -> Figure:
    """Grid of Grad-CAM overlays: rows = samples, columns = the entries of ``maps``.

    ``maps`` is ``[B, H, W]`` (one column) or ``{column: [B, H, W]}`` — per modality or per method.
    ``images`` are the un-normalised inputs (``[B, 3, H, W]`` in [0, 1] — see
    :func:`~reidlab.viz.style.denormalize` — or anything :func:`~reidlab.viz.style.to_display` reads), one
    set for all columns or ``{column: images}``. ``show_input`` puts each column's plain image before its
    overlay; ``titles`` label the rows (e.g. :func:`reidlab.viz.samples.condition_label` of each
    sample: identity and degradations). Cells follow the maps' aspect ratio (wide vehicle crops get
    wide cells; :func:`~reidlab.viz.style.fit_image_cells`).
    """
    columns = dict(maps) if isinstance(maps, Mapping) else {"Grad-CAM": maps}
    if not columns:
        raise ValueError("maps must hold at least one column")
    sizes = {name: len(m) for name, m in columns.items()}
    num_rows = next(iter(sizes.values()))
    if len(set(sizes.values())) != 1 or (titles is not None and len(titles) != num_rows):
        raise ValueError(f"every column needs one map per row and titles one per row; got maps {sizes}, "
                         f"{None if titles is None else len(titles)} titles")
    if isinstance(images, Mapping) and set(columns) - set(images):
        raise ValueError(f"images lack the column(s) {sorted(set(columns) - set(images))} that maps has")
    per_column = 2 if show_input else 1
    shape = np.asarray(next(iter(columns.values()))[0]).shape
    with style():
        fig, axes = new_figure(num_rows, per_column * len(columns), image_cell_size(shape))
        for c, (name, column_maps) in enumerate(columns.items()):
            source = images[name] if isinstance(images, Mapping) else images
            for r in range(num_rows):
                image = to_display(source[r])
                cells = axes[r, per_column * c:per_column * (c + 1)]
                if show_input:
                    image_axis(cells[0], image, title=name if r == 0 else None)
                image_axis(cells[-1], overlay(image, np.asarray(column_maps[r]), alpha),
                           title=(f"{name} CAM" if show_input else name) if r == 0 else None)
        if titles is not None:
            for r, title in enumerate(titles):
                row_label(axes[r, 0], title)
        fit_image_cells(fig, axes, shape)
    return finish(fig, save)
