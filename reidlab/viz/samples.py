"""A grid of samples: one row per record, one column per modality, with the sidecar's conditions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from reidlab.data.records import MODALITY_LETTERS, Record
from reidlab.viz.style import IMAGE_CELL_SIZE, finish, image_axis, new_figure, style, to_display


def plot_samples(records: Sequence[Record], modalities: Sequence[str], *, metadata: pd.DataFrame | None = None,
                 save: str | Path | None = None) -> Figure:
    """Rows = ``records``, columns = ``modalities``; blank cells for a modality a record lacks.

    With ``metadata`` (:func:`reidlab.data.synthetic.read_metadata`), each cell's caption names the
    degradation applied to that modality and its ground-truth quality.
    """
    if not records or not modalities:
        raise ValueError("need at least one record and one modality to show")
    with style():
        fig, axes = new_figure(len(records), len(modalities), IMAGE_CELL_SIZE)
        for r, record in enumerate(records):
            for c, modality in enumerate(modalities):
                ax = axes[r, c]
                if modality not in record.images:
                    ax.axis("off")
                    continue
                caption = _condition(metadata, record, modality)
                title = f"{MODALITY_LETTERS[modality]} · id {record.pid}" if r == 0 or c == 0 else None
                image_axis(ax, to_display(record.images[modality]), title=title, caption=caption)
    return finish(fig, save)


def _condition(metadata: pd.DataFrame | None, record: Record, modality: str) -> str | None:
    if metadata is None or record.key not in metadata.index:
        return None
    row = metadata.loc[record.key]
    return f"{row[f'{modality}_degradation']}\nq={row[f'{modality}_quality']:.2f}"
