"""The embedded synthetic benchmark, written in the six real on-disk formats.

``synthesize("rgbnt201", root)`` renders procedural persons or vehicles whose identity cues are
split across RGB / NIR / TIR (or, for SYSU-MM01 and RegDB, shared through clothing texture), under
per-camera nuisances and per-sample, per-modality degradations, and writes them in the official
layout so the real loaders read them unchanged. See docs/synthetic_dataset_card.md.

Modules: :mod:`~.identities` (the generative identity model), :mod:`~.render` (drawing a sample),
:mod:`~.degrade` (degradations and presets), :mod:`~.layouts` (what each format's tree holds),
:mod:`~.writers` (files, manifest, sidecar), :mod:`~.generate` (the entry point), :mod:`~.masks` (where
the subject is in a written image, replayed from the generator's draws).
"""

from reidlab.data.synthetic.degrade import DEGRADATIONS, PRESETS, DegradationMix, parse_mix
from reidlab.data.synthetic.generate import SynthSummary, read_metadata, synthesize
from reidlab.data.synthetic.layouts import SPECS
from reidlab.data.synthetic.masks import ObjectMasks, object_mask, object_masks

__all__ = ["DEGRADATIONS", "PRESETS", "SPECS", "DegradationMix", "ObjectMasks", "SynthSummary", "object_mask",
           "object_masks", "parse_mix", "read_metadata", "synthesize"]
