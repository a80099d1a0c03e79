"""Identity-balanced samplers: P identities × K instances per batch, single- or cross-modal, or over pseudo-labels.

Both samplers yield flat dataset indices, a whole number of batches per epoch, so a
``DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=True)`` gets
exactly the planned batches; :meth:`batches` returns them as lists. They are seeded
(``seed``) and reshuffle per epoch like ``DistributedSampler``: call ``set_epoch(epoch)`` before
iterating; the plan of an epoch depends only on ``(seed, epoch)``.

Distributed training: with ``num_replicas`` = R and ``rank`` = r every rank computes the same global
plan and takes its slice of identities of each batch (``p`` must be divisible by R), so the R
per-rank batches of a step hold disjoint identities and together form one P × K batch.

Indices whose pid is negative (e.g. DBSCAN outliers labelled -1) are never sampled.
:class:`SeededSampler` pairs every index with a per-sample augmentation seed (see
:mod:`reidlab.data.loading`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from reidlab.data.records import RGB, DataFormatError

Group = list[list[int]]  # the indices one identity contributes to a batch, one list per part


def _index_by_pid(pids: Sequence[int]) -> dict[int, list[int]]:
    by_pid: dict[int, list[int]] = {}
    for index, pid in enumerate(np.asarray(pids, dtype=np.int64).tolist()):
        if pid >= 0:
            by_pid.setdefault(pid, []).append(index)
    return by_pid


class _IdentityBatchSampler(Sampler[int]):
    """Shared machinery: seeding, epochs, per-rank slicing, flat iteration."""

    parts = 1  # index lists per identity group (cross-modal: visible, infrared)

    def __init__(self, p: int, k: int, seed: int, num_replicas: int, rank: int) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"need p >= 1 identities and k >= 1 instances per batch, got p={p}, k={k}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        if p % num_replicas:
            raise ValueError(f"p={p} identities per batch cannot be split evenly over {num_replicas} replicas")
        self.p, self.k, self.seed = p, k, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def batch_size(self) -> int:
        """Indices per batch on this rank."""
        return self.p // self.num_replicas * self.k * self.parts

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self, rng: np.random.Generator) -> list[list[Group]]:
        """Global batches, each a list of ``p`` identity groups."""
        raise NotImplementedError

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            share = self.p // self.num_replicas
            batches = []
            for groups in self._plan(rng):
                mine = groups[self.rank * share:(self.rank + 1) * share]
                # Part-major layout: all identities' part 0, then all identities' part 1.
                batches.append([i for part in range(self.parts) for group in mine for i in group[part]])
            self._cache = (epoch, batches)
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        return (i for batch in self.batches() for i in batch)

    def __len__(self) -> int:
        return len(self.batches()) * self.batch_size


class PKSampler(_IdentityBatchSampler):
    """P identities × K instances per batch, with torchreid ``RandomIdentitySampler`` semantics.

    Per epoch: each identity's indices are shuffled (an identity with fewer than K indices is
    first resampled *with replacement* to exactly K) and cut into chunks of K, dropping the
    incomplete remainder; then, while at least P identities have chunks left, P of them are chosen
    uniformly without replacement and each gives its next chunk. An epoch therefore has about
    ``sum_pid max(K, n_pid - n_pid % K) / (P K)`` batches — fewer when frequent identities are left
    over; ``len(sampler)`` is the exact count for the current epoch. Each batch is the K indices of
    its first identity, then the K of the second, and so on.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(p, k, seed, num_replicas, rank)
        self.index_by_pid = _index_by_pid(pids)
        if len(self.index_by_pid) < p:
            raise ValueError(f"PKSampler: {len(self.index_by_pid)} identities available, "
                             f"but a batch needs p={p} different identities")

    def _plan(self, rng: np.random.Generator) -> list[list[Group]]:
        chunks: dict[int, list[list[int]]] = {}
        for pid, indices in sorted(self.index_by_pid.items()):
            if len(indices) < self.k:
                order = rng.choice(indices, size=self.k, replace=True)
            else:
                order = rng.permutation(indices)
            order = order.tolist()
            chunks[pid] = [order[s:s + self.k] for s in range(0, len(order) - self.k + 1, self.k)]
        available = sorted(chunks)
        plan = []
        while len(available) >= self.p:
            chosen = rng.choice(len(available), size=self.p, replace=False)
            pids = [available[c] for c in chosen]
            plan.append([[chunks[pid].pop()] for pid in pids])
            available = [pid for pid in available if chunks[pid]]
        return plan


