"""Train several recipes at once on a CPU: one single-threaded worker process per core.

Tutorial-size models use a second CPU thread poorly (two threads train one run about 1.2x faster than
one), while two single-threaded processes train two runs in the time of one. :func:`train_many` sends the
runs missing from the run cache to a pool of such workers, then loads every run from the cache here, so
its result is the same as calling :func:`~reidlab.engine.experiment.train` on each recipe in turn with one torch
thread. A lone pending run is trained here, on one thread too: CPU float reductions depend on the thread count, so
a run's weights must not depend on how many runs were pending with it (``reidlab train`` uses every thread; its
last digits can differ from a notebook's run of the same recipe).

    runs = train_many({("CoEN", seed): recipe.override({"train.seed": seed}) for seed in (0, 1)})

The pool is started on first use (``spawn``: each worker imports torch afresh, a few seconds) and kept
for later calls; ``$REIDLAB_TRAIN_WORKERS`` sets its size (default: the usable CPU cores; 1 trains in
this process, on one thread). On a GPU, or under ``torchrun``, runs are trained one after the other in this process.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from reidlab.engine import distributed
from reidlab.engine.cache import canonical_json
from reidlab.engine.experiment import Run, dataset_root, run_dir, train
from reidlab.engine.trainer import DONE
from reidlab.recipes import Recipe

K = TypeVar("K", bound=Hashable)

_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def default_workers() -> int:
    """``$REIDLAB_TRAIN_WORKERS``, else the number of CPU cores this process may use."""
    value = os.environ.get("REIDLAB_TRAIN_WORKERS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"REIDLAB_TRAIN_WORKERS must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _init_worker() -> None:
    torch.set_num_threads(1)
    # Ctrl-C (or a kernel interrupt) reaches the whole process group: a worker leaves without a traceback, its
    # run keeps its last atomic checkpoint, and the interrupted train_many resumes it next time.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))


def _get_pool(size: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != size:
        shutdown()
        _pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker)
        _pool_size = size
    return _pool


def shutdown(wait: bool = True) -> None:
    """Stop the worker pool (it is restarted by the next :func:`train_many` that needs it)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=wait, cancel_futures=True)
        _pool = None


atexit.register(shutdown)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: Where runs and synthetic trees live: read by the workers from the caller at every call, since a pool started
#: earlier keeps the environment it was started with.
LOCATION_VARIABLES = ("REIDLAB_RUNS", "REIDLAB_DATA")


def _train_quietly(recipe: Recipe, force: bool, locations: Mapping[str, str | None]) -> None:
    for name, value in locations.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    train(recipe, force=force, device="cpu", progress=False)


def train_many(recipes: Mapping[K, Recipe], *, workers: int | None = None, force: bool = False,
               device: str = "auto", progress: bool = True) -> dict[K, Run]:
    """Train (or load from the run cache) every recipe; returns ``{key: Run}`` in the order given.

    ``workers``: processes for the runs still to train (None: :func:`default_workers`). Recipes that are
    equal are trained once. ``force`` retrains every recipe, as :func:`train` does.
    """
    unique = {canonical_json(r.to_dict()): r for r in recipes.values()}
    pending = [r for r in unique.values() if force or not (run_dir(r) / DONE).exists()]
    size = min(workers or default_workers(), len(pending))
    if distributed.resolve_device(device).type == "cpu" and pending and not distributed.is_distributed():
        if size > 1:
            for recipe in pending:
                dataset_root(recipe)  # render each synthetic tree here, once, before the workers read it
            locations = {name: os.environ.get(name) for name in LOCATION_VARIABLES}
            futures = [_get_pool(size).submit(_train_quietly, r, force, locations) for r in pending]
            try:
                for future in tqdm(as_completed(futures), total=len(futures), desc=f"training ({size} workers)",
                                   disable=not progress):
                    future.result()
            except BaseException:
                shutdown(wait=False)  # a failed run or an interrupt: drop the queue; the next call starts a new pool
                raise
        else:   # one run (or one worker): here, on one thread like a worker, so its weights never depend on
            with _one_thread():   # how many runs happened to be pending with it
                for recipe in pending:
                    train(recipe, force=force, device="cpu", progress=progress)
        force = False
    trained = {key: train(r, force=force, device=device, progress=progress) for key, r in unique.items()}
    return {key: trained[canonical_json(r.to_dict())] for key, r in recipes.items()}
