"""Drawing one sample: a part-label map from geometry, then one image per modality from it.

All three modalities are painted from the *same* label map and body coordinates, so RGB, NIR and
TIR are pixel-aligned (as in RGBNT201/100, MSVR310, WMVeID863). What each modality shows:

* RGB — per-part colours of the identity's colour code, shading, the camera background; darker
  and bluish at night;
* NIR — per-part reflectance (uniform clothing/paint) modulated by the identity's texture
  pattern; an active illuminator keeps the subject visible at night while the background dims;
* TIR — per-part temperature of the identity's heat code on the ambient temperature of the
  background, blurred by heat diffusion; unaffected by day/night except a colder ambient.

For cross-modal benchmarks (``shared_pattern=True``) the texture pattern is printed in every
modality (luminance in RGB, faint emissivity in TIR) and NIR clothing reflectance follows a fixed,
non-monotonic function of the colour — the modality gap of real visible/infrared pairs.

Images are float32 in [0, 1]: RGB (H, W, 3), NIR and TIR (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from reidlab.data.synthetic.identities import PALETTE, PERSON, Identity
from reidlab.data.synthetic.seeding import rng_for

VIEWS: tuple[str, ...] = ("front", "back", "side")

# Part labels of the label map.
BG, SKIN, HAIR, UPPER, ARM, LOWER, SHOES, BAG = 0, 1, 2, 3, 4, 5, 6, 7            # person
BODY_F, BODY_R, CABIN, WINDOW, WHEEL, LIGHT, STRIPE = 8, 9, 10, 11, 12, 13, 14    # vehicle
NUM_LABELS = 15

#: NIR reflectance of dyed fabric/paint by colour name: deliberately unrelated to visible brightness
#: (black cotton is often bright in NIR), so a model cannot read NIR as grey-scaled RGB.
NIR_REFLECTANCE = {"red": 0.72, "green": 0.40, "blue": 0.30, "yellow": 0.62, "white": 0.85, "black": 0.66,
                   "grey": 0.48, "orange": 0.78, "purple": 0.36, "cyan": 0.28, "brown": 0.55, "pink": 0.80}
SHAPE_WIDTH = {"slim": 0.86, "medium": 1.0, "broad": 1.17, "compact": 0.84, "sedan": 1.0, "van": 1.1}
SKIN_RGB = np.array([0.85, 0.66, 0.52], np.float32)


@dataclass(frozen=True)
class Conditions:
    """Nuisances of one capture (not identity cues)."""

    view: str          # front | back | side
    night: bool
    background: int    # background layout id (camera, or scene x view for MSVR310)
    mirror: bool = False  # side view facing left instead of right; back view mirrors front


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: v down in [0, 1] of the height, x right in units of the height."""
    v = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    x = ((np.arange(width, dtype=np.float32) + 0.5) / height)[None, :]
    return np.broadcast_to(v, (height, width)), np.broadcast_to(x, (height, width))


def texture(kind: str, freq: float, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """A soft-edged binary texture in [0, 1] at ``freq`` cycles per unit of body coordinates."""
    w = 2 * np.pi * freq
    if kind == "plain":
        return np.zeros_like(bx)
    if kind == "hstripes":
        s = np.sin(w * by)
    elif kind == "vstripes":
        s = np.sin(w * bx)
    elif kind == "checks":
        s = np.sin(w * bx) * np.sin(w * by)
    elif kind == "diagonal":
        s = np.sin(w * (bx + by) * 0.7071)
    elif kind == "dots":
        s = np.sin(w * bx) * np.sin(w * by) - 0.45
    elif kind == "zigzag":
        s = np.sin(w * (by + 0.6 * np.abs(((bx * freq) % 1.0) - 0.5) / freq))
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return 0.5 + 0.5 * np.tanh(4.0 * s)


@lru_cache(maxsize=256)
def background(seed: int, kind: str, layout: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """The (RGB, NIR, TIR) background of layout ``layout``: walls/buildings, poles, ground, clutter."""
    rng = rng_for(seed, "background", kind, layout)
    v, x = _grid(height, width)
    u = x * height / width
    base = rng.uniform(0.25, 0.75, 3).astype(np.float32)
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = base
    nir = np.full((height, width), rng.uniform(0.25, 0.6), np.float32)
    tir = np.full((height, width), rng.uniform(0.22, 0.42), np.float32)
    for _ in range(int(rng.integers(3, 8))):          # blocks of clutter with unrelated modality values
        u0, v0 = rng.uniform(-0.1, 0.9), rng.uniform(-0.1, 0.8)
        box = (u >= u0) & (u < u0 + rng.uniform(0.08, 0.5)) & (v >= v0) & (v < v0 + rng.uniform(0.05, 0.6))
        rgb[box] = np.clip(base + rng.normal(0, 0.18, 3), 0, 1)
        nir[box] = rng.uniform(0.2, 0.7)
        tir[box] += rng.uniform(-0.06, 0.12)
    ground = v > rng.uniform(0.8, 0.9)
    rgb[ground] *= 0.6
    nir[ground] *= 0.8
    tir[ground] -= 0.04
    grain = gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), 2.0)
    rgb += 0.08 * grain[..., None]
    nir += 0.08 * grain
    for a in (rgb, nir, tir):
        np.clip(a, 0, 1, out=a)
        a.flags.writeable = False
    return rgb, nir, tir


