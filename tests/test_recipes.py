"""Recipes: profile/dataset/override merging, errors, and the synthetic tree cache."""

from __future__ import annotations

import pytest

from reidlab.data.formats import load_split
from reidlab.data.synthetic.cache import synthetic_tree
from reidlab.recipes import PROFILES, available_recipes, load_recipe


def test_every_recipe_resolves_for_every_profile_it_declares():
    assert {"baseline_multimodal", "baseline_crossmodal"} <= set(available_recipes())
    for name in available_recipes():
        for profile in PROFILES:
            try:
                recipe = load_recipe(name, profile)
            except ValueError as error:
                assert "has no profile" in str(error)
                continue
            assert recipe.method and recipe.dataset and recipe.data["size"]
            assert recipe.train["epochs"] >= 1


def test_profile_overrides_defaults_and_dotted_overrides_reach_sections():
    recipe = load_recipe("baseline_multimodal", "tutorial", {"train.epochs": 3, "model.modalities": ["tir"]})
    assert recipe.train["epochs"] == 3
    assert recipe.model["modalities"] == ["tir"]
    assert recipe.model["shared"] is False                     # from defaults
    assert recipe.loss["margin"] == 0.3
    assert recipe.override({"train.lr": 0.5}).train["lr"] == 0.5
    assert recipe.train["lr"] != 0.5                           # recipes are immutable values


def test_dataset_specific_settings_apply_and_unknown_dataset_is_rejected():
    recipe = load_recipe("baseline_crossmodal", "paper", dataset="regdb", data_root="/data")
    assert recipe.dataset == "regdb" and recipe.data_root == "/data"
    assert recipe.dataset_options == {"trial": 1, "direction": "visible_to_thermal"}
    assert load_recipe("baseline_crossmodal", "paper").dataset_options == {"mode": "all"}
    with pytest.raises(ValueError, match="no settings for dataset 'rgbnt100'"):
        load_recipe("baseline_crossmodal", "paper", dataset="rgbnt100")


def test_bad_names_give_clear_errors():
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    with pytest.raises(ValueError, match="has no profile 'huge'"):
        load_recipe("baseline_multimodal", "huge")
    with pytest.raises(ValueError, match="unknown recipe field 'trian'"):
        load_recipe("baseline_multimodal", "tutorial", {"trian.epochs": 1})


def test_synthetic_tree_is_rendered_once_and_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path))
    first = synthetic_tree("rgbnt201", seed=3, num_ids=6, image_size=(32, 16))
    stamp = (first / "manifest.yaml").stat().st_mtime_ns
    again = synthetic_tree("rgbnt201", seed=3, num_ids=6, image_size=(32, 16))
    assert again == first and (first / "manifest.yaml").stat().st_mtime_ns == stamp
    other = synthetic_tree("rgbnt201", seed=4, num_ids=6, image_size=(32, 16))
    assert other != first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no staging left
    split = load_split("rgbnt201", first)
    assert split.train and split.query


def test_multibranch_baseline_losses_are_per_branch_only(tmp_path, monkeypatch):
    """The fused feature is a test-time concatenation: no loss term reads it, so a single-modality model
    is trained exactly like one branch of the three-modality model."""
    import torch

    from reidlab.methods import build_method

    for modalities in (["tir"], ["rgb", "nir", "tir"]):
        recipe = load_recipe("baseline_multimodal", "smoke", {"model.modalities": modalities})
        model, criterion = build_method(recipe, 4, ("rgb", "nir", "tir"))
        batch = {"images": torch.randn(4, len(modalities), 3, 32, 16),
                 "present": torch.ones(4, len(modalities), dtype=bool), "label": torch.tensor([0, 0, 1, 1])}
        terms = criterion(model(batch), batch)
        assert sorted(terms) == sorted([f"id/{m}" for m in modalities] + [f"tri/{m}" for m in modalities])
