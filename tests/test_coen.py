"""CoEN (reidlab.models.coen, reidlab.losses.coen, reidlab.methods.coen, recipe coen): each equation of the paper
against a small hand-computed case (Eq. 2–3 proxy, Eq. 4–6 quality, Eq. 7 / 12 per-sample sort and its inverse,
Eq. 8–10 cross-attention, Eq. 11 residual sums, Eq. 16 loss weighting), every variant of Tables 3, 4, 6 and 7,
the output contract, gradients, eval determinism, Grad-CAM, FLOPs, the recipe and a paper-size forward/backward."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidlab.engine.experiment import train
from reidlab.losses.coen import CEM_NAMES, PROXY_NAMES, VIT_NAMES, CoENCriterion
from reidlab.losses.reid import CrossEntropyLabelSmooth, TripletLoss
from reidlab.methods import build_method
from reidlab.models.baseline import MultiModalBaseline
from reidlab.models.coen import (
    BRANCHES,
    CONCATS,
    CoEN,
    CollaborativeEnhancement,
    EnhancementAttention,
    ProxyGenerator,
    count_flops,
    count_parameters,
    inverse_sort,
    quality_scores,
    rank_order,
    sort_modalities,
)
from reidlab.recipes import PROFILES, load_recipe
from reidlab.viz import IdentityLogitTarget, gradcam_maps

SIZE = (16, 32)
NUM_CLASSES = 5


def make_batch(b: int = 4, seed: int = 0, size: tuple[int, int] = SIZE) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, 3, 3, *size, generator=g), "present": torch.ones(b, 3, dtype=torch.bool),
            "label": torch.arange(b) % 2}


def make_model(seed: int = 0, **options) -> CoEN:
    torch.manual_seed(seed)
    return CoEN("vit_tutorial", NUM_CLASSES, img_size=SIZE, **options)


def penultimate(model: CoEN, batch: dict) -> torch.Tensor:
    """The shared ViT's tokens entering the last block, [B, 3, P + N, D] (Eq. 1), computed per modality."""
    return torch.stack([model.backbone.forward_penultimate(batch["images"][:, i]) for i in range(3)], dim=1)


# --------------------------------------------------------------------------------------------- Eq. 2–3: PG

def test_proxy_generator_concatenates_channels_then_projects_progressively():
    torch.manual_seed(0)
    d, tokens = 4, torch.randn(2, 3, 5, 4)
    concat = ProxyGenerator.concat(tokens)                                        # Eq. 2
    assert concat.shape == (2, 5, 12)
    torch.testing.assert_close(concat[1, 3], torch.cat([tokens[1, 0, 3], tokens[1, 1, 3], tokens[1, 2, 3]]))
    pg = ProxyGenerator(d, "progressive")
    assert pg.proj_a[0].weight.shape == (2 * d, 3 * d) and pg.proj_b.weight.shape == (d, 2 * d)
    expected = pg.proj_b(F.gelu(concat @ pg.proj_a[0].weight.T + pg.proj_a[0].bias))   # Eq. 3
    torch.testing.assert_close(pg(tokens), expected)
    assert pg(tokens).shape == (2, 5, d)


def test_proxy_generator_direct_and_sum_variants():
    torch.manual_seed(0)
    tokens = torch.randn(2, 3, 5, 4)
    direct = ProxyGenerator(4, "direct")
    assert direct.proj_a is None and direct.proj_b.weight.shape == (4, 12)
    torch.testing.assert_close(direct(tokens), ProxyGenerator.concat(tokens) @ direct.proj_b.weight.T
                               + direct.proj_b.bias)
    summed = ProxyGenerator(4, "sum")
    assert count_parameters(summed) == 0
    torch.testing.assert_close(summed(tokens), tokens[:, 0] + tokens[:, 1] + tokens[:, 2])
    assert count_parameters(ProxyGenerator(4, "progressive")) == (12 * 8 + 8) + (8 * 4 + 4)
    with pytest.raises(ValueError, match="proxy must be one of"):
        ProxyGenerator(4, "mean")
    with pytest.raises(ValueError, match=r"tokens \[B, 3, N, D\]"):
        summed(torch.zeros(2, 2, 5, 4))


# ---------------------------------------------------------------------------------------- Eq. 4–7, 12: DQSM

