"""MMCF's losses (Sun, Du & Gao; spec ``specs/mmcf.md`` §3). The paper's equations were all lost in extraction:
every formula here is the spec's reconstruction, tagged as there — [S] stated in the prose, [R] reconstructed,
[G] guess, [P] parent/peer code (TokenMatcher, PCAL, cluster-contrast). Equation numbers are the spec's estimates
("Eq. ~n"). Features are L2-normalised inside every function; ``tau`` is the lost temperature (0.05, A17).

- :func:`memory_contrast` — the cluster-contrast InfoNCE against a memory bank (§3.2, Eq. ~1–3 [S prose, R]); the
  baseline loss L_v / L_r, and the building block of VRA and UM with other targets and banks.
- :func:`identity_consistency` — PA-CBAM's identity-guided regulariser R_id (§3.3, [S] purpose, [G] form).
- :func:`token_diversity` — the parent's token-diversity loss on the raw region tokens (§3.8, A9 [G/P]).
- :func:`modality_classification_loss`, :func:`modality_confusion_loss`, :func:`maal_step` — MAAL (§3.4,
  Eq. ~14–17 [S prose; P: PCAL]).
- :func:`regional_cluster_similarity`, :func:`shared_memories`, :func:`cross_modal_contrast` — VRA (§3.5,
  Eq. ~18–24); the matching itself is ``reidlab.engine.memory.greedy_match`` (its ``row_to_col`` / ``col_to_rows``
  are the V2R / R2V arguments here; losses do not import the engine).
- :func:`region_neighbours`, :func:`camera_refine`, :func:`neighbour_contrast` — VRNL (§3.6, Eq. ~25–38).
- :func:`uniform_merge`, :func:`merge_groups`, :func:`merge_partners`, :func:`uniform_merging_loss` — UM (§3.7,
  Eq. ~39–44).

Outliers (pseudo-label −1) are dropped from training by the caller (§3.1): these functions expect labels >= 0
unless a docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from reidlab.models.mmcf import KINDS


def memory_contrast(features: Tensor, targets: Tensor, bank: Tensor, tau: float = 0.05) -> Tensor:
    """Eq. ~1–3 [S prose, R formula]: ``mean_i −log( exp(q_i·M_{t_i}/τ) / Σ_k exp(q_i·M_k/τ) )``.

    ``q`` = L2-normalised ``features`` [B, d], ``bank`` [K, d] (normalised here; no gradient reaches it: memories
    are updated by momentum, not by back-propagation), ``targets`` [B] indices into the bank. With the
    modality-specific memories M^v / M^r and the pseudo-labels as targets this is L_v / L_r (L_base = L_v + L_r);
    training updates the bank with ``reidlab.engine.memory.ClusterMemory``, which computes the same loss.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    logits = F.normalize(features.float(), dim=1) @ F.normalize(bank.detach().float(), dim=1).t()
    return F.cross_entropy(logits / tau, targets)


def identity_consistency(channel_attention: Tensor, labels: Tensor) -> Tensor:
    """PA-CBAM's identity-guided regulariser R_id (§3.3; [S] "channel weights consistent within a pseudo-identity
    and apart across identities", weight λ = 0.1 [S]; [G] form, spec A5):

    ``R_id = mean_{i≠j, y_i=y_j} ‖a_i − a_j‖² − mean_{y_i≠y_j} ‖a_i − a_j‖²``, a_i the L2-normalised PI-CA weights.

    Samples labelled −1 (outliers) are left out (A5); a term with no pair is 0. The unclipped form is taken (the
    spec's margin variant is an option it does not recommend over this one); it is bounded, since ‖a_i − a_j‖² ≤ 4.
    """
    keep = labels >= 0
    a = F.normalize(channel_attention[keep].float(), dim=1)
    y = labels[keep]
    distance = (2.0 - 2.0 * a @ a.t()).clamp_min(0.0)  # ‖a_i − a_j‖² of unit vectors (smooth at 0, unlike cdist)
    same = y.unsqueeze(0) == y.unsqueeze(1)
    intra = same & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    inter = ~same
    zero = channel_attention.sum() * 0.0
    pull = distance[intra].mean() if bool(intra.any()) else zero
    push = distance[inter].mean() if bool(inter.any()) else zero
    return pull - push


