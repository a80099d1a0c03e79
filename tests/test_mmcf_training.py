"""MMCF's unsupervised training (reidlab.engine.mmcf, reidlab.methods.mmcf): the pseudo-label sampler, the two-phase
learning-rate schedule, the cross-modal cluster matching on hand-computed cases, the label-hiding dataset, and the
smoke recipe end to end — no identity label is read (shuffled pids give the same weights), the phase switch, the
ablation switches, the builder's checks, the criterion's extra state and resume after an interruption."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from reidlab.data.loading import ReIDDataset, build_test_loader
from reidlab.data.records import RGB, relabel
from reidlab.data.samplers import PseudoLabelSampler
from reidlab.data.transforms import build_test_transform
from reidlab.engine import distributed, experiment, trainer
from reidlab.engine.checkpoint import load_checkpoint
from reidlab.engine.experiment import load_data, train, train_transform
from reidlab.engine.memory import greedy_match
from reidlab.engine.mmcf import MMCFCriterion, match_clusters
from reidlab.engine.optim import LRSchedule
from reidlab.engine.trainer import TrainConfig
from reidlab.methods import build_method
from reidlab.models.mmcf import MMCF
from reidlab.recipes import load_recipe

TIMING = ("seconds", "images_per_s")
MODALITIES = ("rgb", "nir")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One synthetic SYSU-MM01 tree for the whole module (rendered on first use)."""
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture
def runs(tmp_path, monkeypatch, data_dir):
    """Synthetic trees in ``data_dir``, runs cached under ``tmp_path``; ``runs(name)`` switches the run cache."""
    monkeypatch.setenv("REIDLAB_DATA", str(data_dir))

    def use(name: str = "runs"):
        monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path / name))
        return tmp_path / name

    use()
    return use


