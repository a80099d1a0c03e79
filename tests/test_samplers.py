"""P×K identity samplers (torchreid / AGW semantics), epochs, distributed slices, sample seeds."""

from collections import Counter

import pytest
from torch.utils.data import DataLoader

from reidlab.data.records import DataFormatError
from reidlab.data.samplers import CrossModalSampler, PKSampler, SeededSampler

# pid -> number of samples: plenty, a remainder (6 = 4 + 2), exactly K, fewer than K.
COUNTS = {10: 9, 11: 6, 12: 4, 13: 2, 14: 8, 15: 5}
PIDS = [pid for pid, n in COUNTS.items() for _ in range(n)]


def chunks(batch, k):
    return [batch[i:i + k] for i in range(0, len(batch), k)]


def test_pk_batches_hold_p_identities_times_k_instances():
    sampler = PKSampler(PIDS, p=3, k=4, seed=0)
    batches = sampler.batches()
    assert batches and all(len(b) == 12 for b in batches)
    for batch in batches:
        groups = chunks(batch, 4)
        assert all(len({PIDS[i] for i in g}) == 1 for g in groups)  # K consecutive indices of one identity
        assert len({PIDS[g[0]] for g in groups}) == 3  # P different identities


def test_pk_epoch_follows_random_identity_sampler_rules():
    sampler = PKSampler(PIDS, p=2, k=4, seed=1)
    for epoch in range(5):
        used = Counter(i for b in sampler.batches(epoch) for i in b)
        by_pid = Counter()
        for i, n in used.items():
            by_pid[PIDS[i]] += n
            if COUNTS[PIDS[i]] >= 4:
                assert n == 1, "an index of an identity with >= K samples is used at most once per epoch"
        assert by_pid[11] <= 4  # 6 samples: one chunk of 4, the remainder of 2 is dropped
        assert by_pid[13] in (0, 4)  # 2 samples: resampled with replacement to one chunk of K = 4
        assert all(n % 4 == 0 for n in by_pid.values())
    assert sum(by_pid.values()) == len(sampler) == len(list(sampler))


def test_pk_identity_with_fewer_than_k_samples_is_resampled_with_replacement():
    pids = [0, 0, 1, 1, 1, 1]
    sampler = PKSampler(pids, p=2, k=4, seed=0)
    (batch,) = sampler.batches()
    few = [i for i in batch if pids[i] == 0]
    assert len(few) == 4 and set(few) <= {0, 1} and len(set(few)) <= 2


def test_pk_determinism_and_reshuffle_per_epoch():
    a, b = PKSampler(PIDS, 3, 2, seed=7), PKSampler(PIDS, 3, 2, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKSampler(PIDS, 3, 2, seed=8)) != first


def test_pk_ignores_negative_pids():
    pids = [-1] * 5 + [0] * 4 + [1] * 4
    flat = list(PKSampler(pids, p=2, k=2, seed=0))
    assert flat and all(pids[i] >= 0 for i in flat)


