"""The one training loop every method uses: ``fit(model, criterion, loader, config)``.

A method supplies a model (``model(batch) -> outputs``) and a criterion (``criterion(outputs, batch) ->
{term: weighted scalar loss}``); the trainer back-propagates the sum of the terms and records each.
Unsupervised methods add ``epoch_hook(epoch, model, loader) -> DataLoader | None`` (re-clustering),
run at the start of every epoch; a returned loader replaces the current one.

Epochs are 0-based in the API (``set_epoch``, the schedule, the hook, ``History`` records) and 1-based
in log lines and progress bars. Within an epoch: hook → ``loader.sampler.set_epoch(epoch)`` → training
→ ``evaluate(model)`` (every ``eval_every`` epochs and after the last) → history record → checkpoint
(every ``checkpoint_every`` epochs and after the last).

Reproducibility: ``fit`` seeds Python, NumPy and torch from ``config.seed`` (plus the rank) and a
checkpoint stores every RNG state at the end of its epoch, so on CPU a run interrupted and resumed
reaches exactly the weights and history of an uninterrupted one. The hook runs again for the resumed
epoch: hooks must be deterministic functions of the model state and the epoch, and a hook that ever
returns a loader should return one on every call (after a resume the "current" loader is the one
passed to ``fit``).

Run directory (``run_dir``): ``checkpoint.pt`` (full state, written atomically), and once finished
``final.pt`` (model + criterion state), ``history.json``, ``config.json`` and last a ``DONE`` marker. A
finished run directory makes ``fit`` load the final weights and history instead of training
(``History.cached`` is then True); ``force=True`` retrains from scratch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlab.engine import distributed
from reidlab.engine.checkpoint import load_checkpoint, save_checkpoint
from reidlab.engine.optim import OPTIMIZERS, SCHEDULES, LRSchedule, build_optimizer
from reidlab.errors import TrainingFailed
from reidlab.fileio import remove_stale_temporaries, write_atomic

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "off")
CHECKPOINT, FINAL, HISTORY, CONFIG, DONE = "checkpoint.pt", "final.pt", "history.json", "config.json", "DONE"
_RESERVED = ("epoch", "lr", "loss", "seconds", "images_per_s", "amp")


@dataclass
class TrainConfig:
    """Everything the training loop needs (see :mod:`reidlab.engine.optim` for the optimizer and schedule).

    ``amp``: ``auto``/``bf16`` = bf16 autocast on CUDA (fp32 on CPU; ``bf16`` on CPU logs a warning),
    ``off`` = fp32. ``grad_clip``: max global gradient norm, None = no clipping. ``eval_every`` /
    ``checkpoint_every``: every n epochs (0 = only after the last). ``deterministic``:
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` and deterministic cuDNN (CPU runs are
    deterministic without it). ``log_every``: iterations between updates of the progress bar's running loss
    means (each epoch's bar stays, ending with the epoch's means).
    ``find_unused_parameters``: passed to ``DistributedDataParallel``.
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    lr_groups: dict[str, float] = field(default_factory=dict)
    no_decay_bias_norm: bool = False
    warmup_epochs: int = 0
    warmup_factor: float = 0.01
    schedule: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0
    restarts: tuple[int, ...] = ()
    restart_factor: float = 1.0
    amp: str = "auto"
    grad_clip: float | None = None
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 1
    deterministic: bool = False
    log_every: int = 10
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "warmup_epochs", "seed", "eval_every", "checkpoint_every", "log_every"):
            _check_type(name, getattr(self, name), int)
        for name in ("lr", "weight_decay", "momentum", "warmup_factor", "gamma", "min_lr", "restart_factor"):
            setattr(self, name, float(_check_type(name, getattr(self, name), float)))
        for name in ("nesterov", "no_decay_bias_norm", "deterministic", "find_unused_parameters"):
            _check_type(name, getattr(self, name), bool)
        if self.grad_clip is not None:
            self.grad_clip = float(_check_type("grad_clip", self.grad_clip, float))
            if self.grad_clip <= 0:
                raise ValueError(f"grad_clip must be a positive norm or None, got {self.grad_clip}")
        self.milestones = tuple(_check_type("milestones", m, int) for m in self.milestones)
        self.restarts = tuple(_check_type("restarts", r, int) for r in self.restarts)
        self.lr_groups = {str(k): float(_check_type(f"lr_groups[{k!r}]", v, float)) for k, v in self.lr_groups.items()}
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "amp": AMP_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.epochs < 1 or self.lr <= 0 or self.log_every < 1 or self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("need epochs >= 1, lr > 0, log_every >= 1, eval_every >= 0 and checkpoint_every >= 0; "
                             f"got {self.epochs}, {self.lr}, {self.log_every}, {self.eval_every}, "
                             f"{self.checkpoint_every}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        self.lr_schedule()  # validates warm-up and milestones

    def lr_schedule(self) -> LRSchedule:
        return LRSchedule(self.epochs, self.schedule, self.warmup_epochs, self.warmup_factor, self.milestones,
                          self.gamma, self.min_lr / self.lr, self.restarts, self.restart_factor)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        """A config from plain data (a recipe's ``train`` section); unknown keys are an error listing valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(mapping) - set(valid))
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; valid keys: {', '.join(valid)}")
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings) that :meth:`from_dict` turns back into this config."""
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        data["restarts"] = list(self.restarts)
        return data


def _check_type(name: str, value: Any, kind: type) -> Any:
    """``value`` if it is a ``kind`` (an int counts as a float, a bool as neither); else a ``ValueError``."""
    if kind is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, int | float if kind is float else int) and not isinstance(value, bool)
    if not ok:
        hint = " (YAML reads 1e-3 as a string: write 1.0e-3)" if isinstance(value, str) and kind is float else ""
        raise ValueError(f"TrainConfig.{name} must be {kind.__name__}, got {value!r} ({type(value).__name__}){hint}")
    return value


@dataclass
class History:
    """Per-epoch records: ``epoch`` (0-based), ``lr`` (base lr of the epoch), ``loss`` (mean total) and the
    mean of every loss term, the metrics ``evaluate`` returned that epoch, ``seconds`` (training loop),
    ``images_per_s`` (training samples — records — per second, summed over ranks) and ``amp`` (whether
    bf16 autocast was active). ``cached`` is True when ``fit`` loaded a finished run instead of training.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, Any]:
        if not self.records:
            raise ValueError("the history has no epochs yet")
        return self.records[-1]

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch, indexed by ``epoch``."""
        return pd.DataFrame(self.records).set_index("epoch") if self.records else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], cached: bool = False) -> History:
        return cls([dict(r) for r in data["records"]], cached)

    def save(self, path: str | Path) -> Path:
        """Write the records as JSON, atomically."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")

    @classmethod
    def load(cls, path: str | Path, cached: bool = False) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()), cached)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors in ``obj`` (nested dicts, lists, tuples) moved to ``device``; everything else unchanged."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping) and "label" in batch:
        return len(batch["label"])
    stack = [batch]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            return item.shape[0]
        stack.extend(item.values() if isinstance(item, Mapping) else item if isinstance(item, list | tuple) else [])
    raise ValueError("cannot tell the batch size: the batch holds no tensor")


def _use_autocast(amp: str, device: torch.device) -> bool:
    if amp == "off":
        return False
    if device.type != "cuda":
        if amp == "bf16":
            logger.warning("amp='bf16' on %s: training in float32 (bf16 autocast is used on CUDA only)", device)
        return False
    if not torch.cuda.is_bf16_supported():
        if amp == "bf16":
            raise ValueError(f"amp='bf16' but {torch.cuda.get_device_name(device)} does not support bfloat16")
        logger.warning("this GPU does not support bfloat16: training in float32")
        return False
    return True


@contextmanager
def _determinism(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms while training, restoring the previous global settings afterwards."""
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                cudnn.deterministic, cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        cudnn.deterministic, cudnn.benchmark = previous[2], previous[3]


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (and ``device``'s CUDA one) as tensors and plain containers (``weights_only``-safe)."""
    version, state, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(state), gauss],
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_same_config(saved: Mapping[str, Any], config: TrainConfig, source: Path, remedy: str) -> None:
    current = json.loads(json.dumps(config.to_dict()))
    saved = json.loads(json.dumps(dict(saved)))
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in differing)
        raise ValueError(f"{source} was written with a different TrainConfig ({details}); use another run_dir "
                         f"or {remedy}")


def _check_sampler(loader: DataLoader) -> None:
    """Under DDP the sampler must give each rank its own share of the data."""
    if not distributed.is_distributed():
        return
    sampler = getattr(loader, "sampler", None)
    inner = getattr(sampler, "sampler", sampler)  # SeededSampler wraps the identity sampler
    replicas = getattr(inner, "num_replicas", None)
    if replicas is None:
        logger.warning("the training sampler is not distributed-aware: every rank trains on the same batches")
    elif replicas != distributed.world_size() or inner.rank != distributed.rank():
        raise ValueError(f"the training sampler was built for rank {inner.rank} of {replicas}, but this process is "
                         f"rank {distributed.rank()} of {distributed.world_size()}; build the loader with "
                         f"num_replicas=world_size(), rank=rank() (see reidlab.engine.distributed.sampler_kwargs)")


class _TrainStep(nn.Module):
    """Model and criterion as one module, so DDP synchronises the criterion's parameters too."""

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return self.criterion(self.model(batch), batch)


@dataclass
class _Loop:
    """The state one training epoch needs."""

    step: nn.Module  # _TrainStep, possibly wrapped in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    autocast: bool
    progress: bool

    def run_epoch(self, loader: DataLoader, epoch: int) -> dict[str, float]:
        """Train one epoch; returns the mean of every loss term (averaged over ranks) and the throughput."""
        from tqdm.auto import tqdm

        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.step.train()
        sums: dict[str, float] = {}
        iterations = samples = 0
        start = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch",
                   disable=not (self.progress and distributed.is_main_process()))
        for iteration, batch in enumerate(bar):
            batch = to_device(batch, self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                terms = self.step(batch)
            if not terms or set(terms) & set(_RESERVED):
                raise ValueError(f"the criterion must return loss terms not named {', '.join(_RESERVED)}; "
                                 f"got {list(terms)}")
            values = self._reduced_values(terms, epoch, iteration)
            self.optimizer.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            if self.config.grad_clip is not None:
                norm = nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                self.config.grad_clip)
                if not math.isfinite(float(norm)):
                    raise TrainingFailed(f"non-finite gradient norm ({float(norm)}) at epoch {epoch + 1} "
                                             f"(index {epoch}), iteration {iteration}")
            self.optimizer.step()
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            iterations += 1
            samples += _batch_size(batch)
            if (iteration + 1) % self.config.log_every == 0 or iteration + 1 == bar.total:
                bar.set_postfix({k: f"{v / iterations:.3f}" for k, v in sums.items()})
        bar.close()
        if iterations == 0:
            raise ValueError(f"the training loader yielded no batches in epoch {epoch} (too few identities for P x K?)")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        gathered = distributed.all_gather_objects((samples, seconds))
        total_samples, slowest = sum(s for s, _ in gathered), max(t for _, t in gathered)
        means = {name: value / iterations for name, value in sums.items()}
        return {"loss": means.pop("loss"), **means, "seconds": slowest, "images_per_s": total_samples / slowest}

    def _reduced_values(self, terms: Mapping[str, Tensor], epoch: int, iteration: int) -> dict[str, float]:
        """Loss terms averaged over ranks (one sync); any non-finite term stops every rank with a clear error."""
        values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
        if distributed.is_distributed():
            torch.distributed.all_reduce(values)
            values /= distributed.world_size()
        numbers = values.cpu().tolist()
        bad = [name for name, v in zip(terms, numbers, strict=True) if not math.isfinite(v)]
        if bad:
            shown = ", ".join(f"{name}={v:.4g}" for name, v in zip(terms, numbers, strict=True))
            raise TrainingFailed(f"non-finite loss at epoch {epoch + 1} (index {epoch}), iteration {iteration}: "
                                     f"{', '.join(bad)} ({shown}); lower the learning rate, enable grad_clip, "
                                     f"or check the inputs")
        return {"loss": sum(numbers), **dict(zip(terms, numbers, strict=True))}


def _load_finished(run_dir: Path, model: nn.Module, criterion: nn.Module, config: TrainConfig,
                   device: torch.device) -> History:
    _check_same_config(json.loads((run_dir / CONFIG).read_text()), config, run_dir / CONFIG, "force=True to retrain")
    state = load_checkpoint(run_dir / FINAL, map_location=device)
    model.load_state_dict(state["model"])
    criterion.load_state_dict(state["criterion"])
    history = History.load(run_dir / HISTORY, cached=True)
    logger.info("loaded the finished run %s (%d epochs); force=True retrains", run_dir, len(history))
    return history


def _finish(run_dir: Path, model: nn.Module, criterion: nn.Module, config: TrainConfig, history: History) -> None:
    """Final weights, history and config, then the ``DONE`` marker last."""
    save_checkpoint({"model": model.state_dict(), "criterion": criterion.state_dict(), "epochs": config.epochs},
                    run_dir / FINAL)
    history.save(run_dir / HISTORY)
    write_atomic(run_dir / CONFIG, json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
    write_atomic(run_dir / DONE, f"{config.epochs} epochs\n")


def _format_record(record: Mapping[str, Any], epochs: int) -> str:
    values = "".join(f", {k} {v:.4f}" for k, v in record.items() if k not in _RESERVED)
    return (f"epoch {record['epoch'] + 1}/{epochs}: lr {record['lr']:.3g}, loss {record['loss']:.4f}{values}, "
            f"{record['images_per_s']:.0f} img/s, {record['seconds']:.1f} s" + (", bf16" if record["amp"] else ""))


def fit(model: nn.Module, criterion: nn.Module, loader: DataLoader, config: TrainConfig | Mapping[str, Any], *,
        run_dir: str | Path | None = None, resume: bool = True, force: bool = False,
        evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        epoch_hook: Callable[[int, nn.Module, DataLoader], DataLoader | None] | None = None,
        device: str | torch.device = "auto", progress: bool = True) -> History:
    """Train ``model`` with ``criterion`` on ``loader`` (in place) and return the :class:`History`.

    ``run_dir``: where checkpoints and the finished run go (None: nothing is written). A finished run
    there is loaded instead of trained unless ``force`` (whatever ``resume`` says); an interrupted one
    (``checkpoint.pt`` without ``DONE``) is continued when ``resume``, else restarted. Either directory
    must have been written with an equal ``config`` (a ``ValueError`` lists the differences).
    ``evaluate(model) -> {metric: float}`` runs (model in eval mode, on rank 0 under DDP, metrics
    broadcast) every ``config.eval_every`` epochs and after the last. Under an initialised process group
    (see :mod:`reidlab.engine.distributed`) model and criterion are wrapped together in DDP and only
    rank 0 writes files and shows progress. Returns with model and criterion in eval mode.
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    device = distributed.resolve_device(device)
    model.to(device)
    criterion.to(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and not force and (run_dir / DONE).exists():
        history = _load_finished(run_dir, model, criterion, config, device)
    else:
        if run_dir is not None and force and distributed.is_main_process():
            for name in (DONE, CHECKPOINT, FINAL, HISTORY, CONFIG):
                (run_dir / name).unlink(missing_ok=True)
        distributed.barrier()
        with _determinism(config.deterministic):
            history = _train(model, criterion, loader, config, run_dir, resume and not force, evaluate, epoch_hook,
                             device, progress)
    model.eval()
    criterion.eval()
    return history


def _train(model: nn.Module, criterion: nn.Module, loader: DataLoader, config: TrainConfig, run_dir: Path | None,
           resume: bool, evaluate: Callable[[nn.Module], Mapping[str, float]] | None,
           epoch_hook: Callable[[int, nn.Module, DataLoader], DataLoader | None] | None, device: torch.device,
           progress: bool) -> History:
    _check_sampler(loader)
    named = [*model.named_parameters(), *((f"criterion.{n}", p) for n, p in criterion.named_parameters())]
    optimizer = build_optimizer(named, config.optimizer, config.lr, config.weight_decay, config.momentum,
                                config.nesterov, config.lr_groups, config.no_decay_bias_norm)
    schedule = config.lr_schedule()
    history, start = History(), 0
    seed_everything(config.seed + distributed.rank())
    checkpoint = run_dir / CHECKPOINT if run_dir is not None else None
    if checkpoint is not None and distributed.is_main_process():
        for stale in remove_stale_temporaries(run_dir):  # left by a killed checkpoint write
            logger.warning("removed %s, the partial file of an interrupted write", stale)
    if checkpoint is not None and resume and checkpoint.exists():
        start, history = _resume(checkpoint, model, criterion, optimizer, loader, config, device)
    step: nn.Module = _TrainStep(model, criterion)
    if distributed.is_distributed():
        step = nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                                   find_unused_parameters=config.find_unused_parameters)
    loop = _Loop(step, optimizer, config, device, _use_autocast(config.amp, device), progress)
    for epoch in range(start, config.epochs):
        if epoch_hook is not None:
            replacement = epoch_hook(epoch, model, loader)
            if replacement is not None:
                loader = replacement
                _check_sampler(loader)
        factor = schedule.apply(optimizer, epoch)
        record = {"epoch": epoch, "lr": config.lr * factor, **loop.run_epoch(loader, epoch), "amp": loop.autocast}
        last = epoch == config.epochs - 1
        if evaluate is not None and _due(config.eval_every, epoch, last):
            record.update(_evaluate(evaluate, model, criterion))
        history.records.append(record)
        if distributed.is_main_process():
            logger.info(_format_record(record, config.epochs))
        if checkpoint is not None and _due(config.checkpoint_every, epoch, last):
            _save(checkpoint, epoch + 1, model, criterion, optimizer, loader, config, history, device)
    if run_dir is not None and distributed.is_main_process():
        _finish(run_dir, model, criterion, config, history)
    distributed.barrier()
    return history


def _due(every: int, epoch: int, last: bool) -> bool:
    """After the last epoch, and every ``every`` epochs (0: never otherwise)."""
    return last or (every > 0 and (epoch + 1) % every == 0)


def _evaluate(evaluate: Callable[[nn.Module], Mapping[str, float]], model: nn.Module,
              criterion: nn.Module) -> dict[str, float]:
    metrics: dict[str, float] | None = None
    if distributed.is_main_process():
        model.eval()
        criterion.eval()
        metrics = {str(k): float(v) for k, v in evaluate(model).items()}
        clashes = sorted(set(metrics) & set(_RESERVED))
        if clashes:
            raise ValueError(f"evaluate() returned metrics named {clashes}; these names are reserved for the history")
    return distributed.broadcast_object(metrics)


def _save(path: Path, next_epoch: int, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
          loader: DataLoader, config: TrainConfig, history: History, device: torch.device) -> None:
    rng = distributed.all_gather_objects(_rng_state(device))  # collective: every rank takes part
    if not distributed.is_main_process():
        return
    generator = getattr(loader, "generator", None)
    save_checkpoint({"epoch": next_epoch, "model": model.state_dict(), "criterion": criterion.state_dict(),
                     "optimizer": optimizer.state_dict(), "history": history.to_dict(), "rng": rng,
                     "sampler_epoch": getattr(getattr(loader, "sampler", None), "epoch", None),
                     "loader_generator": generator.get_state() if generator is not None else None,
                     "config": config.to_dict()}, path)


def _resume(path: Path, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
            loader: DataLoader, config: TrainConfig, device: torch.device) -> tuple[int, History]:
    state = load_checkpoint(path, map_location="cpu")
    _check_same_config(state["config"], config, path, "resume=False (or force=True) to start over")
    model.load_state_dict(state["model"])
    criterion.load_state_dict(state["criterion"])
    optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    if len(rng) == distributed.world_size():
        _set_rng_state(rng[distributed.rank()], device)
    else:
        logger.warning("%s was written by %d processes, this run has %d: RNG streams are reseeded, so the resumed "
                       "run will not match an uninterrupted one exactly", path, len(rng), distributed.world_size())
    generator = getattr(loader, "generator", None)
    if generator is not None and state["loader_generator"] is not None:
        generator.set_state(state["loader_generator"])
    if distributed.is_main_process():  # said on the terminal, not only to a configured logger
        from tqdm.auto import tqdm

        tqdm.write(f"resuming {path.parent} after epoch {state['epoch']}/{config.epochs} (from {path.name}; "
                   "force=True or `reidlab train --force` starts over)")
    return state["epoch"], History.from_dict(state["history"])
