"""Decoding one modality image, with errors that name the file."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from reidlab.data.records import DataFormatError, ImageRef


class ImageAccessError(DataFormatError):
    """An image file that exists but cannot be opened (permissions, a folder named like an image)."""


def read_image(ref: ImageRef) -> Image.Image:
    """Decode ``ref`` to an RGB PIL image, cutting its tile out of a side-by-side file.

    Single-channel NIR/TIR files are replicated to three channels, as the reference code does.
    Raises :class:`DataFormatError` naming the file when it is missing, truncated, not an image or a
    decompression bomb (a header claiming more pixels than PIL's limit), and :class:`ImageAccessError`
    when it cannot be opened (permission denied, a folder).
    """
    try:
        with Image.open(ref.path) as img:
            img.load()
            img = img.convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{ref.path}: image file is missing") from None
    except (PermissionError, IsADirectoryError) as e:
        what = "is a folder, expected an image file" if isinstance(e, IsADirectoryError) else \
            "permission denied; make it readable (chmod a+r)"
        raise ImageAccessError(f"{ref.path}: {what}") from None
    except Image.DecompressionBombError as e:
        raise DataFormatError(f"{ref.path}: the header claims more pixels than PIL's safety limit ({e}); the file "
                              "is corrupt or a decompression bomb: delete or re-download it") from None
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