@pytest.fixture(scope="module")
def smoke_run(data_dir, tmp_path_factory):
    """The smoke recipe trained once (2 epochs, phase 2 from epoch 1); tests only read it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REIDLAB_DATA", str(data_dir))
        mp.setenv("REIDLAB_RUNS", str(tmp_path_factory.mktemp("reference")))
        return train(load_recipe("mmcf", "smoke"), force=True, progress=False)


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def same_pseudo_labels(a: dict, b: dict) -> bool:
    """Criterion histories equal in their labels and matchings (the step's seconds differ)."""
    if sorted(a) != sorted(b):
        return False
    return all({k for k in a[e] if k != "seconds"} == {k for k in b[e] if k != "seconds"}
               and all(torch.equal(a[e][k], b[e][k]) for k in a[e] if k != "seconds") for e in a)


def visible_rows(run) -> torch.Tensor:
    return torch.tensor([r.modality == RGB for r in run.split.train])


# ------------------------------------------------------------------------------------------ PseudoLabelSampler
# visible rows 0-7: clusters 0, 0, 1, 1, 2, 2 and two outliers; infrared rows 8-15: clusters 0, 0, 0, 1, 1, an
# outlier, 2, 2 (label 0 of one modality has nothing to do with label 0 of the other)
LABELS = [0, 0, 1, 1, 2, 2, -1, -1, 0, 0, 0, 1, 1, -1, 2, 2]
INFRARED = [False] * 8 + [True] * 8


def test_pseudo_label_sampler_batch_layout_and_outliers():
    p, k = 2, 3
    sampler = PseudoLabelSampler(LABELS, INFRARED, p=p, k=k, num_batches=5, seed=1)
    assert sampler.batch_size == 2 * p * k and len(sampler) == 5 * 2 * p * k
    batches = sampler.batches(0)
    assert len(batches) == 5
    labels, infrared = np.array(LABELS), np.array(INFRARED)
    for batch in batches:
        assert len(batch) == 2 * p * k
        visible_half, infrared_half = np.array(batch[:p * k]), np.array(batch[p * k:])
        assert not infrared[visible_half].any() and infrared[infrared_half].all()
        for half in (visible_half, infrared_half):
            assert (labels[half] >= 0).all()  # outliers sit the epoch out
            groups = labels[half].reshape(p, k)
            assert (groups == groups[:, :1]).all()  # k instances of one cluster each
            assert len(set(groups[:, 0].tolist())) == p  # p different clusters
    seen = {i for batch in sampler.batches(0) for i in batch}
    assert not seen & {6, 7, 13}
    assert list(iter(sampler)) == [i for batch in batches for i in batch]


def test_pseudo_label_sampler_is_deterministic_per_seed_and_epoch():
    def make(seed):
        return PseudoLabelSampler(LABELS, INFRARED, p=2, k=2, num_batches=6, seed=seed)

    a, b = make(3), make(3)
    assert a.batches(0) == b.batches(0) and a.batches(4) == b.batches(4)
    assert a.batches(0) != a.batches(1)
    assert make(3).batches(0) != make(4).batches(0)
    b.set_epoch(1)
    assert list(iter(b)) == [i for batch in a.batches(1) for i in batch]


def test_pseudo_label_sampler_errors():
    with pytest.raises(ValueError, match="3 visible clusters, but a batch needs p=4"):
        PseudoLabelSampler(LABELS, INFRARED, p=4, k=2, num_batches=1)
    only_two_infrared = LABELS[:8] + [0, 0, 1, 1, 1, -1, -1, -1]
    with pytest.raises(ValueError, match="2 infrared clusters, but a batch needs p=3"):
        PseudoLabelSampler(only_two_infrared, INFRARED, p=3, k=2, num_batches=1)
    with pytest.raises(ValueError, match="16 labels but 15 modality flags"):
        PseudoLabelSampler(LABELS, INFRARED[:-1], p=2, k=2, num_batches=1)
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        PseudoLabelSampler(LABELS, INFRARED, p=2, k=2, num_batches=0)


# --------------------------------------------------------------------------------------------- LR restarts
def test_step_schedule_with_a_restart_hand_computed():
    schedule = LRSchedule(10, "step", milestones=[2, 7], gamma=0.1, restarts=[5], restart_factor=0.1)
    expected = [1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    assert [schedule.factor(e) for e in range(10)] == pytest.approx(expected)
    # restart_factor 0.5 tells the restart from the first milestone's decay: phase 2 starts at 0.5, not 0.1
    half = LRSchedule(10, "step", milestones=[2, 7], gamma=0.1, restarts=[5], restart_factor=0.5)
    assert [half.factor(e) for e in range(10)] == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.05, 0.05, 0.05])
    # two restarts, each x0.5 on top of the last
    constant = LRSchedule(6, "constant", restarts=[2, 4], restart_factor=0.5)
    assert [constant.factor(e) for e in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_cosine_spans_each_phase_and_warmup_is_phase_one_only():
    half = [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]  # 1, 0.854, 0.5, 0.146
    cosine = LRSchedule(8, "cosine", restarts=[4], restart_factor=0.1)
    assert [cosine.factor(e) for e in range(8)] == pytest.approx(half + [0.1 * f for f in half])
    warm = LRSchedule(8, "cosine", warmup_epochs=2, warmup_factor=0.1, restarts=[4], restart_factor=0.1)
    # warm-up 0.1, 0.55; then the cosine over epochs 2-3 (t = 0, 1/2); phase 2 without warm-up over epochs 4-7
    assert [warm.factor(e) for e in range(8)] == pytest.approx([0.1, 0.55, 1.0, 0.5] + [0.1 * f for f in half])
    step = LRSchedule(6, "step", warmup_epochs=2, warmup_factor=0.5, restarts=[3], restart_factor=0.1)
    assert [step.factor(e) for e in range(6)] == pytest.approx([0.5, 0.75, 1.0, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("restarts, warmup", [([5, 3], 0), ([3, 3], 0), ([0], 0), ([10], 0), ([12], 0), ([2], 2)])
def test_invalid_restarts_raise(restarts, warmup):
    with pytest.raises(ValueError, match="restarts must be increasing epochs after the warm-up"):
        LRSchedule(10, "step", warmup_epochs=warmup, restarts=restarts)


def test_train_config_round_trips_its_restarts():
    config = TrainConfig(epochs=10, restarts=[5], restart_factor=0.1)
    assert config.restarts == (5,) and config.restart_factor == 0.1
    assert config.to_dict()["restarts"] == [5]
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_train_config_schedule_applies_its_restarts():
    config = TrainConfig(epochs=10, schedule="step", milestones=[2, 7], restarts=[5], restart_factor=0.5)
    expected = [1, 1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.05, 0.05, 0.05]
    assert [config.lr_schedule().factor(e) for e in range(10)] == pytest.approx(expected)


def test_train_config_rejects_invalid_restarts():
    with pytest.raises(ValueError, match="restarts must be increasing"):
        TrainConfig(epochs=10, restarts=[12])


# --------------------------------------------------------------------------------------------- match_clusters
# visible clusters (rows) x infrared clusters (columns); every visible cluster prefers IR cluster 0
SIMILARITY = np.array([[0.9, 0.1],
                       [0.8, 0.2],
                       [0.7, 0.3],
                       [0.6, 0.5]])


def test_greedy_matching_caps_each_infrared_cluster_at_mu():
    # pairs by decreasing similarity: rows 0, 1, 2 fill IR cluster 0 (mu = 3), row 3 falls to IR cluster 1
    v2r, r2v = match_clusters(SIMILARITY, mu=3)
    assert v2r == [0, 0, 0, 1] and r2v == [[0, 1, 2], [3]]
    # mu = 2: rows 0, 1 fill cluster 0; then (3, 1) = 0.5 before (2, 1) = 0.3 -> cluster 1 gets 3 then 2
    v2r, r2v = match_clusters(SIMILARITY, mu=2)
    assert v2r == [0, 0, 1, 1] and r2v == [[0, 1], [3, 2]]
    # an IR cluster that nobody picked takes, in the second pass, its most similar visible cluster again
    v2r, r2v = match_clusters(SIMILARITY[:3], mu=3)
    assert v2r == [0, 0, 0] and r2v == [[0, 1, 2], [2]]
    assert match_clusters(torch.tensor(SIMILARITY), mu=3) == match_clusters(SIMILARITY, mu=3)  # a tensor works too


def test_greedy_matching_mirrored_when_infrared_has_more_clusters():
    # 2 visible x 4 IR: the transpose of SIMILARITY; the IR clusters are matched (capped) to the visible ones
    v2r, r2v = match_clusters(SIMILARITY.T, mu=3)
    assert v2r == [0, 3]  # each visible cluster: one IR partner, its first (most similar) one
    assert r2v == [[0], [0], [0], [1]]  # each IR cluster: a list
    assert all(len(partners) == 1 for partners in r2v)


def test_hungarian_matching_covers_every_infrared_cluster():
    # round 1: the optimal one-to-one on exp(-S) takes (0, 0) and (3, 1); round 2 on rows 1, 2: (1, 0), (2, 1)
    v2r, r2v = match_clusters(SIMILARITY, mu=3, method="hungarian")
    assert v2r == [0, 0, 1, 1] and r2v == [[0, 1], [3, 2]]  # most similar first
    # where greedy (mu = 3) sends all three rows to cluster 0, hungarian's first round covers cluster 1
    v2r, r2v = match_clusters(SIMILARITY[:3], mu=3, method="hungarian")
    assert v2r == [0, 0, 1] and r2v == [[0, 1], [2]]
    assert all(r2v)
    v2r, r2v = match_clusters(SIMILARITY.T, mu=3, method="hungarian")  # mirrored
    assert v2r == [0, 3] and r2v == [[0], [0], [1], [1]]


def test_matching_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="matching must be one of greedy, hungarian, got 'optimal'"):
        match_clusters(SIMILARITY, mu=3, method="optimal")


# ------------------------------------------------------------------------------------------------ the dataset
def test_dataset_without_identities_hides_pid_and_label(runs):
    split = load_data(load_recipe("mmcf", "smoke"))
    records = split.train[:4]
    transform = build_test_transform((32, 16))
    shown = ReIDDataset(records, transform, MODALITIES, relabel(split.train))
    hidden = ReIDDataset(records, transform, MODALITIES, relabel(split.train), identities=False)
    for i, record in enumerate(records):
        assert shown[i]["pid"] == record.pid and shown[i]["label"] >= 0
        assert hidden[i]["pid"] == -1 and hidden[i]["label"] == -1
        assert hidden[i]["camid"] == record.camid and hidden[i]["index"] == i
        assert torch.equal(hidden[i]["images"], shown[i]["images"])
    batch = next(iter(build_test_loader(records, transform, 4, modalities=MODALITIES, identities=False)))
    assert (batch["pid"] == -1).all() and (batch["label"] == -1).all()


# ------------------------------------------------------------------------------------------------- epoch hook
def fresh_method():
    """(recipe, split, model, criterion, the first loader) of the smoke recipe, as ``train`` builds them."""
    recipe = load_recipe("mmcf", "smoke")
    split = load_data(recipe)
    torch.manual_seed(0)
    model, criterion = build_method(recipe, 0, split.modalities)
    model.train()
    first = build_test_loader(split.train, train_transform(recipe), modalities=model.modalities, identities=False)
    return recipe, split, model, criterion, first


def test_epoch_hook_builds_a_label_free_pseudo_label_loader(runs):
    recipe, split, model, criterion, first = fresh_method()
    assert int(model.bn.num_batches_tracked) == 0
    loader = criterion.epoch_hook(0, model, first)
    assert model.training and int(model.bn.num_batches_tracked) == 1  # the fresh BNNeck was calibrated, once
    p, k = recipe.data["p"], recipe.data["k"]
    assert isinstance(loader.sampler.sampler, PseudoLabelSampler) and len(loader) == recipe.data["iters"]
    labels = criterion.history[0]["labels"]
    assert labels.shape == (len(split.train),) and "v2r" not in criterion.history[0]  # phase 1
    for batch in loader:
        assert (batch["pid"] == -1).all() and (batch["label"] == -1).all()
        assert len(batch["index"]) == 2 * p * k
        infrared = batch["present"][:, 1]
        assert not infrared[:p * k].any() and infrared[p * k:].all()
        groups = labels[batch["index"]].view(2 * p, k)
        assert (groups >= 0).all() and (groups == groups[:, :1]).all()


def test_epoch_hook_loader_is_sharded_under_ddp(runs, monkeypatch):
    recipe, split, model, criterion, first = fresh_method()
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)  # rank 1 of 2, without a process group
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    loader = criterion.epoch_hook(0, model, first)
    inner = loader.sampler.sampler
    assert (inner.num_replicas, inner.rank) == (2, 1)
    assert loader.batch_size == recipe.data["p"] // 2 * recipe.data["k"] * 2
    trainer._check_sampler(loader)  # what fit runs on the hook's loader


# ------------------------------------------------------------------------------------------- smoke training
def test_no_identity_label_is_read(runs, monkeypatch, smoke_run):
    """Shuffling every training record's pid changes nothing: same weights, same losses, same pseudo-labels."""
    recipe = load_recipe("mmcf", "smoke")
    original = load_data

    def shuffled_load_data(recipe):
        split = original(recipe)
        pids = np.random.default_rng(7).permutation([r.pid for r in split.train]).tolist()
        train_records = [dataclasses.replace(r, pid=int(pid)) for r, pid in zip(split.train, pids, strict=True)]
        assert sum(a.pid != b.pid for a, b in zip(split.train, train_records, strict=True)) > len(pids) // 2
        return dataclasses.replace(split, train=train_records)

    runs("plain")
    plain = train(recipe, force=True, progress=False)
    monkeypatch.setattr(experiment, "load_data", shuffled_load_data)
    runs("shuffled")
    shuffled = train(recipe, force=True, progress=False)
    assert [r.pid for r in shuffled.split.train] != [r.pid for r in plain.split.train]
    assert plain.run_dir != shuffled.run_dir
    assert same_state(plain.model.state_dict(), shuffled.model.state_dict())
    assert same_state(plain.criterion.state_dict(), shuffled.criterion.state_dict())
    assert without_timing(plain.history.records) == without_timing(shuffled.history.records)
    assert same_pseudo_labels(plain.criterion.history, shuffled.criterion.history)
    # and so does the module's reference run (trained earlier, in another run cache)
    assert same_state(plain.model.state_dict(), smoke_run.model.state_dict())


def test_phase_two_switches_on_at_phase2_start(smoke_run):
    first, second = smoke_run.history.records
    assert smoke_run.criterion.phase2_start == 1
    assert first["vra"] == first["vrnl"] == first["um"] == 0.0
    assert second["vra"] > 0 and second["vrnl"] > 0 and second["um"] > 0
    assert first["maal"] == 0.0 and second["maal"] > 0  # maal_warmup = 1: the backbone's β·L_ca joins at epoch 1
    for record in (first, second):
        assert record["base"] > 0 and record["div"] > 0 and record["r_id"] != 0
        assert math.isfinite(record["loss"])
    history = smoke_run.criterion.history
    assert sorted(history) == [0, 1]
    assert "v2r" not in history[0]
    visible = visible_rows(smoke_run)
    labels = history[1]["labels"]
    assert labels.shape == (len(smoke_run.split.train),)
    clusters_v, clusters_r = int(labels[visible].max()) + 1, int(labels[~visible].max()) + 1
    v2r = history[1]["v2r"]
    assert v2r.shape == (clusters_v,)  # one IR partner per visible cluster
    assert ((v2r >= 0) & (v2r < clusters_r)).all()


def test_ablation_switches_turn_their_terms_off(runs, smoke_run):
    run = train(load_recipe("mmcf", "smoke", {"loss.vra": 0.0, "loss.vrnl": 0.0, "loss.um": 0.0}), force=True,
                progress=False)
    for record in run.history.records:
        assert record["vra"] == record["vrnl"] == record["um"] == 0.0
        assert record["base"] > 0
    assert "v2r" not in run.criterion.history[1]  # nothing to match without VRA and UM

    run = train(load_recipe("mmcf", "smoke", {"model.pa_cbam": False}), force=True, progress=False)
    assert run.model.pa_cbam is None
    assert all(record["r_id"] == 0.0 for record in run.history.records)
    assert all(record["r_id"] != 0.0 for record in smoke_run.history.records)
    assert run.history.records[1]["vra"] > 0  # the rest of the method is still on

    run = train(load_recipe("mmcf", "smoke", {"loss.maal": False}), force=True, progress=False)
    assert run.criterion.classifier is None and run.criterion.classifier_optimizer is None
    assert all(record["maal"] == 0.0 for record in run.history.records)


def test_recipe_restart_lowers_the_phase_two_learning_rate(runs):
    recipe = load_recipe("mmcf", "smoke", {"train.restarts": [1], "train.restart_factor": 0.1})
    run = train(recipe, force=True, progress=False)
    assert [r["lr"] for r in run.history.records] == pytest.approx([1e-3, 1e-4])


# ---------------------------------------------------------------------------------------------- the builder
def test_builder_checks_the_recipe(runs):
    recipe = load_recipe("mmcf", "smoke")
    model, criterion = build_method(recipe, 0, MODALITIES)
    assert isinstance(model, MMCF) and isinstance(criterion, MMCFCriterion)
    assert criterion.phase2_start == 1 and (criterion.p, criterion.k, criterion.iters) == (2, 2, 2)

    with pytest.raises(ValueError, match="MMCF needs data.pipeline = unsupervised"):
        build_method(load_recipe("mmcf", "smoke", {"data.pipeline": "cross_modal"}), 0, MODALITIES)
    no_pipeline = load_recipe("mmcf", "smoke")
    del no_pipeline.data["pipeline"]
    with pytest.raises(ValueError, match="MMCF needs data.pipeline = unsupervised"):
        build_method(no_pipeline, 0, MODALITIES)

    mismatch = load_recipe("mmcf", "smoke", {"train.epochs": 3, "train.restarts": [2]})
    with pytest.raises(ValueError, match=r"restarts at epoch 2 but phase 2 starts at loss.phase2_start = 1"):
        build_method(mismatch, 0, MODALITIES)
    build_method(load_recipe("mmcf", "smoke", {"train.restarts": [1]}), 0, MODALITIES)  # matching: accepted

    typo = load_recipe("mmcf", "smoke")
    typo.loss["vrx"] = 0.1  # the schema refuses it in an override; the builder must too
    with pytest.raises(ValueError, match=r"unknown loss keys \['vrx'\] for MMCF"):
        build_method(typo, 0, MODALITIES)
    with pytest.raises(ValueError, match="matching must be one of greedy, hungarian"):
        build_method(load_recipe("mmcf", "smoke", {"loss.matching": "optimal"}), 0, MODALITIES)


def test_profiles_keep_restarts_at_phase2_start():
    for profile in ("tutorial", "paper"):
        recipe = load_recipe("mmcf", profile)
        assert recipe.data["pipeline"] == "unsupervised"
        assert recipe.train["restarts"] == [recipe.loss["phase2_start"]]
        assert recipe.loss["phase2_start"] < recipe.train["epochs"]
        config = TrainConfig.from_dict(recipe.train)
        assert config.restarts == (recipe.loss["phase2_start"],) and config.restart_factor == 0.1


# ------------------------------------------------------------------------------------- state and calibration
def test_extra_state_round_trip(runs, smoke_run):
    state = smoke_run.criterion.state_dict()
    assert "_extra_state" in state
    _, fresh = build_method(smoke_run.recipe, 0, MODALITIES)
    assert fresh.history == {}
    fresh.load_state_dict(state)
    assert same_pseudo_labels(fresh.history, smoke_run.criterion.history)
    for epoch, record in smoke_run.criterion.history.items():  # every entry, the step's timing included
        assert fresh.history[epoch].keys() == record.keys()
        assert all(torch.equal(fresh.history[epoch][k], v) for k, v in record.items())
    restored, trained = fresh.classifier_optimizer.state_dict(), smoke_run.criterion.classifier_optimizer.state_dict()
    assert restored["param_groups"] == trained["param_groups"] and restored["state"]
    for key, values in trained["state"].items():
        assert torch.equal(restored["state"][key]["momentum_buffer"], values["momentum_buffer"])
    assert same_state(fresh.state_dict(), state)


def test_calibrate_feature_norm_sets_the_running_statistics():
    torch.manual_seed(0)
    model = MMCF("vit_tutorial", num_regions=2, img_size=(32, 16), reduction=8).train()
    generator = torch.Generator().manual_seed(1)
    scale = torch.linspace(0.5, 3.0, model.feature_dim)
    raw = torch.randn(64, model.feature_dim, generator=generator) * scale + torch.linspace(-2, 2, model.feature_dim)
    assert int(model.bn.num_batches_tracked) == 0
    out = model.calibrate_feature_norm(raw)
    torch.testing.assert_close(model.bn.running_mean, raw.mean(0))
    torch.testing.assert_close(model.bn.running_var, raw.var(0))
    assert int(model.bn.num_batches_tracked) == 1
    assert model.bn.training  # its mode is left as it was
    assert out.shape == raw.shape
    torch.testing.assert_close(out.mean(0), torch.zeros(model.feature_dim), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0), torch.ones(model.feature_dim), atol=1e-4, rtol=0)
    # the model's eval features now go through the calibrated statistics
    model.eval()
    torch.testing.assert_close(model.bn(raw), out)


