"""DENet (Zheng et al.): CMFT shapes and Eq. 3/4 on hand cases, the Fig. 4 enhancement op against a manual
computation, the DEM dynamic cut for all seven missing states (alone and mixed in one batch), the enhancement
variants' edge sets, recovery vs zero-filling, F_c1/F_c2, the loss weights (Eq. 14), gradients (Grad-CAM of a
recovered feature on the RGB branch, GAN updates), determinism, the method/recipe wiring and the paper-size model."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from reidlab.data.records import MODALITIES
from reidlab.engine.experiment import train
from reidlab.eval.missing import MISSING_SETTINGS
from reidlab.losses.denet import DENetCriterion, adversarial_losses, reconstruction_loss, similarity_loss
from reidlab.losses.reid import ReIDCriterion
from reidlab.methods import build_method, reid_criterion
from reidlab.models.denet import CBAM, HEADS, DENet
from reidlab.models.denet_cmft import CMFT, FeatureGenerator, Projection
from reidlab.models.denet_dem import (
    ALL_EDGES,
    ENHANCEMENT_EDGES,
    DynamicEnhancement,
    EnhancementOp,
    active_edges,
    edge_masks,
    edge_name,
)
from reidlab.recipes import load_recipe

SIZE = (32, 16)
R, N, T = MODALITIES

#: The edges left after the dynamic cut in every missing state (by hand: an edge survives iff its tail is present).
EXPECTED_EDGES = {
    "complete": {(R, N), (R, T), (N, R), (N, T), (T, R), (T, N)},
    "M(R)": {(N, R), (N, T), (T, R), (T, N)},
    "M(N)": {(R, N), (R, T), (T, R), (T, N)},
    "M(T)": {(R, N), (R, T), (N, R), (N, T)},
    "M(RN)": {(T, R), (T, N)},
    "M(RT)": {(N, R), (N, T)},
    "M(NT)": {(R, N), (R, T)},
}
STATES = list(EXPECTED_EDGES)


def present_of(state: str) -> torch.Tensor:
    return torch.tensor([m not in MISSING_SETTINGS[state] for m in MODALITIES])


def small_model(seed: int = 0, **kwargs) -> DENet:
    torch.manual_seed(seed)
    options = {"cmft_width": 16, "proj_dim": 8, **kwargs}
    return DENet("resnet_tutorial", 5, img_size=SIZE, **options)


def batch_of(states: list[str], seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    present = torch.stack([present_of(s) for s in states])
    images = torch.randn(len(states), 3, 3, *SIZE, generator=g) * present[:, :, None, None, None]
    return {"images": images, "present": present, "label": torch.arange(len(states)) % 3}


def randomize_norms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics (the zero-initialised DEM output included)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.randn(m.num_features, generator=g))
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def real_maps(model: DENet, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return {m: model.attention[m](model.backbones[m](images[:, i])["feature_map"]) for i, m in enumerate(MODALITIES)}


# ------------------------------------------------------------------------------------------------------------ CMFT

def test_cmft_shapes_stages_and_input_resolution():
    cmft = CMFT(channels=8, width=16, stages=2)
    fake, recovered = cmft(torch.randn(2, 8, 4, 2), (16, 8))
    assert fake.shape == (2, 3, 16, 8) and recovered.shape == (2, 8, 4, 2)
    assert (recovered >= 0).all()  # post-ReLU, like the branch features
    fake, recovered = cmft(torch.randn(2, 8, 4, 2), (20, 9))  # any input size: resized, pooled back
    assert fake.shape == (2, 3, 20, 9) and recovered.shape == (2, 8, 4, 2)
    with pytest.raises(ValueError, match="at least one"):
        CMFT(8, 16, 0)
    assert FeatureGenerator(8)(torch.randn(2, 8, 4, 2), (16, 8))[0] is None
    # the stage count follows the branch stride: 16 with the last-stride trick, 32 without
    assert small_model()._stride_stages() == 4
    model = small_model(last_stride=2)
    assert model._stride_stages() == 5
    out = model.eval()(batch_of(["complete", "M(N)"]))
    assert all(f.shape == (2, 3, *SIZE) for f in out["fake_images"].values())


def test_reconstruction_loss_eq3_hand_case():
    images = torch.zeros(2, 3, 3, 1, 1)
    images[:, 1, :, 0, 0] = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])  # real NIR images
    images[:, 0, :, 0, 0] = torch.tensor([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0]])  # real RGB images
    fake = {"rgb2nir": torch.zeros(2, 3, 1, 1), "tir2rgb": torch.zeros(2, 3, 1, 1)}
    everything = torch.ones(2, 3, dtype=torch.bool)
    # per-image pixel MSE: rgb2nir (1+4+4)/3 = 3 and 9/3 = 3; tir2rgb 0 and 18/3 = 6 -> mean of 4 pairs = 3
    assert reconstruction_loss(fake, images, everything).item() == pytest.approx(3.0)
    # sample 1 misses NIR: its rgb2nir pair drops out -> (3 + 0 + 6) / 3
    present = torch.tensor([[True, True, True], [True, False, True]])
    assert reconstruction_loss(fake, images, present).item() == pytest.approx(3.0)
    present = torch.tensor([[True, True, False], [True, False, True]])  # (0, rgb2nir) and (1, tir2rgb) left
    assert reconstruction_loss(fake, images, present).item() == pytest.approx((3.0 + 6.0) / 2)
    present = torch.tensor([[True, False, False], [True, False, True]])  # only (1, tir2rgb) left
    assert reconstruction_loss(fake, images, present).item() == pytest.approx(6.0)
    assert reconstruction_loss(fake, images, torch.tensor([[True, False, False]] * 2)).item() == 0.0
    with pytest.raises(ValueError, match="input resolution"):
        reconstruction_loss({"rgb2nir": torch.zeros(2, 3, 2, 2)}, images, everything)
    with pytest.raises(ValueError, match="unknown CMFT direction"):
        reconstruction_loss({"rgb2rgb": torch.zeros(2, 3, 1, 1)}, images, everything)


def test_similarity_loss_eq4_hand_case_and_projection():
    pairs = {"rgb2nir": (torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])),
             "nir2tir": (torch.tensor([[4.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2))}
    everything = torch.ones(2, 3, dtype=torch.bool)
    # per-sample mean |θ - θ'|: rgb2nir 1.5 and 1.0; nir2tir 2.0 and 0.0 -> mean 1.125
    assert similarity_loss(pairs, everything).item() == pytest.approx(1.125)
    present = torch.tensor([[True, True, False], [True, True, True]])  # (0, nir2tir) drops out
    assert similarity_loss(pairs, present).item() == pytest.approx((1.5 + 1.0 + 0.0) / 3)
    # θ(x) = ReLU(BN(W x)), BatchNorm without affine parameters (batch statistics in training)
    torch.manual_seed(0)
    theta = Projection(6, 4).train()
    x = torch.randn(5, 6)
    z = x @ theta.linear.weight.T
    expected = torch.relu((z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + theta.bn.eps))
    torch.testing.assert_close(theta(x), expected)
    assert not theta.bn.affine and theta.linear.bias is None


# ------------------------------------------------------------------------------------------------------------- DEM

def manual_enhancement(op: EnhancementOp, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5 / Fig. 4 written out: 1×1 convs as matrix products, (F'_s ⊗ F'_t) ⊗ F''_s, 1×1 conv + BN (eval)."""
    def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:  # [C, N] -> [C', N]
        return conv.weight[:, :, 0, 0] @ x + conv.bias[:, None]

    b, c, h, w = target.shape
    out = []
    for i in range(b):
        s, t = source[i].reshape(c, h * w), target[i].reshape(c, h * w)
        f1_s, f2_s, f1_t = conv1x1(op.source_key, s), conv1x1(op.source_value, s), conv1x1(op.target_query, t)
        affinity = f1_s.T @ f1_t / (h * w)                  # [N_source, N_target]
        message = f2_s @ affinity                           # [C', N_target]
        y = conv1x1(op.out[0], message)
        bn = op.out[1]
        y = (y - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None] \
            + bn.bias[:, None]
        out.append(y.reshape(c, h, w))
    return torch.stack(out)


