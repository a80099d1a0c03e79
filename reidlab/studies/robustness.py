"""How a trained method degrades as test conditions worsen (notebook 06): one synthetic degradation of one
modality of the query and gallery images at a chosen severity, and the random missing-modality rate η.

    degradation = TestDegradation("flare", 0.6, modality="rgb")
    run.model, degradation.wrap(run.transform)               # a test transform that degrades first
    scores = degradation_scores(runs, {"flare": "rgb", "noise": "tir"}, severities=[0.3, 0.6, 0.9])

The degradations are the generator's own (:mod:`reidlab.data.synthetic.degrade`, the formulas the trees were
rendered with), applied at test time to the image as stored, before the run's test transform resizes and
normalises it — so every method sees the same degraded pixels. Two differences from render time, because a test
image carries no part-label map: the occluder's box is placed in the whole image rather than in the subject's
bounding box, and a flare's centre is drawn at random rather than on a vehicle's lamp. Each image's draws (noise,
flare centre, occluder) come from a generator seeded by the image's own bytes and ``seed``: the same image gets the
same degradation for every method and every call.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image

from reidlab.data.records import Split
from reidlab.data.synthetic.degrade import Degradation, SampleDegradations, apply_degradations
from reidlab.data.transforms import Transform, resize_to_uint8
from reidlab.engine.evaluation import evaluate_model
from reidlab.engine.experiment import Run
from reidlab.studies.leaderboard import result_line

#: The degradations of the robustness curves and the modality each hits (the one it hits most at render time,
#: :data:`~reidlab.data.synthetic.degrade.AFFINITY`; fog is haze + blur).
MULTIMODAL_TARGETS: dict[str, str] = {"flare": "rgb", "low_light": "rgb", "fog": "rgb", "noise": "tir",
                                      "occlusion": "rgb"}
#: Visible-infrared methods: every degradation on the visible side.
VISIBLE_TARGETS: dict[str, str] = dict.fromkeys(MULTIMODAL_TARGETS, "rgb")


class TestDegradation:
    """One degradation ``kind`` at ``severity`` in [0, 1] of ``modality``'s images (others pass unchanged)."""

    __test__ = False  # not a pytest class

    def __init__(self, kind: str, severity: float, modality: str = "rgb", seed: int = 0) -> None:
        if kind not in MULTIMODAL_TARGETS:
            raise ValueError(f"unknown degradation {kind!r}; expected one of {', '.join(MULTIMODAL_TARGETS)}")
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity must lie in [0, 1], got {severity}")
        self.kind, self.severity, self.modality, self.seed = kind, float(severity), modality, seed
        self._done: dict[int, torch.Tensor] = {}   # image checksum -> degraded image (methods share the pixels)

    def __repr__(self) -> str:
        return f"TestDegradation({self.kind!r}, {self.severity:g}, modality={self.modality!r})"

    def degrade(self, image: torch.Tensor) -> torch.Tensor:
        """A uint8 image [3, H, W] degraded (infrared: on its single channel, as rendered)."""
        pixels = image.permute(1, 2, 0).numpy()
        checksum = zlib.crc32(pixels.tobytes())
        if checksum not in self._done:
            rng = np.random.default_rng([self.seed, checksum, int(self.severity * 1000)])
            array = pixels.astype(np.float32) / 255.0
            if self.modality != "rgb":
                array = array.mean(axis=2)
            plan = SampleDegradations({self.modality: Degradation(self.kind, self.severity)})
            if self.kind == "occlusion":   # the render-time box: a side of 0.3 + 0.45 * severity of the box
                side = 0.3 + 0.45 * self.severity
                plan.occluder = (float(rng.uniform(0, 1 - side)), float(rng.uniform(0, 1 - side)), side, side)
            labels = np.zeros(array.shape[:2], dtype=np.uint8)   # no part labels: the whole image is the box
            out = apply_degradations({self.modality: array}, labels, plan, rng)[self.modality]
            out = np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out
            self._done[checksum] = torch.from_numpy(np.round(out * 255.0).astype(np.uint8)).permute(2, 0, 1)
        return self._done[checksum]

    def wrap(self, transform: Transform) -> Transform:
        """``transform`` applied after this degradation. The loader hands a wrapped transform each image at its
        stored size; every modality goes on as a PIL image, so ``transform`` resizes it exactly as the run-cache
        path does (severity 0 scores what ``run.evaluate()`` scores)."""
        def degraded(images, generator=None):
            hit = {self.modality} if self.severity > 0 else set()
            return transform({m: _as_pil(self.degrade(_as_uint8(image)) if m in hit else image)
                              for m, image in images.items()}, generator)
        return degraded


def _as_uint8(image: Image.Image | torch.Tensor) -> torch.Tensor:
    return image if isinstance(image, torch.Tensor) else resize_to_uint8(image, None)


def _as_pil(image: Image.Image | torch.Tensor) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(image.permute(1, 2, 0).numpy())


def evaluate_run(run: Run, transform: Transform | None = None, split: Split | None = None, **options):
    """:func:`~reidlab.engine.evaluation.evaluate_model` of ``run`` with its own evaluation options and, if given,
    another test ``transform`` or ``split`` (``options``: e.g. ``missing``, ``missing_seed``)."""
    return evaluate_model(run.model, split or run.split, transform or run.transform,
                          flip=run.recipe.eval.get("flip", False), progress=False,
                          batch_size=run.recipe.data.get("test_batch_size", 128), **options)


def degradation_scores(runs: Mapping[tuple[str, int], Run], targets: Mapping[str, str], severities: Sequence[float],
                       split: Split | None = None) -> pd.DataFrame:
    """Every run under each degradation of ``targets`` (``{kind: modality}``) at each severity, and clean
    (severity 0, shared by the kinds): one line per (row, seed, degradation, severity), metrics in %.
    ``split``: the test split for every run (default: each run's own)."""
    lines = []
    clean = {key: result_line(*key, evaluate_run(run, split=split)) for key, run in runs.items()}
    for kind, modality in targets.items():
        lines += [{**line, "degradation": kind, "severity": 0.0} for line in clean.values()]
        for severity in severities:
            degradation = TestDegradation(kind, severity, modality)
            lines += [{**result_line(*key, evaluate_run(run, degradation.wrap(run.transform), split)),
                       "degradation": kind, "severity": float(severity)} for key, run in runs.items()]
    return pd.DataFrame(lines)


def missing_rate_scores(runs: Mapping[tuple[str, int], Run], rates: Sequence[float],
                        mask_seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Every run at each random missing rate η (query and gallery, :func:`~reidlab.eval.missing.random_missing_masks`),
    averaged over ``mask_seeds``: one line per (row, seed, η), metrics in %."""
    lines = []
    for (row, seed), run in runs.items():
        for rate in rates:
            masks = pd.DataFrame([result_line(row, seed, evaluate_run(run, missing=float(rate), missing_seed=mask))
                                  for mask in mask_seeds])
            lines.append({"row": row, "seed": seed, "η": float(rate), **masks.drop(columns=["row", "seed"]).mean()})
    return pd.DataFrame(lines)