def token_diversity(tokens: Tensor) -> Tensor:
    """TokenMatcher's token-diversity ("Dissimilar") loss L_div, kept although MMCF never names it (§3.8, spec A9 [G];
    formula [P: TokenMatcher ``Dissimilar(dynamic_balancer=True)``], weight 1): for each sample, over the pairs
    a < b of its N raw region tokens, ``Σ_p softmax(d)_p · d_p`` with ``d_p = |cos(t_a, t_b)|`` (the softmax, not
    detached, weights the most similar pairs most); mean over samples. Without it the N regional spaces may collapse
    to copies. Zero for N = 1."""
    regions = tokens.shape[1]
    if regions < 2:
        return tokens.sum() * 0.0
    t = F.normalize(tokens.float(), dim=2)
    a, b = torch.triu_indices(regions, regions, offset=1, device=tokens.device)
    d = (t[:, a] * t[:, b]).sum(dim=2).abs()
    return (F.softmax(d, dim=1) * d).sum(dim=1).mean()


def modality_classification_loss(classifier: nn.Module, features: Tensor, modality: Tensor) -> Tensor:
    """MAAL's L_mc (§3.4, Eq. ~15 [S prose, P: PCAL]): ``CE(D_E(stopgrad(f)), y_m)``, y_m ∈ {0 v, 1 r, 2 CA}
    (:data:`~reidlab.models.mmcf.KINDS`).

    The features are detached: this term trains the classifier only.
    """
    return F.cross_entropy(classifier(features.detach()), modality)


def modality_confusion_loss(classifier: nn.Module, features: Tensor) -> Tensor:
    """MAAL's L_ca (§3.4, Eq. ~16 [S prose: "categorize the features of all three modalities into the
    channel-enhanced modality"; R formula; P: PCAL]): ``CE(D_E(f), CA)`` for the features of all three modalities.

    The classifier is run with detached parameters: this term trains the backbone θ only ([S]: "the modality
    classifier is optimized using [L_mc], while the backbone network is optimized using [L_ca]").
    """
    params = {name: p.detach() for name, p in classifier.named_parameters()}
    logits = functional_call(classifier, {**params, **dict(classifier.named_buffers())}, (features,))
    return F.cross_entropy(logits, torch.full((len(features),), KINDS["channel_view"], device=features.device))


def maal_step(classifier: nn.Module, optimizer: torch.optim.Optimizer, features: Tensor, modality: Tensor,
              alpha: float = 1.0, beta: float = 0.1) -> tuple[Tensor, Tensor]:
    """One MAAL alternation (§3.4 [S]: "alternating optimisation"; L_MAAL = α L_mc + β L_ca, α = 1.0, β = 0.1 [S]).

    Step 1: one ``optimizer`` step (an optimiser over the classifier's parameters only) of the classifier on
    ``α · L_mc`` (features detached). Step 2 is the caller's
    backbone step: the returned ``β · L_ca`` — computed with the *updated* classifier, frozen — joins the backbone's
    loss. Returns (``β · L_ca`` with its graph to the features, the detached ``L_mc`` of step 1). A warm-up
    (spec A8: classifier alone for the first epochs) is the caller's: pass ``beta=0``.
    """
    classification = modality_classification_loss(classifier, features, modality)
    optimizer.zero_grad(set_to_none=True)
    (alpha * classification).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # no gradient left for any other optimiser holding these parameters
    return beta * modality_confusion_loss(classifier, features), classification.detach()


def _cluster_sums(features: Tensor, labels: Tensor, clusters: int) -> tuple[Tensor, Tensor]:
    """Per cluster 0..clusters−1, the sum of the rows of ``features`` [M, d] and their number (outliers ignored)."""
    keep = labels >= 0
    sums = torch.zeros(clusters, features.shape[1], device=features.device).index_add_(0, labels[keep],
                                                                                        features[keep])
    return sums, torch.bincount(labels[keep], minlength=clusters).float()


def _region_centres(tokens: Tensor, labels: Tensor, clusters: int) -> Tensor:
    """Per cluster and region, the mean of the region-normalised tokens [K, N, D] (not re-normalised)."""
    sums, sizes = _cluster_sums(F.normalize(tokens.float(), dim=2).flatten(1), labels, clusters)
    return (sums / sizes.clamp_min(1)[:, None]).view(clusters, *tokens.shape[1:])