def test_enhancement_op_matches_the_manual_eq5_and_starts_as_identity():
    torch.manual_seed(0)
    op = EnhancementOp(channels=4, reduction=2)
    source, target = torch.randn(2, 4, 2, 3), torch.randn(2, 4, 2, 3)
    assert torch.equal(op(source, target), torch.zeros(2, 4, 2, 3))  # zero-initialised output BN: identity start
    randomize_norms(op)
    op.eval()
    torch.testing.assert_close(op(source, target), manual_enhancement(op, source, target), atol=1e-5, rtol=1e-5)
    # Eq. 6 with one edge: F_enhance_target = F''' + F_target
    dem = DynamicEnhancement(4, [(R, N)]).eval()
    dem.ops["rgb2nir"].load_state_dict(op.state_dict())
    maps = {R: source, N: target, T: torch.randn(2, 4, 2, 3)}
    out = dem(maps, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(out[N], target + manual_enhancement(op, source, target), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[R], source) and torch.equal(out[T], maps[T])
    with pytest.raises(ValueError, match="one shape"):
        op(source, target[:, :, :1])


@pytest.mark.parametrize("state", STATES)
def test_dynamic_cut_keeps_exactly_the_edges_whose_tail_is_present(state):
    row = present_of(state)
    assert set(active_edges(ALL_EDGES, row.tolist())) == EXPECTED_EDGES[state]
    masks = edge_masks(ALL_EDGES, row[None])
    assert {e for e, keep in masks.items() if keep.item()} == EXPECTED_EDGES[state]
    # a missing node is never a tail but keeps its incoming edges (its recovered feature is still enhanced)
    for m in MISSING_SETTINGS[state]:
        assert not any(e[0] == m for e in EXPECTED_EDGES[state])
        assert {e for e in EXPECTED_EDGES[state] if e[1] == m} == {(s, m) for s in MODALITIES
                                                                  if s != m and s not in MISSING_SETTINGS[state]}


def test_dem_on_a_batch_mixing_all_seven_states_matches_per_sample_sums():
    torch.manual_seed(0)
    dem = DynamicEnhancement(4, ALL_EDGES)
    randomize_norms(dem)
    dem.eval()
    present = torch.stack([present_of(s) for s in STATES])
    maps = {m: torch.randn(len(STATES), 4, 2, 2) for m in MODALITIES}
    out = dem(maps, present)
    for i, state in enumerate(STATES):
        for t in MODALITIES:
            expected = maps[t][i:i + 1].clone()
            for s, head in EXPECTED_EDGES[state]:
                if head == t:
                    expected = expected + manual_enhancement(dem.ops[edge_name((s, t))], maps[s][i:i + 1],
                                                             maps[t][i:i + 1])
            torch.testing.assert_close(out[t][i:i + 1], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="bool tensor"):
        dem(maps, present.float())
    with pytest.raises(ValueError, match="distinct pairs"):
        DynamicEnhancement(4, [(R, R)])


def test_enhancement_variants_edge_sets():
    assert set(ENHANCEMENT_EDGES["dynamic"]) == EXPECTED_EDGES["complete"]
    assert set(ENHANCEMENT_EDGES["fixed"]) == {(R, N), (R, T)}
    assert set(ENHANCEMENT_EDGES["cycle"]) == {(R, N), (N, T), (T, R)}
    assert ENHANCEMENT_EDGES["none"] == ()
    for variant, names in (("dynamic", {"rgb2nir", "rgb2tir", "nir2rgb", "nir2tir", "tir2rgb", "tir2nir"}),
                           ("fixed", {"rgb2nir", "rgb2tir"}), ("cycle", {"rgb2nir", "nir2tir", "tir2rgb"}),
                           ("none", set())):
        assert set(small_model(enhancement=variant).dem.ops) == names
    # the cut applies to every variant: fixed loses both edges when RGB is missing, cycle keeps N->T under M(R)
    assert active_edges(ENHANCEMENT_EDGES["fixed"], present_of("M(R)").tolist()) == ()
    assert set(active_edges(ENHANCEMENT_EDGES["cycle"], present_of("M(R)").tolist())) == {(N, T), (T, R)}
    assert set(active_edges(ENHANCEMENT_EDGES["cycle"], present_of("M(NT)").tolist())) == {(R, N)}


def test_sim_projection_variants():
    b = batch_of(["complete"] * 4)
    separate = small_model().train()
    out = separate(b)
    real = out["embeddings"]["real_nir"]
    recovered = separate.transforms["rgb2nir"](real_maps(separate, b["images"])[R], SIZE)[1].mean(dim=(2, 3))
    theta, theta_prime = out["sim_pairs"]["rgb2nir"]
    torch.testing.assert_close(theta, separate.proj_real[N](real))
    torch.testing.assert_close(theta_prime, separate.proj_recovered[N](recovered))
    tied = small_model(sim_projection="tied").train()
    assert not hasattr(tied, "proj_recovered")
    out = tied(b)
    real = out["embeddings"]["real_tir"]
    recovered = tied.transforms["nir2tir"](real_maps(tied, b["images"])[N], SIZE)[1].mean(dim=(2, 3))
    joint = tied.proj_real[T](torch.cat([real, recovered]))  # one θ_t, BN statistics of the joint batch
    torch.testing.assert_close(torch.cat(out["sim_pairs"]["nir2tir"]), joint)
    identity = small_model(sim_projection="identity").train()
    assert not hasattr(identity, "proj_real")
    out = identity(b)
    real = out["embeddings"]["real_rgb"]
    recovered = identity.transforms["tir2rgb"](real_maps(identity, b["images"])[T], SIZE)[1].mean(dim=(2, 3))
    torch.testing.assert_close(out["sim_pairs"]["tir2rgb"][0], real)
    torch.testing.assert_close(out["sim_pairs"]["tir2rgb"][1], recovered)
    with pytest.raises(ValueError, match="sim_projection must be"):
        small_model(sim_projection="cca")


# ----------------------------------------------------------------------------------------------------------- model

def test_output_contract_shapes_and_errors():
    model = small_model().eval()
    b = batch_of(["complete", "M(N)", "M(RT)"])
    out = model(b)
    c = model.feature_dim
    dims = {R: c, N: c, T: c, "c1": 3 * c, "c2": 3 * c, "final": 6 * c}
    assert {k: v.shape[1] for k, v in out["features"].items()} == dims
    assert {k: out["embeddings"][k].shape[1] for k in dims} == dims
    assert set(out["logits"]) == set(HEADS) and all(v.shape == (3, 5) for v in out["logits"].values())
    assert set(out["recovered"]) == set(MODALITIES) and out["recovered"][N].shape == (3, c)
    assert set(out["fake_images"]) == {edge_name(e) for e in ALL_EDGES}
    assert set(out["sim_pairs"]) == set(out["fake_images"]) and "adversarial" not in out
    assert {f"recovered_{m}" for m in MODALITIES} | {f"real_{m}" for m in MODALITIES} <= set(out["embeddings"])
    torch.testing.assert_close(out["embeddings"]["c1"], out["embeddings"]["final"][:, :3 * c])
    assert model.default_feature == "final" and model.modalities == MODALITIES and model.cam_reshape is None
    assert model.recovery is True
    torch.testing.assert_close(model.extract(b)["final"], out["embeddings"]["final"])
    with pytest.raises(ValueError, match=r"\[B, 3, 3, H, W\]"):
        model({"images": torch.zeros(2, 2, 3, *SIZE)})
    with pytest.raises(ValueError, match="at least one present"):
        model({"images": torch.zeros(1, 3, 3, *SIZE), "present": torch.zeros(1, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="enhancement must be"):
        small_model(enhancement="full")
    with pytest.raises(ValueError, match="generator must be"):
        small_model(generator="vae")
    with pytest.raises(ValueError, match="CNN"):
        DENet("vit_tutorial", 5, img_size=SIZE)
    with pytest.raises(ValueError, match="not one of"):
        model.cam_target_layers("depth")


def test_recovery_uses_the_mean_of_the_present_sources_and_ignores_missing_images():
    model = small_model()
    randomize_norms(model)
    model.eval()
    b = batch_of(["complete", "M(N)", "M(NT)", "M(RN)"])
    with torch.no_grad():
        out = model(b)
        real = real_maps(model, b["images"])
        cmft = {e: model.transforms[edge_name(e)](real[e[0]], SIZE)[1].mean(dim=(2, 3)) for e in ALL_EDGES}
    # NIR of sample 1 (RGB, TIR present): mean of R2N and T2N; of sample 2 (RGB only): R2N; of 3 (TIR only): T2N
    torch.testing.assert_close(out["recovered"][N][1], (cmft[(R, N)][1] + cmft[(T, N)][1]) / 2)
    torch.testing.assert_close(out["recovered"][N][2], cmft[(R, N)][2])
    torch.testing.assert_close(out["recovered"][N][3], cmft[(T, N)][3])
    torch.testing.assert_close(out["recovered"][R][3], cmft[(T, R)][3])
    torch.testing.assert_close(out["embeddings"]["real_nir"], real[N].mean(dim=(2, 3)))
    # with recovery, a missing modality's image does not matter (its feature is recovered, its out-edges cut)
    noisy = dict(b, images=b["images"] + torch.randn_like(b["images"]) * ~b["present"][:, :, None, None, None])
    with torch.no_grad():
        again = model(noisy)
        model.recovery = False
        zero_filled, noisy_zero = model(b), model(noisy)
    torch.testing.assert_close(again["embeddings"]["final"], out["embeddings"]["final"])
    # zero-filling: the complete sample is unchanged, the others use the zero-image features
    torch.testing.assert_close(zero_filled["embeddings"]["final"][0], out["embeddings"]["final"][0])
    assert not torch.allclose(zero_filled["embeddings"]["final"][1:], out["embeddings"]["final"][1:])
    assert not torch.allclose(noisy_zero["embeddings"]["final"][1:], zero_filled["embeddings"]["final"][1:])
    with torch.no_grad():
        torch.testing.assert_close(zero_filled["features"][N][1], model.dem(real, b["present"])[N][1].mean(dim=(1, 2)))


def test_fc1_and_fc2_eq7_to_9():
    model = small_model()
    randomize_norms(model)
    model.eval()
    b = batch_of(["complete", "M(NT)", "M(T)"])
    with torch.no_grad():
        out = model(b)
        real = real_maps(model, b["images"])
        f = out["features"]
        # F_c2 = [F_rgb, (R2N(F_rgb))^e, (R2T(F_rgb))^e] with only the RGB -> NIR', TIR' edges
        from_rgb = {m: model.transforms[f"rgb2{m}"](real[R], SIZE)[1] for m in (N, T)}
        c2 = model.dem({R: real[R], **from_rgb}, torch.tensor([[True, False, False]] * 3))
    expected_c2 = torch.cat([real[R].mean(dim=(2, 3))] + [c2[m].mean(dim=(2, 3)) for m in (N, T)], dim=1)
    torch.testing.assert_close(f["c2"], expected_c2)
    torch.testing.assert_close(f["c1"], torch.cat([f[m] for m in MODALITIES], dim=1))
    torch.testing.assert_close(f["final"], torch.cat([f["c1"], f["c2"]], dim=1))
    torch.testing.assert_close(f["c1"][1], f["c2"][1])  # under M(NT) the two views coincide
    assert not torch.allclose(f["c1"][0], f["c2"][0])


def test_mixed_batch_equals_per_sample_forwards_and_eval_is_deterministic():
    model = small_model()
    randomize_norms(model)
    model.eval()
    b = batch_of(STATES, seed=1)
    with torch.no_grad():
        batched = model(b)["embeddings"]
        for i in range(len(STATES)):
            alone = model({k: v[i:i + 1] for k, v in b.items()})["embeddings"]
            for name in ("final", N, "recovered_tir"):
                torch.testing.assert_close(batched[name][i:i + 1], alone[name], atol=1e-5, rtol=1e-4)
        again = model(b)["embeddings"]
    assert all(torch.equal(batched[k], again[k]) for k in batched)
    other = small_model()
    randomize_norms(other)
    with torch.no_grad():
        assert torch.equal(other.eval()(b)["embeddings"]["final"], batched["final"])


def test_complete_data_ignores_the_recovery_flag():
    model = small_model().eval()
    b = batch_of(["complete", "complete"])
    with torch.no_grad():
        on = model(b)["embeddings"]["final"]
        model.recovery = False
        off = model(b)["embeddings"]["final"]
    assert torch.equal(on, off)


# ------------------------------------------------------------------------------------------------ loss & gradients

def criterion(rho: float = 1.0, mu: float = 1.0, adversarial: float = 1.0) -> DENetCriterion:
    return DENetCriterion(reid_criterion(5, {}, names=HEADS), rho=rho, mu=mu, adversarial=adversarial)


def test_loss_terms_and_weights_eq14():
    model = small_model().train()
    b = batch_of(["complete"] * 4)
    out = model(b)
    terms = criterion()(out, b)
    assert set(terms) == {f"{k}/{h}" for k in ("id", "tri") for h in HEADS} | {"rec", "sim"}
    torch.testing.assert_close(terms["rec"], reconstruction_loss(out["fake_images"], b["images"], b["present"]))
    torch.testing.assert_close(terms["sim"], similarity_loss(out["sim_pairs"], b["present"]))
    weighted = criterion(rho=2.0, mu=0.5)(out, b)
    torch.testing.assert_close(weighted["rec"], 2.0 * terms["rec"])
    torch.testing.assert_close(weighted["sim"], 0.5 * terms["sim"])
    assert "rec" not in criterion(rho=0.0)(out, b) and "sim" in criterion(rho=0.0)(out, b)
    assert "sim" not in criterion(mu=0.0)(out, b) and "rec" in criterion(mu=0.0)(out, b)
    reid_only = criterion(rho=0.0, mu=0.0)(out, b)
    assert set(reid_only) == {f"{k}/{h}" for k in ("id", "tri") for h in HEADS}
    torch.testing.assert_close(reid_only["id/final"], terms["id/final"])
    with pytest.raises(ValueError, match="rho must be >= 0"):
        DENetCriterion(ReIDCriterion(None, nn.Identity()), rho=-1.0)


def test_every_parameter_gets_a_finite_gradient_from_the_full_loss():
    model = small_model().train()
    b = batch_of(["complete"] * 6)
    sum(criterion()(model(b), b).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.transforms["nir2tir"].up.body[0].weight.grad.abs().sum() > 0  # every direction is supervised


def test_gradcam_of_a_recovered_nir_feature_reaches_the_rgb_branch():
    from reidlab.viz import EmbeddingSimilarityTarget, gradcam_maps

    model = small_model()
    randomize_norms(model)
    model.eval()
    b = batch_of(["M(N)", "M(NT)"])
    taps = {}
    handles = [model.attention[m].register_forward_hook(lambda mod, i, o, m=m: taps.__setitem__(m, o))
               for m in MODALITIES]
    out = model(b)
    for h in handles:
        h.remove()
    reference = torch.randn(model.feature_dim)
    score = torch.nn.functional.cosine_similarity(out["embeddings"]["nir"], reference[None]).sum()
    grads = torch.autograd.grad(score, [taps[m] for m in MODALITIES])
    assert grads[0].abs().sum() > 0  # the recovered NIR is built from the RGB map
    assert grads[1].abs().sum() == 0  # the missing NIR image's own branch is not used
    assert grads[2][0].abs().sum() > 0 and grads[2][1].abs().sum() == 0  # TIR helps sample 0 only
    own = out["embeddings"]["nir"][0].detach()  # similarity to itself: a target Grad-CAM can explain
    maps = gradcam_maps(model, b, "rgb", EmbeddingSimilarityTarget(own, "nir"))
    assert maps.shape == (2, *SIZE) and np.isfinite(maps).all() and maps[0].max() > 0


def test_gan_variant_updates_generator_and_discriminator_with_their_own_losses():
    model = small_model(generator="gan").train()
    b = batch_of(["complete"] * 4)
    out = model(b)
    assert out["fake_images"] == {} and set(out["adversarial"]) == {edge_name(e) for e in ALL_EDGES}
    terms = criterion()(out, b)
    assert {"adv", "disc", "sim"} <= set(terms) and "rec" not in terms
    generator_params = list(model.transforms.parameters())
    discriminator_params = list(model.discriminators.parameters())

    def grads(loss, params):
        return [g for g in torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) if g is not None]

    assert not grads(terms["disc"], generator_params) and any(g.abs().sum() > 0
                                                               for g in grads(terms["disc"], discriminator_params))
    assert not grads(terms["adv"], discriminator_params) and any(g.abs().sum() > 0
                                                                for g in grads(terms["adv"], generator_params))
    logit = torch.zeros(2)
    generator, discriminator = adversarial_losses({"rgb2nir": {"real": logit, "fake": logit, "generated": logit}},
                                                  torch.ones(2, 3, dtype=torch.bool))
    assert generator.item() == pytest.approx(np.log(2)) and discriminator.item() == pytest.approx(np.log(2))
    assert "adv" not in criterion(adversarial=0.0)(out, b)


def test_cbam_attends_per_channel_and_position():
    torch.manual_seed(0)
    cbam = CBAM(32).eval()
    x = torch.rand(2, 32, 4, 2)
    y = cbam(x)
    assert y.shape == x.shape and (y <= x + 1e-6).all() and (y >= 0).all()  # sigmoid gates in (0, 1)


# ------------------------------------------------------------------------------------------------ method & recipe

def test_method_registry_and_recipe_profiles():
    recipe = load_recipe("denet", "smoke")
    model, crit = build_method(recipe, 6, MODALITIES)
    assert isinstance(model, DENet) and isinstance(crit, DENetCriterion)
    assert (crit.rho, crit.mu) == (1.0, 1.0) and model.img_size == (32, 16)
    ablated, crit = build_method(recipe.override({"model.enhancement": "fixed", "loss.rho": 0.0}), 6, MODALITIES)
    assert ablated.enhancement == "fixed" and crit.rho == 0.0
    with pytest.raises(ValueError, match="three modalities"):
        build_method(recipe, 6, ("rgb", "tir"))
    with pytest.raises(ValueError, match="unknown loss keys"):
        build_method(recipe.override({"loss.roh": 0.5}), 6, MODALITIES)
    paper = load_recipe("denet", "paper")
    assert paper.model["backbone"] == "resnet50.tv_in1k" and paper.dataset_options == {"split": "141"}
    assert (paper.data["p"] * paper.data["k"], paper.train["lr"], paper.train["milestones"]) == (8, 0.01, [30, 55])
    assert (paper.train["momentum"], paper.train["weight_decay"], paper.model["dropout"]) == (0.9, 5.0e-4, 0.5)
    assert load_recipe("denet", "paper", {"dataset_options.split": "171"}).dataset_options == {"split": "171"}
    assert load_recipe("denet", "paper", dataset="rgbnt100").dataset_options == {}
    assert load_recipe("denet", "tutorial", dataset="rgbnt100").dataset == "rgbnt100"
    # L_sim as written (two projections) on the paper profile; the tutorial's documented deviation is the identity
    assert "sim_projection" not in paper.model and build_method(paper.override({"model.pretrained": False}), 6,
                                                                MODALITIES)[0].sim_projection == "separate"
    assert load_recipe("denet", "tutorial").model["sim_projection"] == "identity"


def test_smoke_profile_trains_through_the_engine_and_evaluates_missing_states(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path / "data"))
    run = train(load_recipe("denet", "smoke", {"model.generator": "gan", "train.epochs": 1}), progress=False)
    history = run.history.to_frame()
    assert {"id/final", "tri/final", "sim", "adv", "disc"} <= set(history.columns) and "rec" not in history
    assert np.isfinite(history["loss"]).all()
    for missing in (None, "M(N)", "M(RT)", 0.25):
        assert 0.0 < run.evaluate(missing=missing).summary()["mAP"] <= 1.0
    recovered = run.evaluate(missing="M(NT)").mAP
    run.model.recovery = False
    assert run.evaluate(missing="M(NT)").mAP != recovered and run.evaluate().mAP == run.evaluate().mAP
    query = run.features("query", missing="M(T)")
    assert {"final", "recovered_tir", "real_tir"} <= set(query.names) and not query.present[:, 2].any()


def test_paper_size_model_forward_backward_on_cpu(capsys):
    start = time.perf_counter()
    torch.manual_seed(0)
    model = DENet("resnet50.tv_in1k", 141, img_size=(256, 128)).train()
    b = {"images": torch.randn(2, 3, 3, 256, 128), "present": torch.ones(2, 3, dtype=torch.bool),
         "label": torch.tensor([0, 1])}
    out = model(b)
    terms = criterion_for(141)(out, b)
    sum(terms.values()).backward()
    count = sum(p.numel() for p in model.parameters())
    assert out["features"]["final"].shape == (2, 6 * 2048) and model.feature_dim == 2048
    assert all(torch.isfinite(t) for t in terms.values())
    with capsys.disabled():
        print(f"\nDENet paper size (3 x resnet50.tv_in1k, 256x128): {count / 1e6:.1f} M parameters, "
              f"build + forward/backward at batch 2: {time.perf_counter() - start:.1f} s")


def criterion_for(num_classes: int) -> DENetCriterion:
    return DENetCriterion(reid_criterion(num_classes, {}, names=HEADS))
