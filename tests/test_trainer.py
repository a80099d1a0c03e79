"""The training loop: determinism, resume after an interruption, the run cache, NaN stops, clipping, hooks."""

import json
import logging
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidlab.data.samplers import PKSampler, SeededSampler
from reidlab.engine.checkpoint import load_checkpoint
from reidlab.engine.trainer import History, TrainConfig, fit, to_device
from reidlab.losses import CrossEntropyLabelSmooth, ReIDCriterion, TripletLoss

NUM_IDS, PER_ID, DIM = 6, 4, 8
TIMING = ("seconds", "images_per_s")


class TinyDataset(Dataset):
    """Contract-shaped samples: two modalities of 3x4x4 images, noise seeded by the sampler's sample seed."""

    def __init__(self):
        generator = torch.Generator().manual_seed(123)
        self.labels = torch.arange(NUM_IDS).repeat_interleave(PER_ID)
        self.base = torch.randn(NUM_IDS, 1, 3, 4, 4, generator=generator)[self.labels]
        self.base = self.base + 0.5 * torch.randn(len(self.labels), 2, 3, 4, 4, generator=generator)
        self.reads = 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, key):
        index, seed = key
        self.reads += 1
        noise = 0.1 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
        images = self.base[index] + noise
        return {"images": images, "present": torch.ones(2, dtype=torch.bool), "label": self.labels[index],
                "pid": self.labels[index], "index": index, "views": {"flipped": images.flip(-1)}}


def make_loader(dataset=None, seed=0):
    dataset = dataset or TinyDataset()
    sampler = PKSampler(dataset.labels.tolist(), p=3, k=2, seed=seed)
    return DataLoader(dataset, batch_size=sampler.batch_size, sampler=SeededSampler(sampler, seed), drop_last=True)


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 16, 16), nn.ReLU(), nn.Dropout(0.3),
                                      nn.Linear(16, DIM))
        self.bnneck = nn.BatchNorm1d(DIM)
        self.classifier = nn.Linear(DIM, NUM_IDS, bias=False)

    def forward(self, batch):
        features = self.backbone(batch["images"] + batch["views"]["flipped"])
        embeddings = self.bnneck(features)
        logits = self.classifier(embeddings)
        return {"features": {"x": features}, "embeddings": {"x": embeddings}, "logits": {"x": logits}}


class CenterCriterion(nn.Module):
    """CE + triplet, plus a learnable centre (a criterion with parameters of its own)."""

    def __init__(self):
        super().__init__()
        self.reid = ReIDCriterion(CrossEntropyLabelSmooth(NUM_IDS), TripletLoss(0.3))
        self.center = nn.Parameter(torch.zeros(DIM))

    def forward(self, outputs, batch):
        terms = self.reid(outputs, batch)
        terms["center/x"] = 0.01 * (outputs["features"]["x"] - self.center).pow(2).mean()
        return terms


def build(seed=0):
    torch.manual_seed(seed)
    return TinyModel(), CenterCriterion()


def probe(model):
    """A metric that depends on every weight: the mean embedding of fixed inputs."""
    inputs = torch.linspace(-1, 1, 2 * 2 * 3 * 16).reshape(2, 2, 3, 4, 4)
    with torch.no_grad():
        embedding = model({"images": inputs, "views": {"flipped": inputs}})["embeddings"]["x"]
    assert not model.training
    return {"probe": float(embedding.mean()), "norm": float(embedding.norm())}


def config(**overrides):
    values = {"epochs": 4, "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1, "warmup_factor": 0.1,
              "schedule": "step", "milestones": [3], "eval_every": 1, "grad_clip": 5.0, "seed": 3}
    return TrainConfig.from_dict({**values, **overrides})


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_timing(history: History) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history.records]


def test_config_round_trip_and_errors():
    cfg = config(lr_groups={"backbone.": 0.1}, milestones=[2, 3])
    assert cfg.milestones == (2, 3)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['epoch', 'lr_decay'\]; valid keys: epochs"):
        TrainConfig.from_dict({"epoch": 3, "lr_decay": 0.1})
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, adamw"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="lr must be float, got '1e-3'.*write 1.0e-3"):
        TrainConfig(lr="1e-3")
    with pytest.raises(ValueError, match="warmup_epochs >= 0"):
        TrainConfig(warmup_epochs=-1)
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, off"):
        TrainConfig(amp="fp16")


