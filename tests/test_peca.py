"""PECA (reidlab.models.peca, reidlab.losses.peca, reidlab.methods.peca, reidlab.studies.peca, recipe peca): every
loss against a small hand-computed case (Eq. 1 L_sim, Eq. 3 L_mix, Eq. 4 L_ce, Eq. 6 L_ins, Eq. 7–9 the centroid
memory, Eq. 10 L_mod), the stop-gradient and eval-mode BatchNorm of GSL's crop branch, ICAL's pairing, every Table 3
row's loss terms, the memory initialisation hook, the recipe and a paper-size forward/backward."""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from reidlab.engine.experiment import train
from reidlab.losses.peca import (
    ModalityCentroidMemory,
    PECACriterion,
    global_local_similarity,
    ical_consistency,
    instance_contrast,
    modality_contrast,
)
from reidlab.methods import build_method
from reidlab.models.baseline import CrossModalBaseline
from reidlab.models.peca import KINDS, PECA
from reidlab.recipes import load_recipe
from reidlab.studies import claims_table
from reidlab.studies import peca as study

SIZE = (24, 12)
NUM_CLASSES = 4


def cross_modal_batch(ids: int = 2, k: int = 2, seed: int = 0, size: tuple[int, int] = SIZE) -> dict:
    """``ids`` identities × (k visible + k infrared), visible first (the CrossModalSampler layout)."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * ids * k
    labels = torch.arange(ids).repeat_interleave(k).repeat(2)
    present = torch.zeros(n, 2, dtype=torch.bool)
    present[: n // 2, 0] = True
    present[n // 2:, 1] = True
    return {"images": torch.randn(n, 2, 3, *size, generator=g), "present": present, "label": labels}


def make_model(seed: int = 0, **options) -> PECA:
    torch.manual_seed(seed)
    return PECA("resnet_tutorial", NUM_CLASSES, modalities=("rgb", "nir"), img_size=SIZE, gsl_hidden=16, **options)


# --------------------------------------------------------------------------------------------- Eq. 6: L_ins

def test_instance_contrast_on_a_hand_computed_case():
    # Anchor 0 = (1, 0); its only positive (0, 1) has similarity 0; negatives (1, 1)/√2 (sim 0.7071) and (-1, 0)
    # (sim -1). With |Q| = 1 the closest negative is (1, 1)/√2: L = log(1 + exp(0.7071 / τ)).
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    per_anchor = []
    s = F.normalize(f, dim=1) @ F.normalize(f, dim=1).t()
    for i in range(4):
        pos = [j for j in range(4) if labels[j] == labels[i] and j != i][0]
        negs = [j for j in range(4) if labels[j] != labels[i]]
        nearest = max(negs, key=lambda j: s[i, j])
        per_anchor.append(math.log(1 + math.exp((s[i, nearest] - s[i, pos]) / tau)))
    assert per_anchor[0] == pytest.approx(math.log(1 + math.exp(math.sqrt(0.5) / tau)), rel=1e-6)
    got = instance_contrast(f, labels, negatives=1, tau=tau)
    assert got.item() == pytest.approx(sum(per_anchor) / 4, rel=1e-5)


def test_instance_contrast_uses_the_farthest_positive_and_all_negatives_when_q_is_large():
    torch.manual_seed(0)
    f, labels, tau = torch.randn(8, 5), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]), 0.15
    s = F.normalize(f, dim=1) @ F.normalize(f, dim=1).t()
    expected = []
    for i in range(8):
        pos = [j for j in range(8) if labels[j] == labels[i] and j != i]
        far = min(pos, key=lambda j: s[i, j])
        negs = [j for j in range(8) if labels[j] != labels[i]]
        logits = torch.stack([s[i, far]] + [s[i, j] for j in negs]) / tau
        expected.append(-torch.log_softmax(logits, 0)[0])
    got = instance_contrast(f, labels, negatives=50, tau=tau)  # |Q| capped at each anchor's negatives
    assert got.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_instance_contrast_refuses_a_batch_without_pairs():
    with pytest.raises(ValueError, match="positive and a negative"):
        instance_contrast(torch.randn(3, 4), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------------------------- Eq. 7–10

def test_memory_update_is_eq9_then_normalised_and_initialise_is_the_class_mean():
    memory = ModalityCentroidMemory(2, 2, alpha=0.8)
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    memory.initialise(f, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    assert torch.allclose(memory.centroids[0, 0], F.normalize(torch.tensor([1.0, 1.0]), dim=0))
    assert torch.allclose(memory.centroids[1, 1], torch.tensor([0.6, 0.8]))
    assert memory.available.tolist() == [[True, False], [False, True]]
    old = memory.centroids[0, 0].clone()
    memory.update(torch.tensor([[0.0, 5.0]]), torch.tensor([0]), torch.tensor([0]))
    expected = F.normalize(0.2 * old + 0.8 * torch.tensor([0.0, 1.0]), dim=0)
    assert torch.allclose(memory.centroids[0, 0], expected)
    memory.update(torch.tensor([[2.0, 0.0]]), torch.tensor([1]), torch.tensor([0]))  # an unset centroid becomes f
    assert torch.allclose(memory.centroids[1, 0], torch.tensor([1.0, 0.0])) and bool(memory.available[1, 0])


def test_modality_contrast_on_a_hand_computed_case():
    # Two identities × two modalities; sample of identity 0 in modality 0. P = {m_0^0, m_0^1}, U = {m_1^0} — the
    # other identity's centroid in the *other* modality (m_1^1) is not in the denominator.
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.6, 0.8]]])
    f, tau = torch.tensor([[0.8, 0.6]]), 0.1
    a, b, u = 0.8 / tau, 0.6 / tau, -0.8 / tau
    log_z = math.log(math.exp(a) + math.exp(b) + math.exp(u))
    expected = -0.5 * ((a - log_z) + (b - log_z))
    got = modality_contrast(f, torch.tensor([0]), torch.tensor([0]), c, tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    moved = c.clone()
    moved[1, 1] = torch.tensor([0.8, 0.6])  # other identity, other modality: excluded, so no effect
    assert modality_contrast(f, torch.tensor([0]), torch.tensor([0]), moved, tau=tau).item() == pytest.approx(
        expected, rel=1e-5)
    moved[1, 0] = torch.tensor([0.8, 0.6])  # other identity, same modality: a negative, the loss grows
    assert modality_contrast(f, torch.tensor([0]), torch.tensor([0]), moved, tau=tau).item() > expected


def test_modality_contrast_skips_centroids_not_yet_set():
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.6, 0.8]]])
    available = torch.tensor([[True, False], [True, True]])
    f, tau = torch.tensor([[0.8, 0.6]]), 0.5
    a, u = 0.8 / tau, -0.8 / tau
    expected = -(a - math.log(math.exp(a) + math.exp(u)))
    got = modality_contrast(f, torch.tensor([0]), torch.tensor([0]), c, available, tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------------- Eq. 1 and 3

def test_global_local_similarity_is_negative_cosine_with_stop_gradient():
    g = torch.tensor([[3.0, 4.0, 0.0]], requires_grad=True)
    s = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    loss = global_local_similarity(g, s)
    assert loss.item() == pytest.approx(-0.8)
    loss.backward()
    assert s.grad is None and g.grad is not None


def test_ical_consistency_is_the_hinge_on_normalised_distances():
    v, g, ir = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[5.0, 0.0]])
    d = math.sqrt(2.0)
    assert ical_consistency(v, g, ir, margin=0.7).item() == pytest.approx(2 * (d - 0.7), rel=1e-5)
    assert ical_consistency(v, g, ir, margin=1.5).item() == pytest.approx(0.0, abs=1e-6)  # within the margin
    assert ical_consistency(v, g, ir, margin=0.7, squared=True).item() == pytest.approx(2 * (d - 0.7) ** 2, rel=1e-5)


# --------------------------------------------------------------------------------------------- the model

def test_training_forward_builds_ca_views_and_ical_images_from_same_identity_pairs():
    model = make_model().train()
    batch = cross_modal_batch(ids=2, k=2)
    out = model(batch)["peca"]
    kinds = out["kind"].tolist()
    assert kinds == [KINDS["visible"]] * 4 + [KINDS["infrared"]] * 4 + [KINDS["channel_view"]] * 4 + \
        [KINDS["ical"]] * 4
    assert out["labels"].tolist() == [0, 0, 1, 1] * 4
    real_labels = out["labels"][:8]
    assert torch.equal(real_labels[out["ical_visible"]], real_labels[out["ical_infrared"]])  # same identity
    assert out["gsl_global"].shape == out["gsl_local"].shape == (8, 3 * model.feature_dim)
    assert not out["gsl_local"].requires_grad and out["gsl_global"].requires_grad


def test_ical_images_take_their_channels_from_the_two_sources(monkeypatch):
    model = make_model(gsl=False, channel_view=False, ical_variants=[3]).train()  # keep R, take G and B from IR
    seen = {}
    original = model.ical_stem.forward

    def capture(x):
        seen["ical"] = x.detach().clone()
        return original(x)
    monkeypatch.setattr(model.ical_stem, "forward", capture)
    batch = cross_modal_batch(ids=2, k=2)
    out = model(batch)["peca"]
    images = batch["images"][batch["present"]]
    visible, infrared = images[:4], images[4:][out["ical_infrared"] - 4]
    assert torch.equal(seen["ical"][:, 0], visible[:, 0])
    assert torch.equal(seen["ical"][:, 1:], infrared[:, 1:])


def test_gsl_crop_pass_leaves_batchnorm_statistics_alone():
    batch = cross_modal_batch()
    crops, control = make_model(gsl_target="crops").train(), make_model(gsl_target="global").train()
    torch.manual_seed(1)
    crops(batch)
    torch.manual_seed(1)
    control(batch)
    for (name, a), b in zip(crops.named_buffers(), control.buffers(), strict=True):
        if "running" in name:
            assert torch.equal(a, b), name


def test_eval_forward_is_the_encoder_only_and_matches_agw_outputs():
    model = make_model().eval()
    batch = cross_modal_batch()
    with torch.no_grad():
        out = model(batch)
    assert "peca" not in out and out["embeddings"]["embedding"].shape == (8, model.feature_dim)


# --------------------------------------------------------------------------------------------- Table 3 rows

ROW_TERMS = {"M1": {"id", "triplet"}, "M2": {"id", "ins"}, "M3": {"id", "ins", "mod"},
             "M4": {"id", "ins", "mod", "sim"}, "M5": {"id", "ins", "mod", "mix"},
             "PECA": {"id", "ins", "mod", "sim", "mix"}}


@pytest.mark.parametrize("row", list(study.ABLATION))
def test_every_table3_row_builds_and_returns_its_loss_terms(row):
    recipe = study.variants(load_recipe("peca", "smoke"), {row: study.ABLATION[row]})[row]
    torch.manual_seed(0)
    model, criterion = build_method(recipe, NUM_CLASSES, ("rgb", "nir"))
    terms = criterion(model.train()(cross_modal_batch(size=tuple(recipe.data["size"]))),
                      cross_modal_batch(size=tuple(recipe.data["size"])))
    assert set(terms) == ROW_TERMS[row]
    sum(terms.values()).backward()
    assert all(torch.isfinite(t) for t in terms.values())


def test_identity_loss_is_the_sum_of_the_visible_and_infrared_means():
    model, criterion = make_model(gsl=False, ical=False, channel_view=False).train(), PECACriterion(
        NUM_CLASSES, 256, modality=False)
    out = model(cross_modal_batch())
    o = out["peca"]
    ce = F.cross_entropy(o["logits"], o["labels"], reduction="none")
    assert criterion(out, {})["id"].item() == pytest.approx((ce[:4].mean() + ce[4:].mean()).item(), rel=1e-6)


def test_matched_baseline_is_agw_with_pecas_data_and_solver():
    recipe = load_recipe("peca", "tutorial")
    base = study.baseline(recipe)
    assert base.method == "baseline_crossmodal" and base.data == recipe.data and base.train == recipe.train
    assert not set(study.METHOD_ONLY) & set(base.model)
    model, _ = build_method(base, NUM_CLASSES, ("rgb", "nir"))
    assert type(model) is CrossModalBaseline


def test_memory_is_initialised_before_the_first_epoch_and_saved_with_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path))
    recipe = load_recipe("peca", "smoke")
    calls = []
    original = ModalityCentroidMemory.initialise

    def spy(self, *args):
        calls.append(len(args[0]))
        return original(self, *args)
    monkeypatch.setattr(ModalityCentroidMemory, "initialise", spy)
    run = train(recipe, progress=False, force=True)
    assert len(calls) == 1 and calls[0] == len(run.split.train)  # one pass over every training image, epoch 0
    assert bool(run.criterion.memory.available.all())
    assert "memory.centroids" in run.criterion.state_dict()


def test_paper_size_peca_runs_one_step_on_cpu_and_costs_more_than_agw_to_train():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    size = (288, 144)
    agw = CrossModalBaseline("resnet50", 395, img_size=size, last_stride=1)
    peca = PECA("resnet50", 395, img_size=size, last_stride=1)
    batch = cross_modal_batch(ids=1, k=1, size=size)
    flops = {}
    for name, model in (("AGW", agw), ("PECA", peca)):
        with FlopCounterMode(display=False) as counter:
            out = model.train()(batch)
            loss = out["logits"]["embedding"].sum()
            if name == "PECA":
                loss = loss + out["peca"]["gsl_global"].sum()
            loss.backward()
        flops[name] = counter.get_total_flops()
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("AGW", agw), ("PECA", peca))}
    print(f"\nparameters AGW {params['AGW'] / 1e6:.2f} M, PECA {params['PECA'] / 1e6:.2f} M; "
          f"training step (1 visible + 1 infrared image, 288x144) AGW {flops['AGW'] / 1e9:.1f} GFLOPs, "
          f"PECA {flops['PECA'] / 1e9:.1f} GFLOPs")
    assert params["PECA"] > params["AGW"] and flops["PECA"] > 1.5 * flops["AGW"]
    assert out["peca"]["features"].shape == (4, 2048)  # visible, infrared, CA view, ICAL image


def test_stripe_target_is_the_gem_of_each_third_of_the_feature_map():
    model = make_model(gsl_target="stripes")
    x = torch.rand(2, 4, 6, 3) + 0.1
    stripes = model._stripes(x).view(2, 3, 4)
    for part in range(3):
        expected = x[:, :, 2 * part:2 * part + 2].pow(3).mean(dim=(2, 3)).pow(1 / 3)
        assert torch.allclose(stripes[:, part], expected, atol=1e-5)
    assert torch.isfinite(model._stripes(torch.rand(2, 4, 2, 1))).all()  # fewer rows than parts


# --------------------------------------------------------------------------------------------- the study

def test_attention_effect_pairs_the_same_images():
    frame = pd.DataFrame({"model": ["A"] * 3 + ["B"] * 3, "modality": "rgb", "image": [0, 1, 2] * 2,
                          "object mass": [0.5, 0.6, 0.7, 0.4, 0.4, 0.5], "entropy": [0.9, 0.8, 0.7, 0.9, 0.9, 0.9]})
    effect = study.attention_effect(frame, "A", "B")
    mass = effect.loc[("rgb", "object mass")]
    assert mass["delta"] == pytest.approx((0.1 + 0.2 + 0.2) / 3) and mass["images"] == 3
    assert mass["se"] == pytest.approx(torch.tensor([0.1, 0.2, 0.2]).std().item() / math.sqrt(3), rel=1e-6)
    assert effect.loc[("rgb", "entropy"), "delta"] == pytest.approx(-0.1)


def test_modality_gap_separates_within_from_cross_modality_pairs():
    # Two identities; within a modality the two images of an identity coincide, across modalities they differ.
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.8, 0.6], [0.8, 0.6], [0.6, 0.8], [0.6, 0.8]])
    pids = [0, 0, 0, 0, 1, 1, 1, 1]
    modalities = ["rgb", "rgb", "nir", "nir"] * 2
    gap = study.modality_gap({"model": f}, pids, modalities).loc["model"]
    assert gap["intra_mean"] == pytest.approx(0.0, abs=1e-6) and gap["inter_mean"] > 0.0
    assert gap["auc"] == pytest.approx(1.0)


def test_claims_cover_table3_and_the_sweeps():
    rows = ["M1", "M2", "M3", "M4", "M5", "PECA", study.AGW]
    scores = pd.DataFrame([{"row": r, "seed": s, "mAP": 10.0 + i + s} for i, r in enumerate(rows) for s in (0, 1)])
    sweep = pd.DataFrame([{"λ_m": v, "seed": 0, "mAP": 20.0 - abs(v - 0.5)} for v in (0.0, 0.5, 1.0)])
    table = claims_table(study.claims({"main": scores, "ablation": scores, "λ_m": sweep}))
    assert len(table) == 7 + 2
    assert table.loc["GSL helps (T3 M3→M4, the jump hardest to reproduce)", "paper Δ"] == "+5.4"
