"""The run cache: a trained run lives in a directory named by the hash of its full configuration.

``config_hash`` covers a canonical JSON of the configuration (sorted keys, tuples as lists, paths as
strings) and, by default, :func:`code_digest` — a digest of the code a training run executes (the
subpackages of :data:`TRAINING_CODE`: data, models, losses, methods, engine, recipes, and the shipped
weights) — so changing the configuration or that code trains a new run instead of reusing a stale one,
while editing plots, analysis, studies, reports, the CLI or docs keeps every cached run. Runs live under
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


#: Subpackages whose code (``.py`` files) a training run executes, and folders of data files it reads.
TRAINING_CODE: tuple[str, ...] = ("data", "models", "losses", "methods", "engine", "recipes")
TRAINING_DATA: tuple[str, ...] = ("weights",)


def training_files(package_dir: Path | None = None) -> list[Path]:
    """The files :func:`code_digest` covers, sorted: ``.py`` files of :data:`TRAINING_CODE`, every file of
    :data:`TRAINING_DATA` (bytecode caches excluded), under ``package_dir`` (default: reidlab's)."""
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    files = [p for name in TRAINING_CODE for p in (package_dir / name).rglob("*.py")]
    files += [p for name in TRAINING_DATA for p in (package_dir / name).rglob("*") if p.is_file()]
    return sorted(p for p in files if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=4)
def code_digest(package_dir: Path | None = None) -> str:
    """sha256 (hex) over :func:`training_files`: their sorted relative paths and bytes."""
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    digest = hashlib.sha256()
    for path in training_files(package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
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
