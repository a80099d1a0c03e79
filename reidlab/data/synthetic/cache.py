"""A cache of synthetic trees, so notebooks and recipes share one rendering per configuration.

Trees live under ``$REIDLAB_DATA`` (default ``~/.cache/reidlab/synthetic``) in a folder named after
the format and a hash of the settings and of the generator's source code (any change to the
generator renders fresh trees). A tree is rendered into a private
temporary folder and renamed into place, so concurrent runs (nbval next to ``make report``) never
see a partial tree; the loser of a race discards its copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from reidlab.data.synthetic.generate import synthesize


def synthetic_cache_root() -> Path:
    return Path(os.environ.get("REIDLAB_DATA", Path.home() / ".cache" / "reidlab" / "synthetic"))


def synthetic_tree(like: str, *, seed: int = 0, num_ids: int | None = None,
                   image_size: tuple[int, int] | list[int] | None = None, degradations: str | dict = "default",
                   progress: bool = False) -> Path:
    """The root of a synthetic ``like`` tree with these settings, rendering it on first use."""
    settings = {"like": like, "seed": seed, "num_ids": num_ids,
                "image_size": None if image_size is None else list(image_size),
                "degradations": degradations, "generator": _generator_digest()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    preset = degradations if isinstance(degradations, str) and "=" not in degradations else "mix"
    root = synthetic_cache_root() / f"{like}-{preset}-s{seed}-{digest}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        synthesize(like, staging, seed=seed, num_ids=num_ids,
                   image_size=None if image_size is None else tuple(image_size),
                   degradations=degradations, progress=progress)
        try:
            os.rename(staging, root)
        except OSError:
            if not root.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _generator_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()
