"""Checkpoint files: written atomically with :func:`reidlab.fileio.write_atomic` (a crash or an interruption
while saving leaves the previous file intact and no partial file under the final name). Checkpoints hold only
tensors and plain containers and load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reidlab.fileio import write_atomic


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically (:func:`reidlab.fileio.write_atomic`)."""
    return write_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; an unreadable file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"checkpoint {path} cannot be loaded with weights_only=True (expected tensors and "
                         f"plain containers written by reidlab): {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state
