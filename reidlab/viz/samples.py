"""A grid of samples (one row per record, one column per modality) and the choice of which samples to show.

With the synthetic sidecar (:func:`reidlab.data.synthetic.read_metadata`: per modality
``<m>_degradation`` and ``<m>_quality``), each cell names its modality's degradation and quality,
and :func:`pick_diverse` chooses records of distinct identities that cover the degradations, so a
notebook does not hand-pick (and does not show five clean samples after describing the degradations).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reidlab.data.records import MODALITIES, MODALITY_LETTERS, Record
from reidlab.data.synthetic.degrade import NONE
from reidlab.viz.style import (
    DEGRADED_COLOR,
    finish,
    fit_image_cells,
    image_axis,
    image_cell_size,
    new_figure,
    row_label,
    style,
    to_display,
)

#: Column headers of :func:`plot_samples`.
MODALITY_NAMES = {"rgb": "RGB", "nir": "NIR", "tir": "TIR"}


def _metadata_row(metadata: pd.DataFrame, record: Record) -> pd.Series:
    if record.key not in metadata.index:
        raise ValueError(f"record {record.key!r} (id {record.pid}) has no row in the metadata sidecar; "
                         "pass the read_metadata() of the tree the records were loaded from")
    return metadata.loc[record.key]


def degradations(record: Record, metadata: pd.DataFrame, modalities: Sequence[str] | None = None) -> dict[str, str]:
    """``{modality: degradation}`` of the record's present ``modalities`` (default: all), from the sidecar.

    A clean image reads ``"none"``; a modality the record lacks is left out.
    """
    row = _metadata_row(metadata, record)
    shown = [m for m in (modalities or MODALITIES) if m in record.images]
    return {m: str(row[f"{m}_degradation"]) if pd.notna(row[f"{m}_degradation"]) else NONE for m in shown}


def condition_label(record: Record, metadata: pd.DataFrame | None = None,
                    modalities: Sequence[str] | None = None) -> str:
    """Row label naming the identity and each degraded modality, e.g. ``"id 25 · R flare q=0.08"``.

    Without ``metadata`` (real data) the label is ``"id <pid>"``; with it, a sample whose shown
    ``modalities`` are all clean reads ``"id <pid> · clean"``. For Grad-CAM titles and sample grids.
    """
    if metadata is None:
        return f"id {record.pid}"
    row = _metadata_row(metadata, record)
    degraded = [f"{MODALITY_LETTERS[m]} {d} q={row[f'{m}_quality']:.2f}"
                for m, d in degradations(record, metadata, modalities).items() if d != NONE]
    return f"id {record.pid} · " + (", ".join(degraded) if degraded else "clean")


def pick_diverse(records: Sequence[Record], metadata: pd.DataFrame | None = None, n: int = 4, *,
                 modality: str | None = None) -> list[int]:
    """Positions (sorted) of ``n`` records of distinct identities covering as many conditions as possible (all
    identities when ``records`` hold fewer than ``n``).

    A record's conditions are the ``(modality, degradation)`` pairs of its images (``"none"`` when
    clean), only ``modality``'s when given. Greedy set cover, deterministic: each step takes the
    first record (in ``records`` order) of a not yet shown identity that adds the most conditions
    not yet shown; once nothing new can be added, the first records of unshown identities fill up.
    Without ``metadata`` (real data) that is the first record of each of the first ``n`` identities.
    Use the positions with ``[records[i] for i in picked]`` or ``run.batch(part, picked)``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    n = min(n, len({r.pid for r in records}))  # a small (smoke) split has fewer identities than asked for
    conditions = [set() if metadata is None else
                  set(degradations(r, metadata, None if modality is None else [modality]).items()) for r in records]
    picked: list[int] = []
    shown_ids: set[int] = set()
    shown: set[tuple[str, str]] = set()
    while len(picked) < n:
        candidates = [i for i, r in enumerate(records) if r.pid not in shown_ids]
        best = max(candidates, key=lambda i: (len(conditions[i] - shown), -i))
        picked.append(best)
        shown_ids.add(records[best].pid)
        shown |= conditions[best]
    return sorted(picked)


def plot_samples(records: Sequence[Record], modalities: Sequence[str], *, metadata: pd.DataFrame | None = None,
                 save: str | Path | None = None) -> Figure:
    """Rows = ``records``, columns = ``modalities``; blank cells for a modality a record lacks.

    Each row is labelled with its identity and camera; with ``metadata`` each cell's caption names
    the degradation applied to that modality (``clean`` when none) and its ground-truth quality,
    and degraded cells get a :data:`~reidlab.viz.style.DEGRADED_COLOR` border.
    Cells follow the images' aspect ratio (:func:`~reidlab.viz.style.fit_image_cells`, from the
    first image shown; one dataset's images share a size).
    """
    if not records or not modalities:
        raise ValueError("need at least one record and one modality to show")
    with style():
        first = to_display(next(iter(records[0].images.values())))
        fig, axes = new_figure(len(records), len(modalities), image_cell_size(first.shape))
        for r, record in enumerate(records):
            conditions = None if metadata is None else degradations(record, metadata, modalities)
            row_label(axes[r, 0], f"id {record.pid}\ncam {record.camid}")
            for c, modality in enumerate(modalities):
                ax = axes[r, c]
                title = MODALITY_NAMES.get(modality, modality) if r == 0 else None
                if modality not in record.images:
                    image_axis(ax, np.ones_like(first), title=title, caption="absent")
                    continue
                caption = border = None
                if conditions is not None:
                    quality = _metadata_row(metadata, record)[f"{modality}_quality"]
                    name = conditions[modality]
                    caption = f"{'clean' if name == NONE else name} · q={quality:.2f}"
                    border = None if name == NONE else DEGRADED_COLOR
                image_axis(ax, to_display(record.images[modality]), border, title, caption)
        fit_image_cells(fig, axes, first.shape)
    return finish(fig, save)