def test_quality_is_the_mean_token_wise_cosine_to_the_proxy():
    proxy = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])                              # [B=1, N=2, D=2]
    tokens = torch.tensor([[[[2.0, 0.0], [0.0, 3.0]],                            # R: cos 1, 1
                            [[0.0, 1.0], [1.0, 0.0]],                            # N: cos 0, 0
                            [[1.0, 1.0], [-1.0, 0.0]]]])                         # T: cos 1/sqrt2, 0
    quality = quality_scores(proxy, tokens)                                       # Eq. 4–6
    torch.testing.assert_close(quality, torch.tensor([[1.0, 0.0, 0.5 / math.sqrt(2.0)]]))
    assert rank_order(quality).tolist() == [[0, 2, 1]]                            # Eq. 7: R, T, N


def test_rank_order_is_per_sample_and_stable_on_ties():
    quality = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3], [0.5, 0.5, 0.1], [0.2, 0.4, 0.4]])
    assert rank_order(quality).tolist() == [[1, 2, 0], [0, 2, 1], [0, 1, 2], [1, 2, 0]]


def test_sort_then_inverse_sort_restores_the_canonical_order():
    torch.manual_seed(0)
    tokens = torch.randn(6, 3, 4, 2)
    order = torch.stack([torch.randperm(3) for _ in range(6)])
    ranked = sort_modalities(tokens, order)                                       # Eq. 7
    for b in range(6):
        for k in range(3):
            assert torch.equal(ranked[b, k], tokens[b, order[b, k]])
    assert torch.equal(inverse_sort(ranked, order), tokens)                       # Eq. 12
    marked = ranked + torch.arange(3).view(1, 3, 1, 1) * 100.0                    # tag each rank slot
    restored = inverse_sort(marked, order)
    for b in range(6):
        for k in range(3):
            assert torch.equal(restored[b, order[b, k]], tokens[b, order[b, k]] + 100.0 * k)


# ------------------------------------------------------------------------------------- Eq. 8–11: CEM

def test_cross_attention_matches_softmax_qk_v_with_the_layers_weights():
    torch.manual_seed(0)
    unit = EnhancementAttention(4, dropout=0.5).eval()
    query, context = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    q = query @ unit.q.weight.T + unit.q.bias                                     # Eq. 8
    k = context @ unit.k.weight.T + unit.k.bias
    v = context @ unit.v.weight.T + unit.v.bias
    attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1) @ v   # Eq. 9 / 10, d_C = D
    torch.testing.assert_close(unit.attend(query, context), attention)
    normed = F.layer_norm(attention, (4,), unit.norm.weight, unit.norm.bias, eps=1e-6)
    torch.testing.assert_close(unit(query, context), normed @ unit.proj.weight.T + unit.proj.bias)
    assert unit(query, context).shape == (2, 3, 4)


def test_cross_attention_dropout_gamma_acts_in_training_only():
    torch.manual_seed(0)
    query, context = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    unit = EnhancementAttention(8, dropout=0.5).train()
    assert not torch.equal(unit(query, context), unit(query, context))
    unit.eval()
    assert torch.equal(unit(query, context), unit(query, context))
    dropped = EnhancementAttention(8, dropout=1.0).train()                       # γ = 1 drops everything
    torch.testing.assert_close(dropped(query, context), dropped.proj.bias.expand(2, 3, 8))


def test_residual_sums_of_eq_11_for_every_enhancement_variant():
    torch.manual_seed(0)
    ranked, proxy = torch.randn(2, 3, 4, 8), torch.randn(2, 4, 8)
    cem = CollaborativeEnhancement(8, dropout=0.0).eval()
    r1, r2, r3 = ranked.unbind(1)
    pro, pri = cem.proxy, cem.primary
    expected = torch.stack([r1 + pro[0](r1, proxy),                              # F'_1st = F_1st + F^P_1st
                            r2 + pro[1](r2, proxy) + pri[0](r2, r1),              # + F^1st_2nd (query: F_2nd)
                            r3 + pro[2](r3, proxy) + pri[1](r3, r1)], dim=1)
    torch.testing.assert_close(cem(ranked, proxy), expected)
    primary_only = CollaborativeEnhancement(8, 0.0, primary=True, proxy=False).eval()
    out = primary_only(ranked, proxy)
    assert torch.equal(out[:, 0], r1)                                            # the primary is not enhanced
    torch.testing.assert_close(out[:, 2], r3 + primary_only.primary[1](r3, r1))
    proxy_only = CollaborativeEnhancement(8, 0.0, primary=False, proxy=True).eval()
    torch.testing.assert_close(proxy_only(ranked, proxy)[:, 1], r2 + proxy_only.proxy[1](r2, proxy))
    identity = CollaborativeEnhancement(8, 0.0, primary=False, proxy=False)
    assert count_parameters(identity) == 0 and torch.equal(identity(ranked, proxy), ranked)