class CrossModalSampler(_IdentityBatchSampler):
    """P identities × (K visible + K infrared) per batch, as AGW's ``IdentitySampler``.

    ``modalities[i]`` is the modality of index ``i``: ``rgb`` is visible, ``nir``/``tir`` infrared.
    Every batch draws P identities uniformly without replacement (independently of other batches)
    and for each identity K visible and K infrared indices uniformly *with replacement*, as AGW
    does. An epoch has ``num_batches`` batches, by default AGW's ``N // (P K) + 1`` with N the
    larger of the visible and infrared counts. Batch layout: the first half holds the K visible
    indices of each identity in turn, the second half the K infrared indices in the same identity
    order — position ``i`` of the first half and position ``i`` of the second half share an identity.
    """

    parts = 2

    def __init__(self, pids: Sequence[int], modalities: Sequence[str], p: int, k: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, num_batches: int | None = None) -> None:
        super().__init__(p, k, seed, num_replicas, rank)
        if len(pids) != len(modalities):
            raise ValueError(f"got {len(pids)} pids but {len(modalities)} modalities")
        visible_pids = [pid if m == RGB else -1 for pid, m in zip(pids, modalities, strict=True)]
        infrared_pids = [pid if m != RGB else -1 for pid, m in zip(pids, modalities, strict=True)]
        self.visible = _index_by_pid(visible_pids)
        self.infrared = _index_by_pid(infrared_pids)
        one_sided = sorted(set(self.visible) ^ set(self.infrared))
        if one_sided:
            shown = ", ".join(map(str, one_sided[:10])) + (" ..." if len(one_sided) > 10 else "")
            raise DataFormatError(f"CrossModalSampler: {len(one_sided)} identities lack a visible or an infrared "
                                  f"sample (pids {shown}); every identity needs both")
        self.pids = sorted(self.visible)
        if len(self.pids) < p:
            raise ValueError(f"CrossModalSampler: {len(self.pids)} identities available, "
                             f"but a batch needs p={p} different identities")
        larger = max(sum(map(len, self.visible.values())), sum(map(len, self.infrared.values())))
        self.num_batches = larger // (p * k) + 1 if num_batches is None else num_batches

    def _plan(self, rng: np.random.Generator) -> list[list[Group]]:
        plan = []
        for _ in range(self.num_batches):
            chosen = rng.choice(len(self.pids), size=self.p, replace=False)
            groups = []
            for c in chosen:
                pid = self.pids[c]
                groups.append([rng.choice(self.visible[pid], size=self.k).tolist(),
                               rng.choice(self.infrared[pid], size=self.k).tolist()])
            plan.append(groups)
        return plan


class PseudoLabelSampler(_IdentityBatchSampler):
    """Unsupervised visible-infrared batches: P visible clusters × K and P infrared clusters × K, drawn independently.

    ``labels[i]`` is index ``i``'s pseudo-label *within its own modality* (visible and infrared are clustered
    separately, so label 3 of one modality has nothing to do with label 3 of the other; ``-1`` = outlier, never
    sampled); ``infrared[i]`` says which. Every batch draws P clusters of each modality without replacement and K
    indices of each cluster with replacement, as the cluster-contrast VI-ReID peers (ADCA, PGM, TokenMatcher) do;
    an epoch is ``num_batches`` batches (the peers' fixed iteration count). Layout: the P × K visible indices, then
    the P × K infrared ones. Nothing here reads an identity label.
    """

    parts = 2

    def __init__(self, labels: Sequence[int], infrared: Sequence[bool], p: int, k: int, num_batches: int,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(p, k, seed, num_replicas, rank)
        if len(labels) != len(infrared):
            raise ValueError(f"got {len(labels)} labels but {len(infrared)} modality flags")
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        labels, infrared = np.asarray(labels, dtype=np.int64), np.asarray(infrared, dtype=bool)
        self.visible = _index_by_pid(np.where(infrared, -1, labels))
        self.infrared = _index_by_pid(np.where(infrared, labels, -1))
        for name, clusters in (("visible", self.visible), ("infrared", self.infrared)):
            if len(clusters) < p:
                raise ValueError(f"PseudoLabelSampler: {len(clusters)} {name} clusters, but a batch needs p={p}")
        self.num_batches = num_batches

    def _plan(self, rng: np.random.Generator) -> list[list[Group]]:
        visible, infrared = sorted(self.visible), sorted(self.infrared)
        plan = []
        for _ in range(self.num_batches):
            chosen_v = rng.choice(len(visible), size=self.p, replace=False)
            chosen_r = rng.choice(len(infrared), size=self.p, replace=False)
            plan.append([[rng.choice(self.visible[visible[a]], size=self.k).tolist(),
                          rng.choice(self.infrared[infrared[b]], size=self.k).tolist()]
                         for a, b in zip(chosen_v, chosen_r, strict=True)])
        return plan


class SeededSampler(Sampler[tuple[int, int]]):
    """Wraps an index sampler to yield ``(index, sample_seed)`` pairs.

    The seeds of an epoch are drawn from ``(seed, epoch, rank)`` alone, one per position, so an
    index sampled twice gets two different augmentations, and a dataset that seeds its
    augmentation from ``sample_seed`` (:class:`~reidlab.data.loading.ReIDDataset`) produces the
    same batches for any number of DataLoader workers. ``set_epoch`` is forwarded to the wrapped
    sampler.
    """

    def __init__(self, sampler: Sampler[int], seed: int = 0) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    @property
    def batch_size(self) -> Any:
        return getattr(self.sampler, "batch_size", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = [int(i) for i in self.sampler]
        rank = getattr(self.sampler, "rank", 0)
        state = np.random.SeedSequence([self.seed, self.epoch, rank]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state))
        seeds = torch.randint(0, 2**62, (len(indices),), generator=generator).tolist()
        return iter(zip(indices, seeds, strict=True))

    def __len__(self) -> int:
        return len(self.sampler)
