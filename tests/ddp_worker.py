"""A tiny DDP training run for tests/test_distributed.py.

``torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT`` trains on CPU with gloo and writes
``OUT/rank<r>.pt`` (final weights, history, the dataset indices each rank read per epoch); the test
also calls :func:`train` in its own process (world size 1) for the single-process reference.

The model has no batch-dependent layers and the loss is a per-sample mean (cross-entropy), so the DDP
run (mean of the ranks' gradients over their half batches) equals one process on the full P x K batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidlab.data.samplers import PKSampler, SeededSampler
from reidlab.engine import distributed
from reidlab.engine.trainer import TrainConfig, fit
from reidlab.losses import CrossEntropyLabelSmooth, ReIDCriterion

NUM_IDS, PER_ID, DIM = 8, 4, 6
CONFIG = {"epochs": 3, "optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "constant",
          "seed": 0, "checkpoint_every": 1}


class Points(Dataset):
    """Fixed random points, 4 per identity; records which indices were read in each epoch."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(7)
        self.labels = torch.arange(NUM_IDS).repeat_interleave(PER_ID)
        self.points = torch.randn(NUM_IDS, DIM, generator=generator)[self.labels] + 0.3 * torch.randn(
            len(self.labels), DIM, generator=generator)
        self.reads: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, _ = key
        self.reads[-1].append(index)
        return {"images": self.points[index], "label": self.labels[index], "index": index}


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(DIM, DIM)
        self.classifier = nn.Linear(DIM, NUM_IDS)

    def forward(self, batch: dict) -> dict:
        features = self.embed(batch["images"])
        return {"features": {"x": features}, "embeddings": {"x": features}, "logits": {"x": self.classifier(features)}}


def train(out: Path) -> dict:
    dataset = Points()
    sampler = PKSampler(dataset.labels.tolist(), p=4, k=2, seed=0, **distributed.sampler_kwargs())
    loader = DataLoader(dataset, batch_size=sampler.batch_size, sampler=SeededSampler(sampler, 0), drop_last=True)
    torch.manual_seed(0)
    model = Linear()
    criterion = ReIDCriterion(CrossEntropyLabelSmooth(NUM_IDS, epsilon=0.0), None)

    def new_epoch(epoch: int, model: nn.Module, loader: DataLoader) -> None:
        dataset.reads.append([])

    history = fit(model, criterion, loader, TrainConfig.from_dict(CONFIG), run_dir=out / "run",
                  evaluate=lambda m: {"evaluated_on": distributed.rank()}, epoch_hook=new_epoch, progress=False)
    return {"state": model.state_dict(), "history": history.to_dict(), "reads": dataset.reads,
            "world_size": distributed.world_size()}


def check_unsharded_loader_is_refused(out: Path) -> str:
    dataset = Points()
    sampler = PKSampler(dataset.labels.tolist(), p=4, k=2, seed=0)  # not split across ranks
    loader = DataLoader(dataset, batch_size=sampler.batch_size, sampler=SeededSampler(sampler, 0), drop_last=True)
    try:
        fit(Linear(), ReIDCriterion(CrossEntropyLabelSmooth(NUM_IDS), None), loader, TrainConfig.from_dict(CONFIG),
            run_dir=out / "refused", progress=False)
    except ValueError as error:
        return str(error)
    return ""


def main(out: Path) -> None:
    assert distributed.init_distributed(), "run me under torchrun"
    try:
        result = {"refused": check_unsharded_loader_is_refused(out), **train(out)}
        torch.save(result, out / f"rank{distributed.rank()}.pt")
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
