"""Pretrained tutorial backbones: the pool is disjoint from every benchmark tree, the shipped weights load
strictly and are sha256-checked, and pre-training is deterministic."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from reidlab.data.synthetic.identities import (
    FREQUENCIES,
    PERSON,
    POOL_FREQUENCIES,
    VEHICLE,
    make_identities,
    make_pool_identities,
    pool_cues,
)
from reidlab.data.synthetic.layouts import SPECS
from reidlab.engine.pretrain import PretrainConfig, pretrain_model, train_backbone
from reidlab.models import pretrained
from reidlab.models.backbones import PRESETS, create_backbone
from reidlab.models.pretrained import split_tag
from reidlab.recipes import PROFILES, RECIPES_DIR, available_recipes, load_recipe

SHIPPED = PretrainConfig()
#: The presets whose .synth weights ship, and the tutorial recipes' input sizes to load them at.
REGISTERED = sorted(split_tag(tag)[0] for tag in pretrained.SYNTH_SHA256)
SIZES = {"vit_tutorial": [(24, 48), (64, 32)], "resnet_tutorial": [(64, 32), (24, 48)]}


def _benchmark_configs() -> set[tuple[str, int, int]]:
    """(format, seed, num_ids) of every recipe profile's synthetic tree (each per-dataset entry too), plus each
    of the six formats at its default size for seeds 0-4."""
    configs = {(name, seed, spec.num_ids) for name, spec in SPECS.items() for seed in range(5)}
    for recipe in available_recipes():
        spec = yaml.safe_load((RECIPES_DIR / f"{recipe}.yaml").read_text())
        for profile, body in spec["profiles"].items():
            assert profile in PROFILES
            for dataset in {body["dataset"], *(body.get("datasets") or {})}:
                synthetic = load_recipe(recipe, profile, dataset=dataset).synthetic
                num_ids = synthetic.get("num_ids") or SPECS[dataset].num_ids
                configs.add((dataset, synthetic.get("seed", 0), num_ids))
    return configs


def _benchmark_identities():
    for name, seed, num_ids in sorted(_benchmark_configs()):
        spec = SPECS[name]
        yield name, make_identities(spec.kind, num_ids, seed, split_cues=not spec.shared_pattern)


def _pool() -> dict[str, list]:
    return {PERSON: make_pool_identities(PERSON, SHIPPED.persons, SHIPPED.seed),
            VEHICLE: make_pool_identities(VEHICLE, SHIPPED.vehicles, SHIPPED.seed)}


def test_no_pool_identity_shares_any_modality_code_with_any_tutorial_tree_identity():
    pool = _pool()
    codes = {kind: [{(i.colour,) for i in ids}, {(i.pattern,) for i in ids}, {(i.heat,) for i in ids}]
             for kind, ids in pool.items()}
    tuples = {kind: {(i.colour, i.pattern, i.heat, i.shape) for i in ids} for kind, ids in pool.items()}
    checked = 0
    for name, identities in _benchmark_identities():
        for ident in identities:
            kind = ident.kind
            assert (ident.colour, ident.pattern, ident.heat, ident.shape) not in tuples[kind], (name, ident)
            for code, pool_codes in zip(((ident.colour,), (ident.pattern,), (ident.heat,)), codes[kind], strict=True):
                assert code not in pool_codes, (name, ident.index, code)
            assert pool_cues(ident) == []
            checked += 1
    assert checked > 2000     # every recipe's tree and six formats x five seeds were enumerated


def test_pool_identities_lie_wholly_in_the_reserved_region_and_are_distinct():
    for kind, identities in _pool().items():
        assert all(pool_cues(i) == ["colour", "pattern", "heat"] for i in identities)
        assert len({(i.colour, i.pattern, i.heat) for i in identities}) == len(identities)
        assert {i.shape for i in identities} == {"slim", "medium", "broad"} if kind == PERSON else True


def test_pool_texture_frequencies_never_overlap_benchmark_ones_under_individual_scaling():
    scale = (0.88, 1.12)         # Identity.pattern_scale range
    pool = [(f * scale[0], f * scale[1]) for f in POOL_FREQUENCIES]
    bench = [(f * scale[0], f * scale[1]) for f in FREQUENCIES]
    assert all(hi < lo2 or hi2 < lo for lo, hi in pool for lo2, hi2 in bench)


def test_benchmark_codebooks_refuse_the_pool_region(monkeypatch):
    from reidlab.data.synthetic import identities

    monkeypatch.setattr(identities, "FREQUENCIES", (5.0, POOL_FREQUENCIES[1]))
    with pytest.raises(RuntimeError, match="reserved for the pre-training pool"):
        make_identities(PERSON, 72, 0)


TINY = PretrainConfig(persons=4, vehicles=4, captures=2, steps=2, p=2, k=2)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_seed_gives_bit_identical_pretrained_weights(preset):
    first, _ = train_backbone(preset, TINY, progress=False)
    second, _ = train_backbone(preset, TINY, progress=False)
    other, _ = train_backbone(preset, PretrainConfig(**{**TINY.__dict__, "seed": 1}), progress=False)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    initial = pretrain_model(preset).state_dict()
    assert not all(torch.equal(first[k], initial[k]) for k in first if k in initial)   # the steps trained


@pytest.mark.parametrize(("preset", "size"), [(p, size) for p in REGISTERED for size in SIZES[p]])
def test_shipped_weights_load_strictly_into_the_tutorial_backbones(preset, size):
    tagged = f"{preset}.synth"
    state = load_file(pretrained.weights_path(tagged))
    backbone = create_backbone(tagged, img_size=size, pretrained=True)
    loaded = backbone.vit.state_dict() if backbone.kind == "vit" else backbone.state_dict()
    source = {k: v for k, v in state.items() if k != "pos_embed"}
    if backbone.kind == "cnn":   # CNNBackbone names timm's conv1/layerN as stem.conv1/stages.layerN
        loaded = {k.split(".", 1)[1]: v for k, v in loaded.items()}
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())
    if backbone.kind == "vit":   # the 8x8 training grid, resampled to the target grid
        assert state["pos_embed"].shape[1] == 1 + 64
        assert loaded["pos_embed"].shape[1] == 1 + (size[0] // 8) * (size[1] // 8)
    # The bare preset name with pretrained=True means its default tag, as in timm.
    bare = create_backbone(preset, img_size=size, pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), backbone.state_dict().values(),
                                                  strict=True))


@pytest.mark.parametrize("preset", REGISTERED)
def test_provenance_records_the_registered_sha256(preset):
    tagged = f"{preset}.synth"
    path = pretrained.weights_path(tagged)
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["sha256"] == pretrained.SYNTH_SHA256[tagged] == pretrained.sha256_of(path)
    assert f"reidlab pretrain {preset}" in provenance["command"]
    assert 0 < provenance["final_train_accuracy"] <= 1


def test_corrupted_weights_are_refused_naming_the_file(tmp_path, monkeypatch):
    tagged = "vit_tutorial.synth"
    copy = tmp_path / f"{tagged}.safetensors"
    shutil.copy(pretrained.weights_path(tagged), copy)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(RuntimeError, match=f"{copy}.*corrupted or stale.*reidlab pretrain vit_tutorial"):
        create_backbone(tagged, img_size=(24, 48), pretrained=True)
    copy.unlink()
    with pytest.raises(FileNotFoundError, match=str(copy)):
        create_backbone(tagged, img_size=(24, 48), pretrained=True)


def test_registered_weights_cover_every_tutorial_preset():
    assert REGISTERED == sorted(PRESETS)


def test_unknown_tag_and_untagged_random_init():
    with pytest.raises(ValueError, match="unknown tag 'in1k'.*vit_tutorial.synth"):
        create_backbone("vit_tutorial.in1k", img_size=(24, 48), pretrained=True)
    torch.manual_seed(0)
    random = create_backbone("vit_tutorial.synth", img_size=(24, 48), pretrained=False)
    shipped = create_backbone("vit_tutorial.synth", img_size=(24, 48), pretrained=True)
    assert not torch.equal(random.vit.cls_token, shipped.vit.cls_token)