def test_pk_argument_errors():
    with pytest.raises(ValueError, match="6 identities available, but a batch needs p=7"):
        PKSampler(PIDS, p=7, k=2)
    with pytest.raises(ValueError, match="split evenly"):
        PKSampler(PIDS, p=3, k=2, num_replicas=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(PIDS, p=2, k=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="p >= 1"):
        PKSampler(PIDS, p=0, k=2)


def test_pk_distributed_ranks_split_each_batch_by_identity():
    whole = PKSampler(PIDS, p=4, k=2, seed=3)
    ranks = [PKSampler(PIDS, p=4, k=2, seed=3, num_replicas=2, rank=r) for r in range(2)]
    assert ranks[0].batch_size == 4 and len(ranks[0]) == len(ranks[1]) == len(whole) // 2
    for full, b0, b1 in zip(whole.batches(), ranks[0].batches(), ranks[1].batches(), strict=True):
        assert b0 + b1 == full
        assert not {PIDS[i] for i in b0} & {PIDS[i] for i in b1}


def test_pk_with_a_dataloader_gives_the_planned_batches():
    sampler = PKSampler(PIDS, p=3, k=2, seed=0)
    loader = DataLoader(list(range(len(PIDS))), batch_size=sampler.batch_size, sampler=sampler, drop_last=True)
    assert [b.tolist() for b in loader] == sampler.batches() and len(loader) == len(sampler.batches())


# ---------------------------------------------------------------------------------------------
# Cross-modal (AGW IdentitySampler)

def cross_modal_data():
    pids, mods = [], []
    for pid, (n_vis, n_ir) in {0: (5, 3), 1: (2, 6), 2: (4, 4), 3: (7, 1), -1: (3, 3)}.items():
        pids += [pid] * (n_vis + n_ir)
        mods += ["rgb"] * n_vis + ["nir"] * n_ir
    return pids, mods


def test_cross_modal_batch_layout_pairs_visible_and_infrared_of_one_identity():
    pids, mods = cross_modal_data()
    sampler = CrossModalSampler(pids, mods, p=2, k=3, seed=0)
    assert sampler.batch_size == 12
    assert sampler.num_batches == 21 // 6 + 1  # AGW: max(#visible, #infrared) // (P K) + 1 (outliers excluded)
    for batch in sampler.batches():
        visible, infrared = batch[:6], batch[6:]
        assert all(mods[i] == "rgb" for i in visible) and all(mods[i] == "nir" for i in infrared)
        assert [pids[i] for i in visible] == [pids[i] for i in infrared]
        assert all(pids[i] >= 0 for i in batch)
        groups = chunks(visible, 3)
        assert all(len({pids[i] for i in g}) == 1 for g in groups) and len({pids[g[0]] for g in groups}) == 2
    assert len(sampler) == len(list(sampler)) == sampler.num_batches * 12


def test_cross_modal_samples_with_replacement_within_an_identity():
    pids, mods = [0, 0, 1, 1], ["rgb", "tir", "rgb", "tir"]  # RegDB-style thermal, one image per side
    batch = CrossModalSampler(pids, mods, p=2, k=4, seed=0).batches()[0]
    assert Counter(batch) == Counter({0: 4, 1: 4, 2: 4, 3: 4})


def test_cross_modal_determinism_reshuffle_and_distributed():
    pids, mods = cross_modal_data()
    a = CrossModalSampler(pids, mods, p=2, k=2, seed=5, num_batches=4)
    assert list(a) == list(CrossModalSampler(pids, mods, p=2, k=2, seed=5, num_batches=4))
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    ranks = [CrossModalSampler(pids, mods, p=2, k=2, seed=5, num_batches=4, num_replicas=2, rank=r)
             for r in range(2)]
    a.set_epoch(0)
    for full, b0, b1 in zip(a.batches(), ranks[0].batches(), ranks[1].batches(), strict=True):
        assert b0[:2] + b1[:2] + b0[2:] + b1[2:] == full  # visible halves, then infrared halves
        assert pids[b0[0]] != pids[b1[0]]


def test_cross_modal_errors():
    pids, mods = cross_modal_data()
    with pytest.raises(DataFormatError, match=r"lack a visible or an infrared sample \(pids 7\)"):
        CrossModalSampler(pids + [7, 7], mods + ["rgb", "rgb"], p=2, k=2)
    with pytest.raises(ValueError, match="4 identities available, but a batch needs p=5"):
        CrossModalSampler(pids, mods, p=5, k=2)
    with pytest.raises(ValueError, match="modalities"):
        CrossModalSampler(pids, mods[:-1], p=2, k=2)


# ---------------------------------------------------------------------------------------------
# Per-sample augmentation seeds

def test_seeded_sampler_pairs_indices_with_epoch_seeds():
    inner = PKSampler([0, 0, 1, 1], p=2, k=4, seed=0)  # every index appears twice
    seeded = SeededSampler(inner, seed=1)
    pairs = list(seeded)
    assert [i for i, _ in pairs] == list(inner) and len(seeded) == len(inner)
    assert len({s for _, s in pairs}) == len(pairs), "repeated indices must get different seeds"
    assert pairs == list(SeededSampler(PKSampler([0, 0, 1, 1], p=2, k=4, seed=0), seed=1))
    seeded.set_epoch(1)
    assert inner.epoch == 1
    assert [s for _, s in seeded] != [s for _, s in pairs]
    assert seeded.batch_size == 8


def test_seeded_sampler_seeds_differ_between_ranks():
    pids, mods = cross_modal_data()
    seeds = [[s for _, s in SeededSampler(CrossModalSampler(pids, mods, 2, 2, 0, num_replicas=2, rank=r), 0)]
             for r in range(2)]
    assert not set(seeds[0]) & set(seeds[1])
