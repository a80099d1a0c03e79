"""Object masks of synthetic images: exactly the silhouette the generator drew, in the written image's geometry.

Exactness is shown in two steps. (1) While ``synthesize`` writes a tree, the part-label map it renders each
capture from is recorded; every record the real loader returns (mapped to its capture through metadata.csv,
not through the mask code) gets ``object_mask`` == that label map != background, at the size of the decoded
image. (2) For the renderer itself, the label map != background is exactly where an image differs from the
same capture rendered with the subject removed (same random draws): in RGB and NIR pixel for pixel, in TIR up
to the heat-diffusion blur radius.
"""

import numpy as np
import pytest
import yaml
from scipy.ndimage import binary_dilation

from reidlab.data.formats import BENCHMARKS, load_split
from reidlab.data.images import read_image
from reidlab.data.records import DataFormatError, Record
from reidlab.data.synthetic import (
    SPECS,
    ObjectMasks,
    generate,
    object_mask,
    object_masks,
    read_metadata,
    render,
    synthesize,
)
from reidlab.data.synthetic.identities import make_identities
from reidlab.data.synthetic.render import VIEWS, Conditions, render_sample
from reidlab.data.synthetic.seeding import rng_for

PERSON_SIZE, VEHICLE_SIZE = (64, 32), (32, 64)


class Recorder:
    """Keeps, per capture (``identity/number`` as in metadata.csv), what ``synthesize`` drew and wrote."""

    def __init__(self, monkeypatch):
        self.labels, self.clean, self.written = {}, {}, {}
        real_render, real_write = generate.render_sample, generate.write_capture

        def render_sample(*args, **kwargs):
            images, labels = real_render(*args, **kwargs)
            self._last = labels.copy(), {m: a.copy() for m, a in images.items()}
            return images, labels

        def write_capture(dataset_dir, entries, images):
            cap = entries[0].capture
            key = f"{cap.identity}/{cap.number}"
            self.labels[key], self.clean[key] = self._last
            self.written[key] = {m: a.copy() for m, a in images.items()}
            return real_write(dataset_dir, entries, images)

        monkeypatch.setattr(generate, "render_sample", render_sample)
        monkeypatch.setattr(generate, "write_capture", write_capture)


def write_tree(like, root, monkeypatch, **kwargs):
    recorder = Recorder(monkeypatch)
    size = PERSON_SIZE if SPECS[like].kind == "person" else VEHICLE_SIZE
    synthesize(like, root, **({"num_ids": 8, "image_size": size, "progress": False} | kwargs))
    manifest = yaml.safe_load((root / "manifest.yaml").read_text())
    split = load_split(like, root, **manifest["loader_options"])
    records = {r.key: r for part in split.parts().values() for r in part}
    return recorder, list(records.values()), read_metadata(root)["capture"], split


@pytest.mark.parametrize("like", BENCHMARKS)
def test_the_mask_is_the_silhouette_the_generator_drew_for_every_record_in_the_files_geometry(like, tmp_path,
                                                                                           monkeypatch):
    recorder, records, capture_of, split = write_tree(like, tmp_path, monkeypatch, degradations="harsh")
    assert len(records) > 20
    masks = ObjectMasks(tmp_path)
    for record in records:
        drawn = recorder.labels[capture_of[record.key]] != 0
        assert 0 < drawn.mean() < 0.8
        for m in record.modalities:
            mask = object_mask(record, m)
            assert mask.dtype == bool
            assert np.array_equal(mask, drawn), (record.key, m)
            width, height = read_image(record.images[m]).size       # the decoded image (RGBNT100: its tile)
            assert mask.shape == (height, width) == masks.image_size
    # the batch form, with the tree given as the split's dataset folder or found from the paths
    some = records[:5]
    stacked = object_masks(some, root=split.root)
    assert stacked.shape == (5, *masks.image_size)
    assert np.array_equal(stacked, object_masks(some))
    assert np.array_equal(stacked, masks.masks(some))


@pytest.mark.parametrize("like", ["sysu_mm01", "regdb", "rgbnt201", "rgbnt100"])
def test_excluding_the_occluder_removes_exactly_the_object_pixels_it_covers_in_that_modality(like, tmp_path,
                                                                                           monkeypatch):
    recorder, records, capture_of, _ = write_tree(like, tmp_path, monkeypatch, degradations="occlusion=1")
    hidden_somewhere = kept_somewhere = False
    for record in records:
        capture = capture_of[record.key]
        drawn = recorder.labels[capture] != 0
        for m in record.modalities:
            clean, written = recorder.clean[capture][m], recorder.written[capture][m]
            covered = clean != written                               # occlusion is the only degradation
            covered = covered.any(axis=-1) if covered.ndim == 3 else covered
            visible = object_mask(record, m, exclude_occluder=True)
            assert np.array_equal(visible, drawn & ~covered), (record.key, m)
            assert np.array_equal(object_mask(record, m), drawn)   # the default keeps the hidden parts
            hidden_somewhere |= bool((drawn & covered).any())
            kept_somewhere |= not covered.any()
    assert hidden_somewhere
    if like != "sysu_mm01":                  # an occlusion hits one of several aligned modalities half the time
        assert kept_somewhere


