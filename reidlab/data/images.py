"""Decoding one modality image, with errors that name the file."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from reidlab.data.records import DataFormatError, ImageRef


def read_image(ref: ImageRef) -> Image.Image:
    """Decode ``ref`` to an RGB PIL image, cutting its tile out of a side-by-side file.

    Single-channel NIR/TIR files are replicated to three channels, as the reference code does.
    Raises :class:`DataFormatError` naming the file when it is missing, truncated or not an image.
    """
    try:
        with Image.open(ref.path) as img:
            img.load()
            img = img.convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{ref.path}: image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(f"{ref.path}: cannot decode image ({e}); expected a readable JPEG/PNG/BMP") from None
    if ref.tile is None:
        return img
    width, height = img.size
    if width % ref.num_tiles:
        raise DataFormatError(f"{ref.path}: width {width} is not divisible into {ref.num_tiles} "
                              f"side-by-side modality tiles")
    tile_w = width // ref.num_tiles
    return img.crop((ref.tile * tile_w, 0, (ref.tile + 1) * tile_w, height))
