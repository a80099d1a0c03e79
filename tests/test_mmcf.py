"""MMCF (reidlab.models.mmcf, reidlab.losses.mmcf): PA-CBAM against a brute-force reading of spec §3.3, the region
tokens and stems, the tutorial and paper-size builds, and every loss of spec §3 on a small hand-computed case
(baseline contrast, R_id, MAAL's two losses and its alternating step, VRA's similarity / shared memories /
two-direction contrast, VRNL's neighbour sets / camera refinement / contrast, UM's merge and partners), with the
stop-gradients the spec states."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reidlab.engine.memory import greedy_match
from reidlab.losses.mmcf import (
    camera_refine,
    cross_modal_contrast,
    identity_consistency,
    maal_step,
    memory_contrast,
    merge_groups,
    merge_partners,
    modality_classification_loss,
    modality_confusion_loss,
    neighbour_contrast,
    region_neighbours,
    regional_cluster_similarity,
    shared_memories,
    token_diversity,
    uniform_merge,
    uniform_merging_loss,
)
from reidlab.models.mmcf import (
    KINDS,
    MMCF,
    PACBAM,
    ModalityClassifier,
    MultiScaleSpatialAttention,
    PartChannelAttention,
    ReIDConvStemEmbed,
)

TUTORIAL = (64, 32)


def vi_batch(visible: int = 2, infrared: int = 2, size: tuple[int, int] = TUTORIAL, seed: int = 0) -> dict:
    """Cross-modal batch: ``visible`` then ``infrared`` single-modality samples, interleaved order."""
    g = torch.Generator().manual_seed(seed)
    n = visible + infrared
    present = torch.zeros(n, 2, dtype=torch.bool)
    modality = torch.tensor([0] * visible + [1] * infrared)[torch.randperm(n, generator=g)]
    present[torch.arange(n), modality] = True
    return {"images": torch.randn(n, 2, 3, *size, generator=g), "present": present}


def tutorial_model(num_regions: int = 4, seed: int = 0, **kwargs) -> MMCF:
    torch.manual_seed(seed)
    return MMCF("vit_tutorial", num_regions=num_regions, img_size=TUTORIAL, **kwargs)


# ---------------------------------------------------------------------------------------------- PA-CBAM (§3.3)
def test_part_channel_attention_matches_block_pooling_loop():
    torch.manual_seed(0)
    attention = PartChannelAttention(channels=8, parts=2, reduction=4)
    x = torch.randn(3, 8, 4, 3)
    avg, mx = [], []
    for k in range(2):  # block k = rows 2k, 2k+1
        block = x[:, :, 2 * k:2 * k + 2]
        avg.append(block.mean(dim=(2, 3)))
        mx.append(block.amax(dim=(2, 3)))
    w0, w1 = attention.mlp[0].weight, attention.mlp[2].weight
    mlp = lambda p: F.relu(p @ w0.t()) @ w1.t()  # noqa: E731
    expected = torch.sigmoid(mlp(torch.cat(avg, 1)) + mlp(torch.cat(mx, 1)))
    assert w0.shape == (2, 16) and w1.shape == (8, 2)  # (C/r) × KC and C × (C/r)
    torch.testing.assert_close(attention(x), expected)


def test_multi_scale_spatial_attention_hand_case():
    attention = MultiScaleSpatialAttention()
    with torch.no_grad():
        for conv in attention.branches:
            conv.weight.zero_()
            conv.bias.zero_()
        attention.branches[0].weight[0, 0] = 1.0  # 1×1 branch = channel mean
        attention.branches[2].weight[0, 1, 3, 3] = 2.0  # 7×7 branch: centre tap on channel max
        attention.fuse.weight.copy_(torch.tensor([1.0, 5.0, 1.0]).view(1, 3, 1, 1))
        attention.fuse.bias.fill_(-1.0)
    x = torch.tensor([[1.0, -1.0], [3.0, 0.0]]).view(1, 2, 1, 2)  # channels (1, 3) and (-1, 0)
    # position 0: mean 2, max 3 -> 2 + 6 - 1 = 7; position 1: mean -0.5, max 0 -> -1.5
    assert [k for k in (c.kernel_size[0] for c in attention.branches)] == [1, 3, 7]
    torch.testing.assert_close(attention(x), torch.sigmoid(torch.tensor([7.0, -1.5])).view(1, 1, 1, 2))


def test_pacbam_applies_channel_then_spatial_attention():
    torch.manual_seed(0)
    block = PACBAM(channels=6, parts=3, reduction=2, identity_init=False)  # the paper's literal form
    x = torch.randn(2, 6, 6, 2)
    out, weights = block(x)
    channel = block.channel(x)
    expected = x * channel[:, :, None, None] * block.spatial(x * channel[:, :, None, None])
    torch.testing.assert_close(weights, channel)
    torch.testing.assert_close(out, expected)


def test_pacbam_identity_init_starts_as_the_identity_and_learns():
    torch.manual_seed(0)
    block = PACBAM(channels=6, parts=3, reduction=2)
    x = torch.randn(2, 6, 6, 2)
    out, weights = block(x)
    torch.testing.assert_close(out, x)  # 2 σ(0) = 1 in both maps
    torch.testing.assert_close(weights, torch.full_like(weights, 0.5))
    out.square().sum().backward()
    assert block.channel.mlp[-1].weight.grad.abs().sum() > 0 and block.spatial.fuse.weight.grad.abs().sum() > 0
    with torch.no_grad():  # once trained away from zero: 2 M_c ⊙ X, then 2 M_s ⊙ X'
        block.channel.mlp[-1].weight.normal_()
        block.spatial.fuse.weight.normal_()
    out, weights = block(x)
    channel = 2 * weights[:, :, None, None]
    torch.testing.assert_close(out, x * channel * 2 * block.spatial(x * channel))


# ------------------------------------------------------------------------------------------------ model (§2)
def test_tutorial_model_shapes_kinds_and_sources():
    model = tutorial_model().train()
    batch = vi_batch(visible=3, infrared=2)
    out = model(batch)
    m = out["mmcf"]
    assert m["features"].shape == (8, 4 * 96) and m["tokens"].shape == (8, 4, 96)
    assert m["channel_attention"].shape == (8, 96)
    assert m["kind"].tolist() == [KINDS["visible"]] * 3 + [KINDS["infrared"]] * 2 + [KINDS["channel_view"]] * 3
    modality = batch["present"].float().argmax(1)
    assert modality[m["source"][:3]].tolist() == [0, 0, 0] and modality[m["source"][3:5]].tolist() == [1, 1]
    assert torch.equal(m["source"][5:], m["source"][:3])
    assert out["embeddings"]["embedding"].shape == (5, 384) and out["logits"] == {}
    # real rows come back in batch order
    back = torch.empty(5, 384)
    back[m["source"][:5]] = m["features"][:5].detach()
    torch.testing.assert_close(out["embeddings"]["embedding"].detach(), back)
    model.eval()
    with torch.no_grad():
        assert model.extract(batch)["embedding"].shape == (5, 384)


def test_region_tokens_are_distinct_prefix_tokens_and_stems_are_modality_specific():
    model = tutorial_model(num_regions=3).eval()
    assert model.region_tokens.shape == (1, 2, 96)
    images = torch.randn(4, 3, *TUTORIAL)
    infrared = torch.tensor([False, True, False, True])
    with torch.no_grad():
        before = model.encode(images, infrared)
        tokens = before["tokens"]
        assert tokens.shape == (4, 3, 96)
        assert (tokens[:, 0] - tokens[:, 1]).abs().amax() > 1e-3 and (tokens[:, 1] - tokens[:, 2]).abs().amax() > 1e-3
        model.infrared_embed.proj[0].weight.add_(0.5)
        after = model.encode(images, infrared)["feature"]
    torch.testing.assert_close(after[~infrared], before["feature"][~infrared])
    assert (after[infrared] - before["feature"][infrared]).abs().amax() > 1e-3
    assert model.cam_reshape(torch.randn(1, 3 + 8 * 4, 96)).shape == (1, 96, 8, 4)


def test_model_is_deterministic_and_pa_cbam_switch():
    batch = vi_batch(seed=1)
    a, b = tutorial_model(seed=3).eval(), tutorial_model(seed=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(a.extract(batch)["embedding"], b.extract(batch)["embedding"])
    plain = tutorial_model(pa_cbam=False, channel_view=False).train()
    out = plain(batch)["mmcf"]
    assert "channel_attention" not in out and len(out["kind"]) == 4
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in a.parameters())


def test_paper_size_forward_backward_and_parameter_count(capsys):
    torch.manual_seed(0)
    model = MMCF("vit_base_patch16_224", num_regions=4, img_size=(384, 128), embed_layer=ReIDConvStemEmbed).train()
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode(torch.randn(1, 3, 384, 128), torch.tensor([False]))
    model.train()
    with capsys.disabled():
        print(f"\nMMCF paper size (ViT-B/16, conv stem, N=4, 384x128): {params / 1e6:.2f} M parameters, "
              f"{counter.get_total_flops() / 2e9:.1f} GMACs per image (paper: ~91.5 M, 31.6 GFLOPs)")
    assert 88e6 < params < 95e6
    out = model(vi_batch(visible=1, infrared=1, size=(384, 128)))["mmcf"]
    assert out["features"].shape == (3, 4 * 768) and model.backbone.grid_size == (24, 8)
    out["features"].pow(2).mean().backward()
    assert model.region_tokens.grad is not None and model.infrared_embed.proj[0].weight.grad is not None
    assert model.pa_cbam.channel.mlp[0].weight.grad is not None


# ----------------------------------------------------------------------------------- baseline contrast (§3.2)
def test_memory_contrast_hand_case_and_no_gradient_to_bank():
    q = torch.tensor([[3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    loss = memory_contrast(q, torch.tensor([0, 2]), bank, tau=0.5)
    # sample 0: logits (1, 0, 0.6)/0.5 -> target 0; sample 1: (0, 1, 0.8)/0.5 -> target 2
    l0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.2)))
    l1 = -math.log(math.exp(1.6) / (1 + math.exp(2) + math.exp(1.6)))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    loss.backward()
    assert bank.grad is None and q.grad is not None


# ----------------------------------------------------------------------------------------------- R_id (§3.3)
def test_identity_consistency_hand_case():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, -1])  # the outlier is ignored
    # normalised: e1, e1, e2 -> intra pairs (0,1),(1,0): 0; inter pairs: 4 × ‖e1 − e2‖² = 2
    loss = identity_consistency(a, labels)
    assert loss.item() == pytest.approx(0.0 - 2.0)
    loss.backward()
    assert torch.equal(a.grad[3], torch.zeros(2)) and bool(a.grad.isfinite().all())
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert identity_consistency(b, torch.tensor([5, 5])).item() == pytest.approx(2.0)  # no inter pair: pull only


def test_token_diversity_hand_case():
    e = torch.eye(2)
    tokens = torch.stack([torch.stack([e[0], -e[0], e[1]]), torch.stack([e[0], e[1], e[1] * 2])]).requires_grad_()
    # sample 0: |cos| over pairs (01, 02, 12) = (1, 0, 0); sample 1: (0, 0, 1) -> each Σ softmax(d)·d = e/(e+2)
    loss = token_diversity(tokens)
    assert loss.item() == pytest.approx(math.e / (math.e + 2))
    loss.backward()
    assert tokens.grad is not None
    assert token_diversity(tokens[:, :1]).item() == 0.0


# ------------------------------------------------------------------------------------------------ MAAL (§3.4)
def test_maal_losses_stop_gradients():
    torch.manual_seed(0)
    classifier = ModalityClassifier(4, hidden=8)
    features = torch.randn(6, 4, requires_grad=True)
    modality = torch.tensor([0, 0, 1, 1, 2, 2])
    mc = modality_classification_loss(classifier, features, modality)
    mc.backward()
    assert features.grad is None and all(p.grad is not None for p in classifier.parameters())
    classifier.zero_grad(set_to_none=True)
    ca = modality_confusion_loss(classifier, features)
    target = torch.full((6,), KINDS["channel_view"])
    assert ca.item() == pytest.approx(F.cross_entropy(classifier(features), target).item())
    ca.backward()
    assert features.grad is not None and all(p.grad is None for p in classifier.parameters())


def test_maal_alternating_step_on_a_toy_model():
    """The classifier step raises its accuracy; the backbone step (on β·L_ca) raises its confusion."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(20, 4) + torch.tensor([4.0, 0, 0, 0]) * s for s in (-1, 0, 1)])
    modality = torch.arange(3).repeat_interleave(20)
    encoder, classifier = nn.Linear(4, 4), ModalityClassifier(4, hidden=16)
    encoder_opt = torch.optim.SGD(encoder.parameters(), lr=0.5)
    classifier_opt = torch.optim.SGD(classifier.parameters(), lr=0.5)

    def accuracy() -> float:
        with torch.no_grad():
            return (classifier(encoder(x)).argmax(1) == modality).float().mean().item()

    start = accuracy()
    for _ in range(30):  # classifier steps only (β = 0: the warm-up of spec A8)
        maal_step(classifier, classifier_opt, encoder(x), modality, beta=0.0)
    trained = accuracy()
    assert trained > start and trained > 0.9
    frozen = [p.detach().clone() for p in classifier.parameters()]
    with torch.no_grad():
        confusion_before = modality_classification_loss(classifier, encoder(x), modality).item()
    for _ in range(10):  # backbone steps only, against the frozen classifier
        encoder_opt.zero_grad()
        (0.1 * modality_confusion_loss(classifier, encoder(x))).backward()
        encoder_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, classifier.parameters(), strict=True))
    assert accuracy() < trained
    with torch.no_grad():
        assert modality_classification_loss(classifier, encoder(x), modality).item() > confusion_before
    # one full alternation: the classifier step leaves the encoder as it was; β·L_ca carries the encoder graph
    encoder_now = [p.detach().clone() for p in encoder.parameters()]
    adversarial, classification = maal_step(classifier, classifier_opt, encoder(x), modality, beta=0.1)
    assert all(torch.equal(a, b) for a, b in zip(encoder_now, encoder.parameters(), strict=True))
    assert classification.requires_grad is False and adversarial.requires_grad
    assert adversarial.item() == pytest.approx(0.1 * modality_confusion_loss(classifier, encoder(x)).item())


