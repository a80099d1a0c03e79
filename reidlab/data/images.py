"""Decoding one modality image, with errors that name the file, and a per-process cache of decoded images.

:func:`read_image` decodes a file to a PIL image every time. :class:`DecodedImageCache` keeps each
image reference decoded (and resized to a transform's input size by PIL, exactly as
:func:`~reidlab.data.transforms.resize_to_tensor` would) as a uint8 tensor [3, H, W], so a training
run decodes every file once per process instead of once per epoch. The cache is bounded by bytes
and evicts the least recently used images; :func:`image_cache` is the process-wide instance (its
bound: ``$REIDLAB_IMAGE_CACHE_MB``, default :data:`DEFAULT_CACHE_MB` MiB; 0 disables caching).
Decoded tutorial trees are a few MiB (the CoEN tree at 24 x 48 about 5 MiB, DENet's at 64 x 32
about 15 MiB), so they fit whole; a paper-size tree at 256 x 128 (about 100 KiB per image) keeps
its most recently used 5 000 images.

Each process has its own cache (a DataLoader worker or a spawned ``train_many`` worker fills its own).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from reidlab.data.records import DataFormatError, ImageRef
from reidlab.data.transforms import resize_to_uint8

#: Default bound of the process-wide cache, in MiB (``$REIDLAB_IMAGE_CACHE_MB`` overrides it).
DEFAULT_CACHE_MB = 512


class ImageAccessError(DataFormatError):
    """An image file that exists but cannot be opened (permissions, a folder named like an image)."""


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file is missing") from None
    except (PermissionError, IsADirectoryError) as e:
        what = "is a folder, expected an image file" if isinstance(e, IsADirectoryError) else \
            "permission denied; make it readable (chmod a+r)"
        raise ImageAccessError(f"{path}: {what}") from None
    except Image.DecompressionBombError as e:
        raise DataFormatError(f"{path}: the header claims more pixels than PIL's safety limit ({e}); the file "
                              "is corrupt or a decompression bomb: delete or re-download it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot decode image ({e}); expected a readable JPEG/PNG/BMP") from None


def _cut_tile(img: Image.Image, path: Path, tile: int, num_tiles: int) -> Image.Image:
    width, height = img.size
    if width % num_tiles:
        raise DataFormatError(f"{path}: width {width} is not divisible into {num_tiles} side-by-side modality tiles")
    tile_w = width // num_tiles
    return img.crop((tile * tile_w, 0, (tile + 1) * tile_w, height))


def read_image(ref: ImageRef) -> Image.Image:
    """Decode ``ref`` to an RGB PIL image, cutting its tile out of a side-by-side file.

    Single-channel NIR/TIR files are replicated to three channels, as the reference code does.
    Raises :class:`DataFormatError` naming the file when it is missing, truncated, not an image or a
    decompression bomb (a header claiming more pixels than PIL's limit), and :class:`ImageAccessError`
    when it cannot be opened (permission denied, a folder).
    """
    img = _open_rgb(ref.path)
    return img if ref.tile is None else _cut_tile(img, ref.path, ref.tile, ref.num_tiles)


Size = tuple[int, int] | None


def _file_stamp(path: Path) -> tuple[int, int]:
    """Modification time and size: a file rewritten in place is decoded again."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file is missing") from None
    return stat.st_mtime_ns, stat.st_size


class DecodedImageCache:
    """Decoded images as uint8 tensors [3, H, W], least recently used evicted past ``max_bytes``.

    :meth:`get` returns ``ref`` decoded, cut to its tile and, when ``size`` = (H, W) is given, resized
    by PIL with ``interpolation`` — the very pixels ``resize_to_tensor(read_image(ref), size)`` scales
    to [0, 1]. A side-by-side file (RGBNT100's RGB|NIR|TIR) is decoded once for all its tiles. Entries
    are keyed by the reference, the size and the interpolation, and checked against the file's
    modification time and size. Returned tensors are shared: treat them as read-only.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[tuple[int, int], Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def get(self, ref: ImageRef, size: Size = None, interpolation: str = "bicubic") -> Tensor:
        stamp = _file_stamp(ref.path)
        key = (ref, size, interpolation)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        img = _open_rgb(ref.path)
        if ref.tile is None:
            return self._put(key, stamp, resize_to_uint8(img, size, interpolation))
        wanted = None
        for tile in range(ref.num_tiles):  # every tile of the file, so its siblings need no decoding
            sibling = ImageRef(ref.path, tile, ref.num_tiles)
            pixels = self._put((sibling, size, interpolation), stamp,
                               resize_to_uint8(_cut_tile(img, ref.path, tile, ref.num_tiles), size, interpolation))
            wanted = pixels if tile == ref.tile else wanted
        if wanted is None:
            raise DataFormatError(f"{ref.path}: tile {ref.tile} is outside the {ref.num_tiles} side-by-side tiles")
        return wanted

    def _put(self, key: Hashable, stamp: tuple[int, int], pixels: Tensor) -> Tensor:
        size = pixels.numel() * pixels.element_size()
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1].numel() * old[1].element_size()
        if size > self.max_bytes:
            return pixels
        while self.nbytes + size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.nbytes -= evicted.numel() * evicted.element_size()
        self._entries[key] = (stamp, pixels)
        self.nbytes += size
        return pixels


_PROCESS_CACHE: DecodedImageCache | None = None


def image_cache() -> DecodedImageCache:
    """This process's cache, bounded by ``$REIDLAB_IMAGE_CACHE_MB`` MiB (default :data:`DEFAULT_CACHE_MB`)."""
    global _PROCESS_CACHE
    if _PROCESS_CACHE is None:
        text = os.environ.get("REIDLAB_IMAGE_CACHE_MB", str(DEFAULT_CACHE_MB))
        try:
            megabytes = float(text)
        except ValueError:
            raise ValueError(f"REIDLAB_IMAGE_CACHE_MB must be a number of MiB, got {text!r}") from None
        _PROCESS_CACHE = DecodedImageCache(int(megabytes * 2**20))
    return _PROCESS_CACHE


def load_pixels(ref: ImageRef, size: Size = None, interpolation: str = "bicubic",
                cache: DecodedImageCache | None = None) -> Tensor:
    """``ref`` as a uint8 tensor [3, H, W] (resized to ``size`` by PIL when given), through ``cache``
    (default: the process-wide :func:`image_cache`)."""
    return (image_cache() if cache is None else cache).get(ref, size, interpolation)

