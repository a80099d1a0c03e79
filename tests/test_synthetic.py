"""The synthetic benchmark: real loaders read every format, manifests and sidecars agree, knobs work."""

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from reidlab.cli import main as cli_main
from reidlab.data.formats import BENCHMARKS, get_format, load_split
from reidlab.data.records import DataFormatError
from reidlab.data.synthetic import PRESETS, SPECS, parse_mix, read_metadata, synthesize
from reidlab.data.synthetic.degrade import draw_degradations
from reidlab.data.synthetic.identities import make_identities
from reidlab.data.synthetic.seeding import rng_for
from reidlab.data.verify import verify

PERSON_SIZE, VEHICLE_SIZE = (32, 16), (16, 32)


def small(like: str, root: Path, **kwargs):
    size = PERSON_SIZE if SPECS[like].kind == "person" else VEHICLE_SIZE
    options = {"num_ids": 8, "image_size": size, "progress": False} | kwargs
    return synthesize(like, root, **options)


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("like", BENCHMARKS)
def test_every_format_loads_through_its_real_loader_with_the_manifest_counts(like, tmp_path):
    summary = small(like, tmp_path)
    manifest = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert manifest["synthetic"] is True and manifest["benchmark"] == like
    assert get_format(like).layout_problems(tmp_path) == []
    split = load_split(like, tmp_path, **manifest["loader_options"])
    assert split.statistics() == manifest["counts"] == summary.counts
    assert all(manifest["counts"][part]["records"] > 0 for part in ("train", "query", "gallery"))
    # the repository's own checker agrees: layout, counts against manifest.yaml, every image decodes
    report = verify(like, tmp_path, progress=False)
    assert report.ok, report.render()

    metadata = read_metadata(tmp_path)
    assert metadata.index.is_unique
    record_keys = {r.key for part in split.parts().values() for r in part}
    if like == "sysu_mm01":  # the single-shot gallery is one draw among the visible test images
        multi_shot = load_split(like, tmp_path, shots=10)
        assert record_keys <= set(metadata.index)
        record_keys = {r.key for part in multi_shot.parts().values() for r in part}
    assert set(metadata.index) == record_keys
    for record in split.train + split.query + split.gallery:
        row = metadata.loc[record.key]
        assert (row["pid"], row["camid"]) == (record.pid, record.camid)
        for m in record.modalities:
            assert row[f"{m}_quality"] == pytest.approx(1 - row[f"{m}_severity"])


def test_same_seed_gives_a_byte_identical_tree_and_another_seed_does_not(tmp_path):
    small("rgbnt100", tmp_path / "a", seed=3)
    small("rgbnt100", tmp_path / "b", seed=3)
    small("rgbnt100", tmp_path / "c", seed=4)
    a, b, c = (tree_hashes(tmp_path / x) for x in "abc")
    assert a == b
    shared = set(a) & set(c)
    assert any(a[k] != c[k] for k in shared) or set(a) != set(c)


def test_identity_cues_are_split_across_modalities():
    identities = make_identities("person", 72, seed=0)
    triples = [i.codes for i in identities]
    assert len(set(triples)) == len(triples)                  # all three codes together: unique
    for position in range(3):                                # any one code: shared by several ids
        assert min(Counter(t[position] for t in triples).values()) >= 3
    pairs = Counter((t[0], t[1]) for t in triples)            # two codes: some ids still collide
    assert max(pairs.values()) >= 2


def test_cross_modal_identities_share_the_texture_cue_across_modalities():
    identities = make_identities("person", 80, seed=0, split_cues=False)
    assert len({i.codes[1] for i in identities}) == 80        # texture (seen in every modality): unique
    assert len({i.codes[0] for i in identities}) < 10         # colour (visible only): shared


