"""Fixed look of every reidlab figure, image conversion for display, and deterministic PNG files.

Every plotting function builds its figure inside :func:`new_figure` (fixed rc settings, fixed
size, constrained layout) and writes it with :func:`save_figure` (fixed dpi, white background,
no ``Software`` metadata, temp file + rename), so the same inputs give byte-identical PNGs
whatever the notebook's matplotlib defaults are.

Figures are created through pyplot (so a notebook's inline backend can display a returned figure)
and immediately unregistered from pyplot (``plt.close``): a returned figure is shown once, as the
cell's value, and never leaks. The module never selects a backend; PNGs are always rendered by Agg.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.style
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from reidlab.data.images import read_image
from reidlab.data.records import ImageRef
from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidlab.fileio import write_atomic

#: Resolution of every saved PNG.
DPI = 100
#: Size (inches) of one plot panel (t-SNE, distances, curves).
PANEL_SIZE = (4.8, 4.0)
#: Longer side (inches) of one image in an image grid; the shorter side follows the image's aspect.
IMAGE_LONG_SIDE = 2.3
#: Identity colours (tab20 reordered: the 10 saturated colours first, then their light variants).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
#: Series colours (curves, method panels): the saturated half of :data:`PALETTE`.
SERIES_COLORS: tuple[str, ...] = PALETTE[:10]
#: t-SNE marker per modality; any other name (e.g. ``fused``) gets :data:`OTHER_MARKER`.
MODALITY_MARKERS: dict[str, str] = {"rgb": "o", "nir": "s", "tir": "^"}
OTHER_MARKER = "*"
MARKER_SIZE = 28
#: Rank-list borders and distance-distribution colours.
CORRECT_COLOR = "#2ca02c"
INCORRECT_COLOR = "#d62728"
QUERY_COLOR = "#1f77b4"
INTRA_COLOR = "#2ca02c"
INTER_COLOR = "#d62728"
#: Border of a degraded image in a sample grid.
DEGRADED_COLOR = "#ff7f0e"
BORDER_WIDTH = 4.0
CAM_COLORMAP = "jet"
#: rc settings on top of matplotlib's defaults while a figure is built and saved (callers' rc changes ignored).
RC: dict[str, object] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.5,
    "axes.grid": False,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "image.interpolation": "nearest",
    "path.simplify": False,
}


@contextmanager
def style() -> Iterator[None]:
    """Context with matplotlib's default style plus :data:`RC`, whatever the caller's rc settings are.

    Figures are built *and* saved inside it (tick labels, for one, are created when drawing).
    """
    with matplotlib.style.context(["default", RC]):
        yield


def new_figure(nrows: int = 1, ncols: int = 1,
               cell_size: tuple[float, float] = PANEL_SIZE) -> tuple[Figure, np.ndarray]:
    """A ``nrows × ncols`` figure of fixed size (``cell_size`` inches per cell) and its 2-D axes array.

    Call inside :func:`style`. The figure is unregistered from pyplot (see the module docstring).
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size[0] * ncols, cell_size[1] * nrows), dpi=DPI,
                             squeeze=False, layout="constrained")
    plt.close(fig)
    return fig, axes