def test_same_seed_same_run_and_history_contents():
    runs = []
    for _ in range(2):
        model, criterion = build()
        runs.append((fit(model, criterion, make_loader(), config(), evaluate=probe, progress=False), model))
    (h1, m1), (h2, m2) = runs
    assert same_state(m1.state_dict(), m2.state_dict())
    assert without_timing(h1) == without_timing(h2)
    assert [r["epoch"] for r in h1.records] == [0, 1, 2, 3]
    assert [r["lr"] for r in h1.records] == pytest.approx([0.005, 0.05, 0.05, 0.005])
    assert set(h1.last) == {"epoch", "lr", "loss", "id/x", "tri/x", "center/x", "probe", "norm", *TIMING, "amp"}
    assert h1.last["amp"] is False and h1.last["images_per_s"] > 0
    assert h1.last["loss"] == pytest.approx(h1.last["id/x"] + h1.last["tri/x"] + h1.last["center/x"])
    assert h1.records[-1]["loss"] < h1.records[0]["loss"]
    model, criterion = build()
    other = fit(model, criterion, make_loader(), config(seed=4), progress=False)
    assert other.last["loss"] != h1.last["loss"]


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, capsys):
    model, criterion = build()
    reference = fit(model, criterion, make_loader(), config(), run_dir=tmp_path / "a", evaluate=probe, progress=False)

    def interrupt_at_2(epoch, model, loader):
        if epoch == 2:
            raise KeyboardInterrupt

    run_dir = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        fit(*build(), make_loader(), config(), run_dir=run_dir, evaluate=probe, epoch_hook=interrupt_at_2,
            progress=False)
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "DONE").exists()
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 2

    seen = []
    stale = run_dir / ".checkpoint.pt.0123abcd.tmp"  # the partial file of a write killed mid-way
    stale.write_bytes(b"partial")
    capsys.readouterr()
    resumed_model, resumed_criterion = build(seed=99)  # different initial weights: all come from the checkpoint
    resumed = fit(resumed_model, resumed_criterion, make_loader(), config(), run_dir=run_dir, evaluate=probe,
                  epoch_hook=lambda epoch, m, loader: seen.append(epoch), progress=False)
    captured = capsys.readouterr()
    assert f"resuming {run_dir} after epoch 2/4" in captured.out + captured.err  # said even with progress off
    assert not stale.exists()
    assert seen == [2, 3]  # the hook runs again for the resumed epoch
    assert same_state(resumed_model.state_dict(), model.state_dict())
    assert same_state(resumed_criterion.state_dict(), criterion.state_dict())
    assert without_timing(resumed) == without_timing(reference)


def test_finished_run_is_loaded_not_retrained(tmp_path):
    model, criterion = build()
    trained = fit(model, criterion, make_loader(), config(epochs=2), run_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DONE", "checkpoint.pt", "config.json", "final.pt",
                                                          "history.json"]
    assert not trained.cached

    calls = []
    fresh_model, fresh_criterion = build(seed=5)
    cached = fit(fresh_model, fresh_criterion, make_loader(), config(epochs=2), run_dir=tmp_path,
                 epoch_hook=lambda *args: calls.append(args), progress=False)
    assert cached.cached and calls == [] and cached.records == trained.records
    assert same_state(fresh_model.state_dict(), model.state_dict())
    assert torch.equal(fresh_criterion.center, criterion.center)

    forced = fit(*build(), make_loader(), config(epochs=2), run_dir=tmp_path, force=True,
                 epoch_hook=lambda *args: calls.append(args), progress=False)
    assert len(calls) == 2 and not forced.cached

    with pytest.raises(ValueError, match=r"different TrainConfig \(lr: 0.05 there, 0.1 now\).*force=True"):
        fit(*build(), make_loader(), config(epochs=2, lr=0.1), run_dir=tmp_path, progress=False)


def test_criterion_parameters_are_trained():
    model, criterion = build()
    fit(model, criterion, make_loader(), config(epochs=2), progress=False)
    assert criterion.center.abs().sum() > 0


class NanAt(nn.Module):
    """The criterion's triplet term becomes NaN at one global step."""

    def __init__(self, step):
        super().__init__()
        self.inner, self.step, self.calls = CenterCriterion(), step, 0

    def forward(self, outputs, batch):
        terms = self.inner(outputs, batch)
        if self.calls == self.step:
            terms["tri/x"] = terms["tri/x"] * float("nan")
        self.calls += 1
        return terms


