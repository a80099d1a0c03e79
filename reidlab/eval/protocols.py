"""Evaluation protocols: which gallery items a query may not be matched against.

Every protocol is a vectorised rule that, for a chunk of queries and the whole gallery, returns
a boolean ``[num_queries, num_gallery]`` mask of gallery items *removed* from that query's ranked
list before CMC / mAP / mINP are computed (the "junk" of the Market-1501 convention). Facts, as
the reference code implements them:

``market``
    Multi-modal benchmarks (RGBNT201, RGBNT100, WMVeID863): remove gallery items with the same
    identity **and** the same camera as the query (Zheng et al. 2015; TransReID/TOP-ReID code).
``msvr310``
    MSVR310: remove gallery items with the same identity **and** the same scene id, whatever
    the camera (``eval_func_msrv`` of the MSVR310 release).
``sysu_all`` / ``sysu_indoor``
    SYSU-MM01, camera numbers 1–6. Cameras 2 (visible) and 3 (infrared) share one location,
    so a cam-3 query has **every** cam-2 gallery image removed — of any identity, not only its
    own. That is what both the dataset authors' evaluation (cam 3 mapped to location 2, then
    gallery items at the query's location removed) and Ye et al.'s AGW ``eval_sysu``
    (``remove = (q_camid == 3) & (g_camids == 2)``) do. CMC then counts each gallery identity
    once: after removal only the first occurrence of each identity in the ranked list is kept
    (``np.unique(..., return_index=True)`` in the official code). mAP and mINP use the full,
    non-deduplicated list. Indoor and all search differ only in the gallery cameras, which
    the split decides, so the rule is the same.
``regdb``
    RegDB: nothing removed (query and gallery come from different sensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Labels:
    """Identity, camera and (optional) scene labels of a query or gallery set, as 1-D int64 tensors."""

    pids: torch.Tensor
    camids: torch.Tensor
    sceneids: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.pids.shape[0])

    def __getitem__(self, index: slice) -> Labels:
        scenes = None if self.sceneids is None else self.sceneids[index]
        return Labels(self.pids[index], self.camids[index], scenes)

    def to(self, device: torch.device | str) -> Labels:
        scenes = None if self.sceneids is None else self.sceneids.to(device)
        return Labels(self.pids.to(device), self.camids.to(device), scenes)


RemovalRule = Callable[[Labels, Labels], torch.Tensor]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    ``remove(query, gallery)`` returns the ``[q, g]`` removal mask; ``dedup_cmc`` makes CMC
    count each gallery identity once; ``needs_sceneids`` requires scene ids on both sides;
    ``camera_range`` (inclusive) is checked because the rule refers to camera numbers.
    """

    name: str
    remove: RemovalRule
    dedup_cmc: bool = False
    needs_sceneids: bool = False
    camera_range: tuple[int, int] | None = None

    def check(self, query: Labels, gallery: Labels) -> None:
        """Raise ``ValueError`` when labels cannot be evaluated under this protocol."""
        if self.needs_sceneids and (query.sceneids is None or gallery.sceneids is None):
            raise ValueError(f"protocol {self.name!r} needs query and gallery scene ids "
                             "(query_sceneids / gallery_sceneids)")
        if self.camera_range is not None:
            low, high = self.camera_range
            for side, labels in (("query", query), ("gallery", gallery)):
                bad = (labels.camids < low) | (labels.camids > high)
                if bool(bad.any()):
                    raise ValueError(
                        f"protocol {self.name!r} expects SYSU-MM01 camera numbers {low}-{high}; "
                        f"{side} camids contain {sorted(set(labels.camids[bad].tolist()))[:5]}")


def _same_pid(query: Labels, gallery: Labels) -> torch.Tensor:
    return query.pids[:, None] == gallery.pids[None, :]


def _remove_same_pid_same_camera(query: Labels, gallery: Labels) -> torch.Tensor:
    return _same_pid(query, gallery) & (query.camids[:, None] == gallery.camids[None, :])


def _remove_same_pid_same_scene(query: Labels, gallery: Labels) -> torch.Tensor:
    return _same_pid(query, gallery) & (query.sceneids[:, None] == gallery.sceneids[None, :])


def _remove_cam3_query_cam2_gallery(query: Labels, gallery: Labels) -> torch.Tensor:
    return (query.camids[:, None] == 3) & (gallery.camids[None, :] == 2)


def _remove_nothing(query: Labels, gallery: Labels) -> torch.Tensor:
    return torch.zeros(len(query), len(gallery), dtype=torch.bool, device=query.pids.device)


PROTOCOLS: dict[str, Protocol] = {
    "market": Protocol("market", _remove_same_pid_same_camera),
    "msvr310": Protocol("msvr310", _remove_same_pid_same_scene, needs_sceneids=True),
    "sysu_all": Protocol("sysu_all", _remove_cam3_query_cam2_gallery, dedup_cmc=True, camera_range=(1, 6)),
    "sysu_indoor": Protocol("sysu_indoor", _remove_cam3_query_cam2_gallery, dedup_cmc=True, camera_range=(1, 6)),
    "regdb": Protocol("regdb", _remove_nothing),
}


def get_protocol(name: str | Protocol) -> Protocol:
    """Look a protocol up by name (a :class:`Protocol` passes through)."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown evaluation protocol {name!r}; expected one of {', '.join(PROTOCOLS)}") from None


def removal_mask(protocol: str | Protocol, query: Labels, gallery: Labels) -> torch.Tensor:
    """The ``[len(query), len(gallery)]`` boolean mask of gallery items removed per query."""
    return get_protocol(protocol).remove(query, gallery)