def image_cell_size(image_shape: Sequence[int]) -> tuple[float, float]:
    """Width and height (inches) of an image of ``image_shape`` (H, W, ...) shown in a grid cell.

    The longer side is :data:`IMAGE_LONG_SIDE`, the other follows the image's aspect ratio (a
    24 x 48 vehicle crop gets a wide cell, a 64 x 32 person a tall one).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"image shape must have a positive height and width, got {tuple(image_shape)}")
    scale = IMAGE_LONG_SIDE / max(height, width)
    return width * scale, height * scale


def fit_image_cells(fig: Figure, axes: np.ndarray, image_shape: Sequence[int]) -> None:
    """Resize ``fig`` so each cell of its constrained-layout grid ``axes`` holds :func:`image_cell_size`.

    Call inside :func:`style` once titles, labels and captions are set: the space they take is
    measured by running the layout, then added to the image area, so a cell's image area has the
    image's aspect ratio (no wide crop in a tall cell padded with white). The layout is re-run a
    few times because its spacing is partly a fraction of the figure size.
    """
    cell_w, cell_h = image_cell_size(image_shape)
    nrows, ncols = axes.shape
    for _ in range(4):
        fig.get_layout_engine().execute(fig)
        width, height = fig.get_size_inches()
        boxes = [ax.get_position(original=True) for ax in axes.flat]
        inner_w = float(np.mean([box.width for box in boxes])) * width
        inner_h = float(np.mean([box.height for box in boxes])) * height
        if abs(inner_w - cell_w) < 0.01 and abs(inner_h - cell_h) < 0.01:
            return
        fig.set_size_inches(width + ncols * (cell_w - inner_w), height + nrows * (cell_h - inner_h))


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a deterministic PNG at ``path`` (parents created) and return the path.

    Fixed :data:`DPI`, white background, no ``Software`` metadata; written with
    :func:`reidlab.fileio.write_atomic`, so a reader never sees a half-written file.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: figures are saved as PNG; expected a path ending in .png")

    def write(handle: IO[bytes]) -> None:
        with style():
            fig.savefig(handle, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})

    return write_atomic(path, write)


def finish(fig: Figure, save: str | Path | None) -> Figure:
    """Save ``fig`` when ``save`` is a path; return it."""
    if save is not None:
        save_figure(fig, save)
    return fig


def identity_color(position: int) -> str:
    """Colour of the ``position``-th identity shown (cycling through :data:`PALETTE`)."""
    return PALETTE[position % len(PALETTE)]


def series_color(position: int) -> str:
    """Colour of the ``position``-th series (curve, method) of a figure."""
    return SERIES_COLORS[position % len(SERIES_COLORS)]


def modality_marker(modality: str | None) -> str:
    """t-SNE marker of a modality name (``None`` → circle, unknown names such as ``fused`` → star)."""
    if modality is None:
        return MODALITY_MARKERS["rgb"]
    return MODALITY_MARKERS.get(modality, OTHER_MARKER)


def denormalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Undo :func:`reidlab.data.transforms.normalise` on ``[..., 3, H, W]`` images; result clamped to [0, 1]."""
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected images [..., 3, H, W], got shape {tuple(images.shape)}")
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images * std_t + mean_t).clamp(0, 1)


ImageSource = torch.Tensor | np.ndarray | Image.Image | ImageRef | str | Path


def to_display(image: ImageSource) -> np.ndarray:
    """One image as a float ``[H, W, 3]`` array in [0, 1] for ``imshow``.

    Accepts a tensor ``[3, H, W]`` or ``[H, W]`` (float in [0, 1] or uint8), an array ``[H, W, 3]``
    / ``[H, W]`` (float in [0, 1] or uint8), a PIL image, an :class:`ImageRef` or an image path.
    Float images outside [0, 1] raise: normalised tensors must go through :func:`denormalize` first.
    """
    if isinstance(image, (str, Path)):
        image = ImageRef(Path(image))
    if isinstance(image, ImageRef):
        image = read_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.permute(1, 2, 0) if image.ndim == 3 else image).numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image ([3, H, W] tensor or [H, W, 3] array), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    array = array.astype(np.float32)
    if array.size and (array.min() < -1e-3 or array.max() > 1 + 1e-3):
        raise ValueError(f"float image values span [{array.min():.2f}, {array.max():.2f}], expected [0, 1]; "
                         "pass normalised tensors through reidlab.viz.denormalize first")
    return np.clip(array, 0, 1)


def image_axis(ax: Axes, image: np.ndarray, border: str | None = None, title: str | None = None,
               caption: str | None = None) -> None:
    """Show ``image`` in ``ax`` without ticks, with an optional coloured border, title and caption."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(border is not None)
        if border is not None:
            spine.set_edgecolor(border)
            spine.set_linewidth(BORDER_WIDTH)
    if title is not None:
        ax.set_title(title, fontsize=8)
    if caption is not None:
        ax.set_xlabel(caption, fontsize=7)


def row_label(ax: Axes, text: str) -> None:
    """Label an image-grid row left of its first cell, horizontally (readable whatever the cell's height)."""
    ax.set_ylabel(text, fontsize=8, rotation=0, horizontalalignment="right", verticalalignment="center",
                  labelpad=4)