# ------------------------------------------------------------------------------------------------- the model

def test_outputs_follow_the_contract_and_the_pipeline():
    model = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
        tokens = penultimate(model, batch)
    d = model.feature_dim
    assert model.modalities == ("rgb", "nir", "tir") and model.default_feature == "rnt_proxy"
    assert set(out["logits"]) == set(BRANCHES)
    assert set(out["features"]) == set(out["embeddings"]) == set(BRANCHES) | set(CONCATS)
    for name in BRANCHES:
        assert out["features"][name].shape == (4, d) and out["logits"][name].shape == (4, NUM_CLASSES)
    assert out["embeddings"]["rnt"].shape == (4, 3 * d) and out["embeddings"]["rnt_proxy"].shape == (4, 4 * d)
    for name, parts in CONCATS.items():
        torch.testing.assert_close(out["embeddings"][name], torch.cat([out["embeddings"][n] for n in parts], 1))
    assert torch.equal(model.extract(batch)["rnt_proxy"], out["embeddings"]["rnt_proxy"])
    # ViT branch: the backbone's own last block and final norm on each modality (the (1 − λ) term of Eq. 16).
    p = model.backbone.num_prefix_tokens
    for i, m in enumerate(model.modalities):
        torch.testing.assert_close(out["features"][f"vit_{m}"], model.backbone.forward_last(tokens[:, i])[:, 0])
    # Proxy feature: LayerNorm of the mean proxy token; quality and order from Eq. 4–7.
    proxy = model.proxy_generator(tokens[:, :, p:])
    torch.testing.assert_close(out["features"]["proxy"], model.proxy_norm(proxy.mean(1)))
    torch.testing.assert_close(out["quality"], quality_scores(proxy, tokens[:, :, p:]))
    assert out["order"].dtype == torch.long and torch.equal(out["order"], rank_order(out["quality"]))
    assert not out["quality"].requires_grad
    # CEM branches: each modality's own last block on [its class token, enhanced tokens] (Eq. 8–12).
    enhanced = inverse_sort(model.cem(sort_modalities(tokens[:, :, p:], out["order"]), proxy), out["order"])
    for i, m in enumerate(model.modalities):
        x = model.last_blocks[m](torch.cat([tokens[:, i, :p], enhanced[:, i]], 1))
        torch.testing.assert_close(out["features"][m], model.last_norms[m](x)[:, 0])


def test_batched_dynamic_sort_equals_one_sample_at_a_time():
    model = make_model(enhancement="both").eval()
    batch = make_batch(b=6, seed=1)
    with torch.no_grad():
        out = model(batch)
        singles = [model({k: v[i:i + 1] for k, v in batch.items()}) for i in range(6)]
    assert len({tuple(o) for o in out["order"].tolist()}) > 1                    # several orders in one batch
    for i, single in enumerate(singles):
        assert torch.equal(single["order"][0], out["order"][i])
        for name in ("rgb", "nir", "tir", "proxy"):
            torch.testing.assert_close(single["features"][name][0], out["features"][name][i])


@pytest.mark.parametrize("sort, order", [("rgb", [0, 1, 2]), ("nir", [1, 0, 2]), ("tir", [2, 0, 1]),
                                         ("none", [0, 1, 2])])
def test_fixed_sorts_use_the_same_order_for_every_sample(sort, order):
    model = make_model(sort=sort).eval()
    with torch.no_grad():
        out = model(make_batch(b=5))
    assert out["order"].tolist() == [order] * 5
    assert out["quality"].shape == (5, 3)                                        # still reported for analysis