# ------------------------------------------------------------------------------------------------- VRA (§3.5)
def test_regional_cluster_similarity_matches_pairwise_loop():
    torch.manual_seed(0)
    tokens_v, tokens_r = torch.randn(7, 3, 5), torch.randn(6, 3, 5)
    labels_v, labels_r = torch.tensor([0, 1, 0, 2, -1, 1, 2]), torch.tensor([1, 0, 0, -1, 1, 1])
    s = regional_cluster_similarity(tokens_v, labels_v, tokens_r, labels_r)
    assert s.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            pairs = [F.cosine_similarity(tokens_v[a, n], tokens_r[b, n], dim=0)
                     for n in range(3) for a in (labels_v == i).nonzero().flatten()
                     for b in (labels_r == j).nonzero().flatten()]
            assert s[i, j].item() == pytest.approx(torch.stack(pairs).mean().item(), abs=1e-6)


def test_shared_memories_hand_case():
    e = torch.eye(4)
    features_v = torch.stack([e[0], e[0], e[1], e[2]])  # clusters 0, 0, 1, 2
    labels_v = torch.tensor([0, 0, 1, 2])
    features_r = torch.stack([e[3], e[1] * 3])  # clusters 0, 1
    labels_r = torch.tensor([0, 1])
    v2r, r2v = [0, 1, 0], [[2, 0], [1]]  # IR 0 <- visible 2 (first) and 0; IR 1 <- visible 1
    phi_v, phi_r = shared_memories(features_v, labels_v, features_r, labels_r, v2r, r2v)
    n = lambda v: F.normalize(v, dim=0)  # noqa: E731
    # Φ^r_0 = mean(e3, e2 [vis 2], e0, e0 [vis 0]); Φ^r_1 = mean(e1 [IR], e1 [vis 1])
    torch.testing.assert_close(phi_r, torch.stack([n(e[3] + e[2] + 2 * e[0]), e[1]]))
    # Φ^v_0 = mean(e0, e0) (no IR cluster has visible 0 first); Φ^v_1 = e1 ∪ IR 1; Φ^v_2 = e2 ∪ IR 0
    torch.testing.assert_close(phi_v, torch.stack([e[0], e[1], n(e[2] + e[3])]))


