"""ReID losses against hand-computed cases and naive reference loops."""

import math

import pytest
import torch

from reidlab.losses import (
    CrossEntropyLabelSmooth,
    ReIDCriterion,
    TripletLoss,
    WeightedRegularizedTriplet,
    euclidean_distances,
)

# Four points on a line, two identities: ids 0 at x=0 and x=1, ids 1 at x=3 and x=5.
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 1])
# Hardest positive / nearest negative per anchor, read off the line.
D_AP = torch.tensor([1.0, 1.0, 2.0, 2.0])
D_AN = torch.tensor([3.0, 2.0, 2.0, 4.0])


def test_euclidean_distances_match_cdist():
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64)
    unit = x / x.norm(dim=1, keepdim=True)
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    for dist, points in ((euclidean_distances(x), x), (euclidean_distances(x, normalize=True), unit)):
        assert dist.dtype == torch.float32
        assert torch.allclose(dist[off_diagonal], torch.cdist(points, points).float()[off_diagonal], atol=1e-5)
        assert dist.diagonal().max() < 1e-3  # float32 cancellation in |x|² + |x|² - 2 x·x, clamped at 1e-12


def test_batch_hard_triplet_hand_computed():
    loss = TripletLoss(margin=0.3)(POINTS, LABELS)
    # max(0, d_ap - d_an + 0.3): 0, 0, 0.3, 0
    assert loss.item() == pytest.approx(0.3 / 4, abs=1e-5)
    loss = TripletLoss(margin=1.5)(POINTS, LABELS)
    assert loss.item() == pytest.approx((0 + 0.5 + 1.5 + 0) / 4, abs=1e-5)


def test_soft_margin_is_log_one_plus_exp():
    loss = TripletLoss(margin=None)(POINTS, LABELS)
    expected = torch.log1p(torch.exp(D_AP - D_AN)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_triplet_brute_force_random_batch():
    torch.manual_seed(0)
    x, labels = torch.randn(12, 6), torch.arange(4).repeat_interleave(3)
    dist = torch.cdist(x, x)
    expected = []
    for i in range(12):
        ap = max(dist[i, j] for j in range(12) if labels[j] == labels[i])
        an = min(dist[i, j] for j in range(12) if labels[j] != labels[i])
        expected.append(max(0.0, float(ap - an) + 0.3))
    assert TripletLoss(0.3)(x, labels).item() == pytest.approx(sum(expected) / 12, abs=1e-5)


def _naive_wrt(x, labels):
    dist = torch.cdist(x.double(), x.double())
    losses = []
    for i in range(len(x)):
        pos = [j for j in range(len(x)) if labels[j] == labels[i]]
        neg = [j for j in range(len(x)) if labels[j] != labels[i]]
        wp = [math.exp(dist[i, j]) for j in pos]
        wn = [math.exp(-dist[i, j]) for j in neg]
        d_p = sum(w * dist[i, j] for w, j in zip(wp, pos, strict=True)) / sum(wp)
        d_n = sum(w * dist[i, j] for w, j in zip(wn, neg, strict=True)) / sum(wn)
        losses.append(math.log1p(math.exp(d_p - d_n)))
    return sum(losses) / len(losses)


def test_weighted_regularized_triplet_matches_naive_loop():
    torch.manual_seed(1)
    x, labels = torch.randn(10, 4), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    # The reference adds 1e-6 to the softmax normaliser: a relative difference of ~1e-6.
    assert WeightedRegularizedTriplet()(x, labels).item() == pytest.approx(_naive_wrt(x, labels), rel=1e-4)
    assert WeightedRegularizedTriplet()(POINTS, LABELS).item() == pytest.approx(_naive_wrt(POINTS, LABELS), rel=1e-4)


def test_label_smoothing_formula():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    eps, classes = 0.1, 3
    log_p = torch.log_softmax(logits, dim=1)
    q = torch.full((2, 3), eps / classes)
    q[0, 0] += 1 - eps
    q[1, 1] += 1 - eps
    expected = -(q * log_p).sum(dim=1).mean()
    assert CrossEntropyLabelSmooth(classes, eps)(logits, labels).item() == pytest.approx(expected.item(), abs=1e-6)
    plain = -log_p[[0, 1], [0, 1]].mean()
    assert CrossEntropyLabelSmooth(classes, 0.0)(logits, labels).item() == pytest.approx(plain.item(), abs=1e-6)


def test_label_smoothing_rejects_bad_labels_and_widths():
    with pytest.raises(ValueError, match="num_classes=4"):
        CrossEntropyLabelSmooth(4)(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        CrossEntropyLabelSmooth(3)(torch.zeros(2, 3), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="epsilon"):
        CrossEntropyLabelSmooth(3, epsilon=1.0)


@pytest.mark.parametrize("loss", [TripletLoss(0.3), TripletLoss(None), WeightedRegularizedTriplet(),
                                  TripletLoss(0.3, normalize=True)])
def test_metric_losses_have_finite_gradients(loss):
    x = torch.randn(8, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss(torch.cat([x[:1], x[:1], x[2:]]), labels).backward()  # two identical samples: zero distance
    assert torch.isfinite(x.grad).all()


def test_metric_losses_need_two_identities():
    with pytest.raises(ValueError, match="at least two identities"):
        TripletLoss()(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_metric_losses_ignore_autocast_precision():
    x, labels = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = TripletLoss(None)(x, labels)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(TripletLoss(None)(x, labels).item(), abs=1e-6)


def _outputs():
    torch.manual_seed(2)
    return {"features": {"rgb": torch.randn(4, 3), "nir": torch.randn(4, 3)},
            "logits": {"rgb": torch.randn(4, 5), "nir": torch.randn(4, 5)},
            "embeddings": {"fused": torch.randn(4, 6)}}


def test_reid_criterion_names_and_weights():
    outputs, batch = _outputs(), {"label": torch.tensor([0, 0, 3, 3])}
    ce, tri = CrossEntropyLabelSmooth(5), TripletLoss(0.3)
    terms = ReIDCriterion(ce, tri, id_weight=0.5, metric_weight=2.0)(outputs, batch)
    assert list(terms) == ["id/rgb", "id/nir", "tri/rgb", "tri/nir"]
    assert terms["id/nir"].item() == pytest.approx(0.5 * ce(outputs["logits"]["nir"], batch["label"]).item())
    assert terms["tri/rgb"].item() == pytest.approx(2.0 * tri(outputs["features"]["rgb"], batch["label"]).item())
    only_rgb = ReIDCriterion(ce, WeightedRegularizedTriplet(), names=["rgb"])(outputs, batch)
    assert list(only_rgb) == ["id/rgb", "wrt/rgb"]
    assert list(ReIDCriterion(None, tri)(outputs, batch)) == ["tri/rgb", "tri/nir"]


def test_reid_criterion_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\['tir'\] are in neither"):
        ReIDCriterion(CrossEntropyLabelSmooth(5), TripletLoss(), names=["tir"])(_outputs(), {"label": LABELS})
