"""Optimizer parameter groups and the per-epoch learning-rate schedule, against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from reidlab.engine.optim import LRSchedule, build_optimizer, parameter_groups


def _net():
    net = nn.Module()
    net.backbone = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net.head = nn.Linear(4, 2)
    net.frozen = nn.Linear(2, 2)
    net.frozen.requires_grad_(False)
    return net


def _lrs(schedule, epochs):
    return [schedule.factor(e) for e in range(epochs)]


def test_warmup_then_step_hand_computed():
    schedule = LRSchedule(8, "step", warmup_epochs=2, warmup_factor=0.1, milestones=(4, 6), gamma=0.1)
    assert _lrs(schedule, 8) == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_step_decay_applies_during_warmup_as_bag_of_tricks():
    schedule = LRSchedule(4, "step", warmup_epochs=2, warmup_factor=0.5, milestones=(1,), gamma=0.1)
    assert _lrs(schedule, 4) == pytest.approx([0.5, 0.075, 0.1, 0.1])


def test_cosine_with_and_without_warmup():
    plain = LRSchedule(4, "cosine", min_factor=0.0)
    assert _lrs(plain, 4) == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(math.pi / 4)) / 2])
    warm = LRSchedule(6, "cosine", warmup_epochs=2, warmup_factor=0.01, min_factor=0.1)
    expected = [0.01, 0.505] + [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert _lrs(warm, 6) == pytest.approx(expected)


def test_constant_schedule_and_validation():
    assert _lrs(LRSchedule(3, "constant", warmup_epochs=1, warmup_factor=0.2), 3) == pytest.approx([0.2, 1, 1])
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        LRSchedule(3, "linear")
    assert _lrs(LRSchedule(2, "cosine", warmup_epochs=4, warmup_factor=0.2), 2) == pytest.approx([0.2, 0.4])
    with pytest.raises(ValueError, match="warmup_epochs >= 0"):
        LRSchedule(3, "step", warmup_epochs=-1)
    with pytest.raises(ValueError, match="increasing"):
        LRSchedule(9, "step", milestones=(5, 2))


def test_schedule_sets_every_group_with_its_multiplier():
    optimizer = build_optimizer(_net().named_parameters(), "sgd", lr=0.1, lr_groups={"backbone.": 0.1})
    schedule = LRSchedule(10, "step", milestones=(5,), gamma=0.5)
    schedule.apply(optimizer, 7)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"backbone. x0.1": 0.005, "* x1": 0.05})


def test_groups_by_pattern_first_match_wins_and_frozen_left_out():
    net = _net()
    groups = parameter_groups(net.named_parameters(), lr=1.0, weight_decay=0.5,
                              lr_groups={r"backbone\.0": 0.1, "backbone": 0.5})
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {r"backbone\.0 x0.1", "backbone x0.5", "* x1"}
    assert {id(p) for p in by_name[r"backbone\.0 x0.1"]["params"]} == {id(p) for p in net.backbone[0].parameters()}
    assert {id(p) for p in by_name["backbone x0.5"]["params"]} == {id(p) for p in net.backbone[1].parameters()}
    assert {id(p) for p in by_name["* x1"]["params"]} == {id(p) for p in net.head.parameters()}
    assert by_name["backbone x0.5"]["base_lr"] == 0.5


def test_no_decay_on_bias_and_norm():
    net = _net()
    groups = parameter_groups(net.named_parameters(), lr=1.0, weight_decay=0.5, no_decay_bias_norm=True)
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.5 for p in g["params"]}
    assert decayed == {id(net.backbone[0].weight), id(net.head.weight)}
    assert sum(len(g["params"]) for g in groups) == 6  # 4 backbone + 2 head; the frozen layer is left out


def test_unmatched_pattern_and_bad_names_are_errors():
    with pytest.raises(ValueError, match=r"\['neck\.'\] match no trainable parameter"):
        parameter_groups(_net().named_parameters(), 1.0, 0.0, {"neck.": 0.1})
    with pytest.raises(ValueError, match="match no trainable parameter"):
        parameter_groups(_net().named_parameters(), 1.0, 0.0, {"frozen": 0.1})
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer(_net().named_parameters(), "rmsprop")


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])
def test_optimizer_kinds(name, kind):
    optimizer = build_optimizer(_net().named_parameters(), name, lr=0.01, weight_decay=1e-4, momentum=0.8,
                                nesterov=True)
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-4
    if name == "sgd":
        assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.8


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_multi_tensor_optimizers_match_the_per_tensor_loop_bit_for_bit(name):
    """build_optimizer uses torch's foreach implementation; the weights are those of the plain loop."""
    torch.manual_seed(0)
    nets = [_net(), _net()]
    nets[1].load_state_dict(nets[0].state_dict())
    initial = nets[0].head.weight.detach().clone()
    options = dict(lr=0.05, weight_decay=1e-2, momentum=0.8, nesterov=True, lr_groups={"head.": 0.5},
                   no_decay_bias_norm=True)
    ours = build_optimizer(nets[0].named_parameters(), name, **options)
    loop = build_optimizer(nets[1].named_parameters(), name, **options)
    assert ours.defaults["foreach"] is True
    for group in loop.param_groups:
        group["foreach"] = False
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 3, generator=generator)
        for net, optimizer in zip(nets, (ours, loop), strict=True):
            optimizer.zero_grad()
            net.head(net.backbone(x)).square().mean().backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values(),
                                                 strict=True))
    assert not torch.equal(nets[0].head.weight, initial)  # the steps did move the weights