def test_non_finite_loss_stops_with_a_clear_error():
    loader = make_loader()
    per_epoch = len(loader)
    model, _ = build()
    with pytest.raises(FloatingPointError, match=r"epoch 2 \(index 1\), iteration 1: tri/x \(.*tri/x=nan"):
        fit(model, NanAt(per_epoch + 1), loader, config(), progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step never reached the weights


def test_gradient_clipping_bounds_each_update():
    loader = make_loader()
    steps = len(loader)
    movement = {}
    for clip in (None, 1e-3):
        model, criterion = build()
        before = torch.cat([p.detach().flatten().clone() for p in [*model.parameters(), *criterion.parameters()]])
        fit(model, criterion, loader, config(epochs=1, warmup_epochs=0, lr=1.0, momentum=0.0, weight_decay=0.0,
                                             grad_clip=clip, milestones=[]), progress=False)
        after = torch.cat([p.detach().flatten() for p in [*model.parameters(), *criterion.parameters()]])
        movement[clip] = float((after - before).norm())
    assert movement[1e-3] <= steps * 1e-3 * (1 + 1e-4)
    assert movement[None] > 100 * movement[1e-3]


def test_epoch_hook_can_replace_the_loader_and_sampler_epochs_advance():
    replacement = TinyDataset()
    epochs_seen = []

    def recluster(epoch, model, loader):
        assert isinstance(model, TinyModel)
        epochs_seen.append((epoch, loader.sampler.epoch))
        return make_loader(replacement) if epoch == 1 else None

    loader = make_loader()
    fit(*build(), loader, config(epochs=3), epoch_hook=recluster, progress=False)
    assert loader.dataset.reads == len(loader) * loader.batch_size  # only epoch 0 read the first loader
    plan = PKSampler(replacement.labels.tolist(), p=3, k=2, seed=0)
    assert replacement.reads == sum(len(plan.batches(e)) for e in (1, 2)) * loader.batch_size
    assert epochs_seen == [(0, 0), (1, 0), (2, 1)]  # the replacement loader was set to epoch 1, then 2


def test_history_json_round_trip_and_frame(tmp_path):
    history = fit(*build(), make_loader(), config(epochs=2), evaluate=probe, progress=False)
    path = history.save(tmp_path / "history.json")
    loaded = History.load(path)
    assert loaded.records == history.records
    frame = history.to_frame()
    assert list(frame.index) == [0, 1] and frame.loc[1, "probe"] == history.last["probe"]
    with pytest.raises(ValueError, match="no epochs"):
        _ = History().last


def test_to_device_moves_nested_tensors():
    batch = {"images": torch.zeros(2, 3), "views": {"a": torch.ones(2)}, "ids": [torch.zeros(1), "x"], "n": 3}
    moved = to_device(batch, torch.device("meta"))
    assert moved["images"].is_meta and moved["views"]["a"].is_meta and moved["ids"][0].is_meta
    assert moved["ids"][1] == "x" and moved["n"] == 3


def test_amp_is_float32_on_cpu_and_logged(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="reidlab"):
        history = fit(*build(), make_loader(), config(epochs=2, amp="bf16"), progress=True)
    progress = capsys.readouterr().err
    assert "epoch 1/2" in progress and "epoch 2/2" in progress and "tri/x=" in progress
    assert [r["amp"] for r in history.records] == [False, False]
    assert "amp='bf16' on cpu: training in float32" in caplog.text
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epoch_lines) == 2 and epoch_lines[1].startswith("epoch 2/2: lr ")
    assert "tri/x" in epoch_lines[0] and "img/s" in epoch_lines[0]


def test_metric_names_must_not_clash_with_history_fields():
    with pytest.raises(ValueError, match=r"reserved.*\['loss'\]|\['loss'\].*reserved"):
        fit(*build(), make_loader(), config(epochs=1), evaluate=lambda m: {"loss": 1.0}, progress=False)


class ReservedName(nn.Module):
    def forward(self, outputs, batch):
        return {"loss": outputs["logits"]["x"].logsumexp(1).mean()}


def test_loss_terms_must_not_clash_with_history_fields():
    model, _ = build()
    with pytest.raises(ValueError, match=r"not named epoch, lr, loss.*got \['loss'\]"):
        fit(model, ReservedName(), make_loader(), config(epochs=1), progress=False)


def test_empty_loader_is_a_clear_error():
    dataset = TinyDataset()
    loader = DataLoader(dataset, batch_size=len(dataset) + 1, drop_last=True)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(*build(), loader, config(epochs=1), progress=False)


def test_deterministic_flag_is_restored():
    assert not torch.are_deterministic_algorithms_enabled()
    history = fit(*build(), make_loader(), config(epochs=1, deterministic=True), progress=False)
    assert math.isfinite(history.last["loss"]) and not torch.are_deterministic_algorithms_enabled()
