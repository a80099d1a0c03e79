"""Atomic file writes: the one helper every writer in reidlab uses (checkpoints, reports, figures).

:func:`write_atomic` writes to a temporary file beside the target and renames it over the target
(``os.replace`` is atomic within one file system), so a reader never sees a half-written file and a
crash or an exception leaves the previous file intact and no temporary file behind. The data is
flushed to disk before the rename.

Permissions: the temporary file is created with mode ``0o666`` through ``os.open``, so the kernel
applies the process umask exactly as for a file opened with ``open(path, "w")`` (``tempfile.mkstemp``
would give ``0o600``). :func:`make_unique_dir` does the same for folders (``0o777`` minus the umask,
where ``tempfile.mkdtemp`` gives ``0o700``). This module imports nothing from reidlab: it sits at the
bottom of the import graph.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

_ATTEMPTS = 100
#: The name :func:`write_atomic` gives its temporary file: ``.<target name>.<8 hex digits>.tmp``.
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _unique(parent: Path, prefix: str, suffix: str, create: Callable[[Path], object]) -> Path:
    for _ in range(_ATTEMPTS):
        candidate = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{parent}: no free name {prefix}*{suffix} after {_ATTEMPTS} attempts")


def write_atomic(path: str | Path, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write ``data`` to ``path`` atomically (parents created) and return ``path``.

    ``data``: bytes, text (written as UTF-8) or a function that writes to a binary file handle
    (``lambda handle: torch.save(state, handle)``). If it raises, the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = -1

    def create(candidate: Path) -> None:
        nonlocal descriptor
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)

    temp = _unique(path.parent, f".{path.name}.", ".tmp", create)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that a killed :func:`write_atomic` left in ``folder``.

    Call it when a process takes ownership of ``folder`` (a run directory at the start of a run), not while
    another process may be writing there. Returns the removed paths.
    """
    removed = []
    for temp in sorted(Path(folder).glob(".*.tmp")):
        if _TEMP_NAME.fullmatch(temp.name) and temp.is_file():
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def make_unique_dir(parent: str | Path, prefix: str) -> Path:
    """Create and return a new folder ``parent/<prefix><random>`` with ordinary permissions (umask applied)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return _unique(parent, prefix, "", lambda candidate: os.mkdir(candidate, 0o777))


__all__ = ["make_unique_dir", "remove_stale_temporaries", "write_atomic"]
