"""Tiny trees in the exact official on-disk layouts of the six benchmarks, for tests.

Every ``make_*_tree(root, ...)`` writes under ``root`` and returns the dataset folder
(``root/RGBNT201``, ``root/SYSU-MM01``, ...). Images are 8 x 4 px; an RGBNT100 image is three
8 x 4 tiles side by side, coloured ``TILE_COLORS`` (red | green | blue) so tests can tell the
modalities apart. File names follow the real ones (``000258_cam1_0_00.jpg``,
``0502_c0001_000.jpg``, ``0002_s002_v0_000.jpg``, ...).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = (8, 4)  # width, height of one modality image
GREY = (128, 128, 128)
TILE_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # RGBNT100 tiles: RGB | NIR | TIR


@cache
def image_bytes(fmt: str = "JPEG", colors: tuple[tuple[int, int, int], ...] = (GREY,)) -> bytes:
    """An encoded image of ``len(colors)`` solid 8 x 4 tiles side by side."""
    width, height = IMAGE_SIZE
    image = Image.new("RGB", (width * len(colors), height))
    for i, color in enumerate(colors):
        image.paste(color, (i * width, 0, (i + 1) * width, height))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_image(path: Path, fmt: str = "JPEG", colors: tuple[tuple[int, int, int], ...] = (GREY,)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(fmt, colors))
    return path


def make_rgbnt201_tree(root: Path, train_ids: Iterable[int] = range(1, 5), test_ids: Iterable[int] = (5, 6),
                       cams: Iterable[int] = (1, 2), shots: int = 1) -> Path:
    """``RGBNT201/{train_171,test}/{RGB,NI,TI}/<pid:06d>_cam<c>_0_<k:02d>.jpg``."""
    dataset = Path(root) / "RGBNT201"
    for part, ids in (("train_171", train_ids), ("test", test_ids)):
        for pid in ids:
            for cam in cams:
                for k in range(shots):
                    for modality in ("RGB", "NI", "TI"):
                        write_image(dataset / part / modality / f"{pid:06d}_cam{cam}_0_{k:02d}.jpg")
    return dataset


def make_rgbnt100_tree(root: Path, train_ids: Iterable[int] = (1, 2), test_ids: Iterable[int] = (3, 4),
                       cams: Iterable[int] = (1, 2), shots: int = 2) -> Path:
    """``RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/<pid:04d>_c<cam:04d>_<k:03d>.jpg``.

    Each image is RGB | NIR | TIR side by side. The query holds shot 0 of every test (id, camera),
    the gallery every shot (the query samples are drawn from the test set).
    """
    dataset = Path(root) / "RGBNT100"
    images = dataset / "rgbir"
    for pid in train_ids:
        for cam in cams:
            for k in range(shots):
                write_image(images / "bounding_box_train" / f"{pid:04d}_c{cam:04d}_{k:03d}.jpg", colors=TILE_COLORS)
    for pid in test_ids:
        for cam in cams:
            for k in range(shots):
                name = f"{pid:04d}_c{cam:04d}_{k:03d}.jpg"
                write_image(images / "bounding_box_test" / name, colors=TILE_COLORS)
                if k == 0:
                    write_image(images / "query" / name, colors=TILE_COLORS)
    return dataset


def make_msvr310_tree(root: Path, train_ids: Iterable[int] = (1, 2), test_ids: Iterable[int] = (3, 4),
                      cams: Iterable[int] = (0, 1), scenes: Iterable[int] = (1, 2), shots: int = 1) -> Path:
    """``MSVR310/{bounding_box_train,query3,bounding_box_test}/<vid:04d>/{vis,ni,th}/<vid:04d>_s<scene:03d>_v<cam>_<k:03d>.jpg``.

    Camera ``cams[i]`` records in scene ``scenes[i % len(scenes)]``; the query holds shot 0 of
    every test (id, camera), the gallery every shot.
    """
    dataset = Path(root) / "MSVR310"
    scenes = list(scenes)
    parts = (("bounding_box_train", train_ids, shots), ("query3", test_ids, 1), ("bounding_box_test", test_ids, shots))
    for part, ids, n in parts:
        for vid in ids:
            for i, cam in enumerate(cams):
                for k in range(n):
                    name = f"{vid:04d}_s{scenes[i % len(scenes)]:03d}_v{cam}_{k:03d}.jpg"
                    for modality in ("vis", "ni", "th"):
                        write_image(dataset / part / f"{vid:04d}" / modality / name)
    return dataset


def make_wmveid863_tree(root: Path, train_ids: Iterable[int] = (1, 2), test_ids: Iterable[int] = (3, 4),
                        cams: Iterable[int] = (1, 2), shots: int = 1) -> Path:
    """``WMVEID863/{train,query,test}/<vid:04d>/{vis,ni,th}/v<cam>_n<night>_s001_<k:03d>.jpg``.

    Shot ``k`` is a night image when ``k`` is odd. The query holds shot 0 of every test (id,
    camera), the gallery (``test/``) every shot.
    """
    dataset = Path(root) / "WMVEID863"
    for part, ids, n in (("train", train_ids, shots), ("query", test_ids, 1), ("test", test_ids, shots)):
        for vid in ids:
            for cam in cams:
                for k in range(n):
                    name = f"v{cam}_n{k % 2}_s001_{k:03d}.jpg"
                    for modality in ("vis", "ni", "th"):
                        write_image(dataset / part / f"{vid:04d}" / modality / name)
    return dataset


def make_sysu_tree(root: Path, train_ids: Iterable[int] = (1, 2), val_ids: Iterable[int] = (3,),
                   test_ids: Iterable[int] = (4, 5, 6), images_per_camera: int = 3,
                   missing: Iterable[tuple[int, int]] = ((5, 4), (6, 6)), with_permutation: bool = False,
                   num_trials: int = 10) -> Path:
    """``SYSU-MM01/cam<c>/<pid:04d>/<n:04d>.jpg`` for cameras 1-6 plus ``exp/{train,val,test,available}_id.txt``.

    Every id has ``images_per_camera`` images (0001.jpg ...) in every camera except the
    ``(pid, camera)`` pairs in ``missing``, which get no folder (as in the real data). With
    ``with_permutation`` also writes ``exp/rand_perm_cam.mat`` (:func:`write_sysu_permutation`).
    """
    dataset = Path(root) / "SYSU-MM01"
    train_ids, val_ids, test_ids = list(train_ids), list(val_ids), list(test_ids)
    skip = set(missing)
    for pid in train_ids + val_ids + test_ids:
        for cam in range(1, 7):
            if (pid, cam) not in skip:
                for n in range(1, images_per_camera + 1):
                    write_image(dataset / f"cam{cam}" / f"{pid:04d}" / f"{n:04d}.jpg")
    exp = dataset / "exp"
    exp.mkdir(parents=True, exist_ok=True)
    lists = {"train": train_ids, "val": val_ids, "test": test_ids,
             "available": sorted(train_ids + val_ids + test_ids)}
    for part, ids in lists.items():
        (exp / f"{part}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    if with_permutation:
        write_sysu_permutation(dataset, num_trials)
    return dataset


def write_sysu_permutation(dataset: Path, num_trials: int = 10, seed: int = 0) -> Path:
    """``exp/rand_perm_cam.mat`` in the official structure.

    ``rand_perm_cam`` is a 6 x 1 cell array (one cell per camera); each holds an N x 1 cell array
    (N = the largest id with a folder in any camera; cell ``i`` is id ``i``) of ``num_trials x
    images`` integer matrices whose rows are random permutations of the 1-based image numbers
    ``1..images``, or an empty matrix when the id has no folder in that camera. (Integers: the
    Python ports format the numbers with ``{:04d}``, which a MATLAB double would not survive.)
    """
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    counts = {(cam, int(d.name)): len(list(d.iterdir()))
              for cam in range(1, 7) for d in (dataset / f"cam{cam}").iterdir()}
    num_ids = max(pid for _, pid in counts)
    cameras = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        per_id = np.empty((num_ids, 1), dtype=object)
        for pid in range(1, num_ids + 1):
            n = counts.get((cam, pid), 0)
            per_id[pid - 1, 0] = (np.stack([rng.permutation(n) + 1 for _ in range(num_trials)]).astype(np.int32)
                                  if n else np.zeros((0, 0)))
        cameras[cam - 1, 0] = per_id
    path = dataset / "exp" / "rand_perm_cam.mat"
    savemat(path, {"rand_perm_cam": cameras})
    return path


def make_regdb_tree(root: Path, num_ids: int = 4, images_per_id: int = 2, trials: Iterable[int] = range(1, 11),
                    seed: int = 0) -> Path:
    """``RegDB/{Visible,Thermal}/<id>/<gender>_<view>_{v,t}_<n:05d>_<id>.bmp`` and ``idx/`` lists.

    Trial ``t`` shuffles the ids with ``random.Random(seed + t)`` and trains on the first half;
    each list labels identities 0, 1, ... in order of first appearance, with CRLF line ends (as
    the reference files do).
    """
    dataset = Path(root) / "RegDB"
    files: dict[tuple[str, int], list[str]] = {}
    for pid in range(1, num_ids + 1):
        stem = ("male", "female")[pid % 2] + "_" + ("front", "back")[pid // 2 % 2]
        for folder, letter in (("Visible", "v"), ("Thermal", "t")):
            names = [f"{stem}_{letter}_{pid * 100 + n:05d}_{pid}.bmp" for n in range(images_per_id)]
            for name in names:
                write_image(dataset / folder / str(pid) / name, fmt="BMP")
            files[folder, pid] = [f"{folder}/{pid}/{name}" for name in names]
    idx = dataset / "idx"
    idx.mkdir(parents=True, exist_ok=True)
    for trial in trials:
        ids = list(range(1, num_ids + 1))
        random.Random(seed + trial).shuffle(ids)
        halves = {"train": ids[: num_ids // 2], "test": ids[num_ids // 2:]}
        for part, part_ids in halves.items():
            for folder, modality in (("Visible", "visible"), ("Thermal", "thermal")):
                lines = [f"{path} {label}" for label, pid in enumerate(part_ids) for path in files[folder, pid]]
                (idx / f"{part}_{modality}_{trial}.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return dataset


def messages(problems: Iterable[object]) -> list[str]:
    """``layout_problems`` as the strings ``reidlab data verify`` prints (``"<path>: <message>"``)."""
    return [str(problem) for problem in problems]
