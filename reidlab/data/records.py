"""The data contract shared by every benchmark: modalities, image references, records, splits.

A :class:`Record` is one sample — the images of one person/vehicle taken at one moment by one
camera, one image per modality (some modalities may be absent). A :class:`Split` holds the
train / query / gallery records of one benchmark under one evaluation protocol. Loaders in
:mod:`reidlab.data.formats` turn official on-disk trees into splits; nothing downstream reads
file names again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.errors import ReidlabError

#: Canonical modality keys, in the fixed order used for stacked tensors and presence masks.
RGB, NIR, TIR = "rgb", "nir", "tir"
MODALITIES: tuple[str, ...] = (RGB, NIR, TIR)
#: Names of the evaluation protocols (:data:`reidlab.eval.protocols.PROTOCOLS` defines each rule), here so the
#: data layer (``Split.protocol``, manifests) and the CLI can name them without importing the evaluation code.
PROTOCOL_NAMES: tuple[str, ...] = ("market", "msvr310", "sysu_all", "sysu_indoor", "regdb")
#: Short names used by the papers: M(R), M(NT), ...
MODALITY_LETTERS: dict[str, str] = {RGB: "R", NIR: "N", TIR: "T"}


class DataFormatError(ReidlabError, ValueError):
    """A dataset tree, split file or image does not match what its format requires.

    The message always names the offending file or record and says what was expected.
    """


@dataclass(frozen=True)
class ImageRef:
    """One modality image on disk.

    ``tile``/``num_tiles`` select a horizontal tile of a side-by-side image (RGBNT100 stores
    RGB|NIR|TIR in one JPEG): the image is cut into ``num_tiles`` equal-width columns and
    column ``tile`` is used. ``tile=None`` means the whole file.
    """

    path: Path
    tile: int | None = None
    num_tiles: int = 1


@dataclass(frozen=True)
class Record:
    """One sample: per-modality images, identity, camera and optional scene.

    ``images`` maps a modality key (``rgb``, ``nir``, ``tir``) to its :class:`ImageRef`; a
    modality missing from the mapping is absent for this sample. ``pid`` is the dataset's own
    identity label (not remapped). ``camid`` numbers cameras as the reference code does, so that
    features evaluated elsewhere and here agree: the file-name digit minus one for RGBNT201 and
    RGBNT100; the ``v`` digit as written for MSVR310 and WMVeID863 (already 0-based there); the
    camera number 1–6 for SYSU-MM01 (its protocol's cam-3/cam-2 rule refers to these numbers);
    1 = visible, 2 = thermal for RegDB. ``sceneid`` is
    the MSVR310 scene (or ``None``). ``key`` is the POSIX path of the first present modality image
    relative to the dataset directory; synthetic sidecar metadata joins on it.
    """

    images: Mapping[str, ImageRef]
    pid: int
    camid: int
    sceneid: int | None = None
    key: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.images) - set(MODALITIES)
        if unknown:
            raise DataFormatError(f"record {self.key!r}: unknown modalities {sorted(unknown)}; "
                                  f"expected a subset of {MODALITIES}")
        if not self.images:
            raise DataFormatError(f"record {self.key!r} has no image in any modality")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Present modalities, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.images)

    @property
    def modality(self) -> str:
        """The single modality of a cross-modal (one image per record) sample."""
        if len(self.images) != 1:
            raise ValueError(f"record {self.key!r} has {len(self.images)} modalities, not one")
        return next(iter(self.images))


@dataclass
class Split:
    """Train / query / gallery records of one benchmark under one protocol.

    ``protocol`` names the evaluation rule in :mod:`reidlab.eval.protocols`
    (``market``, ``msvr310``, ``sysu_all``, ``sysu_indoor``, ``regdb``). ``modalities`` lists
    the modalities the benchmark provides. ``info`` keeps loader options (trial, mode, ...).
    """

    benchmark: str
    root: Path
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    protocol: str
    modalities: tuple[str, ...]
    info: dict = field(default_factory=dict)

    def parts(self) -> dict[str, list[Record]]:
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    def statistics(self) -> dict[str, dict[str, int]]:
        """Records, identities, cameras and images per modality for each part."""
        return {name: record_statistics(records) for name, records in self.parts().items()}


def record_statistics(records: Iterable[Record]) -> dict[str, int]:
    records = list(records)
    stats = {
        "records": len(records),
        "ids": len({r.pid for r in records}),
        "cameras": len({r.camid for r in records}),
    }
    for m in MODALITIES:
        stats[f"images_{m}"] = sum(m in r.images for r in records)
    return stats


def relabel(records: Iterable[Record]) -> dict[int, int]:
    """Map dataset pids to contiguous training labels 0..C-1 in sorted pid order."""
    return {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}