# ------------------------------------------------------------------------------------------------- resume
def test_resume_after_interruption_matches_the_uninterrupted_run(runs, monkeypatch, smoke_run):
    recipe = load_recipe("mmcf", "smoke")
    hook = MMCFCriterion.epoch_hook

    def interrupt_at_1(self, epoch, model, loader):
        if epoch == 1:
            raise KeyboardInterrupt
        return hook(self, epoch, model, loader)

    run_root = runs("interrupted")
    with monkeypatch.context() as patch:
        patch.setattr(MMCFCriterion, "epoch_hook", interrupt_at_1)
        with pytest.raises(KeyboardInterrupt):
            train(recipe, progress=False)
    [directory] = [d for d in run_root.iterdir() if d.is_dir()]
    assert (directory / "checkpoint.pt").exists() and not (directory / "DONE").exists()
    assert load_checkpoint(directory / "checkpoint.pt")["epoch"] == 1

    seen = []

    def record_epochs(self, epoch, model, loader):
        seen.append(epoch)
        return hook(self, epoch, model, loader)

    monkeypatch.setattr(MMCFCriterion, "epoch_hook", record_epochs)
    resumed = train(recipe, progress=False)  # continues from the checkpoint
    assert seen == [1]  # epoch 0 came from the checkpoint, not retrained
    assert resumed.run_dir == directory and (directory / "DONE").exists()
    assert same_state(resumed.model.state_dict(), smoke_run.model.state_dict())
    assert same_state(resumed.criterion.state_dict(), smoke_run.criterion.state_dict())
    assert without_timing(resumed.history.records) == without_timing(smoke_run.history.records)
    assert same_pseudo_labels(resumed.criterion.history, smoke_run.criterion.history)


