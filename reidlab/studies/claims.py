"""One claims table for every paper: the paper's effect beside ours, judged by the one noise rule.

A claim is a difference between two rows of one of the paper's tables ("PG helps": (b) − (a) in Table 3),
quoted from ``reidlab/papers/<paper>.yaml``, and the same difference between two rows of our study, paired
by seed (:func:`reidlab.studies.noise.paired_effect`). The schema, the same in every notebook:

``claim`` · ``paper Δ`` (real data, as printed) · ``paper source`` (table or figure) · ``our Δ`` (synthetic) ·
``se`` · ``seeds`` · ``verdict`` (beyond noise / within noise / one seed) · ``reading``:
**holds** (ours beyond noise with the paper's sign), **fails** (beyond noise with the opposite sign), or
**undecided** (within noise or one seed). Where the paper states a direction without a number (a
figure, the text), the claim carries ``expected_sign`` and its ``source``, and ``paper Δ`` shows "—".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reidlab.papers import paper_results
from reidlab.studies.noise import BEYOND, paired_effect

COLUMNS = ("paper Δ", "paper source", "our Δ", "se", "seeds", "verdict", "reading")


@dataclass(frozen=True)
class PaperDelta:
    """``row`` − ``reference`` of ``metric`` in table ``table`` of ``paper``'s YAML; ``where`` picks the printed
    lines whose columns (``detail``, ``dataset``, ``backbone``, ...) equal the given values."""

    paper: str
    table: int
    row: str
    reference: str
    metric: str = "mAP"
    where: dict = field(default_factory=dict)

    def value(self) -> float:
        rows = paper_results(self.paper, table=self.table)
        for column, value in self.where.items():
            rows = rows[rows[column] == value]
        values = rows.set_index("setting")[self.metric]
        if values.index.duplicated().any():
            raise ValueError(f"{self.paper} table {self.table} prints several lines per row here; pick one with "
                             f"where= (e.g. detail, dataset, backbone)")
        absent = [r for r in (self.row, self.reference) if r not in values.index]
        if absent:
            raise ValueError(f"{self.paper} table {self.table} has no row(s) {absent}; rows: {list(values.index)}")
        return float(values[self.row] - values[self.reference])

    @property
    def source(self) -> str:
        where = "".join(f", {value}" for value in self.where.values())
        return f"Table {self.table}{where}: {self.row} − {self.reference}"


@dataclass(frozen=True)
class Claim:
    """A paper's claim tested on our ``scores``: ``row`` − ``reference`` (rows of ``scores``; ``where`` keeps the
    lines whose columns equal the given values, e.g. ``{"setting": "M(N)"}``)."""

    claim: str
    scores: pd.DataFrame = field(repr=False)
    row: str
    reference: str
    paper: PaperDelta | None = None
    metric: str = "mAP"
    where: dict = field(default_factory=dict)
    source: str = ""
    expected_sign: int | None = None

    def line(self) -> dict:
        scores = self.scores
        for column, value in self.where.items():
            scores = scores[scores[column] == value]
        ours = paired_effect(scores, self.row, self.reference, self.metric).iloc[0]
        paper = self.paper.value() if self.paper is not None else float("nan")
        sign = np.sign(paper) if self.paper is not None else self.expected_sign
        return {"paper Δ": paper, "paper source": self.paper.source if self.paper else self.source,
                "our Δ": ours["delta"], "se": ours["se"], "seeds": int(ours["seeds"]),
                "verdict": ours["verdict"], "reading": reading(sign, ours["delta"], ours["verdict"])}


def reading(paper_sign: float | None, our_delta: float, verdict: str) -> str:
    """``holds`` / ``fails`` / ``undecided`` (``—`` when the paper states no direction): see the module docstring."""
    if paper_sign is None or np.isnan(paper_sign) or paper_sign == 0:
        return "—"
    if verdict != BEYOND:
        return "undecided"
    return "holds" if np.sign(paper_sign) == np.sign(our_delta) else "fails"


def claims_table(claims: Sequence[Claim], decimals: int = 1) -> pd.DataFrame:
    """The claims as one table (index ``claim``, columns :data:`COLUMNS`), numbers to ``decimals`` places."""
    frame = pd.DataFrame({c.claim: c.line() for c in claims}).T[list(COLUMNS)]
    frame.index.name = "claim"
    for column in ("paper Δ", "our Δ"):
        frame[column] = [f"{v:+.{decimals}f}" if pd.notna(v) else "—" for v in frame[column]]
    frame["se"] = [f"{v:.{decimals}f}" if pd.notna(v) else "—" for v in frame["se"]]
    return frame