def _background_only(monkeypatch):
    """Render with the subject removed: the same draws (pose jitter included), an all-background label map."""
    real = render.subject_labels

    def no_subject(*args, **kwargs):
        labels, bx, by = real(*args, **kwargs)
        return np.zeros_like(labels), bx, by

    monkeypatch.setattr(render, "subject_labels", no_subject)


@pytest.mark.parametrize("kind, shared_pattern", [("person", False), ("person", True), ("vehicle", False)])
def test_the_label_map_is_exactly_where_each_modality_differs_from_the_background_only_rendering(
        kind, shared_pattern, monkeypatch):
    size = (128, 64) if kind == "person" else (64, 128)
    identities = make_identities(kind, 12, seed=5, split_cues=not shared_pattern)
    cases = [(ident, Conditions(view, night, background, mirror))
             for ident, background in zip(identities[:3], (1, 2, 3), strict=True)
             for view in VIEWS for night in (False, True) for mirror in (False, True)]
    radius = int(4.0 * 0.012 * size[0] + 0.5)          # scipy's gaussian_filter support of the TIR heat blur
    drawn = []
    for i, (ident, cond) in enumerate(cases):
        drawn.append(render_sample(ident, cond, size, 5, rng_for(5, "masks", i), shared_pattern=shared_pattern))
    with monkeypatch.context() as patch:
        _background_only(patch)
        empty = [render_sample(ident, cond, size, 5, rng_for(5, "masks", i), shared_pattern=shared_pattern)
                 for i, (ident, cond) in enumerate(cases)]
    for (images, labels), (background, no_labels) in zip(drawn, empty, strict=True):
        mask = labels != 0
        assert not no_labels.any() and 0.05 < mask.mean() < 0.8
        assert np.array_equal((images["rgb"] != background["rgb"]).any(axis=-1), mask)
        assert np.array_equal(images["nir"] != background["nir"], mask)
        tir = images["tir"] != background["tir"]
        assert (tir | ~mask).all()                                             # every object pixel differs
        assert not (tir & ~binary_dilation(mask, np.ones((2 * radius + 1,) * 2, bool))).any()  # nothing beyond


def test_masks_follow_a_tree_rewritten_in_place(tmp_path):
    options = {"num_ids": 6, "image_size": PERSON_SIZE, "progress": False}
    synthesize("regdb", tmp_path, seed=1, **options)
    record = load_split("regdb", tmp_path, trial=1).query[0]
    before = object_mask(record)
    synthesize("regdb", tmp_path, seed=2, overwrite=True, **options)
    record = load_split("regdb", tmp_path, trial=1).query[0]
    assert np.array_equal(object_mask(record), ObjectMasks(tmp_path).mask(record))
    assert not np.array_equal(object_mask(record), before)


def test_masks_refuse_what_they_cannot_replay(tmp_path):
    synthesize("rgbnt201", tmp_path / "a", num_ids=4, image_size=PERSON_SIZE, progress=False)
    synthesize("rgbnt201", tmp_path / "b", num_ids=6, image_size=PERSON_SIZE, progress=False, seed=3)
    record = load_split("rgbnt201", tmp_path / "a").query[0]
    assert np.array_equal(object_mask(record), object_mask(record, "tir"))        # aligned modalities
    with pytest.raises(ValueError, match="pass the modality"):
        object_mask(record, exclude_occluder=True)
    sysu_like = Record(images={"rgb": record.images["rgb"]}, pid=record.pid, camid=record.camid, key=record.key)
    with pytest.raises(ValueError, match="no 'nir' image"):
        object_mask(sysu_like, "nir")
    with pytest.raises(DataFormatError, match="is not an image of the synthetic"):
        object_mask(load_split("rgbnt201", tmp_path / "b").query[-1], root=tmp_path / "a")

    manifest = tmp_path / "a" / "manifest.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("generator_version: ", "generator_version: 9"))
    with pytest.raises(DataFormatError, match="cannot be replayed"):
        object_mask(record)
    manifest.write_text(text.replace("synthetic: true", "synthetic: false"))
    with pytest.raises(DataFormatError, match="not the manifest of a synthetic tree"):
        object_mask(record)
    manifest.unlink()
    with pytest.raises(DataFormatError, match="no manifest.yaml"):
        object_mask(record)
