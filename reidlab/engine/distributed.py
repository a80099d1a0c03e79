"""Multi-process data-parallel training under ``torchrun`` (DDP).

Launch a script with ``torchrun --nproc_per_node N script.py``; in it call :func:`init_distributed`
before building the training loader, and build the loader with this process's share of the data::

    init_distributed()                         # reads RANK, WORLD_SIZE, LOCAL_RANK set by torchrun
    loader = build_train_loader(..., **sampler_kwargs())   # num_replicas=world_size(), rank=rank()
    history = fit(model, criterion, loader, config, run_dir=...)
    cleanup()

:func:`~reidlab.engine.trainer.fit` then wraps the model in ``DistributedDataParallel``, writes
checkpoints and shows progress on rank 0 only, and averages the logged loss terms over ranks. Each
rank's P × K sampler takes P / world_size identities of every global batch, so the ranks' batches of a
step together form one P × K batch. Without torchrun's variables everything runs in one process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; returns whether one is active.

    ``backend`` defaults to ``nccl`` when CUDA is available (each process then uses GPU ``LOCAL_RANK``)
    and ``gloo`` otherwise. Without ``WORLD_SIZE`` in the environment (a plain ``python`` run) this does
    nothing and returns False; calling it again once initialised returns True.
    """
    if is_distributed():
        return True
    if "WORLD_SIZE" not in os.environ:
        return False
    missing = [v for v in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is set but {', '.join(missing)} are not; launch with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    return True


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return rank() == 0


def sampler_kwargs() -> dict[str, int]:
    """``{"num_replicas": world_size(), "rank": rank()}`` for ``build_train_loader`` / the samplers."""
    return {"num_replicas": world_size(), "rank": rank()}


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: this process's CUDA device (``LOCAL_RANK`` under DDP) when CUDA is available, else CPU.
    A bare ``cuda`` gets the same index."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank() if is_distributed() else 0)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank() if is_distributed() else 0)
    return device
