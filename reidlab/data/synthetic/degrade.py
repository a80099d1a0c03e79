"""Per-sample, per-modality quality degradations and the mixes (presets) that draw them.

Each modality image of a sample gets at most one degradation with a severity in [0, 1]; its
ground-truth quality is ``1 - severity`` (1 when clean). A mix gives one probability per
degradation, meant for the modality the degradation hits most (affinity 1 below): ``flare=0.5``
puts a flare on about half of the RGB images. Other modalities get it with probability
``p * affinity``. Flare and low light are :data:`NIGHT_BOOST` times likelier at night than by day,
scaled so that the marginal rate stays ``p``. Occlusion is drawn once per sample and covers the
same box in every aligned modality (half of the occlusions) or in one modality only.

When one modality's probabilities add up to more than 1 they are scaled down to sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

from reidlab.data.synthetic.render import LIGHT

DEGRADATIONS: tuple[str, ...] = ("flare", "low_light", "fog", "blur", "noise", "occlusion")
NONE = "none"
#: How strongly each degradation hits each modality (relative to its mix probability).
AFFINITY: dict[str, dict[str, float]] = {
    "flare": {"rgb": 1.0, "nir": 0.35, "tir": 0.0},       # bloom from lamps/headlights; TIR does not see it
    "low_light": {"rgb": 1.0, "nir": 0.0, "tir": 0.0},    # NIR has its own illuminator, TIR needs no light
    "fog": {"rgb": 1.0, "nir": 0.6, "tir": 0.25},         # longer wavelengths see through haze better
    "blur": {"rgb": 1.0, "nir": 1.0, "tir": 1.0},         # motion/defocus hits every camera
    "noise": {"rgb": 0.3, "nir": 0.5, "tir": 1.0},        # uncooled thermal sensors are the noisiest
}
NIGHT_BOOST: dict[str, float] = {"flare": 3.0, "low_light": 3.0}


@dataclass(frozen=True)
class DegradationMix:
    """Probabilities per degradation and the severity range they are drawn from."""

    probabilities: Mapping[str, float]
    severity: tuple[float, float] = (0.3, 0.8)
    name: str = "custom"

    def describe(self) -> str:
        active = ", ".join(f"{d}={p:g}" for d, p in self.probabilities.items() if p > 0) or "none"
        return f"{self.name} ({active}; severity {self.severity[0]:g}-{self.severity[1]:g})"


def _mix(name: str, severity: tuple[float, float], **probabilities: float) -> DegradationMix:
    return DegradationMix({d: probabilities.get(d, 0.0) for d in DEGRADATIONS}, severity, name)


PRESETS: dict[str, DegradationMix] = {
    "clean": _mix("clean", (0.0, 0.0)),
    "default": _mix("default", (0.2, 0.7), flare=0.1, low_light=0.1, fog=0.05, blur=0.05, noise=0.1, occlusion=0.05),
    # CoEN's low-quality setting: intense flare on about half of the RGB images.
    "flare_heavy": _mix("flare_heavy", (0.5, 1.0), flare=0.5, noise=0.05),
    "low_light": _mix("low_light", (0.3, 0.9), low_light=0.5, flare=0.1, noise=0.1),
    "harsh": _mix("harsh", (0.4, 1.0), flare=0.2, low_light=0.2, fog=0.15, blur=0.15, noise=0.2, occlusion=0.15),
}


def parse_mix(spec: str | Mapping[str, float | str] | DegradationMix) -> DegradationMix:
    """A mix from a preset name, ``"preset,name=p,..."``, ``"name=p,..."`` or a dict.

    ``severity=LO-HI`` (or a ``(lo, hi)`` tuple in a dict) sets the severity range. Unknown names,
    probabilities outside [0, 1] and malformed items raise ``ValueError`` naming the item.
    """
    if isinstance(spec, DegradationMix):
        return spec
    if isinstance(spec, str):
        items = [t.strip() for t in spec.split(",") if t.strip()]
        if not items:
            raise ValueError(f"empty degradation mix; expected a preset ({', '.join(PRESETS)}) or name=p items")
        base, overrides = PRESETS["clean"], {}
        for i, item in enumerate(items):
            key, sep, value = item.partition("=")
            if not sep:
                if i or item not in PRESETS:
                    raise ValueError(f"degradation mix item {item!r}: expected a preset name first "
                                     f"({', '.join(PRESETS)}) or name=probability with name in "
                                     f"{', '.join(DEGRADATIONS)} or severity")
                base = PRESETS[item]
            else:
                overrides[key.strip()] = value.strip()
        name = spec if overrides else base.name
    elif isinstance(spec, Mapping):
        base, overrides, name = PRESETS["clean"], dict(spec), "custom"
    else:
        raise ValueError(f"degradations must be a preset name, a 'name=p,...' string or a dict, got {type(spec)}")
    probabilities, severity = dict(base.probabilities), base.severity
    for key, value in overrides.items():
        if key == "severity":
            severity = _severity_range(value)
        elif key in DEGRADATIONS:
            probabilities[key] = _probability(key, value)
        else:
            raise ValueError(f"unknown degradation {key!r}; expected one of {', '.join(DEGRADATIONS)} or severity")
    if any(p > 0 for p in probabilities.values()) and severity == (0.0, 0.0):
        severity = PRESETS["default"].severity
    return DegradationMix(probabilities, severity, name)


def _probability(key: str, value: float | str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"degradation {key}: probability {value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"degradation {key}: probability {p} is outside [0, 1]")
    return p


def _severity_range(value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in (value.split("-") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise ValueError(f"severity {value!r}: expected LO-HI such as 0.3-0.8") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"severity {value!r}: expected 0 <= LO <= HI <= 1")
    return lo, hi


@dataclass(frozen=True)
class Degradation:
    kind: str = NONE
    severity: float = 0.0

    @property
    def quality(self) -> float:
        return 1.0 - self.severity


@dataclass
class SampleDegradations:
    """The degradation of each modality of one sample, and the shared occluder box if any."""

    per_modality: dict[str, Degradation] = field(default_factory=dict)
    #: (top, left, height, width) as fractions of the subject's bounding box
    occluder: tuple[float, float, float, float] | None = None


def draw_degradations(mix: DegradationMix, modalities: tuple[str, ...], night: bool, night_rate: float,
                      rng: np.random.Generator) -> SampleDegradations:
    """Decide which degradation (if any) each modality of one sample gets."""
    out = SampleDegradations()
    lo, hi = mix.severity
    p_occ = mix.probabilities.get("occlusion", 0.0)
    if p_occ > 0 and rng.random() < p_occ:
        everywhere = len(modalities) == 1 or rng.random() < 0.5
        hit = modalities if everywhere else (modalities[rng.integers(len(modalities))],)
        severity = float(rng.uniform(lo, hi))
        for m in hit:
            out.per_modality[m] = Degradation("occlusion", severity)
        frac = 0.3 + 0.45 * severity                    # side of the box relative to the subject box
        out.occluder = (float(rng.uniform(0, 1 - frac)), float(rng.uniform(0, 1 - frac)), frac, frac)
    for m in modalities:
        if m in out.per_modality:
            continue
        kinds, weights = [], []
        for d, affinity in AFFINITY.items():
            p = mix.probabilities.get(d, 0.0) * affinity[m]
            if d in NIGHT_BOOST and p > 0:
                boost = NIGHT_BOOST[d]
                p = p * (boost if night else 1.0) / (night_rate * boost + 1.0 - night_rate)
            kinds.append(d)
            weights.append(min(p, 1.0))
        total = sum(weights)
        weights = [w / total for w in weights] if total > 1 else weights
        r, acc = rng.random(), 0.0
        choice = NONE
        for d, w in zip(kinds, weights, strict=True):
            acc += w
            if r < acc:
                choice = d
                break
        out.per_modality[m] = Degradation(choice, float(rng.uniform(lo, hi)) if choice != NONE else 0.0)
    return out


def _subject_box(labels: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(labels.any(axis=1))[0], np.nonzero(labels.any(axis=0))[0]
    if not len(rows):
        return 0, 0, labels.shape[0], labels.shape[1]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def _spatial_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(img, (sigma, sigma, 0) if img.ndim == 3 else sigma)


def _flare(img, s, rng, labels, modality):
    h, w = labels.shape
    lamps = np.argwhere(labels == LIGHT)
    if len(lamps) and rng.random() < 0.7:               # headlight glare where the vehicle has lamps
        cy, cx = lamps[rng.integers(len(lamps))]
    else:
        cy, cx = rng.uniform(0.1, 0.7) * h, rng.uniform(0.15, 0.85) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (0.1 + 0.3 * s) * min(h, w)
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    bloom = np.exp(-d2 / (2 * r * r)) * (0.7 + 1.6 * s)
    streaks = np.exp(-np.abs(yy - cy) / (0.01 * h + 1)) * np.exp(-np.abs(xx - cx) / (0.6 * w)) * s
    glow = np.clip(bloom + streaks + 0.12 * s, 0, 1)
    if img.ndim == 3:
        glow = glow[..., None] * np.array([1.0, 0.97, 0.9], np.float32)
    return 1.0 - (1.0 - img) * (1.0 - glow)              # screen blend: saturates the bloom region


def _low_light(img, s, rng, labels, modality):
    dark = img * (1.0 - 0.88 * s)
    return dark + rng.normal(0, 0.015 + 0.05 * s, img.shape).astype(np.float32)


def _fog(img, s, rng, labels, modality):
    a = 0.75 * s
    air = np.array([0.76, 0.78, 0.8], np.float32) if img.ndim == 3 else np.float32(0.77)
    return _spatial_blur(img, 0.01 * labels.shape[0] * s) * (1 - a) + a * air


def _blur(img, s, rng, labels, modality):
    return _spatial_blur(img, (0.005 + 0.035 * s) * labels.shape[0])


def _noise(img, s, rng, labels, modality):
    noisy = img + rng.normal(0, 0.03 + 0.22 * s, img.shape).astype(np.float32)
    if modality == "tir":                                # microbolometer column non-uniformity
        noisy = noisy + rng.normal(0, 0.1 * s, (1, img.shape[1])).astype(np.float32)
    return noisy


def _occlude(img, box, rng, modality):
    out = img.copy()
    top, left, bottom, right = box
    if img.ndim == 3:
        out[top:bottom, left:right] = rng.uniform(0.1, 0.9, 3)
    else:
        out[top:bottom, left:right] = rng.uniform(0.2, 0.6) if modality == "tir" else rng.uniform(0.1, 0.9)
    return out


def occluder_box(labels: np.ndarray, occluder: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Pixel box (top, left, bottom, right) of an occluder given as fractions of the subject's bounding box."""
    y0, x0, y1, x1 = _subject_box(labels)
    top, left, fh, fw = occluder
    bh, bw = y1 - y0, x1 - x0
    return int(y0 + top * bh), int(x0 + left * bw), int(y0 + (top + fh) * bh), int(x0 + (left + fw) * bw)


APPLY = {"flare": _flare, "low_light": _low_light, "fog": _fog, "blur": _blur, "noise": _noise}


def apply_degradations(images: dict[str, np.ndarray], labels: np.ndarray, plan: SampleDegradations,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Degrade each modality image as ``plan`` says; images are float32 in [0, 1]."""
    box = None if plan.occluder is None else occluder_box(labels, plan.occluder)
    out = {}
    for m, img in images.items():
        d = plan.per_modality.get(m, Degradation())
        if d.kind == "occlusion":
            img = _occlude(img, box, rng, m)
        elif d.kind != NONE:
            img = APPLY[d.kind](img, d.severity, rng, labels, m)
        out[m] = np.clip(img, 0.0, 1.0)
    return out