def test_cross_modal_contrast_targets_and_greedy_match():
    torch.manual_seed(0)
    features_v, features_r = torch.randn(5, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    labels_v, labels_r = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([0, 1, 2, 1])
    similarity = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.7, 0.3, 0.2], [0.1, 0.2, 0.6]])
    v2r, r2v = greedy_match(similarity, mu=3)
    assert v2r.tolist() == [0, 1, 0, 2] and r2v == [[0, 2], [1], [3]]
    phi_v, phi_r = F.normalize(torch.randn(4, 6), dim=1), F.normalize(torch.randn(3, 6), dim=1)
    loss = cross_modal_contrast(features_v, labels_v, features_r, labels_r, phi_v, phi_r, v2r, r2v, tau=0.1)
    expected = (memory_contrast(features_v, torch.tensor([0, 1, 0, 2, 1]), phi_r, 0.1)
                + memory_contrast(features_r, torch.tensor([0, 1, 3, 1]), phi_v, 0.1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert features_v.grad is not None and features_r.grad is not None
    empty = cross_modal_contrast(features_v, labels_v, features_r[:0], labels_r[:0], phi_v, phi_r, v2r, r2v, 0.1)
    assert empty.item() == pytest.approx(memory_contrast(features_v, torch.tensor([0, 1, 0, 2, 1]), phi_r, 0.1).item())


# ------------------------------------------------------------------------------------------------ VRNL (§3.6)
def test_region_neighbours_hand_case():
    # two regions, 2-d tokens; query 0 = bank 0
    angle = lambda deg: torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg))])  # noqa: E731
    bank = torch.stack([torch.stack([angle(0), angle(0)]), torch.stack([angle(20), angle(60)]),
                        torch.stack([angle(90), angle(10)])])
    query = bank[:1]
    # region 0 cos: 1, .94, 0 -> > .9: {0, 1}; region 1 cos: 1, .5, .98 -> {0, 2}
    assert region_neighbours(query, bank, rho=0.9).tolist() == [[True, False, False]]
    assert region_neighbours(query, bank, rho=0.9, min_regions=1).tolist() == [[True, True, True]]
    far = torch.stack([torch.stack([angle(180), angle(180)])])  # all cosines <= 0 for the query itself
    assert region_neighbours(far, bank[1:], rho=0.9, self_index=torch.tensor([0]))[0, 0]


