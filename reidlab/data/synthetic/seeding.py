"""Order-independent random streams: one generator per (seed, purpose, keys...)."""

from __future__ import annotations

import zlib

import numpy as np


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys``, never on what was drawn before.

    Strings are hashed with CRC-32 (stable across runs and platforms, unlike ``hash``), so the
    image of sample 17 is the same whether it is rendered first, last or alone.
    """
    entropy = [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF]
    entropy += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))
