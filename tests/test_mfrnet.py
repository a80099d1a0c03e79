"""MFRNet (reidlab.models.mfrnet, reidlab.losses.mfrnet, reidlab.methods.mfrnet, recipe mfrnet): the sparse MoE
against hand-computed cases (cosine router, top-1 gate, balancing loss Eq. 11–14, training noise, capacity dropping),
shared vs independent experts, the FFM fusion (Eq. 2–5) and missing-modality rules (Eq. 6) on a hand case, the FRM
block (Eq. 7–10), the output contract, batch-size (in)dependence of test features, every switch training one step,
the Eq. 15 criterion, the recipe, a smoke training run and a paper-size forward/backward."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidlab.engine.experiment import train
from reidlab.engine.optim import parameter_groups
from reidlab.losses.mfrnet import MFRNetCriterion
from reidlab.losses.reid import CrossEntropyLabelSmooth, TripletLoss
from reidlab.methods import build_method
from reidlab.models.baseline import MultiModalBaseline
from reidlab.models.coen import count_parameters
from reidlab.models.mfrnet import (
    FFM_CALLS,
    MODALITIES,
    CosineRouter,
    FeatureFusion,
    MFRNet,
    SparseMoE,
    TokenExperts,
    masked_softmax,
)
from reidlab.papers import paper_results, paper_spec
from reidlab.recipes import PROFILES, load_recipe
from reidlab.studies import claims_table
from reidlab.studies import mfrnet as study
from reidlab.viz import IdentityLogitTarget, gradcam_maps

SIZE = (32, 16)
NUM_CLASSES = 5
TOKENS = 1 + (32 // 8) * (16 // 8)                                                 # vit_tutorial: 8×8 patches + cls


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def cv2(values: list[float]) -> float:
    return statistics.variance(values) / (statistics.fmean(values) ** 2 + 1e-10)


def identity_moe(num_experts: int = 3, *, shared: bool = True, **options) -> SparseMoE:
    """d = 2 tokens, router projection = identity, expert directions (1, 0), (0, 1), (−1, 0), ... and identity
    experts f(x) = x, so the output is gate · x."""
    experts = TokenExperts(2, 2, num_experts, shared=shared, dropout=0.0)
    moe = SparseMoE(experts, router_dim=2, **options).eval()
    directions = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]][:num_experts]
    with torch.no_grad():
        experts.weight1.copy_(torch.eye(2).expand_as(experts.weight1))
        experts.weight2.copy_(torch.eye(2).expand_as(experts.weight2))
        experts.bias1.zero_()
        experts.bias2.zero_()
        moe.router.proj.weight.copy_(torch.eye(2))
        moe.router.proj.bias.zero_()
        moe.router.sim_matrix.copy_(torch.tensor(directions).T)
    return moe


def hand_logits(tokens: list[tuple[float, float]], scale: float = 2.0) -> list[list[float]]:
    """scale · cos(x, e_j) for e = (1, 0), (0, 1), (−1, 0)."""
    out = []
    for x, y in tokens:
        norm = math.hypot(x, y)
        out.append([scale * x / norm, scale * y / norm, -scale * x / norm])
    return out


def make_batch(b: int = 4, seed: int = 0, size: tuple[int, int] = SIZE) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randn(b, 3, 3, *size, generator=g), "present": torch.ones(b, 3, dtype=torch.bool),
            "label": torch.arange(b) % 2}


def make_model(seed: int = 0, **options) -> MFRNet:
    torch.manual_seed(seed)
    defaults = {"ffm_hidden": 32, "frm_hidden": 32, "router_dim": 16}
    return MFRNet("vit_tutorial", NUM_CLASSES, img_size=SIZE, **{**defaults, **options})


def rows(batch: dict, index: list[int]) -> dict:
    return {k: v[index] for k, v in batch.items()}


# ------------------------------------------------------------------------------------- router, gate, aux loss

def test_cosine_router_and_top1_gate_on_a_hand_case():
    moe = identity_moe()
    points = [(1.0, 0.0), (0.0, 1.0), (2.0, 1.0), (-1.0, 0.0)]
    x = torch.tensor(points)
    logits = hand_logits(points)                                                  # τ = 0.5: scale 1/τ = 2
    torch.testing.assert_close(moe.router(x), torch.tensor(logits))
    out = moe(x)
    probs = [softmax(row) for row in logits]
    assert out.expert.tolist() == [0, 1, 0, 2]
    gates = [max(p) for p in probs]                                               # top-1 probability, no renorm
    torch.testing.assert_close(out.gate, torch.tensor(gates))
    torch.testing.assert_close(out.output, torch.tensor(gates)[:, None] * x)      # p_top · f(x), f = identity
    assert out.kept.all() and out.output.shape == x.shape


@pytest.mark.parametrize("load_loss", ["logit", "tutel"])
def test_balancing_loss_on_a_hand_case(load_loss):
    moe = identity_moe(load_loss=load_loss)
    points = [(1.0, 0.0), (0.0, 1.0), (2.0, 1.0), (-1.0, 0.0)]
    logits = hand_logits(points)
    probs = [softmax(row) for row in logits]
    chosen = [max(range(3), key=lambda e, p=p: p[e]) for p in probs]

    def expected(noisy: list[list[float]]) -> float:
        importance = [sum(p[e] for p in probs) for e in range(3)]                 # Eq. 11 (clean softmax)
        reference = probs if load_loss == "tutel" else logits                     # tutel: probability vs logit
        load = [sum(phi((reference[t][e] - noisy[t][chosen[t]]) / (1.0 / 3)) for t in range(4)) for e in range(3)]
        return (cv2(importance) + cv2(load)) / 2                                  # Eq. 12–14, code's ½

    out = moe(torch.tensor(points))                                               # eval: noisy = clean
    assert out.l_aux.item() == pytest.approx(expected(logits), rel=1e-3)          # float32 router
    exact = moe.aux_loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(logits, dtype=torch.float64),
                         torch.tensor(chosen))
    assert exact.item() == pytest.approx(expected(logits), rel=1e-9)
    noisy = [[v + 0.1 * (t - e) for e, v in enumerate(row)] for t, row in enumerate(logits)]
    aux = moe.aux_loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(noisy, dtype=torch.float64),
                       torch.tensor(chosen))
    assert aux.item() == pytest.approx(expected(noisy), rel=1e-9)
    assert aux.item() != pytest.approx(expected(logits), rel=1e-3)                # the threshold is the noisy logit
    one = identity_moe(num_experts=1)
    assert one(torch.tensor(points)).l_aux.item() == 0.0                          # one expert: nothing to balance
    assert torch.equal(one(torch.tensor(points)).gate, torch.ones(4))


def test_noise_is_added_in_training_only_with_std_noise_over_e():
    moe = identity_moe()
    x = torch.randn(64, 2)
    clean = moe.router(x).detach()
    moe.train()
    torch.manual_seed(3)
    out = moe(x)
    torch.manual_seed(3)
    noisy = clean + torch.randn_like(clean) * (1.0 / 3)                           # tutel: gate_noise / E
    probs = noisy.softmax(dim=1)
    assert torch.equal(out.expert, probs.argmax(dim=1))
    torch.testing.assert_close(out.gate, probs.max(dim=1).values)
    assert not torch.equal(moe(x).gate, out.gate)                                 # fresh noise every call
    moe.eval()
    first = moe(x)
    torch.testing.assert_close(first.gate, clean.softmax(dim=1).max(dim=1).values)
    assert torch.equal(first.output, moe(x).output)
    quiet = identity_moe(noise=0.0).train()
    assert torch.equal(quiet(x).output, quiet(x).output)


def test_temperature_is_learnable_from_one_half_with_a_floor_or_fixed():
    router = CosineRouter(4, 3, 8)
    assert router.tau == pytest.approx(0.5) and "log_scale" in dict(router.named_parameters())
    x = torch.randn(5, 4)
    cosine = F.normalize(router.proj(x), dim=1) @ F.normalize(router.sim_matrix, dim=0)
    torch.testing.assert_close(router(x), 2.0 * cosine)
    with torch.no_grad():
        router.log_scale.fill_(10.0)                                              # τ would be e^-10: clamped
    assert router.tau == pytest.approx(0.01)
    torch.testing.assert_close(router(x), 100.0 * cosine)
    fixed = CosineRouter(4, 3, 8, tau=0.01, learnable_tau=False)                  # the paper's "τ = 0.01"
    assert "log_scale" not in dict(fixed.named_parameters()) and "log_scale" in dict(fixed.named_buffers())
    assert fixed.tau == pytest.approx(0.01)
    with pytest.raises(ValueError, match="0 < min_tau <= tau"):
        CosineRouter(4, 3, tau=0.001)


# ------------------------------------------------------------------------------------------ experts, capacity

def test_shared_experts_hold_one_experts_parameters():
    d, h, e = 8, 6, 4
    one = d * h + h + h * d + d
    assert count_parameters(TokenExperts(d, h, e, shared=True)) == one
    assert count_parameters(TokenExperts(d, h, e, shared=False)) == e * one
    router = d * 5 + 5 + 5 * e + 1                                                # proj, W_e, log-temperature
    assert count_parameters(SparseMoE(TokenExperts(d, h, e, shared=True), router_dim=5)) == one + router
    ffm = {s: FeatureFusion(d, num_experts=3, hidden=h, shared_experts=s, router_dim=5) for s in (True, False)}
    assert count_parameters(ffm[False]) - count_parameters(ffm[True]) == 2 * 2 * one   # 2 mixtures × 2 extra


def test_independent_experts_apply_their_own_weights_and_equal_shared_ones_when_tied():
    torch.manual_seed(0)
    experts = TokenExperts(4, 5, 3, dropout=0.0)
    moe = SparseMoE(experts, router_dim=6).eval()
    x = torch.randn(20, 4)
    out = moe(x)
    assert len(set(out.expert.tolist())) > 1
    for t in range(20):
        e = int(out.expert[t])
        f = (x[t] @ experts.weight1[e] + experts.bias1[e]) @ experts.weight2[e] + experts.bias2[e]
        torch.testing.assert_close(out.output[t], out.gate[t] * f)
    shared = SparseMoE(TokenExperts(4, 5, 3, shared=True, dropout=0.0), router_dim=6).eval()
    shared.load_state_dict({k: v[:1] if k.startswith("experts.") else v for k, v in moe.state_dict().items()})
    with torch.no_grad():
        for name in ("weight1", "bias1", "weight2", "bias2"):
            getattr(experts, name).copy_(getattr(shared.experts, name).expand_as(getattr(experts, name)))
    torch.testing.assert_close(moe(x).output, shared(x).output)
    adapter = TokenExperts(4, 5, 2, residual=True, scale=0.5, init="xavier", dropout=0.0)   # Eq. 8
    u = torch.randn(2, 3, 4)
    branch = torch.einsum("gcd,gdh->gch", u, adapter.weight1) @ adapter.weight2 + adapter.bias2[:, None]
    torch.testing.assert_close(adapter(u), u + 0.5 * branch)
    assert not adapter.bias1.any() and not adapter.bias2.any()


@pytest.mark.parametrize("shared", [True, False])
def test_capacity_drops_the_lowest_priority_tokens_and_they_output_zero(shared):
    points = [(2.0, 1.0), (1.0, 0.0), (0.0, 1.0), (3.0, -1.0), (-1.0, 0.0), (0.0, 2.0)]
    x = torch.tensor(points)
    gates = [max(softmax(row)) for row in hand_logits(points)]
    # Expert 0 receives tokens 0, 1, 3 with top-1 probabilities 0.696 < 0.867 < 0.906; C = ceil(6 / 3) = 2.
    assert gates[3] > gates[1] > gates[0]
    capped = identity_moe(shared=shared, capacity_factor=1.0)
    assert capped.capacity(6) == 2
    out = capped(x)
    assert out.expert.tolist() == [0, 0, 1, 0, 2, 1]
    assert out.kept.tolist() == [False, True, True, True, True, True]            # the first token, by priority
    assert torch.equal(out.output[0], torch.zeros(2))
    torch.testing.assert_close(out.output[1:], torch.tensor(gates[1:])[:, None] * x[1:])
    location = SparseMoE.locations(out.expert, out.gate, 3)
    assert location.tolist() == [2, 1, 0, 0, 0, 1]
    dropless = identity_moe(shared=shared)
    assert dropless.capacity(6) is None and dropless(x).kept.all()
    torch.testing.assert_close(dropless(x).output, torch.tensor(gates)[:, None] * x)
    assert identity_moe(shared=shared, capacity_factor=0.0).capacity_factor is None    # tutel's 0 = dropless
    with pytest.raises(ValueError, match="capacity_factor"):
        identity_moe(capacity_factor=-1.0)


# -------------------------------------------------------------------------------------- FFM: Eq. 2–6 by hand

def hand_ffm(rule: str = "paper") -> FeatureFusion:
    """One generator expert per mixture (gate ≡ 1) with g(x) = 2x, and constant source weights w = bias."""
    ffm = FeatureFusion(2, num_experts=1, hidden=2, shared_experts=True, dropout=0.0, router_dim=2, rule=rule).eval()
    biases = {"nir_rgb": 0.0, "tir_rgb": math.log(3.0), "rgb_nir": math.log(2.0), "tir_nir": 0.0,
              "rgb_tir": 0.5, "nir_tir": 0.0}
    with torch.no_grad():
        for mixture in ffm.mixtures:
            mixture.experts.weight1.copy_(torch.eye(2)[None])
            mixture.experts.weight2.copy_(2 * torch.eye(2)[None])
            mixture.experts.bias1.zero_()
            mixture.experts.bias2.zero_()
        for name, linear in ffm.weights.items():
            linear.weight.zero_()
            linear.bias.fill_(biases[name])
    return ffm


def test_ffm_fusion_equation_on_a_hand_case():
    ffm = hand_ffm()
    torch.manual_seed(0)
    r, n, t = (torch.randn(2, 4, 2) for _ in range(3))
    (fr, fn, ft), aux = ffm([r, n, t], torch.ones(2, 3, dtype=torch.bool))
    s = 1 / (1 + math.exp(-0.5))                                                  # softmax(0.5, 0)[0]
    torch.testing.assert_close(fr, 0.5 * r + 0.25 * 2 * n + 0.75 * 2 * t)       # (a_NR, a_TR) = (1/4, 3/4)
    torch.testing.assert_close(fn, 0.5 * n + (2 / 3) * 2 * r + (1 / 3) * 2 * t)  # (a_RN, a_TN) = (2/3, 1/3)
    torch.testing.assert_close(ft, 0.5 * t + s * 2 * r + (1 - s) * 2 * n)
    assert aux.item() == 0.0                                                       # one expert per mixture
    assert [(s_, t_) for s_, t_, k in FFM_CALLS if k == 0] == [("nir", "rgb"), ("tir", "rgb"), ("rgb", "nir")]
    assert [(s_, t_) for s_, t_, k in FFM_CALLS if k == 1] == [("tir", "nir"), ("rgb", "tir"), ("nir", "tir")]
    ffm.lambda_ = 0.0                                                              # Table 9's λ = 0
    (fr0, _, _), _ = ffm([r, n, t], torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(fr0, 0.5 * n + 1.5 * t)
    weight = ffm.weights["nir_rgb"]                                                # Eq. 3: fc(mean over tokens)
    with torch.no_grad():
        weight.weight.copy_(torch.tensor([[1.0, -2.0]]))
    torch.testing.assert_close(ffm.source_weight("nir", "rgb", n), n.mean(1) @ torch.tensor([1.0, -2.0]))


@pytest.mark.parametrize("rule", ["paper", "code"])
def test_missing_rules_on_a_hand_case(rule):
    ffm = hand_ffm(rule)
    torch.manual_seed(1)
    r, n, t = (torch.randn(4, 4, 2) for _ in range(3))
    present = torch.tensor([[True, True, True], [False, True, True], [True, False, False], [False, False, True]])
    (fr, fn, ft), _ = ffm([r, n, t], present)
    # sample 1, M(R): R from N and T (softmax over both), N and T from each other with weight 1; no λ·x_R.
    torch.testing.assert_close(fr[1], 0.25 * 2 * n[1] + 0.75 * 2 * t[1])
    torch.testing.assert_close(fn[1], 0.5 * n[1] + 2 * t[1])
    torch.testing.assert_close(ft[1], 0.5 * t[1] + 2 * n[1])
    # sample 2, M(NT): only RGB. Paper reading: λ·x_R and softmax weight 1; the code: x_R and the raw w_R→M.
    lone = 1.0 if rule == "code" else 0.5
    to_nir, to_tir = (math.log(2.0), 0.5) if rule == "code" else (1.0, 1.0)
    torch.testing.assert_close(fr[2], lone * r[2])
    torch.testing.assert_close(fn[2], to_nir * 2 * r[2])
    torch.testing.assert_close(ft[2], to_tir * 2 * r[2])
    # sample 3, M(RN): only TIR; the raw weights are the code's only for RGB alone (spec §3 table).
    torch.testing.assert_close(fr[3], 2 * t[3])
    torch.testing.assert_close(fn[3], 2 * t[3])
    torch.testing.assert_close(ft[3], lone * t[3])
    # sample 0 (complete) is Eq. 2
    torch.testing.assert_close(fr[0], 0.5 * r[0] + 0.5 * n[0] + 1.5 * t[0])
    # a missing modality's tokens reach nothing
    (fr2, fn2, ft2), _ = ffm([r + 100 * (~present[:, :1, None]), n, t + 50 * (~present[:, 2:, None])], present)
    for a, b in ((fr, fr2), (fn, fn2), (ft, ft2)):
        torch.testing.assert_close(a, b)


def test_masked_softmax_and_ffm_aux_over_calls():
    weights = masked_softmax(torch.tensor([[0.0, math.log(3.0)], [1.0, 2.0], [1.0, 2.0]]),
                             torch.tensor([[True, True], [False, True], [False, False]]))
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.75], [0.0, 1.0], [0.0, 0.0]]))
    torch.manual_seed(0)
    tokens = [torch.randn(3, 5, 8) for _ in range(3)]
    present = torch.ones(3, 3, dtype=torch.bool)
    for calls in ("mean", "last"):
        torch.manual_seed(0)
        ffm = FeatureFusion(8, num_experts=3, hidden=6, router_dim=4, aux_calls=calls).eval()
        _, aux = ffm(tokens, present)
        per_call = [[ffm.mixtures[k](tokens[MODALITIES.index(s)]).l_aux for s, _, kk in FFM_CALLS if kk == k]
                    for k in (0, 1)]
        expected = sum(torch.stack(c).mean() if calls == "mean" else c[-1] for c in per_call)
        torch.testing.assert_close(aux, expected)
        assert aux.item() > 0


# ------------------------------------------------------------------------------------------------- the model

def test_outputs_follow_the_contract():
    model = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
    d = model.feature_dim
    assert model.modalities == MODALITIES and model.default_feature == "fused"
    assert set(out["features"]) == {"rgb", "nir", "tir", "fused"} and out["features"]["fused"].shape == (4, 3 * d)
    assert set(out["embeddings"]) == {"rgb", "nir", "tir", "fused", "fused_bn"}
    for name in ("rgb", "nir", "tir", "fused"):                                   # the code's test feature: pre-BN
        assert torch.equal(out["embeddings"][name], out["features"][name])
    torch.testing.assert_close(out["embeddings"]["fused"], torch.cat([out["features"][m] for m in MODALITIES], 1))
    torch.testing.assert_close(out["embeddings"]["fused_bn"], model.heads["fused"].bn(out["features"]["fused"]))
    assert set(out["logits"]) == {"fused"} and out["logits"]["fused"].shape == (4, NUM_CLASSES)
    assert set(out["aux"]) == {"ffm", "frm"} and out["aux"]["ffm"] > 0 and out["aux"]["frm"] > 0
    assert out["frm_routing"].shape == (4, 3, TOKENS) and out["frm_routing"].dtype == torch.long
    assert int(out["frm_routing"].max()) < 6
    assert torch.equal(model.extract(batch)["fused"], out["embeddings"]["fused"])
    per = make_model(head="per_modality").eval()
    with torch.no_grad():
        out = per(batch)
    assert set(out["logits"]) == set(MODALITIES) and out["embeddings"]["fused_bn"].shape == (4, 3 * d)
    torch.testing.assert_close(out["embeddings"]["fused_bn"][:, d:2 * d], per.heads["nir"].bn(out["features"]["nir"]))


def test_without_ffm_and_frm_it_is_the_shared_vit_baseline():
    """Table 5 row 1: a shared ViT, the class token of each modality."""
    plain = make_model(ffm=False, frm=False).eval()
    baseline = MultiModalBaseline("vit_tutorial", MODALITIES, NUM_CLASSES, img_size=SIZE, shared=True).eval()
    baseline.backbones["shared"].load_state_dict(plain.backbone.state_dict())
    batch = make_batch()
    with torch.no_grad():
        ours, theirs = plain(batch), baseline(batch)
    for m in MODALITIES:
        torch.testing.assert_close(ours["features"][m], theirs["features"][m])
    assert ours["aux"]["ffm"] == 0 and ours["aux"]["frm"] == 0 and "frm_routing" not in ours
    assert plain.ffm is None and len(plain.frm) == 0


def test_pipeline_ffm_before_the_blocks_and_frm_in_the_last_block():
    model = make_model().eval()
    batch = make_batch()
    vit = model.backbone.vit
    assert isinstance(vit.blocks[-1].mlp, nn.Identity) and not isinstance(vit.blocks[0].mlp, nn.Identity)
    assert model.frm_layers == (3,) and model.ffm_position == 0
    with torch.no_grad():
        out = model(batch)
        x = vit._pos_embed(vit.patch_embed(batch["images"].transpose(0, 1).reshape(12, 3, *SIZE)))
        fused, _ = model.ffm(list(x.chunk(3)), batch["present"])                  # Eq. 2 on the embedded tokens
        x = vit.blocks[:-1](vit.norm_pre(torch.cat(fused)))
        block = vit.blocks[-1]
        y = x + block.attn(block.norm1(x))                                        # Eq. 7
        z = y + model.frm["3"](block.norm2(y)).output                             # Eq. 10
        cls = vit.norm(z)[:, 0].reshape(3, 4, -1)
    for i, m in enumerate(MODALITIES):
        torch.testing.assert_close(out["features"][m], cls[i])


def test_ffm_position_and_frm_layers_move_the_modules():
    model = make_model(ffm_position=4, frm_layers=[1, -1]).eval()
    assert model.frm_layers == (1, 3) and set(model.frm) == {"1", "3"}
    assert isinstance(model.backbone.vit.blocks[1].mlp, nn.Identity)
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
        base = make_model(ffm=False, frm_layers=[1, -1]).eval()
        base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("ffm.")})
        x = base.backbone.vit.patch_embed(batch["images"].transpose(0, 1).reshape(12, 3, *SIZE))
    assert out["aux"]["ffm"] > 0
    with torch.no_grad():                                                          # FFM after the last block
        vit = base.backbone.vit
        x = vit.norm_pre(vit._pos_embed(x))
        for i, block in enumerate(vit.blocks):
            x = base._frm_block(block, base.frm[str(i)], x)[0] if str(i) in base.frm else block(x)
        fused, _ = model.ffm(list(x.chunk(3)), batch["present"])
        cls = vit.norm(torch.cat(fused))[:, 0].reshape(3, 4, -1)
    torch.testing.assert_close(out["features"]["tir"], cls[2])


def test_missing_modalities_come_only_from_the_present_ones_and_zero_fill_ignores_present():
    batch = make_batch(b=4, seed=3)
    present = torch.tensor([[False, True, True], [True, False, False], [True, True, True], [True, True, False]])
    missing = dict(batch, present=present, images=batch["images"] * present[:, :, None, None, None])
    other = dict(missing, images=missing["images"] + 5.0 * (~present)[:, :, None, None, None])
    for rule in ("paper", "code"):
        model = make_model(missing_rule=rule).eval()
        with torch.no_grad():
            a, b = model(missing), model(other)
        for name in ("rgb", "nir", "tir", "fused"):
            torch.testing.assert_close(a["features"][name], b["features"][name])
    zero = make_model(missing="zero_fill").eval()
    with torch.no_grad():
        told = zero(missing)["features"]["fused"]
        untold = zero(dict(missing, present=torch.ones(4, 3, dtype=torch.bool)))["features"]["fused"]
        changed = zero(other)["features"]["fused"]
        rebuilt = make_model(missing="reconstruct").eval()(missing)["features"]["fused"]
    torch.testing.assert_close(told, untold)                                      # `present` is ignored
    assert not torch.allclose(told, changed)                                       # the zero images are used
    assert not torch.allclose(told, rebuilt)
    with pytest.raises(ValueError, match="at least one present modality"):
        make_model()(dict(batch, present=torch.zeros(4, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match=r"bool tensor \[4, 3\]"):
        make_model()(dict(batch, present=torch.ones(4, 2, dtype=torch.bool)))


def test_eval_features_do_not_depend_on_the_batch_unless_capacity_drops_tokens():
    batch = make_batch(b=8, seed=5)
    for capacity, invariant in ((None, True), (1.0, False)):
        model = make_model(capacity_factor=capacity).eval()
        with torch.no_grad():
            full = model(batch)["embeddings"]["fused"]
            alone = model(rows(batch, [0]))["embeddings"]["fused"]
            first = model(rows(batch, [0, 1, 2, 3]))["embeddings"]["fused"]
            others = model(rows(batch, [0, 4, 5, 6]))["embeddings"]["fused"]
        for x in (alone[0], first[0], others[0]):
            if invariant:
                torch.testing.assert_close(x, full[0], atol=1e-5, rtol=1e-5)
        if not invariant:
            assert (alone[0] - full[0]).abs().max() > 1e-3                         # batch size
            assert (first[0] - others[0]).abs().max() > 1e-3                       # batch make-up, same size


VARIANTS = {
    "ffm off": {"model.ffm": False}, "frm off": {"model.frm": False},
    "both off": {"model.ffm": False, "model.frm": False}, "shared experts": {"model.shared_experts": True},
    "capacity 1.0": {"model.capacity_factor": 1.0}, "lambda 0": {"model.lambda": 0.0},
    "lambda 1": {"model.lambda": 1.0}, "1 FFM expert": {"model.ffm_experts": 1},
    "9 FFM experts": {"model.ffm_experts": 9}, "3 FRM experts": {"model.frm_experts": 3},
    "FRM layers": {"model.frm_layers": [1, 3]}, "FFM after block 2": {"model.ffm_position": 2},
    "per-modality heads": {"model.head": "per_modality"}, "code aux": {"model.ffm_aux_calls": "last",
                                                                         "loss.ffm_aux_weight": 0.12},
    "tutel load": {"model.load_loss": "tutel"}, "fixed tau": {"model.router_tau": 0.01,
                                                              "model.router_learnable_tau": False},
    "no noise": {"model.router_noise": 0.0}, "code missing rule": {"model.missing_rule": "code"},
    "zero fill": {"model.missing": "zero_fill"}, "code ID weight": {"loss.id_weight": 0.25},
    "released code": {"model.shared_experts": True, "model.capacity_factor": 1.0, "model.load_loss": "tutel",
                      "model.ffm_aux_calls": "last", "model.missing_rule": "code", "loss.id_weight": 0.25,
                      "loss.ffm_aux_weight": 0.12},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_switch_builds_and_trains_one_step(variant):
    recipe = load_recipe("mfrnet", "smoke", VARIANTS[variant])
    torch.manual_seed(0)
    model, criterion = build_method(recipe, NUM_CLASSES, MODALITIES)
    batch = make_batch(b=4, seed=1)
    batch["present"][0, 1] = False                                                # one sample misses NIR
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    terms = criterion(model(batch), batch)
    assert {"aux/ffm", "aux/frm"} <= set(terms)
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    expected = {"backbone", "heads"} | ({"ffm"} if model.ffm is not None else set()) | (
        {"frm"} if model.frm_layers else set())
    assert expected <= moved, (variant, moved)
    with torch.no_grad():
        model.eval()
        assert torch.isfinite(model(batch)["embeddings"]["fused"]).all()


# -------------------------------------------------------------------------------------------- Eq. 15: loss

@pytest.mark.parametrize("head", ["concat", "per_modality"])
def test_loss_terms_and_weights(head):
    model = make_model(head=head).eval()
    batch = make_batch(b=6)
    with torch.no_grad():
        outputs = model(batch)
    criterion = MFRNetCriterion(NUM_CLASSES, head=head, id_weight=0.25, metric_weight=2.0, ffm_aux_weight=0.12,
                                frm_aux_weight=0.01)
    terms = criterion(outputs, batch)
    names = ("fused",) if head == "concat" else MODALITIES
    assert set(terms) == {f"{t}/{n}" for t in ("id", "tri") for n in names} | {"aux/ffm", "aux/frm"}
    ce, tri = CrossEntropyLabelSmooth(NUM_CLASSES, 0.1), TripletLoss(margin=None)   # soft margin
    for n in names:
        torch.testing.assert_close(terms[f"id/{n}"], 0.25 * ce(outputs["logits"][n], batch["label"]))
        torch.testing.assert_close(terms[f"tri/{n}"], 2.0 * tri(outputs["features"][n], batch["label"]))
    torch.testing.assert_close(terms["aux/ffm"], 0.12 * outputs["aux"]["ffm"])
    torch.testing.assert_close(terms["aux/frm"], 0.01 * outputs["aux"]["frm"])
    default = MFRNetCriterion(NUM_CLASSES, head=head)
    assert (default.id_weight, default.aux_weights) == (1.0, {"ffm": 0.01, "frm": 0.01})
    with pytest.raises(ValueError, match="outputs\\['aux'\\]"):
        criterion({k: v for k, v in outputs.items() if k != "aux"}, batch)
    with pytest.raises(ValueError, match="loss weights must be >= 0"):
        MFRNetCriterion(NUM_CLASSES, id_weight=-1.0)


def test_errors_name_what_was_expected():
    for options, message in (({"head": "direct"}, "head must be one of"), ({"missing": "drop"}, "missing must be"),
                             ({"missing_rule": "table"}, "missing_rule must be"),
                             ({"ffm_position": 5}, r"ffm_position must be in \[0, 4\]"),
                             ({"frm_layers": [4]}, "frm_layers must be distinct"),
                             ({"frm_layers": [3, -1]}, "frm_layers must be distinct"),
                             ({"ffm_aux_calls": "all"}, "ffm_aux_calls must be"),
                             ({"load_loss": "gshard"}, "load_loss must be")):
        with pytest.raises(ValueError, match=message):
            make_model(**options)
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        MFRNet("resnet_tutorial", NUM_CLASSES, img_size=SIZE)
    with pytest.raises(ValueError, match="not one of this model's modalities"):
        make_model().cam_target_layers("depth")
    with pytest.raises(ValueError, match=r"batch\['images'\] of shape"):
        make_model()({"images": torch.zeros(2, 2, 3, *SIZE)})


def test_grad_cam_per_modality():
    model = make_model().eval()
    batch = make_batch(b=2)
    for modality in MODALITIES:
        assert model.cam_target_layers(modality) == [model.cam_taps[modality]]
        maps = gradcam_maps(model, batch, modality, IdentityLogitTarget(1, "fused"))
        assert maps.shape == (2, *SIZE) and np.isfinite(maps).all() and maps.max() > 0


# ---------------------------------------------------------------------------------- method, recipe, paper size

def test_recipe_profiles_and_the_registered_builder():
    for profile in PROFILES:
        recipe = load_recipe("mfrnet", profile)
        assert recipe.method == "mfrnet" and recipe.model["lambda"] == 0.5 and recipe.loss["margin"] is None
        assert recipe.model["shared_experts"] is False and recipe.model["capacity_factor"] == 0.0
        assert (recipe.model["ffm_experts"], recipe.model["frm_experts"], recipe.model["frm_layers"]) == (3, 6, [-1])
        assert recipe.loss["id_weight"] == 1.0 and recipe.model["head"] == "concat"
    paper = load_recipe("mfrnet", "paper")
    assert paper.model["backbone"] == "vit_base_patch16_clip_224.openai" and paper.model["pretrained"] is True
    assert paper.data["size"] == [256, 128] and (paper.data["p"], paper.data["k"]) == (8, 8)
    assert paper.data["mean"][0] == 0.48145466 and paper.dataset_options == {"split": "171"}
    assert paper.train["lr"] == 3.5e-4 and paper.train["lr_groups"]["backbones?\\."] * 3.5e-4 == pytest.approx(5e-6)
    assert (paper.train["epochs"], paper.train["warmup_epochs"]) == (45, 10)
    assert (paper.model["ffm_hidden"], paper.model["frm_hidden"], paper.model["router_dim"]) == (1024, 512, 256)
    vehicles = {d: load_recipe("mfrnet", "paper", dataset=d) for d in ("rgbnt100", "msvr310")}
    assert vehicles["rgbnt100"].data["size"] == [128, 256] and vehicles["rgbnt100"].model["head"] == "per_modality"
    assert (vehicles["rgbnt100"].data["p"], vehicles["rgbnt100"].data["k"]) == (4, 16)
    assert vehicles["msvr310"].train["epochs"] == 50 and vehicles["msvr310"].data["test_batch_size"] == 64
    tutorial = load_recipe("mfrnet", "tutorial")
    assert tutorial.model["backbone"] == "vit_tutorial.synth" and tutorial.model["pretrained"] is True
    assert tutorial.train["epochs"] == load_recipe("coen", "tutorial").train["epochs"]
    assert load_recipe("mfrnet", "tutorial", dataset="msvr310").model["head"] == "per_modality"
    recipe = load_recipe("mfrnet", "smoke", {"model.lambda": 0.3, "model.capacity_factor": 1.0,
                                             "model.shared_experts": True, "loss.id_weight": 0.25})
    model, criterion = build_method(recipe, 7, MODALITIES)
    assert isinstance(model, MFRNet) and model.ffm.lambda_ == 0.3 and model.frm["3"].capacity_factor == 1.0
    assert model.frm["3"].experts.shared and isinstance(criterion, MFRNetCriterion) and criterion.id_weight == 0.25
    assert model.backbone.img_size == tuple(recipe.data["size"])
    # the backbone learning-rate group matches MFRNet and the matched shared baseline (Table 5 row 1)
    baseline = MultiModalBaseline("vit_tutorial", MODALITIES, 7, img_size=SIZE, shared=True)
    for profile in ("tutorial", "paper"):
        patterns = load_recipe("mfrnet", profile).train["lr_groups"]
        for net, prefix in ((model, "backbone."), (baseline, "backbones.")):
            groups = parameter_groups(net.named_parameters(), 1.0, 0.0, patterns)
            slow = next(g for g in groups if g["lr_mult"] < 1)
            assert len(slow["params"]) == sum(1 for n, p in net.named_parameters()
                                               if n.startswith(prefix) and p.requires_grad)
    with pytest.raises(ValueError, match="needs the three modalities"):
        build_method(recipe, 7, ("rgb", "tir"))
    with pytest.raises(ValueError, match="unknown loss keys"):
        build_method(recipe.override({"loss.lamda": 0.3}), 7, MODALITIES)


def test_tutorial_profile_builds_on_the_synthetic_pretrained_vit_for_persons_and_vehicles():
    for dataset, size, logits in (("rgbnt201", (64, 32), {"fused"}), ("rgbnt100", (24, 48), set(MODALITIES))):
        recipe = load_recipe("mfrnet", "tutorial", dataset=dataset)
        model, _ = build_method(recipe, 7, MODALITIES)
        assert tuple(recipe.data["size"]) == size and model.backbone.name == "vit_tutorial.synth"
        with torch.no_grad():
            out = model.eval()(make_batch(b=2, size=size))
        assert set(out["logits"]) == logits and out["embeddings"]["fused"].shape == (2, 3 * 96)


def test_reported_numbers_as_printed():
    frame = paper_results("mfrnet")
    assert sorted(frame["table"].unique()) == list(range(1, 11)) and paper_spec("mfrnet")["notes"]
    four = ["mAP", "R-1", "R-5", "R-10"]
    ours = paper_results("mfrnet", table=1).set_index("setting")
    assert ours.loc["Ours", four].tolist() == [80.7, 83.6, 91.9, 94.1]
    assert ours.loc["UniCat", ["R-5", "R-10"]].isna().all()
    table2 = paper_results("mfrnet", table=2).query("setting == 'Ours'").set_index("dataset")
    assert table2.loc["rgbnt100", ["mAP", "R-1"]].tolist() == [88.2, 97.4]
    assert table2.loc["msvr310", ["mAP", "R-1"]].tolist() == [50.6, 64.8]
    table3 = paper_results("mfrnet", table=3).set_index(["setting", "detail"])
    assert table3.loc[("Ours", "Average"), ["mAP", "R-1"]].tolist() == [49.1, 49.6]
    assert table3.loc[("PFNet", "M (RGB)"), ["mAP", "R-1"]].isna().all()
    table5 = paper_results("mfrnet", table=5).set_index("setting")
    assert table5.loc["4", [*four, "Params(M)", "FLOPs(G)"]].tolist() == [80.7, 83.5, 91.9, 94.1, 57.1, 22.1]
    assert table5.loc["1", "Params(M)"] == 57.2 and table5.loc["3", "FLOPs(G)"] == 20.7
    assert paper_results("mfrnet", table=4).set_index("setting").loc["Ours", "Params(M)"] == 57.1
    for table, setting in ((8, "3"), (9, "0.5"), (10, "0(Before ViT)")):   # the full model closes Tables 8-10
        row = paper_results("mfrnet", table=table).set_index("setting").loc[setting]
        assert row[[*four, "Average"]].tolist() == [80.7, 83.5, 91.9, 94.1, 87.5]
    frm_only = [paper_results("mfrnet", table=t).set_index("setting").loc[s, four].tolist()
                for t, s in ((5, "3"), (6, "6"), (7, "12"))]                     # the FRM-only model of 6 and 7
    assert frm_only[0] == frm_only[1] == frm_only[2] == [77.8, 80.9, 88.6, 92.2]


def test_smoke_profile_trains_caches_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    recipe = load_recipe("mfrnet", "smoke")
    run = train(recipe, progress=False)
    history = run.history.to_frame()
    assert {"id/fused", "tri/fused", "aux/ffm", "aux/frm"} <= set(history.columns) and len(history) == 2
    assert np.isfinite(history["loss"]).all() and (history["aux/frm"] > 0).all()
    for feature in ("fused", "rgb", "fused_bn"):
        assert 0.0 < run.evaluate(feature=feature).summary()["mAP"] <= 1.0
    assert 0.0 < run.evaluate(missing="M(NT)").summary()["mAP"] <= 1.0
    again = train(recipe, progress=False)
    assert again.history.cached
    torch.testing.assert_close(again.model.heads["fused"].classifier.weight, run.model.heads["fused"].classifier.weight)


def test_paper_size_mfrnet_forward_backward_at_batch_2():
    """CLIP ViT-B/16 architecture at 256×128 (random weights: no download), one forward/backward on CPU."""
    torch.manual_seed(0)
    model = MFRNet("vit_base_patch16_clip_224", 171, img_size=(256, 128)).train()
    params = count_parameters(model)
    print(f"paper-size MFRNet (independent experts, dropless): {params / 1e6:.2f} M parameters")
    generator = 768 * 1024 + 1024 + 1024 * 768 + 768                              # Conv1d 768→1024→768
    adapter = 768 * 512 + 512 + 512 * 768 + 768                                   # RepAdapter, hidden 512
    router = {e: 768 * 256 + 256 + 256 * e + 1 for e in (3, 6)}
    assert count_parameters(model.ffm) == 2 * (3 * generator + router[3]) + 6 * (768 + 1)
    assert count_parameters(model.frm) == 6 * adapter + router[6]
    assert 95e6 < params < 97e6, params            # CLIP ViT-B/16 86.1 M − last MLP 4.7 M + FFM 9.8 M + FRM 4.9 M
    batch = {"images": torch.randn(2, 3, 3, 256, 128), "present": torch.ones(2, 3, dtype=torch.bool),
             "label": torch.tensor([0, 1])}
    out = model(batch)
    assert out["embeddings"]["fused"].shape == (2, 3 * 768) and out["frm_routing"].shape == (2, 3, 129)
    sum(MFRNetCriterion(171)(out, batch).values()).backward()
    assert model.frm["11"].experts.weight1.grad is not None and model.ffm.mixtures[1].router.proj.weight.grad.any()
    assert model.backbone.vit.patch_embed.proj.weight.grad.any()


# --------------------------------------------------------------------------------------------- the study

def test_usage_entropy_is_one_for_equal_shares_and_zero_for_one_expert():
    usage = pd.DataFrame({"modality": "rgb", "region": ["person"] * 4 + ["background"] * 4, "expert": [0, 1, 2, 3] * 2,
                          "share": [0.25] * 4 + [1.0, 0.0, 0.0, 0.0]})
    entropy = study.usage_entropy(usage)
    assert entropy.loc["rgb", "person"] == pytest.approx(1.0) and entropy.loc["rgb", "background"] == 0.0


def test_expert_spread_is_zero_for_shared_experts_and_positive_for_independent_ones():
    shared = study.expert_spread(make_model(shared_experts=True))
    independent = study.expert_spread(make_model())
    assert (shared["experts (weight sets)"] == 1).all() and (shared["relative spread"] == 0).all()
    assert (independent["experts (weight sets)"] > 1).all() and (independent["relative spread"] > 0).all()


def test_missing_mode_switches_the_rule_and_restores_it():
    model = make_model().eval()
    batch = make_batch()
    batch["images"][:, 1] = 0.0
    batch["present"][:, 1] = False
    with torch.no_grad():
        reconstructed = model(batch)["embeddings"]["fused"]
        with study.missing_mode(model, "zero_fill"):
            zero_filled = model(batch)["embeddings"]["fused"]
    assert model.missing == "reconstruct" and not torch.allclose(reconstructed, zero_filled)


def test_table5_claims_read_the_numbered_rows_of_the_paper():
    scores = pd.DataFrame([{"row": r, "seed": s, "mAP": 10.0 + i} for i, r in enumerate(study.TABLE5) for s in (0, 1)])
    table = claims_table(study.claims({"table5": scores}))
    assert table.loc["FFM helps (T5 baseline→+FFM)", "paper Δ"] == "+5.9"
    assert table.loc["FFM + FRM beat FFM alone (T5)", "paper Δ"] == "+5.6"