def _person_labels(ident: Identity, cond: Conditions, v, x, width_units, rng) -> tuple[np.ndarray, ...]:
    """Label map and body coordinates of an upright person (pose jitter drawn from ``rng``)."""
    height = 0.86 * rng.uniform(0.92, 1.04)
    top = 0.07 + rng.uniform(-0.03, 0.03) + (0.86 - height) / 2
    cx = width_units / 2 + rng.normal(0, 0.03)
    by = (v - top) / height
    bx = (x - cx) / height
    if cond.view == "back" or (cond.view == "side" and cond.mirror):
        bx = -bx                                       # seen from behind: left and right swap
    sw = SHAPE_WIDTH[ident.shape] * (0.62 if cond.view == "side" else 1.0)
    stride = rng.uniform(-0.09, 0.09) * (2.0 if cond.view == "side" else 1.0)
    swing = rng.uniform(-0.03, 0.03)
    labels = np.zeros(v.shape, np.uint8)

    t = np.clip((by - 0.15) / 0.37, 0, 1)
    torso = (by >= 0.15) & (by < 0.53) & (np.abs(bx) < sw * (0.14 - 0.03 * t))
    for side in (-1.0, 1.0):                           # legs with a stride, shoes at the bottom
        centre = side * 0.055 * sw + side * stride * (by - 0.52)
        leg = (by >= 0.5) & (by < 0.97) & (np.abs(bx - centre) < 0.05 * sw)
        labels[leg] = LOWER
        labels[leg & (by >= 0.93)] = SHOES
    if cond.view == "side":
        arm = (by >= 0.17) & (by < 0.5 + swing) & (np.abs(bx - 8 * swing * (by - 0.17)) < 0.045)
        hand = (by >= 0.5 + swing) & (by < 0.55 + swing) & (np.abs(bx - 8 * swing * 0.33) < 0.035)
        labels[torso] = UPPER
    else:
        labels[torso] = UPPER
        arm = hand = np.zeros_like(torso)
        for side, lift in ((-1.0, swing), (1.0, -swing)):
            inner, outer = sw * 0.14, sw * 0.14 + 0.05
            a = (by >= 0.16) & (np.abs(bx) >= inner - 0.005) & (np.abs(bx) < outer) & (np.sign(bx) == side)
            arm = arm | (a & (by < 0.5 + lift))
            hand = hand | (a & (by >= 0.5 + lift) & (by < 0.55 + lift))
    labels[arm] = ARM
    labels[hand] = SKIN
    head = (bx / 0.072) ** 2 + ((by - 0.075) / 0.078) ** 2 < 1
    labels[head] = HAIR if cond.view == "back" else SKIN
    labels[head & (by < 0.035)] = HAIR
    # Shoulder bag on the person's right hip: image-left from the front, image-right from behind
    # (bx is already mirrored), over the hip from the side.
    if cond.view == "side":
        bag = (bx >= -0.06) & (bx < 0.07) & (by >= 0.40) & (by < 0.56)
    else:
        bag = (bx >= -sw * 0.14 - 0.1) & (bx < -sw * 0.14 - 0.005) & (by >= 0.42) & (by < 0.6)
    labels[bag] = BAG
    return labels, bx, by