def test_sysu_and_regdb_split_files_look_like_the_real_ones(tmp_path):
    small("sysu_mm01", tmp_path / "sysu", num_ids=12)
    exp = tmp_path / "sysu" / "SYSU-MM01" / "exp"
    ids = {p: exp.joinpath(f"{p}_id.txt").read_text() for p in ("train", "val", "test", "available")}
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in ids.values())
    parsed = {p: {int(v) for v in text.strip().split(",")} for p, text in ids.items()}
    assert parsed["train"] | parsed["val"] | parsed["test"] == parsed["available"] == set(range(1, 13))

    small("regdb", tmp_path / "regdb", num_ids=6)
    idx = tmp_path / "regdb" / "RegDB" / "idx"
    raw = idx.joinpath("train_visible_1.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 30          # 3 ids x 10 images, CRLF
    first = raw.decode().split("\r\n")[0].split()
    assert first[0].startswith("Visible/") and first[0].endswith(".bmp") and first[1] == "0"
    trial_ids = [{line.split("/")[1] for line in idx.joinpath(f"train_visible_{t}.txt").read_text().splitlines()}
                 for t in range(1, 11)]
    assert len({frozenset(s) for s in trial_ids}) > 1                    # trials split the ids differently


@pytest.mark.parametrize("spec, expected", [
    ("flare_heavy", {("rgb", "flare"): 0.5, ("nir", "flare"): 0.175, ("tir", "flare"): 0.0}),
    ("noise=0.6", {("tir", "noise"): 0.6, ("nir", "noise"): 0.3, ("rgb", "noise"): 0.18}),
    ("clean", {("rgb", "none"): 1.0, ("nir", "none"): 1.0, ("tir", "none"): 1.0}),
    ("low_light=0.4,blur=0.1", {("rgb", "low_light"): 0.4, ("nir", "low_light"): 0.0, ("nir", "blur"): 0.1}),
])
def test_mixes_draw_degradations_at_the_configured_rates(spec, expected):
    mix = parse_mix(spec)
    n, night_rate = 4000, 0.3
    counts = Counter()
    for i in range(n):
        night = i < n * night_rate
        plan = draw_degradations(mix, ("rgb", "nir", "tir"), night, night_rate, rng_for(0, "test", i))
        counts.update((m, d.kind) for m, d in plan.per_modality.items())
    for key, rate in expected.items():
        assert counts[key] / n == pytest.approx(rate, abs=0.03), key


def test_occlusion_hits_all_aligned_modalities_half_of_the_time():
    mix = parse_mix("occlusion=1")
    whole = sum(len(draw_degradations(mix, ("rgb", "nir", "tir"), False, 0.3, rng_for(1, i)).per_modality) == 3
                and all(d.kind == "occlusion" for d in
                        draw_degradations(mix, ("rgb", "nir", "tir"), False, 0.3, rng_for(1, i)).per_modality.values())
                for i in range(2000))
    assert whole / 2000 == pytest.approx(0.5, abs=0.04)


def test_the_sidecar_records_the_mix_the_tree_was_written_with(tmp_path):
    small("rgbnt201", tmp_path / "flare", num_ids=24, degradations="flare_heavy")
    small("rgbnt201", tmp_path / "clean", num_ids=24, degradations="clean")
    flare, clean = read_metadata(tmp_path / "flare"), read_metadata(tmp_path / "clean")
    assert (flare["rgb_degradation"] == "flare").mean() == pytest.approx(0.5, abs=0.1)
    assert (flare["tir_degradation"] != "flare").all()
    hit = flare[flare["rgb_degradation"] == "flare"]
    lo, hi = PRESETS["flare_heavy"].severity
    assert hit["rgb_severity"].between(lo, hi).all()
    assert (hit.loc[hit.illumination == "night"].shape[0] / max(1, (flare.illumination == "night").sum())
            > hit.loc[hit.illumination == "day"].shape[0] / max(1, (flare.illumination == "day").sum()))
    assert (clean[[f"{m}_degradation" for m in ("rgb", "nir", "tir")]] == "none").all().all()
    assert (clean["rgb_quality"] == 1.0).all()


def test_a_flare_saturates_part_of_the_rgb_image(tmp_path):
    small("rgbnt201", tmp_path / "flare", degradations="flare=1,severity=0.9-1", seed=5)
    small("rgbnt201", tmp_path / "clean", degradations="clean", seed=5)
    key = read_metadata(tmp_path / "flare").index[0]
    from PIL import Image

    def pixels(root):
        return np.asarray(Image.open(root / "RGBNT201" / key), dtype=float)

    flared, clean = pixels(tmp_path / "flare"), pixels(tmp_path / "clean")
    assert (flared.mean(axis=2) > 235).mean() > 0.1 > (clean.mean(axis=2) > 235).mean()


@pytest.mark.parametrize("spec, message", [
    ("glare=0.3", "unknown degradation 'glare'"),
    ("flare=1.5", "outside [0, 1]"),
    ("flare=lots", "not a number"),
    ("severity=0.9-0.2", "severity"),
    ("flare=0.1,harsh", "preset name first"),
    ("", "empty degradation mix"),
])
def test_bad_degradation_mixes_are_rejected_with_a_clear_message(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mix(spec)


@pytest.mark.parametrize("kwargs, message", [
    ({"like": "market1501"}, "unknown format 'market1501'"),
    ({"num_ids": 1}, "num_ids must be at least 2"),
    ({"image_size": (8, 8)}, "image_size"),
    ({"degradations": {"fog": 0.2, "rain": 0.1}}, "unknown degradation 'rain'"),
])
def test_bad_knobs_are_rejected_before_anything_is_written(kwargs, message, tmp_path):
    options = {"like": "rgbnt201", "root": tmp_path / "out", "progress": False} | kwargs
    with pytest.raises(ValueError, match=message):
        synthesize(**options)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_root_needs_overwrite_and_overwrite_only_replaces_synthetic_trees(tmp_path):
    small("regdb", tmp_path, num_ids=4)
    with pytest.raises(DataFormatError, match="not empty"):
        small("regdb", tmp_path, num_ids=4)
    small("rgbnt201", tmp_path, num_ids=4, overwrite=True)          # replaces the previous tree
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RGBNT201", "manifest.yaml", "metadata.csv"]

    real = tmp_path / "real"
    (real / "RGBNT201").mkdir(parents=True)
    (real / "RGBNT201" / "precious.jpg").write_bytes(b"data")
    with pytest.raises(DataFormatError, match="not a synthetic tree"):
        small("rgbnt201", real, overwrite=True)
    assert (real / "RGBNT201" / "precious.jpg").read_bytes() == b"data"


def test_read_metadata_names_the_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="metadata.csv"):
        read_metadata(tmp_path)


def test_cli_synth_writes_a_tree_and_prints_its_summary(tmp_path, capsys):
    code = cli_main(["data", "synth", "--like", "msvr310", "--root", str(tmp_path), "--num-ids", "6",
                     "--image-size", "16x32", "--degradations", "harsh", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "msvr310" in out and str(tmp_path) in out and "MB on disk" in out
    assert load_split("msvr310", tmp_path).statistics()["train"]["records"] > 0
