"""The run cache: a trained run lives in a directory named by the hash of its full configuration.

``config_hash`` covers a canonical JSON of the configuration (sorted keys, tuples as lists, paths as
strings) and, by default, :func:`code_digest` — a digest of the reidlab source — so changing either
the configuration or the code trains a new run instead of reusing a stale one. Runs live under
:func:`runs_root` (``$REIDLAB_RUNS``, default ``~/.cache/reidlab/runs``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import reidlab

PACKAGE_DIR = Path(reidlab.__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (hex) over the reidlab package's ``.py`` files: sorted relative paths and their bytes."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON-ready data; an unsupported type is a ``TypeError`` naming its key path."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"configuration key {where}{key!r} is not a string")
            plain[key] = _plain(item, f"{where}{key}.")
        return plain
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}{i}.") for i, item in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _plain(value.item(), where)
    raise TypeError(f"configuration value at {where.rstrip('.') or '<root>'} has unsupported type "
                    f"{type(value).__name__}; use str, int, float, bool, None, lists, tuples, dicts or paths")


def canonical_json(config: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, tuples as lists, paths as strings."""
    return json.dumps(_plain(config, ""), sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config: Mapping[str, Any], *, include_code: bool = True) -> str:
    """16 hex characters of sha256 over :func:`canonical_json` (plus :func:`code_digest` if ``include_code``)."""
    text = canonical_json(config) + ("\0" + code_digest() if include_code else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def runs_root() -> Path:
    """``$REIDLAB_RUNS`` or ``~/.cache/reidlab/runs``."""
    return Path(os.environ.get("REIDLAB_RUNS") or Path.home() / ".cache" / "reidlab" / "runs").expanduser()


def run_dir_for(config: Mapping[str, Any], name: str | None = None) -> Path:
    """``runs_root() / "<name>-<config_hash(config)>"`` (just the hash without a name)."""
    digest = config_hash(config)
    if name is None:
        return runs_root() / digest
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
    return runs_root() / f"{name}-{digest}"