def test_camera_refine_hand_case():
    neighbours = torch.ones(2, 5, dtype=torch.bool)
    bank_cameras = torch.tensor([1, 1, 1, 2, 2])
    bank_local = torch.tensor([0, 0, 1, 0, -1])
    refined = camera_refine(neighbours, torch.tensor([1, 2]), bank_cameras, torch.tensor([0, -1]), bank_local,
                            self_index=torch.tensor([0, 4]))
    # query 0 (cam 1, local 0): drops bank 2 (cam 1, local 1); query 1 (cam 2, no local cluster): drops bank 3,
    # keeps itself (bank 4)
    assert refined.tolist() == [[True, True, False, True, True], [True, True, True, False, True]]


def test_neighbour_contrast_matches_loop_and_stops_bank_gradient():
    torch.manual_seed(0)
    q = torch.randn(3, 4, requires_grad=True)
    bank = torch.randn(5, 4, requires_grad=True)
    neighbours = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    loss = neighbour_contrast(q, bank, neighbours, tau=0.2)
    logits = F.normalize(q, dim=1) @ F.normalize(bank, dim=1).t() / 0.2
    per_query = [torch.stack([-F.log_softmax(logits[i], 0)[j] for j in neighbours[i].nonzero().flatten()]).mean()
                 for i in (0, 2)]
    assert loss.item() == pytest.approx(torch.stack(per_query).mean().item(), rel=1e-6)
    loss.backward()
    assert bank.grad is None and torch.equal(q.grad[1], torch.zeros(4))
    assert neighbour_contrast(q, bank, torch.zeros(3, 5, dtype=torch.bool)).item() == 0.0


