"""DDP on CPU: two gloo processes under torchrun train like one process on the full batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlab.engine import distributed
from reidlab.engine.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_distributed() is False
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    assert distributed.sampler_kwargs() == {"num_replicas": 1, "rank": 0}
    assert distributed.all_gather_objects("x") == ["x"] and distributed.broadcast_object(3) == 3
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_PORT.*torchrun"):
        distributed.init_distributed()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).parent / "ddp_worker.py"), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return out, ranks


def test_ranks_end_identical_and_saw_different_samples(ddp_run):
    out, (rank0, rank1) = ddp_run
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert all(torch.equal(rank0["state"][k], rank1["state"][k]) for k in rank0["state"])
    assert rank0["history"] == rank1["history"]  # loss terms averaged over ranks, metrics broadcast from rank 0
    assert [r.get("evaluated_on") for r in rank0["history"]["records"]] == [None, None, 0.0]  # after the last epoch
    losses = [r["loss"] for r in rank0["history"]["records"]]
    assert losses[-1] < losses[0]
    for reads0, reads1 in zip(rank0["reads"], rank1["reads"], strict=True):
        assert reads0 and reads1 and not set(reads0) & set(reads1)


def test_ddp_equals_one_process_on_the_full_batch(ddp_run, tmp_path):
    _, (rank0, rank1) = ddp_run
    single = ddp_worker.train(tmp_path)
    assert single["world_size"] == 1
    for key, value in single["state"].items():
        assert torch.allclose(rank0["state"][key], value, atol=1e-5), key
    for epoch, reads in enumerate(single["reads"]):
        assert sorted(reads) == sorted(rank0["reads"][epoch] + rank1["reads"][epoch])
    ddp_losses = [r["loss"] for r in rank0["history"]["records"]]
    assert [r["loss"] for r in single["history"]["records"]] == pytest.approx(ddp_losses, abs=1e-5)


def test_rank0_wrote_the_run_and_unsharded_loaders_are_refused(ddp_run):
    out, (rank0, rank1) = ddp_run
    run = out / "run"
    assert sorted(p.name for p in run.iterdir()) == ["DONE", "checkpoint.pt", "config.json", "final.pt",
                                                     "history.json"]
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["epoch"] == 3 and len(checkpoint["rng"]) == 2
    assert not any(k.startswith("module.") for k in checkpoint["model"])
    for result in (rank0, rank1):
        assert "built for rank 0 of 1" in result["refused"] and "num_replicas=world_size()" in result["refused"]