def _vehicle_labels(ident: Identity, cond: Conditions, v, x, width_units, rng) -> tuple[np.ndarray, ...]:
    """Label map and body coordinates of a vehicle (front, rear or side view)."""
    height = 0.8 * rng.uniform(0.93, 1.04)
    top = 0.1 + rng.uniform(-0.04, 0.04)
    cx = width_units / 2 + rng.normal(0, 0.05)
    by = (v - top) / height
    bx = (x - cx) / height
    if cond.mirror:
        bx = -bx
    labels = np.zeros(v.shape, np.uint8)
    w = SHAPE_WIDTH[ident.shape]
    van = ident.shape == "van"
    if cond.view == "side":
        half = 1.05 * w
        body = (by >= 0.38) & (by < 0.84) & (np.abs(bx) < half)
        body &= ~((np.abs(bx) > half - 0.08) & (by < 0.46))          # rounded corners
        labels[body & (bx >= 0)] = BODY_F
        labels[body & (bx < 0)] = BODY_R
        rear, front = (-half + 0.05, 0.6 * half) if van else (-0.55 * half, 0.35 * half)
        slope = 0.0 if van else 0.5 * (0.38 - by)
        cabin = (by >= (0.02 if van else 0.08)) & (by < 0.38) & (bx > rear + slope) & (bx < front - slope)
        labels[cabin] = CABIN
        labels[cabin & (by >= 0.12) & (by < 0.34) & (bx > rear + slope + 0.06) & (bx < front - slope - 0.06)] = WINDOW
        labels[body & (by >= 0.56) & (by < 0.61)] = STRIPE
        labels[(np.abs(bx) > half - 0.07) & (by >= 0.45) & (by < 0.55) & body] = LIGHT
        for wx in (-0.62 * half, 0.62 * half):
            labels[(bx - wx) ** 2 + (by - 0.83) ** 2 < 0.16 ** 2] = WHEEL
    else:
        half = 0.55 * w
        body = (by >= 0.4) & (by < 0.88) & (np.abs(bx) < half)
        labels[body] = BODY_F if cond.view == "front" else BODY_R
        screen = (by >= (0.05 if van else 0.1)) & (by < 0.4) & (np.abs(bx) < half - 0.06 - 0.2 * (0.4 - by))
        labels[screen] = CABIN
        labels[screen & (by >= 0.14) & (np.abs(bx) < half - 0.12 - 0.2 * (0.4 - by))] = WINDOW
        labels[body & (by >= 0.64) & (by < 0.68)] = STRIPE
        labels[body & (by >= 0.47) & (by < 0.56) & (np.abs(bx) > half - 0.17) & (np.abs(bx) < half - 0.04)] = LIGHT
        labels[(by >= 0.84) & (by < 0.98) & (np.abs(bx) > half - 0.18) & (np.abs(bx) < half - 0.03)] = WHEEL
    return labels, bx, by