def regional_cluster_similarity(tokens_v: Tensor, labels_v: Tensor, tokens_r: Tensor, labels_r: Tensor) -> Tensor:
    """VRA's cluster-to-cluster similarity (§3.5a, Eq. ~18–19 [S prose, R formula]) [K_v, K_r]:

    ``S(i, j) = (1/N) Σ_n (1/(|H^v_i||H^r_j|)) Σ_{l∈H^v_i} Σ_{m∈H^r_j} cos(u^{v,n}_l, u^{r,n}_m)``

    from the region tokens [M, N, D] of all training instances (outliers −1 ignored); computed as the mean over
    regions of the dot product of the per-region means of normalised tokens. The spec's form (the average regional
    cosine), not the parent's ``exp(cos)`` of concatenated centres (same ranking up to weighting).
    """
    centres_v = _region_centres(tokens_v, labels_v, int(labels_v.max()) + 1)
    centres_r = _region_centres(tokens_r, labels_r, int(labels_r.max()) + 1)
    return torch.einsum("ind,jnd->ij", centres_v, centres_r) / tokens_v.shape[1]


def shared_memories(features_v: Tensor, labels_v: Tensor, features_r: Tensor, labels_r: Tensor,
                    v2r: Sequence[int], r2v: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """VRA's modality-shared memories (§3.5c, Eq. ~20–21 [S prose; P: TokenMatcher]) -> (Φ^v [K_v, d], Φ^r [K_r, d]):

    ``Φ^r_k = mean(H^r_k ∪ ⋃_{i∈R2V[k]} H^v_i)``, ``Φ^v_k = mean(H^v_k ∪ ⋃_{j: R2V[j][0]=k} H^r_j)``

    — means of L2-normalised instance features over the union, re-normalised. ``v2r`` / ``r2v`` are greedy
    matching's ``row_to_col`` / ``col_to_rows`` (visible clusters as rows); an IR cluster joins the visible memory
    of its first (most similar) partner only, as L_R2V aligns to it. Training then updates them by momentum
    (0.8 [P], A17) through ``ClusterMemory.reset``.
    """
    sums_v, sizes_v = _cluster_sums(F.normalize(features_v.float(), dim=1), labels_v, len(v2r))
    sums_r, sizes_r = _cluster_sums(F.normalize(features_r.float(), dim=1), labels_r, len(r2v))
    to_r = torch.zeros(len(r2v), len(v2r), device=sums_v.device)  # which visible clusters join each IR memory
    to_v = torch.zeros(len(v2r), len(r2v), device=sums_v.device)
    for j, rows in enumerate(r2v):
        if not rows:
            raise ValueError(f"infrared cluster {j} has no visible partner: the matching must cover every cluster")
        to_r[j, list(rows)] = 1.0
        to_v[rows[0], j] = 1.0
    phi_r = (sums_r + to_r @ sums_v) / (sizes_r + to_r @ sizes_v).clamp_min(1)[:, None]
    phi_v = (sums_v + to_v @ sums_r) / (sizes_v + to_v @ sizes_r).clamp_min(1)[:, None]
    return F.normalize(phi_v, dim=1), F.normalize(phi_r, dim=1)


def cross_modal_contrast(features_v: Tensor, labels_v: Tensor, features_r: Tensor, labels_r: Tensor,
                         phi_v: Tensor, phi_r: Tensor, v2r: Sequence[int], r2v: Sequence[Sequence[int]],
                         tau: float = 0.05) -> Tensor:
    """L_VRA = L_V2R + L_R2V (§3.5c, Eq. ~22–24 [S prose; P: TokenMatcher supplement Eq. 1–2]):

    ``L_V2R = −log softmax_k(q^v·Φ^r_k/τ)[V2R[y^v]]``, ``L_R2V = −log softmax_k(q^r·Φ^v_k/τ)[R2V[y^r][0]]``

    (IR aligns to its first, most similar, partner). Both directions every step (parent; PGM alternates per epoch);
    weight α1 = 0.4 [S] is the caller's. Either side may be empty (a batch with one modality): its term is 0.
    """
    v2r_t = torch.as_tensor(np.asarray(v2r), dtype=torch.long, device=labels_v.device)
    first = torch.as_tensor([rows[0] for rows in r2v], dtype=torch.long, device=labels_r.device)
    loss = features_v.sum() * 0.0 + features_r.sum() * 0.0
    if len(labels_v):
        loss = loss + memory_contrast(features_v, v2r_t[labels_v], phi_r, tau)
    if len(labels_r):
        loss = loss + memory_contrast(features_r, first[labels_r], phi_v, tau)
    return loss


def region_neighbours(query_tokens: Tensor, bank_tokens: Tensor, rho: float = 0.9, min_regions: int | None = None,
                      self_index: Tensor | None = None) -> Tensor:
    """VRNL's neighbour sets (§3.6, Eq. ~25–30 [S prose; P: TokenMatcher]) as a mask [B, M]:

    per region n, ``N^n_i = {j : cos(u^n_i, u^n_j) > ρ · max_j cos(u^n_i, u^n_j)}`` over the bank; ``N_i`` = the
    j in at least ``min_regions`` of the N per-region sets (default N: the intersection [P], the spec's x = N).
    ρ = 0.9 (lost [L], the parent's γ, A17). For an intra-modal bank pass ``self_index`` [B] (each query's row in
    the bank): i is always in its own set [S].
    """
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    regions = query_tokens.shape[1]
    need = regions if min_regions is None else min_regions
    if not 1 <= need <= regions:
        raise ValueError(f"min_regions must be in 1..{regions}, got {min_regions}")
    q = F.normalize(query_tokens.float(), dim=2)
    b = F.normalize(bank_tokens.float(), dim=2)
    similarity = torch.einsum("ind,jnd->nij", q, b)  # [N, B, M]
    inside = similarity > rho * similarity.amax(dim=2, keepdim=True)
    neighbours = inside.sum(dim=0) >= need
    if self_index is not None:
        neighbours[torch.arange(len(q), device=q.device), self_index] = True
    return neighbours


def camera_refine(neighbours: Tensor, query_cameras: Tensor, bank_cameras: Tensor, query_local: Tensor,
                  bank_local: Tensor, self_index: Tensor | None = None) -> Tensor:
    """VRNL's camera-aware refinement (§3.6 [S prose; P: TokenMatcher / CALR]): drop every neighbour j from the
    query's own camera that is not in the query's intra-camera local cluster; other cameras' neighbours stay.

    ``*_local``: the intra-camera cluster labels (−1 = none: such a query keeps no same-camera neighbour but
    itself, given ``self_index``). RegDB has one camera per modality: the parent skips the refinement there.
    """
    same_camera = query_cameras.unsqueeze(1) == bank_cameras.unsqueeze(0)
    same_local = (query_local.unsqueeze(1) == bank_local.unsqueeze(0)) & (query_local >= 0).unsqueeze(1)
    refined = neighbours & ~(same_camera & ~same_local)
    if self_index is not None:
        rows = torch.arange(len(refined), device=refined.device)
        refined[rows, self_index] = neighbours[rows, self_index]
    return refined


def neighbour_contrast(features: Tensor, bank: Tensor, neighbours: Tensor, tau: float = 0.05) -> Tensor:
    """One VRNL direction L_{a→b} (§3.6, Eq. ~31–38 [S prose, R formula]) against the instance memory U^b [M, d]:

    ``(1/B') Σ_i (1/|N_i|) Σ_{j∈N_i} −log( exp(q_i·U_j/τ) / Σ_k exp(q_i·U_k/τ) )``

    over the B' queries with a non-empty set (the spec's per-query average; the parent averages over all (i, j)
    pairs). U^b is refreshed each epoch, not trained: no gradient reaches it. L_VRNL sums the four directions
    v→v, r→r, v→r, r→v (weight α2 = 0.5 [S]); alternating the cross-modal two by epoch parity (A11) is the caller's.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    log_prob = F.log_softmax(F.normalize(features.float(), dim=1) @ F.normalize(bank.detach().float(), dim=1).t()
                             / tau, dim=1)
    counts = neighbours.sum(dim=1)
    rows = counts > 0
    if not bool(rows.any()):
        return features.sum() * 0.0
    per_query = log_prob.masked_fill(~neighbours, 0.0).sum(dim=1)[rows] / counts[rows]
    return -per_query.mean()


def uniform_merge(labels_v: np.ndarray, v2r: Sequence[int]) -> np.ndarray:
    """UM's cross-modal labels (§3.7, Eq. ~39–40 [S]: visible clusters matched to the same infrared cluster "are
    represented with the same cross-modal label"): each visible pseudo-label y becomes its IR partner ``V2R[y]``;
    outliers (−1) stay −1. Visible clusters sharing a partner thus share a label (in the IR label space)."""
    labels_v = np.asarray(labels_v)
    partner = np.asarray(v2r)
    return np.where(labels_v >= 0, partner[np.maximum(labels_v, 0)], -1)


def merge_groups(r2v: Sequence[Sequence[int]], num_visible: int) -> tuple[list[list[int]], list[list[int]]]:
    """UM's groups (§3.7 [R]): visible groups = the visible clusters sharing an IR cluster (R2V[j], 2+ members);
    infrared groups = the IR clusters sharing a visible cluster (2+ members; only the matching's second pass, which
    reuses visible clusters, makes them). Returns (visible groups, infrared groups)."""
    visible = [list(rows) for rows in r2v if len(rows) > 1]
    shared: list[list[int]] = [[] for _ in range(num_visible)]
    for j, rows in enumerate(r2v):
        for i in rows:
            shared[i].append(j)
    return visible, [cols for cols in shared if len(cols) > 1]


def merge_partners(groups: Sequence[Sequence[int]], num_clusters: int, epoch: int) -> np.ndarray:
    """UM's alternating partner per cluster (§3.7 [R; P: TokenMatcher HF], spec A12) [num_clusters], −1 = none.

    At epoch e, in each group [g_0 .. g_{n−1}] only member g_a, a = e mod n, is pulled towards g_{(a+1) mod n};
    the others (and singletons) get −1. For pairs this is the parent's rule (even epochs g_0 → g_1, odd g_1 → g_0).
    *Not* the spec's A12 "g_k → g_{(k+1+e) mod n}": that maps every member to itself when (1+e) mod n = 0 (every
    odd epoch for pairs), an epoch without merging.
    """
    partner = np.full(num_clusters, -1)
    for group in groups:
        if len(group) > 1:
            a = epoch % len(group)
            partner[group[a]] = group[(a + 1) % len(group)]
    return partner


def uniform_merging_loss(features_v: Tensor, labels_v: Tensor, memory_v: Tensor, partner_v: np.ndarray,
                         features_r: Tensor, labels_r: Tensor, memory_r: Tensor, partner_r: np.ndarray,
                         deltas: tuple[float, float] = (0.6, 0.4), tau: float = 0.05) -> Tensor:
    """L_UM = δ1 L_UM^v + δ2 L_UM^r (§3.7, Eq. ~41–44 [S: δ1 = 0.6, δ2 = 0.4; R formula; P: TokenMatcher HF]):

    ``L_UM^v = −log softmax_k(q^v·M^v_k/τ)[partner(y^v)]`` against the **modality-specific** visible memory, over
    the samples whose cluster has a partner this epoch (:func:`merge_partners`); L_UM^r likewise on the IR side.
    A side with no such sample contributes 0. Weight α3 = 0.03 [S] is the caller's.
    """
    loss = features_v.sum() * 0.0 + features_r.sum() * 0.0
    for delta, features, labels, memory, partner in ((deltas[0], features_v, labels_v, memory_v, partner_v),
                                                     (deltas[1], features_r, labels_r, memory_r, partner_r)):
        target = torch.as_tensor(np.asarray(partner), dtype=torch.long, device=labels.device)[labels]
        rows = target >= 0
        if bool(rows.any()):
            loss = loss + delta * memory_contrast(features[rows], target[rows], memory, tau)
    return loss


__all__ = ["camera_refine", "cross_modal_contrast", "identity_consistency", "maal_step", "memory_contrast",
           "merge_groups", "merge_partners", "modality_classification_loss", "modality_confusion_loss",
           "neighbour_contrast", "region_neighbours", "regional_cluster_similarity", "shared_memories",
           "token_diversity", "uniform_merge", "uniform_merging_loss"]