def test_only_the_primary_is_left_unenhanced_by_pri_e():
    for sort in ("dynamic", "tir"):
        model = make_model(enhancement="primary", sort=sort).eval()
        assert model.cem.proxy is None and len(model.cem.primary) == 2
        batch = make_batch(b=6, seed=2)
        with torch.no_grad():
            out = model(batch)
            tokens = penultimate(model, batch)
        for b in range(6):
            for i, m in enumerate(model.modalities):
                plain = model.last_norms[m](model.last_blocks[m](tokens[b:b + 1, i]))[0, 0]
                same = torch.allclose(out["features"][m][b], plain, atol=1e-5)
                assert same == (i == int(out["order"][b, 0])), (sort, b, m)
        if sort == "tir":
            assert (out["order"][:, 0] == 2).all()


def test_enhancement_variants_switch_the_cem_units():
    units = {e: make_model(enhancement=e).cem for e in ("both", "primary", "proxy", "none")}
    assert [(c.primary is not None, c.proxy is not None) for c in units.values()] == [
        (True, True), (True, False), (False, True), (False, False)]
    assert count_parameters(units["none"]) == 0
    without_dqsm = make_model(sort="none").cem                                    # Table 6 "w/o DQSM": no PriE
    assert without_dqsm.primary is None and without_dqsm.proxy is not None
    with pytest.raises(ValueError, match="nothing to enhance from"):
        make_model(sort="none", enhancement="primary")


def test_without_cem_the_branches_start_as_the_vit_branch_and_with_cem_they_differ():
    batch = make_batch()
    plain = make_model(enhancement="none").eval()                                 # Table 7 "w/o CEM"
    full = make_model(enhancement="both").eval()
    with torch.no_grad():
        out_plain, out_full = plain(batch), full(batch)
    for m in plain.modalities:                                                    # last blocks are copies
        torch.testing.assert_close(out_plain["features"][m], out_plain["features"][f"vit_{m}"])
        assert not torch.allclose(out_full["features"][m], out_full["features"][f"vit_{m}"], atol=1e-4)
        torch.testing.assert_close(out_full["features"][f"vit_{m}"], out_plain["features"][f"vit_{m}"])


def test_proxy_variants_differ_and_change_the_parameter_count():
    batch = make_batch()
    counts, proxies = {}, {}
    for proxy in ("progressive", "direct", "sum"):
        model = make_model(proxy=proxy).eval()
        counts[proxy] = count_parameters(model)
        with torch.no_grad():
            proxies[proxy] = model(batch)["features"]["proxy"]
    d = 96
    assert counts["progressive"] - counts["sum"] == (3 * d * 2 * d + 2 * d) + (2 * d * d + d)
    assert counts["direct"] - counts["sum"] == 3 * d * d + d
    assert not torch.allclose(proxies["sum"], proxies["direct"])


def test_gradients_reach_every_part_and_dropout_only_changes_the_cem_branches():
    model = make_model().train()
    batch = make_batch(b=8)
    terms = CoENCriterion(NUM_CLASSES)(model(batch), batch)
    sum(terms.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    for part in ("backbone.vit.blocks.0", "backbone.vit.blocks.3", "last_blocks.tir", "proxy_generator.proj_a",
                 "cem.primary.1", "cem.proxy.0", "heads.proxy"):
        assert any(n.startswith(part) for n, p in model.named_parameters() if p.grad is not None), part
    with torch.no_grad():
        first, second = model(batch), model(batch)
    torch.testing.assert_close(first["features"]["vit_rgb"], second["features"]["vit_rgb"])
    assert not torch.allclose(first["features"]["rgb"], second["features"]["rgb"])


def test_eval_is_deterministic():
    model = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        first, second = model(batch), model(batch)
    for name in first["embeddings"]:
        assert torch.equal(first["embeddings"][name], second["embeddings"][name])
    assert torch.equal(first["order"], second["order"])


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="sort must be one of"):
        make_model(sort="best")
    with pytest.raises(ValueError, match="enhancement must be one of"):
        make_model(enhancement="all")
    with pytest.raises(ValueError, match=r"dropout \(γ\) must be in \[0, 1\]"):
        make_model(dropout=1.5)
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        CoEN("resnet_tutorial", NUM_CLASSES, img_size=SIZE)
    model = make_model()
    with pytest.raises(ValueError, match=r"batch\['images'\] of shape \[B, 3, 3, H, W\]"):
        model({"images": torch.zeros(2, 2, 3, *SIZE)})
    with pytest.raises(ValueError, match="not one of this model's modalities"):
        model.cam_target_layers("depth")
    with pytest.raises(ValueError, match="branch must be"):
        model.cam_target_layers("rgb", branch="proxy")


