"""MMCF's two-phase unsupervised training (Sun, Du & Gao; spec ``specs/mmcf.md`` §3.1, §3.8–3.9): the criterion
whose ``epoch_hook`` re-clusters the training set every epoch, and whose forward sums the losses of
:mod:`reidlab.losses.mmcf` that the epoch's phase switches on.

Every epoch (:meth:`MMCFCriterion.epoch_hook`, spec §3.9):

1. features of every training image (test transform, eval mode; visible images through the visible stem, infrared
   through the infrared one): the BN'd concatenated feature F [N·D] and the N raw region tokens;
2. pseudo-labels per modality [S]: DBSCAN (eps, min_samples 4 [P]) on the k-reciprocal Jaccard distance
   (k1 = 30, k2 = 6 [S]) — :func:`reidlab.engine.clustering.pseudo_labels`; outliers (−1) sit the epoch out;
3. modality-specific cluster memories M^v, M^r (centroids, momentum 0.2 [P], A17);
4. phase 2 only (epoch ≥ ``phase2_start`` [S: epochs 51–100 of 100]): the regional cluster similarity and the
   capped greedy matching (VRA, μ [S] = 3; ``matching="hungarian"`` is PGM's, the ablation), the shared memories
   Φ^v, Φ^r (momentum 0.8 [P]), the UM partners of the epoch, the instance memories U^v, U^r and region tokens for
   VRNL's neighbour sets, and — on datasets with several cameras per modality — the intra-camera local clusters of
   the camera refinement;
5. a new loader: :class:`~reidlab.data.samplers.PseudoLabelSampler` (P visible clusters × K and P infrared
   clusters × K, ``iters`` batches) over a dataset that hides the identity labels (``identities=False``).

**No identity label is read** (unless ``oracle=True``: the supervised control, whose "clusters" are the true
identities of each modality — the same network, losses and schedule with perfect pseudo-labels). The hook takes
the records' images, modalities and cameras from the loader it is given, and every loader it builds hides ``pid``
and ``label``: training on a tree whose identity labels are shuffled gives the same weights (tested).

The loss (spec §3.8, Eq. ~45 [R]):

- phase 1: ``L_base + L_MAAL + λ R_id + w_div L_div``;
- phase 2: ``L_base* + L_MAAL + λ R_id + w_div L_div + α1 L_VRA + α2 L_VRNL + α3 L_UM``, with L_base* against the
  shared memories when VRA is on (the parent's, A10; ``base_shared=False`` keeps the modality memories).

Channel-augmented views take their visible image's pseudo-label and join the visible side of every loss (A3);
MAAL labels them as the third modality. The weights are the paper's [S] (α1 = 0.4, α2 = 0.5, α3 = 0.03, δ = 0.6 /
0.4, λ = 0.1, MAAL α = 1, β = 0.1); a weight of 0 switches its module off (the ablation rows of Table 3).

Reconstruction choices (beyond those of :mod:`reidlab.losses.mmcf`):

- **Camera refinement** [S prose: camera-aware neighbour refinement; P: TokenMatcher fine-tunes one model per
  camera for 20 epochs to get intra-camera clusters]: the local clusters here are DBSCAN clusters of each camera's
  images under the current model (eps ``local_eps``), without per-camera fine-tuning — the same role (which
  same-camera neighbours to keep) at no extra training.
- **UM's memory** [P]: the modality-specific memories rebuilt at the epoch start; in phase 2, when L_base* trains
  the shared memories, the modality memories receive no momentum update within the epoch.
- **MAAL's classifier** D_E has its own SGD (``maal_lr``, momentum 0.9, weight decay 5e-4 [P: PCAL], no schedule
  [G]); it trains on α·L_mc from the first epoch, the backbone's β·L_ca joins from epoch ``maal_warmup`` (A8).
- **Regional spaces** (VRA's similarity, VRNL's neighbour sets): the N slices of the BN'd instance feature F — the
  spec's u^{·,n} — not the raw tokens, whose large common component (mean pairwise cosine 0.999 on the tutorial
  trees, every instance above ρ · max) makes every neighbour set the whole training set. The raw tokens feed
  L_div only.
- **The first pseudo-labels**: the BNNeck of a fresh model has never seen data (running mean 0, variance 1), so
  before the first clustering its running statistics are set to those of the extracted raw features
  (:meth:`~reidlab.models.mmcf.MMCF.calibrate_feature_norm`; no label involved) [G].
- **Phase 2 starts from the last phase-1 weights** (the parent restarts from the phase-1 epoch that scored best on
  the *test* set, A14); the learning rate restarts 10× lower (``TrainConfig.restarts``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from reidlab.data.loading import build_test_loader, build_train_loader, single_modality_images
from reidlab.data.records import RGB, Record
from reidlab.data.samplers import PseudoLabelSampler
from reidlab.data.transforms import Transform
from reidlab.engine import distributed
from reidlab.engine.clustering import pseudo_labels
from reidlab.engine.memory import ClusterMemory, cluster_centroids, greedy_match, hungarian_match
from reidlab.losses import mmcf as L
from reidlab.models.mmcf import KINDS, ModalityClassifier

MATCHINGS = ("greedy", "hungarian")


def match_clusters(similarity: Tensor | np.ndarray, mu: int, method: str = "greedy") -> tuple[list[int],
                                                                                               list[list[int]]]:
    """VRA's cross-modal cluster matching (spec §3.5b) -> (V2R: the IR partner of each visible cluster, R2V: the
    visible partners of each IR cluster, most similar first).

    ``similarity`` [K_v, K_r]. ``greedy`` (TokenMatcher Alg. 1 / MMCF [S], cap μ per IR cluster) takes the larger
    modality as rows; when there are more IR clusters than visible ones the procedure is mirrored (spec §3.5b) and
    each visible cluster keeps its most similar IR partner as V2R. When the larger modality has more than μ
    clusters per cluster of the other, the clusters pass 1 cannot place take their most similar partner beyond the
    cap (``greedy_match(overflow=True)``; the parent's loop would not end, PGM raises). ``hungarian`` (PGM) pairs
    one-to-one, repeated until every row has a partner.
    """
    if method not in MATCHINGS:
        raise ValueError(f"matching must be one of {', '.join(MATCHINGS)}, got {method!r}")
    s = np.asarray(similarity, dtype=np.float64)
    flipped = s.shape[0] < s.shape[1]
    rows_view = s.T if flipped else s
    if method == "greedy":
        row_to_col, col_to_rows = greedy_match(rows_view, mu, overflow=True)
    else:
        row_to_col = hungarian_match(rows_view)
        col_to_rows = [sorted(np.flatnonzero(row_to_col == c).tolist(), key=lambda r, c=c: -rows_view[r, c])
                       for c in range(rows_view.shape[1])]
    if not flipped:
        return [int(c) for c in row_to_col], [list(map(int, rows)) for rows in col_to_rows]
    return [int(rows[0]) for rows in col_to_rows], [[int(c)] for c in row_to_col]


class MMCFCriterion(nn.Module):
    """MMCF's criterion and per-epoch clustering step (module docstring).

    ``forward(outputs, batch) -> {term: weighted loss}``: ``base``, ``maal`` (β·L_ca), ``r_id``, ``div`` every
    epoch, ``vra``, ``vrnl``, ``um`` in phase 2 (0 in phase 1). :attr:`history` keeps, per epoch, the
    pseudo-labels (per record, in its modality's label space, −1 = outlier), in phase 2 the matching V2R, and the
    seconds the epoch's step took (extraction, clustering, memories, matching).
    """

    def __init__(self, feature_dim: int, *, init_transform: Transform, p: int, k: int, iters: int, seed: int = 0,
                 phase2_start: int, tau: float = 0.05, memory_momentum: float = 0.2, shared_momentum: float = 0.8,
                 k1: int = 30, k2: int = 6, eps: float = 0.6, min_samples: int = 4, base_shared: bool = True,
                 lambda_id: float = 0.1, diversity: float = 1.0, maal: bool = True, maal_alpha: float = 1.0,
                 maal_beta: float = 0.1, maal_warmup: int = 5, maal_lr: float = 0.01, maal_hidden: int = 256,
                 vra: float = 0.4, mu: int = 3, matching: str = "greedy", vrnl: float = 0.5, rho: float = 0.9,
                 vrnl_alternate: bool = True, camera_refine: bool = True, local_eps: float = 0.5, um: float = 0.03,
                 um_deltas: Sequence[float] = (0.6, 0.4), oracle: bool = False,
                 extract_batch_size: int = 128) -> None:
        super().__init__()
        if matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {', '.join(MATCHINGS)}, got {matching!r}")
        if phase2_start < 0:
            raise ValueError(f"phase2_start must be >= 0, got {phase2_start}")
        self.init_transform, self.p, self.k, self.iters, self.seed = init_transform, p, k, iters, seed
        self.phase2_start, self.tau, self.base_shared = phase2_start, tau, base_shared
        self.cluster_options = {"k1": k1, "k2": k2, "eps": eps, "min_samples": min_samples}
        self.lambda_id, self.diversity = lambda_id, diversity
        self.maal, self.maal_alpha, self.maal_beta, self.maal_warmup = maal, maal_alpha, maal_beta, maal_warmup
        self.vra, self.mu, self.matching = vra, mu, matching
        self.vrnl, self.rho, self.vrnl_alternate, self.camera_refine = vrnl, rho, vrnl_alternate, camera_refine
        self.local_eps, self.um, self.um_deltas = local_eps, um, tuple(um_deltas)
        self.oracle, self.extract_batch_size = oracle, extract_batch_size
        self.memory_v = ClusterMemory(feature_dim, tau, memory_momentum)
        self.memory_r = ClusterMemory(feature_dim, tau, memory_momentum)
        self.shared_v = ClusterMemory(feature_dim, tau, shared_momentum)
        self.shared_r = ClusterMemory(feature_dim, tau, shared_momentum)
        self.classifier = ModalityClassifier(feature_dim, maal_hidden) if maal else None
        self.classifier_optimizer = (torch.optim.SGD(self.classifier.parameters(), lr=maal_lr, momentum=0.9,
                                                     weight_decay=5e-4) if maal else None)
        self.history: dict[int, dict[str, Tensor]] = {}
        self.epoch = 0
        self._records: list[Record] | None = None
        self._state: dict[str, Any] = {}

    # ---------------------------------------------------------------- per epoch
    @property
    def phase2(self) -> bool:
        return self.epoch >= self.phase2_start

    @property
    def matched(self) -> bool:
        """Whether this epoch matches clusters across modalities (phase 2 with VRA or UM on)."""
        return self.phase2 and (self.vra > 0 or self.um > 0)

    @torch.no_grad()
    def extract(self, model: nn.Module, records: Sequence[Record]) -> tuple[Tensor, Tensor]:
        """BN'd features [M, N·D] and raw region tokens [M, N, D] of ``records`` (test transform, no labels)."""
        device = next(model.parameters()).device
        loader = build_test_loader(records, self.init_transform, self.extract_batch_size,
                                   modalities=model.modalities, identities=False)
        features, tokens = [], []
        for batch in loader:
            images, modality = single_modality_images(batch)
            out = model.encode(images.to(device), (modality == 1).to(device))
            features.append(out["feature"].float().cpu())
            tokens.append(out["tokens"].float().cpu())
        return torch.cat(features), torch.cat(tokens)

    def epoch_hook(self, epoch: int, model: nn.Module, loader: DataLoader) -> DataLoader:
        """Re-cluster, refresh memories (and in phase 2 the matching and neighbour banks); the epoch's loader."""
        if self._records is None:
            self._records, self._train_transform = list(loader.dataset.records), loader.dataset.transform
        records, self.epoch = self._records, epoch
        start = time.perf_counter()
        training = model.training
        model.eval()
        features, tokens = self.extract(model, records)
        if int(model.bn.num_batches_tracked) == 0:  # a fresh BNNeck: centre the first features (module docstring)
            features = model.calibrate_feature_norm(tokens.flatten(1)).cpu()
        model.train(training)
        regions = features.view(tokens.shape)  # u^{·,n}: the N slices of the instance feature (spec §3.5a)
        infrared = torch.tensor([r.modality != RGB for r in records])
        labels = torch.full((len(records),), -1, dtype=torch.long)
        position = torch.empty(len(records), dtype=torch.long)  # index within its modality
        state: dict[str, Any] = {"infrared": infrared, "features": features, "regions": regions}
        for side, rows in (("v", (~infrared).nonzero()[:, 0]), ("r", infrared.nonzero()[:, 0])):
            labels[rows] = (self._true_labels([records[i] for i in rows.tolist()]) if self.oracle else
                            torch.from_numpy(pseudo_labels(features[rows], **self.cluster_options)).long())
            position[rows] = torch.arange(len(rows))
            state[f"rows_{side}"] = rows
            if not bool((labels[rows] >= 0).any()):
                raise RuntimeError(f"epoch {epoch}: DBSCAN found no {'visible' if side == 'v' else 'infrared'} "
                                   f"cluster (eps {self.cluster_options['eps']}): every sample is an outlier")
        rows_v, rows_r = state["rows_v"], state["rows_r"]
        labels_v, labels_r = labels[rows_v], labels[rows_r]
        self.memory_v.reset(cluster_centroids(features[rows_v], labels_v))
        self.memory_r.reset(cluster_centroids(features[rows_r], labels_r))
        record: dict[str, Tensor] = {"labels": labels.clone()}
        if self.matched:
            similarity = L.regional_cluster_similarity(regions[rows_v], labels_v, regions[rows_r], labels_r)
            v2r, r2v = match_clusters(similarity, self.mu, self.matching)
            phi_v, phi_r = L.shared_memories(features[rows_v], labels_v, features[rows_r], labels_r, v2r, r2v)
            self.shared_v.reset(phi_v)
            self.shared_r.reset(phi_r)
            groups_v, groups_r = L.merge_groups(r2v, len(v2r))
            state.update(v2r=v2r, r2v=r2v, partner_v=L.merge_partners(groups_v, len(v2r), epoch),
                         partner_r=L.merge_partners(groups_r, len(r2v), epoch))
            record["v2r"] = torch.tensor(v2r)
        if self.phase2 and self.vrnl > 0:
            cameras = torch.tensor([r.camid for r in records])
            # refine a modality's intra-modal sets only where it has several cameras (not RegDB: one per modality)
            refine = {side: self.camera_refine and len(cameras[state[f"rows_{side}"]].unique()) > 1
                      for side in ("v", "r")}
            local = self._local_clusters(features, cameras, [state[f"rows_{s}"] for s in ("v", "r") if refine[s]])
            state.update(cameras=cameras, local=local, refine=refine)
        state.update(labels=labels, position=position)
        self._state = state
        record["seconds"] = torch.tensor(time.perf_counter() - start)
        self.history[epoch] = record
        sampler = PseudoLabelSampler(labels.tolist(), infrared.tolist(), self.p, self.k, self.iters, self.seed,
                                     **distributed.sampler_kwargs())
        return build_train_loader(records, self._train_transform, self.p, self.k, self.seed, sampler=sampler,
                                  modalities=model.modalities, label_map={}, identities=False)

    @staticmethod
    def _true_labels(records: Sequence[Record]) -> Tensor:
        """``oracle=True`` only: the records' identities numbered 0.. within the modality — the one place training
        reads a label, switched on explicitly for the supervised control."""
        return torch.from_numpy(np.unique([r.pid for r in records], return_inverse=True)[1].ravel()).long()

    def _local_clusters(self, features: Tensor, cameras: Tensor, sides: Sequence[Tensor]) -> Tensor:
        """Intra-camera clusters for the camera refinement of the modalities whose rows are ``sides`` (per camera,
        DBSCAN at ``local_eps``; −1 = none), numbered apart across cameras."""
        local = torch.full((len(features),), -1, dtype=torch.long)
        offset = 0
        for rows_all in sides:
            for camera in cameras[rows_all].unique().tolist():
                rows = rows_all[cameras[rows_all] == camera]
                k1 = min(self.cluster_options["k1"], len(rows))
                k2 = min(self.cluster_options["k2"], k1)
                found = torch.from_numpy(pseudo_labels(features[rows], k1, k2, self.local_eps,
                                                       self.cluster_options["min_samples"])).long()
                local[rows] = torch.where(found >= 0, found + offset, found)
                offset += int(found.max()) + 1 if bool((found >= 0).any()) else 0
        return local

    # ---------------------------------------------------------------- per batch
    def forward(self, outputs: dict[str, Any], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self._state:
            raise RuntimeError("MMCFCriterion has no pseudo-labels: run epoch_hook (the trainer does, every epoch)")
        out, state = outputs["mmcf"], self._state
        device = out["features"].device
        index = batch["index"].to(device)[out["source"]]
        kind, features = out["kind"], out["features"]
        labels = state["labels"].to(device)[index]
        visible, infrared = kind != KINDS["infrared"], kind == KINDS["infrared"]  # CA views are on the visible side
        zero = features.sum() * 0.0
        memories = (self.shared_v, self.shared_r) if self.matched and self.base_shared and self.vra > 0 else (
            self.memory_v, self.memory_r)
        terms = {"base": memories[0](features[visible], labels[visible]) + memories[1](features[infrared],
                                                                                        labels[infrared])}
        terms["maal"] = zero
        if self.classifier is not None and self.training:
            beta = self.maal_beta if self.epoch >= self.maal_warmup else 0.0
            terms["maal"] = L.maal_step(self.classifier, self.classifier_optimizer, features, kind, self.maal_alpha,
                                        beta)[0]
        terms["r_id"] = zero
        if "channel_attention" in out and self.lambda_id > 0:
            identities = torch.where(infrared, labels + len(self.memory_v.bank), labels)  # disjoint label spaces
            terms["r_id"] = self.lambda_id * L.identity_consistency(out["channel_attention"], identities)
        terms["div"] = self.diversity * L.token_diversity(out["tokens"]) if self.diversity > 0 else zero
        terms["vra"] = terms["vrnl"] = terms["um"] = zero
        if self.matched and self.vra > 0:
            terms["vra"] = self.vra * L.cross_modal_contrast(
                features[visible], labels[visible], features[infrared], labels[infrared], self.shared_v.bank,
                self.shared_r.bank, state["v2r"], state["r2v"], self.tau)
        if self.phase2 and self.vrnl > 0:
            terms["vrnl"] = self.vrnl * self._neighbour_loss(features, index, visible, infrared)
        if self.matched and self.um > 0:
            terms["um"] = self.um * L.uniform_merging_loss(
                features[visible], labels[visible], self.memory_v.bank, state["partner_v"], features[infrared],
                labels[infrared], self.memory_r.bank, state["partner_r"], self.um_deltas, self.tau)
        return terms

    def _neighbour_loss(self, features: Tensor, index: Tensor, visible: Tensor, infrared: Tensor) -> Tensor:
        """L_VRNL = L_v→v + L_r→r + the cross-modal pair (alternating v→r / r→v by epoch parity, A11)."""
        state = self._state
        index = index.cpu()
        directions = [("v", "v"), ("r", "r")]
        cross = [("v", "r"), ("r", "v")]
        directions += [cross[self.epoch % 2]] if self.vrnl_alternate else cross
        masks = {"v": visible.cpu(), "r": infrared.cpu()}
        loss = features.sum() * 0.0
        for a, b in directions:
            query = index[masks[a]]
            if not len(query):
                continue
            bank_rows = state[f"rows_{b}"]
            neighbours = L.region_neighbours(state["regions"][query], state["regions"][bank_rows], self.rho,
                                             self_index=state["position"][query] if a == b else None)
            if a == b and state["refine"][a]:
                neighbours = L.camera_refine(neighbours, state["cameras"][query], state["cameras"][bank_rows],
                                             state["local"][query], state["local"][bank_rows],
                                             self_index=state["position"][query])
            bank = state["features"][bank_rows].to(features.device)
            loss = loss + L.neighbour_contrast(features[masks[a].to(features.device)], bank,
                                               neighbours.to(features.device), self.tau)
        return loss

    # ---------------------------------------------------------------- state
    def get_extra_state(self) -> dict[str, Any]:
        return {"history": {int(e): dict(r) for e, r in self.history.items()},
                "classifier_optimizer": (self.classifier_optimizer.state_dict()
                                         if self.classifier_optimizer is not None else None)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = {int(e): dict(r) for e, r in state["history"].items()}
        if self.classifier_optimizer is not None and state["classifier_optimizer"] is not None:
            self.classifier_optimizer.load_state_dict(state["classifier_optimizer"])


__all__ = ["MATCHINGS", "MMCFCriterion", "match_clusters"]