# -------------------------------------------------------------------------------------------------- UM (§3.7)
def test_uniform_merge_hand_case():
    labels_v = np.array([0, 1, 2, -1, 3, 1])
    v2r = [1, 0, 1, 2]  # visible 0 and 2 share IR 1
    assert uniform_merge(labels_v, v2r).tolist() == [1, 0, 1, -1, 2, 0]


def test_merge_groups_and_alternating_partners():
    r2v = [[2, 0], [1], [3, 4, 5], [1]]  # IR 3 reuses visible 1 (matching's second pass)
    visible, infrared = merge_groups(r2v, num_visible=6)
    assert visible == [[2, 0], [3, 4, 5]] and infrared == [[1, 3]]
    # pairs: even epochs g0 -> g1, odd epochs g1 -> g0 (the parent's rule); triples rotate the pulled member
    assert merge_partners(visible, 6, epoch=0).tolist() == [-1, -1, 0, 4, -1, -1]
    assert merge_partners(visible, 6, epoch=1).tolist() == [2, -1, -1, -1, 5, -1]
    assert merge_partners(visible, 6, epoch=2).tolist() == [-1, -1, 0, -1, -1, 3]
    assert all((merge_partners(visible, 6, e) != np.arange(6)).all() for e in range(6))


def test_uniform_merging_loss_weights_and_skips():
    torch.manual_seed(0)
    features_v, features_r = torch.randn(4, 3, requires_grad=True), torch.randn(2, 3)
    labels_v, labels_r = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1])
    memory_v, memory_r = F.normalize(torch.randn(3, 3), dim=1), F.normalize(torch.randn(2, 3), dim=1)
    partner_v, partner_r = np.array([2, -1, -1]), np.array([-1, -1])
    loss = uniform_merging_loss(features_v, labels_v, memory_v, partner_v, features_r, labels_r, memory_r, partner_r,
                                tau=0.1)
    expected = 0.6 * memory_contrast(features_v[[0, 3]], torch.tensor([2, 2]), memory_v, 0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert torch.equal(features_v.grad[1], torch.zeros(3))
    both = uniform_merging_loss(features_v, labels_v, memory_v, partner_v, features_r, labels_r, memory_r,
                                np.array([1, -1]), tau=0.1)
    extra = 0.4 * memory_contrast(features_r[:1], torch.tensor([1]), memory_r, 0.1)
    assert both.item() == pytest.approx((expected + extra).item(), rel=1e-6)
