"""The generative identity model: what makes one synthetic person or vehicle itself.

An identity is four attributes drawn from small codebooks:

* ``colour`` — RGB cue: colours of the upper/lower parts and the accessory (person) or of the
  body/cabin/stripe (vehicle);
* ``pattern`` — NIR cue: a reflectance texture (stripes, checks, dots, ...) on clothing or panels;
* ``heat`` — TIR cue: which body parts (person) or engine/wheels/exhaust/cabin (vehicle) are warm;
* ``shape`` — a weak silhouette cue (build / body style) visible in every modality;

plus small individual variations within each code (shade, texture phase and scale, warmth).

Multi-modal benchmarks (``split_cues=True``) split identity across modalities: each codebook has
only ``K`` entries, so any one modality's code is shared by about ``N / K`` identities and a pair
of codes by about ``N / K²``, while the triple (colour, pattern, heat) is unique. A model therefore
needs all three modalities to tell every identity apart, and losing one hurts.

Cross-modal benchmarks (SYSU-MM01, RegDB; ``split_cues=False``) need a cue that survives the
modality change, as clothing texture and build do in real visible/infrared pairs: there the
pattern code is (nearly) unique per identity and is rendered in every modality, while colour
(visible only) and heat (thermal only) stay shared, modality-specific distractors.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from reidlab.data.synthetic.seeding import rng_for

PERSON, VEHICLE = "person", "vehicle"

#: Named colours (sRGB in [0, 1]) for clothing, bags and car paint.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.12, 0.12), "green": (0.15, 0.60, 0.20), "blue": (0.15, 0.25, 0.80),
    "yellow": (0.92, 0.85, 0.15), "white": (0.92, 0.92, 0.90), "black": (0.08, 0.08, 0.10),
    "grey": (0.50, 0.50, 0.52), "orange": (0.95, 0.50, 0.10), "purple": (0.50, 0.18, 0.60),
    "cyan": (0.15, 0.75, 0.80), "brown": (0.45, 0.28, 0.12), "pink": (0.95, 0.55, 0.70),
}
COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)
#: Texture types (``plain`` = no texture) and their spatial frequencies (cycles per body height).
PATTERNS: tuple[str, ...] = ("plain", "hstripes", "vstripes", "checks", "diagonal", "dots", "zigzag")
FREQUENCIES: tuple[float, ...] = (5.0, 9.0)
SHAPES: dict[str, tuple[str, ...]] = {PERSON: ("slim", "medium", "broad"), VEHICLE: ("compact", "sedan", "van")}


@dataclass(frozen=True)
class ColourCode:
    upper: str       # person: shirt/jacket; vehicle: body paint
    lower: str       # person: trousers/skirt; vehicle: cabin/roof (two-tone)
    accessory: str   # person: bag; vehicle: side stripe


@dataclass(frozen=True)
class PatternCode:
    upper: str       # person: torso + arms; vehicle: front half of the body panels
    upper_freq: float
    lower: str       # person: legs; vehicle: rear half of the body panels
    lower_freq: float


@dataclass(frozen=True)
class HeatCode:
    """Temperature levels in [0, 1] of the parts a thermal camera sees (white-hot)."""

    core: float      # person: torso; vehicle: engine bay
    limbs: float     # person: legs; vehicle: wheels/brakes
    extra: float     # person: bare arms; vehicle: cabin (heated or not)
    hotspot: str     # person: none|hand|chest (phone, cup); vehicle: none|exhaust_left|exhaust_right
    engine_rear: bool = False  # vehicle only: engine at the rear (bus/van layout)


@dataclass(frozen=True)
class Identity:
    index: int        # position in the identity list (stable; seeds every draw about this identity)
    kind: str         # person | vehicle
    colour: ColourCode
    pattern: PatternCode
    heat: HeatCode
    shape: str
    codes: tuple[int, int, int]   # (colour, pattern, heat) code numbers, for analysis
    gender: str = "male"          # persons only: RegDB writes it in file names
    facing: str = "front"         # persons only: RegDB captures each person walking one way
    # Individual variation within a code (a shade of the same colour, where the stripes fall, how
    # warm one runs): a weak, fine-grained cue in each modality that no code shares.
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)   # added to every fabric/paint colour
    pattern_phase: tuple[float, float] = (0.0, 0.0)      # texture offsets, in cycles
    pattern_scale: float = 1.0                           # texture frequency factor
    warmth: float = 0.0                                  # added to every heat level


def _colour_codes(kind: str, count: int, rng: np.random.Generator) -> list[ColourCode]:
    combos = [c for c in itertools.product(COLOUR_NAMES, repeat=3) if c[0] != c[1] and c[2] not in c[:2]]
    chosen = _spread(combos, count, rng)
    return [ColourCode(*c) for c in chosen]


def _pattern_codes(count: int, rng: np.random.Generator) -> list[PatternCode]:
    textured = [(p, f) for p in PATTERNS[1:] for f in FREQUENCIES]
    half = [("plain", FREQUENCIES[0]), *textured]
    combos = [(u, v) for u in half for v in half if (u[0], v[0]) != ("plain", "plain")]
    chosen = _spread(combos, count, rng)
    return [PatternCode(u[0], u[1], v[0], v[1]) for u, v in chosen]


def _heat_codes(kind: str, count: int, rng: np.random.Generator) -> list[HeatCode]:
    if kind == PERSON:
        combos = [HeatCode(core, limbs, arms, spot)
                  for core in (0.55, 0.72, 0.88) for limbs in (0.45, 0.68) for arms in (0.40, 0.75)
                  for spot in ("none", "hand", "chest")]
    else:
        combos = [HeatCode(engine, wheels, cabin, spot, rear)
                  for engine in (0.50, 0.90) for wheels in (0.30, 0.75) for cabin in (0.35, 0.65)
                  for spot in ("none", "exhaust_left", "exhaust_right") for rear in (False, True)]
    return _spread(combos, count, rng)


def _spread(combos: list, count: int, rng: np.random.Generator) -> list:
    """``count`` distinct entries of ``combos`` (cycled when more are asked than exist)."""
    order = rng.permutation(len(combos))
    return [combos[order[i % len(combos)]] for i in range(count)]


def codebook_size(num_ids: int) -> int:
    """Entries per modality codebook: the smallest K >= 3 with K³ >= 8·N.

    The (colour, pattern, heat) triple can then be unique for every identity while each single code
    is shared by about N / K identities (8 of the default 72 RGBNT201 identities, K = 9). The factor 8
    keeps one modality informative enough for a single-modality model to learn from at tutorial
    scale, while fusion still has much to add.
    """
    k = 3
    while k ** 3 < 8 * num_ids:
        k += 1
    return k


def make_identities(kind: str, num_ids: int, seed: int, *, split_cues: bool = True) -> list[Identity]:
    """Draw ``num_ids`` identities of ``kind`` ("person" or "vehicle"), deterministically from ``seed``."""
    if kind not in SHAPES:
        raise ValueError(f"unknown identity kind {kind!r}; expected 'person' or 'vehicle'")
    if num_ids < 1:
        raise ValueError(f"num_ids must be positive, got {num_ids}")
    rng = rng_for(seed, "codebooks", kind)
    k = codebook_size(num_ids)
    colours = _colour_codes(kind, k, rng)
    heats = _heat_codes(kind, k, rng)
    if split_cues:
        patterns = _pattern_codes(k, rng)
        # Distinct (colour, pattern, heat) triples in random order; K³ >= 1.5 N guarantees enough.
        flat = rng.choice(k ** 3, size=num_ids, replace=False)
        triples = [(int(f) // (k * k), (int(f) // k) % k, int(f) % k) for f in flat]
    else:
        patterns = _pattern_codes(num_ids, rng)
        triples = [(int(rng.integers(k)), i, int(rng.integers(k))) for i in range(num_ids)]
    identities = [_individual(index, kind, colours[c], patterns[p], heats[h], (c, p, h),
                              rng_for(seed, "identity", kind, index)) for index, (c, p, h) in enumerate(triples)]
    in_pool = [(i.index, pool_cues(i)) for i in identities if pool_cues(i)]
    if in_pool:   # a codebook edit that reaches into the pre-training pool's region
        raise RuntimeError(f"benchmark identities {in_pool[:3]} use codes reserved for the pre-training pool")
    return identities


def _individual(index: int, kind: str, colour: ColourCode, pattern: PatternCode, heat: HeatCode,
                codes: tuple[int, int, int], own: np.random.Generator) -> Identity:
    """An identity with its codes and its individual variation, drawn from its own generator ``own``."""
    return Identity(
        index=index, kind=kind, colour=colour, pattern=pattern, heat=heat,
        shape=SHAPES[kind][int(own.integers(3))], codes=codes,
        gender=("male", "female")[int(own.integers(2))], facing=("front", "back")[int(own.integers(2))],
        tint=tuple(float(t) for t in own.normal(0, 0.06, 3)), pattern_phase=(own.random(), own.random()),
        pattern_scale=float(own.uniform(0.88, 1.12)), warmth=float(own.normal(0, 0.04)))


# ---------------------------------------------------------------------------------------------
# The pre-training pool (reidlab.data.synthetic.pool): a reserved region of every modality's code space.
#
# * colour — the accessory repeats the upper colour: (a, b, a); benchmark codes need accessory ∉ {upper, lower};
# * pattern — both halves textured, at POOL_FREQUENCIES only; with the individual scale (×0.88-1.12) a pool
#   texture runs at 3.08-3.92 or 6.16-7.84 cycles, a benchmark one at 4.4-5.6 or 7.92-10.08 (FREQUENCIES);
# * heat — levels from POOL_HEAT_LEVELS, none of which a benchmark heat code uses.
#
# So a pool identity differs from every benchmark identity in each modality's code, not only in the whole
# (colour, pattern, heat) triple: the pool is the disjoint stand-in for ImageNet / LUPerson.

POOL_FREQUENCIES: tuple[float, ...] = (3.5, 7.0)
#: (core, limbs, extra) level choices per kind (person: torso, legs, arms; vehicle: engine, wheels, cabin).
POOL_HEAT_LEVELS: dict[str, tuple[tuple[float, ...], ...]] = {
    PERSON: ((0.63, 0.80), (0.56, 0.80), (0.57, 0.90)),
    VEHICLE: ((0.62, 0.78), (0.42, 0.60), (0.50, 0.80)),
}


def _pool_colour_codes() -> list[ColourCode]:
    return [ColourCode(a, b, a) for a in COLOUR_NAMES for b in COLOUR_NAMES if a != b]


def _pool_pattern_codes() -> list[PatternCode]:
    halves = [(p, f) for p in PATTERNS[1:] for f in POOL_FREQUENCIES]
    return [PatternCode(u[0], u[1], v[0], v[1]) for u in halves for v in halves]


def _pool_heat_codes(kind: str) -> list[HeatCode]:
    cores, limbs, extras = POOL_HEAT_LEVELS[kind]
    spots = ("none", "hand", "chest") if kind == PERSON else ("none", "exhaust_left", "exhaust_right")
    rears = (False,) if kind == PERSON else (False, True)
    return [HeatCode(c, li, e, s, r) for c in cores for li in limbs for e in extras for s in spots for r in rears]


def pool_cues(identity: Identity) -> list[str]:
    """The modality codes of ``identity`` that lie in the pre-training pool's region: all three for a pool
    identity, none for a benchmark identity (``make_identities`` raises otherwise)."""
    c, p, h = identity.colour, identity.pattern, identity.heat
    levels = POOL_HEAT_LEVELS[identity.kind]
    cues = []
    if c.accessory == c.upper:
        cues.append("colour")
    if any(kind != "plain" and f in POOL_FREQUENCIES for kind, f in ((p.upper, p.upper_freq), (p.lower, p.lower_freq))):
        cues.append("pattern")
    if any(v in options for v, options in zip((h.core, h.limbs, h.extra), levels, strict=True)):
        cues.append("heat")
    return cues


def make_pool_identities(kind: str, num_ids: int, seed: int) -> list[Identity]:
    """``num_ids`` pre-training identities of ``kind`` with distinct (colour, pattern, heat) triples, every code
    drawn uniformly from the pool's reserved region; individual variation as for benchmark identities."""
    if kind not in SHAPES:
        raise ValueError(f"unknown identity kind {kind!r}; expected 'person' or 'vehicle'")
    colours, patterns, heats = _pool_colour_codes(), _pool_pattern_codes(), _pool_heat_codes(kind)
    total = len(colours) * len(patterns) * len(heats)
    if not 1 <= num_ids <= total:
        raise ValueError(f"num_ids must be in [1, {total}] for the {kind} pool, got {num_ids}")
    rng = rng_for(seed, "pool-codebooks", kind)
    flat = rng.choice(total, size=num_ids, replace=False)
    triples = [(int(f) // (len(patterns) * len(heats)), int(f) // len(heats) % len(patterns), int(f) % len(heats))
               for f in flat]
    return [_individual(index, kind, colours[c], patterns[p], heats[h], (c, p, h),
                        rng_for(seed, "pool-identity", kind, index)) for index, (c, p, h) in enumerate(triples)]
