"""Every recipe trains and evaluates on CUDA with bf16 autocast (skipped without a GPU; run on a GPU machine).

The CPU suite cannot see a tensor left on the CPU inside a training step: PECA's channel view was one."""

import math

import pytest
import torch
import yaml

import reidlab
from reidlab.recipes import RECIPES_DIR, available_recipes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SMOKE = [name for name in available_recipes()
         if "smoke" in yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())["profiles"]]


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_recipe_trains_in_bf16_and_evaluates_on_cuda(name, tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    recipe = reidlab.load_recipe(name, "smoke", {"train.amp": "bf16"})
    run = reidlab.train(recipe, device="cuda", progress=False)
    assert next(run.model.parameters()).is_cuda
    assert all(record["amp"] and math.isfinite(record["loss"]) for record in run.history.records)
    assert 0.0 <= run.evaluate().summary()["mAP"] <= 100.0