# -------------------------------------------------------------------------------------------- Eq. 16: loss

def unweighted_reid(outputs: dict, batch: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    ce, tri = CrossEntropyLabelSmooth(NUM_CLASSES, 0.1), TripletLoss(0.3)
    return ce(outputs["logits"][name], batch["label"]), tri(outputs["features"][name], batch["label"])


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_loss_weights_follow_eq_16(lam):
    model = make_model().eval()
    batch = make_batch(b=6)
    with torch.no_grad():
        outputs = model(batch)
    terms = CoENCriterion(NUM_CLASSES, lambda_=lam)(outputs, batch)
    names = VIT_NAMES + CEM_NAMES + PROXY_NAMES
    assert set(terms) == {f"{t}/{n}" for t in ("id", "tri") for n in names}
    for group, weight in ((VIT_NAMES, 1 - lam), (CEM_NAMES, lam), (PROXY_NAMES, 1.0)):
        for name in group:
            ce, tri = unweighted_reid(outputs, batch, name)
            torch.testing.assert_close(terms[f"id/{name}"], weight * ce)
            torch.testing.assert_close(terms[f"tri/{name}"], weight * tri)
    total = sum(terms.values())
    reid = {n: sum(unweighted_reid(outputs, batch, n)) for n in names}
    expected = (1 - lam) * sum(reid[n] for n in VIT_NAMES) + lam * sum(reid[n] for n in CEM_NAMES) + reid["proxy"]
    torch.testing.assert_close(total, expected)
    if lam == 0.0:
        assert all(terms[f"{t}/{n}"] == 0 for t in ("id", "tri") for n in CEM_NAMES)
    if lam == 1.0:
        assert all(terms[f"{t}/{n}"] == 0 for t in ("id", "tri") for n in VIT_NAMES)


def test_loss_rejects_lambda_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"lambda \(Eq. 16\) must be in \[0, 1\]"):
        CoENCriterion(NUM_CLASSES, lambda_=1.5)


# ------------------------------------------------------------------------------------------ Grad-CAM, FLOPs

def test_grad_cam_per_modality_on_the_enhanced_and_the_vit_branches():
    # An untrained model's map can be all zero (Grad-CAM's ReLU of randomly weighted activations): seed 1 is
    # one whose maps are all non-zero, so the check below also sees that the gradients arrive.
    model = make_model(seed=1).eval()
    batch = make_batch(b=2)
    for modality in model.modalities:
        assert model.cam_target_layers(modality) == [model.last_blocks[modality].norm1]
        maps = gradcam_maps(model, batch, modality, IdentityLogitTarget(1, modality))
        assert maps.shape == (2, *SIZE) and np.isfinite(maps).all() and maps.max() > 0
    assert model.cam_target_layers("nir", branch="vit") == [model.backbone.cam_layer]
    model.cam_target_layers = lambda m: CoEN.cam_target_layers(model, m, branch="vit")
    maps = gradcam_maps(model, batch, "nir", IdentityLogitTarget(0, "vit_nir"))
    assert maps.shape == (2, *SIZE) and np.isfinite(maps).all() and maps.max() > 0


def test_flops_and_parameters_against_the_shared_baseline():
    coen, baseline = make_model(), MultiModalBaseline("vit_tutorial", ("rgb", "nir", "tir"), NUM_CLASSES,
                                                      img_size=SIZE, shared=True)
    assert count_parameters(coen) > count_parameters(baseline)
    assert count_flops(coen, SIZE) > count_flops(baseline, SIZE) > 0
    linear = nn.Linear(10, 7)
    linear.modalities = ("rgb",)
    linear.forward = lambda batch: batch["images"].flatten(1)[:, :10] @ linear.weight.T
    assert count_flops(linear, (1, 4)) == 2 * 10 * 7                             # one multiply-add = 2 FLOPs
    assert coen.training                                                          # mode restored


