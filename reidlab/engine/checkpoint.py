"""Checkpoint files: written atomically with :func:`reidlab.fileio.write_atomic` (a crash or an interruption
while saving leaves the previous file intact and no partial file under the final name). Checkpoints hold only
tensors and plain containers and load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reidlab.errors import CheckpointError
from reidlab.fileio import write_atomic

#: What to do about a checkpoint that cannot be loaded (a truncated file from a killed write or a full disk).
RECOVER = ("If it is a truncated or foreign file, delete it or retrain from scratch with force=True "
           "(`reidlab train ... --force`)")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically (:func:`reidlab.fileio.write_atomic`)."""
    return write_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; an unreadable file is a :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} cannot be loaded with weights_only=True (expected tensors and "
                              f"plain containers written by reidlab): {error}. {RECOVER}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict. {RECOVER}")
    return state