def test_greedy_overflow_gives_leftover_rows_their_best_column():
    # 4 visible clusters, 1 infrared cluster, mu = 2: pass 1 places two rows; without overflow it is an error
    similarity = np.array([[0.9], [0.8], [0.7], [0.6]])
    with pytest.raises(ValueError, match="cannot give each"):
        greedy_match(similarity, 2)
    row_to_col, col_to_rows = greedy_match(similarity, 2, overflow=True)
    assert row_to_col.tolist() == [0, 0, 0, 0]
    assert col_to_rows == [[0, 1, 2, 3]]  # the capped ones first, then the overflow in row order
    v2r, r2v = match_clusters(similarity, 2)  # match_clusters overflows: training never stops on such an epoch
    assert v2r == [0, 0, 0, 0] and r2v == [[0, 1, 2, 3]]


def test_oracle_labels_are_each_modalitys_true_identities(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_RUNS", str(tmp_path))
    recipe = load_recipe("mmcf", profile="smoke", overrides={"loss.oracle": True})
    run = train(recipe, progress=False)
    pids = np.array([r.pid for r in run.split.train])
    infrared = np.array([r.modality != RGB for r in run.split.train])
    for epoch, record in run.criterion.history.items():
        labels = record["labels"].numpy()
        for side in (~infrared, infrared):
            assert (labels[side] >= 0).all()  # no outlier: every sample has its identity
            _, expected = np.unique(pids[side], return_inverse=True)
            assert np.array_equal(labels[side], expected.ravel()), f"epoch {epoch}"