# ---------------------------------------------------------------------------------- method, recipe, paper size

def test_recipe_profiles_and_the_registered_builder():
    for profile in PROFILES:
        recipe = load_recipe("coen", profile)
        assert recipe.method == "coen" and recipe.model["dropout"] == 0.5 and recipe.loss["lambda"] == 0.5
    paper = load_recipe("coen", "paper")
    assert paper.model["backbone"] == "deit_base_patch16_224.fb_in1k" and paper.data["size"] == [256, 128]
    assert (paper.data["p"], paper.data["k"], paper.train["epochs"]) == (4, 8, 120)
    assert paper.train["lr"] == 3e-3 and load_recipe("coen", "paper", dataset="msvr310").train["lr"] == 1e-3
    assert load_recipe("coen", "paper", dataset="rgbnt100").train["lr"] == 1e-3
    clip = load_recipe("coen_clip", "paper", dataset="rgbnt100")
    assert clip.model["backbone"].startswith("vit_base_patch16_clip") and clip.data["mean"][0] == 0.48145466
    assert clip.train["lr"] == 1e-3 and clip.method == "coen"
    tutorial = load_recipe("coen", "tutorial")
    assert tutorial.dataset == "wmveid863" and tutorial.synthetic["degradations"] == "flare_heavy"
    assert load_recipe("coen", "tutorial", dataset="rgbnt100").synthetic["degradations"] == "default"
    recipe = load_recipe("coen", "smoke", {"model.sort": "tir", "model.enhancement": "proxy", "model.proxy": "sum",
                                           "model.dropout": 0.2, "loss.lambda": 0.3})
    model, criterion = build_method(recipe, 7, ("rgb", "nir", "tir"))
    assert isinstance(model, CoEN) and (model.sort, model.enhancement, model.proxy_mode) == ("tir", "proxy", "sum")
    assert model.dropout == 0.2 and isinstance(criterion, CoENCriterion) and criterion.lambda_ == 0.3
    assert model.backbone.img_size == tuple(recipe.data["size"])
    with pytest.raises(ValueError, match="needs the three modalities"):
        build_method(recipe, 7, ("rgb", "tir"))
    with pytest.raises(ValueError, match="unknown loss keys"):
        build_method(recipe.override({"loss.lamda": 0.3}), 7, ("rgb", "nir", "tir"))


def test_smoke_profile_trains_caches_and_evaluates_every_table_5_feature(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    recipe = load_recipe("coen", "smoke", {"model.sort": "tir"})
    run = train(recipe, progress=False)
    history = run.history.to_frame()
    assert {"id/vit_rgb", "tri/rgb", "id/proxy", "tri/proxy"} <= set(history.columns) and len(history) == 2
    assert np.isfinite(history["loss"]).all()
    for feature in ("rgb", "nir", "tir", "proxy", "rnt", "rnt_proxy", "vit"):
        assert 0.0 < run.evaluate(feature=feature).summary()["mAP"] <= 1.0
    again = train(recipe, progress=False)
    assert again.history.cached
    torch.testing.assert_close(again.model.heads["proxy"].classifier.weight, run.model.heads["proxy"].classifier.weight)


def test_paper_size_coen_forward_backward_at_batch_2():
    """DeiT-B/16 at 256×128 (random weights: no download), one forward/backward on CPU at batch 2."""
    torch.manual_seed(0)
    model = CoEN("deit_base_patch16_224", 100, img_size=(256, 128)).train()
    params = count_parameters(model)
    assert 120e6 < params < 135e6, params                                         # DeiT-B 86 M + 3 blocks + PG + CEM
    batch = {"images": torch.randn(2, 3, 3, 256, 128), "present": torch.ones(2, 3, dtype=torch.bool),
             "label": torch.tensor([0, 1])}
    out = model(batch)
    assert out["embeddings"]["rnt_proxy"].shape == (2, 4 * 768) and out["order"].shape == (2, 3)
    sum(CoENCriterion(100)(out, batch).values()).backward()
    assert model.cem.primary[1].q.weight.grad is not None and model.backbone.vit.patch_embed.proj.weight.grad.any()