def _pattern_map(ident: Identity, labels: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """The identity's texture where it applies (upper: torso/arms or front panels; lower: legs or rear)."""
    p = ident.pattern
    out = np.zeros(labels.shape, np.float32)
    upper = np.isin(labels, (UPPER, ARM)) if ident.kind == PERSON else labels == BODY_F
    lower = labels == LOWER if ident.kind == PERSON else labels == BODY_R
    (du, dv), k = ident.pattern_phase, ident.pattern_scale
    out[upper] = texture(p.upper, p.upper_freq * k, bx[upper] + du / p.upper_freq, by[upper] + du / p.upper_freq)
    out[lower] = texture(p.lower, p.lower_freq * k, bx[lower] + dv / p.lower_freq, by[lower] + dv / p.lower_freq)
    return out


def _rgb_table(ident: Identity) -> np.ndarray:
    c = ident.colour
    table = np.zeros((NUM_LABELS, 3), np.float32)
    table[SKIN], table[HAIR], table[SHOES] = SKIN_RGB, (0.12, 0.09, 0.07), (0.1, 0.1, 0.1)
    table[UPPER] = table[ARM] = PALETTE[c.upper]
    table[LOWER] = PALETTE[c.lower]
    table[BAG] = PALETTE[c.accessory]
    table[BODY_F] = table[BODY_R] = PALETTE[c.upper]
    table[CABIN] = PALETTE[c.lower]
    table[WINDOW], table[WHEEL], table[LIGHT] = (0.15, 0.2, 0.25), (0.06, 0.06, 0.06), (0.95, 0.93, 0.8)
    table[STRIPE] = PALETTE[c.accessory]
    fabric = [UPPER, ARM, LOWER, BAG, BODY_F, BODY_R, CABIN, STRIPE]
    table[fabric] = np.clip(table[fabric] + np.array(ident.tint, np.float32), 0, 1)
    return table


def _nir_table(ident: Identity, shared_pattern: bool) -> np.ndarray:
    c = ident.colour
    table = np.full(NUM_LABELS, 0.55, np.float32)     # split cues: every fabric/paint reflects alike
    if shared_pattern:
        table[[UPPER, ARM, BODY_F, BODY_R]] = NIR_REFLECTANCE[c.upper]
        table[[LOWER, CABIN]] = NIR_REFLECTANCE[c.lower]
        table[[BAG, STRIPE]] = NIR_REFLECTANCE[c.accessory]
    table[SKIN], table[HAIR], table[SHOES] = 0.82, 0.35, 0.25
    table[WINDOW], table[WHEEL], table[LIGHT] = 0.12, 0.1, 0.9
    return table


def _tir_table(ident: Identity) -> np.ndarray:
    h = ident.heat
    table = np.zeros(NUM_LABELS, np.float32)
    table[SKIN], table[HAIR], table[SHOES], table[BAG] = 0.9, 0.62, 0.38, 0.34
    table[UPPER], table[LOWER], table[ARM] = h.core, h.limbs, h.extra
    cold_panel = 0.4
    table[BODY_F] = cold_panel if h.engine_rear else h.core
    table[BODY_R] = h.core if h.engine_rear else cold_panel
    table[WHEEL], table[CABIN], table[WINDOW] = h.limbs, h.extra, 0.25 + 0.3 * h.extra
    table[LIGHT], table[STRIPE] = 0.55, cold_panel
    return np.clip(table + ident.warmth, 0, 1)


def _hotspot(ident: Identity, cond: Conditions, labels, bx, by) -> np.ndarray:
    """A small hot blob (phone/cup in hand or on the chest; exhaust pipe) or nothing."""
    spot = ident.heat.hotspot
    if spot == "none":
        return np.zeros(labels.shape, bool)
    if ident.kind == PERSON:
        if spot == "hand":
            return (labels == SKIN) & (by > 0.45)
        return (np.abs(bx - 0.05) < 0.035) & (np.abs(by - 0.28) < 0.03) & (labels == UPPER)
    if cond.view == "front":
        return np.zeros(labels.shape, bool)
    side = -1.0 if spot == "exhaust_left" else 1.0
    if cond.view == "side":
        return (np.abs(bx + 0.95 * SHAPE_WIDTH[ident.shape]) < 0.07) & (np.abs(by - 0.82) < 0.04)
    return (np.abs(bx - side * 0.3) < 0.06) & (np.abs(by - 0.86) < 0.04)


def subject_labels(ident: Identity, cond: Conditions, size: tuple[int, int], rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Part-label map (uint8 (H, W), 0 = background) and body coordinates of ``ident`` under ``cond``.

    The pose jitter comes from ``rng``: these are the first draws :func:`render_sample` makes, so the
    same generator state gives the very silhouette the images are painted from (what
    :mod:`~reidlab.data.synthetic.masks` replays without rendering).
    """
    h, w = size
    v, x = _grid(h, w)
    draw = _person_labels if ident.kind == PERSON else _vehicle_labels
    return draw(ident, cond, v, x, w / h, rng)


def render_sample(ident: Identity, cond: Conditions, size: tuple[int, int], seed: int,
                  rng: np.random.Generator, *, shared_pattern: bool = False
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render the aligned RGB/NIR/TIR images of one capture of ``ident`` under ``cond``.

    Returns the images by modality and the part-label map (0 = background), which degradations
    use to place occluders and flares on or near the subject.
    """
    h, w = size
    labels, bx, by = subject_labels(ident, cond, size, rng)
    fg = labels != BG
    pattern = _pattern_map(ident, labels, bx, by)
    bg_rgb, bg_nir, bg_tir = background(seed, ident.kind, cond.background, h, w)
    shift = int(rng.integers(-w // 4, w // 4 + 1))      # the subject stands somewhere else in the scene
    bg_rgb, bg_nir, bg_tir = (np.roll(b, shift, axis=1) for b in (bg_rgb, bg_nir, bg_tir))
    shade = np.where(fg, 1.0 - 0.22 * np.clip(by, 0, 1) + 0.08 * np.cos(6 * bx), 1.0).astype(np.float32)

    rgb = _rgb_table(ident)[labels] * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    if shared_pattern:
        rgb *= (1.0 - 0.45 * pattern)[..., None]
    rgb = np.where(fg[..., None], rgb * shade[..., None], bg_rgb)

    nir = _nir_table(ident, shared_pattern)[labels] * (1.0 - 0.55 * pattern) * shade
    nir = np.where(fg, nir, bg_nir * (0.6 if cond.night else 1.0)) * rng.uniform(0.92, 1.08)

    tir = _tir_table(ident)[labels] * (1.0 - (0.3 if shared_pattern else 0.0) * pattern)
    tir[_hotspot(ident, cond, labels, bx, by)] = 0.98
    ambient = bg_tir - (0.08 if cond.night else 0.0)
    tir = gaussian_filter(np.where(fg, tir, ambient), 0.012 * h)

    if cond.night:                                      # dim, blue-cast visible image; lamps glow
        rgb = rgb * 0.35 + np.array([0.0, 0.015, 0.05], np.float32)
        rgb[labels == LIGHT] = (1.0, 0.97, 0.85)
    images = {"rgb": rgb, "nir": nir, "tir": tir}
    for name, sigma in (("rgb", 0.012), ("nir", 0.015), ("tir", 0.02)):   # baseline sensor noise
        img = images[name]
        images[name] = np.clip(img + rng.normal(0, sigma, img.shape).astype(np.float32), 0, 1)
    return images, labels
