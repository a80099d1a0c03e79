import numpy as np
import pytest
from PIL import Image

from reidlab.data.images import read_image
from reidlab.data.records import DataFormatError, ImageRef


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_tiles_are_cut_left_to_right(tmp_path):
    # Three 4x2 tiles with values 10, 20, 30 side by side (RGBNT100 stores RGB|NIR|TIR like this).
    strip = np.concatenate([np.full((4, 2, 3), v, np.uint8) for v in (10, 20, 30)], axis=1)
    path = _save(tmp_path / "0001_c1_1.png", strip)
    for tile, value in enumerate((10, 20, 30)):
        img = read_image(ImageRef(path, tile=tile, num_tiles=3))
        assert img.size == (2, 4)
        assert np.all(np.asarray(img) == value)


def test_single_channel_images_become_three_channels(tmp_path):
    path = _save(tmp_path / "t.bmp", np.full((6, 3), 77, np.uint8))
    img = read_image(ImageRef(path))
    assert img.mode == "RGB" and np.all(np.asarray(img) == 77)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="nope.jpg: image file is missing"):
        read_image(ImageRef(tmp_path / "nope.jpg"))


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(DataFormatError, match="bad.jpg: cannot decode image"):
        read_image(ImageRef(path))


def test_truncated_jpeg_is_named(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="cut.jpg"):
        read_image(ImageRef(path))


def test_width_not_divisible_into_tiles(tmp_path):
    path = _save(tmp_path / "odd.png", np.zeros((4, 7, 3), np.uint8))
    with pytest.raises(DataFormatError, match="not divisible into 3"):
        read_image(ImageRef(path, tile=0, num_tiles=3))
