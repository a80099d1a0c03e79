"""MFRNet — Modality Fusion and Representation Network (Feng, Li, Xie, Tan, Ji, "Multi-Modal Object
Re-Identification via Sparse Mixture-of-Experts", ICML 2025; equation numbers below are the paper's; the released
code is github.com/stone96123/MFRNet, its MoE library tutel v0.3.2, cited as in ``shared/specs/mfrnet.md``).

Pipeline for one batch of RGB, NIR and TIR images (canonical order ``rgb, nir, tir`` everywhere):

1. **Shared ViT, stacked batch** (§3): one ViT runs on the three modalities as one batch [R; N; T] of 3B images,
   as the released code does. Tokens I_M = {I_M^cls, I_M^1, ..., I_M^n} (Eq. 1) are the patch embeddings with the
   class token and the position embedding (timm: after ``_pos_embed``).
2. **Feature Fusion Module** (FFM, §3.1, Eq. 2–5), :class:`FeatureFusion`, at ``ffm_position`` 0 = before the ViT
   blocks (timm: after ``_pos_embed``, before ``norm_pre`` — CLIP's ``ln_pre``), or after block k (Table 10):

       Î_M = λ·I_M + a_{S1→M}·g(I_S1) + a_{S2→M}·g(I_S2)                                   (Eq. 2)
       w_{S→M}(I_S) = fc(AvgPool(I_S)) ∈ R (one scalar per sample)                       (Eq. 3)
       (a_{S1→M}, a_{S2→M}) = softmax(w_{S1→M}(I_S1), w_{S2→M}(I_S2))                      (after Eq. 3)
       g_f(I) = conv2(drop(conv1(I)))  (token-wise d → h → d, dropout 0.1, no activation)   (Eq. 4)
       g(I) = Gate(I)·I_experts, Gate = Top1(S_router), S_router = cosine router             (Eq. 5)

   Two mixtures of ``ffm_experts`` generators (3, Table 8): mixture 1 produces N→R, T→R, R→N and mixture 2
   T→N, R→T, N→T (the paper's split {I_R^N, I_R^T, I_N^R} / {I_N^T, I_T^R, I_T^N}; code ``model.py:780-791``),
   each called once per direction on that source's B·L tokens, in that order (:data:`FFM_CALLS`).
3. **ViT blocks.** The MLP of the last block (``frm_layers``, default the last; Table 7) is replaced by the
   **Feature Representation Module** (FRM, §3.2, Eq. 7–10): Y = X + MHA(LN(X)), Z = Y + l^moe_Ada(LN(Y)) with a
   top-1 MoE of ``frm_experts`` RepAdapters (6, Table 6), RAda(u) = u + s·conv_B(drop(conv_A(u))) (Eq. 8), and
   all three modalities' tokens routed jointly through one router, as the code does.
4. **Features and heads** (code ``make_model.py``): per modality the class token after the final norm, f_m. The
   CLIP projection to 512 of the code exists only in CLIP's own module layout; a timm ViT (``vit_*_clip_*``
   included) ends with its final norm, so f_m is the D-dimensional class token (768 for ViT-B/16).
   ``head="concat"`` (the code's ``DIRECT=1``, RGBNT201): one BNNeck and classifier on f = [f_R; f_N; f_T];
   ``head="per_modality"`` (``DIRECT=0``, RGBNT100 / MSVR310): one BNNeck and classifier per f_m.

The sparse MoE (:class:`SparseMoE`, used by FFM and FRM, pure PyTorch; matches tutel v0.3.2 semantics, spec §1.6):
cosine router s = normalize(W1 t + b1)·normalize_cols(W_e)·exp(min(θ, ln 100)) with W1: D → ``router_dim`` (256),
θ = ln(1/τ), τ initialised at 0.5 (:class:`CosineRouter`); training noise s̃ = s + ε·noise/E, ε ~ N(0, 1), off in
eval; P = softmax(s̃); top-1 expert e* = argmax P with gate p_top = P[e*] (no renormalisation for k = 1); output
p_top(t)·f_{e*}(t), or 0 for a token dropped by the capacity; the balancing loss (Eq. 11–14) is returned by every
call (:class:`MoEOutput`), never stored on the module.

Outputs (model contract of :mod:`reidlab.models.baseline`): ``features`` (pre-BN) ``rgb``, ``nir``, ``tir`` and
``fused`` = their concatenation; ``embeddings`` — the code's test feature is the concatenation of the *pre-BN*
features (``make_model.py:175``), so ``embeddings`` holds the same ``rgb``, ``nir``, ``tir``, ``fused`` tensors,
plus ``fused_bn`` (the BNNeck output(s) of the head, concatenated: the Bag-of-Tricks alternative);
``default_feature`` is ``fused``; ``logits`` ``fused`` (concat head) or ``rgb``/``nir``/``tir`` (per-modality
heads); ``aux`` {``ffm``, ``frm``}: the unweighted balancing losses (0 when the module is off);
``frm_routing`` [B, 3, L] (long): the top-1 FRM expert of every token of the last FRM layer (Fig. 3), when FRM is on.

Where the paper and the released code disagree (spec §1.8), and what the default follows:

- **Experts.** Paper: E distinct generators / RepAdapters. Code: tutel's custom-expert API builds the expert module
  once and MFRNet's modules ignore ``local_experts``, so one weight set serves every expert and routing only
  rescales (gate) and drops (capacity) tokens. ``shared_experts=False`` (default, the paper) keeps E independent
  experts with batched per-expert weights [E, ...] applied by ``einsum`` on per-expert token buckets;
  ``shared_experts=True`` (the code) keeps one expert's parameters.
- **Capacity.** Code: capacity factor 1.0 — C = ceil(N/E) slots per expert, tokens ranked by descending top-1
  probability (batch-prioritised routing, ties by token order), overflow tokens output 0, *also at eval*, so test
  features depend on the test batch's size and make-up. ``capacity_factor=None`` (default; 0 is the same, tutel's
  convention) is dropless: every token reaches its expert and a sample's features do not depend on its batch.
- **τ.** Paper (FRM): τ = 0.01 fixed. Code (both MoEs): learnable, initialised at 0.5, clamped at τ ≥ 0.01.
  Default: the code (``router_tau=0.5``, ``router_learnable_tau=True``, ``router_min_tau=0.01``): a fixed τ of
  0.01 scales the cosines to ±100, the softmax saturates (gate ≡ 1) and the router gets no gradient from the task
  loss; the paper's 0.01 reads like tutel's clamp floor. ``router_tau=0.01, router_learnable_tau=False`` is the
  paper's statement.
- **Balancing loss** (Eq. 12–14). Paper: L_aux = L_imp + L_load (CV² of importance, load as STD/MEAN, probably a
  lost square). Code: (CV²(Imp) + CV²(Load))/2 with torch's unbiased variance; we follow the code's form (the
  weights of the criterion absorb the ½). Load: tutel compares a *probability* softmax(s)_e with the *noisy logit*
  of the chosen expert, Load_e = Σ_t Φ((softmax(s)_{t,e} − s̃_{t,e*})/σ), σ = noise/E; the paper's Eq. 13 compares
  "the Kth largest entry after softmax" with a logit. ``load_loss="logit"`` (default) is the consistent form of
  Riquelme et al. (V-MoE, which the paper cites), Φ((s_{t,e} − s̃_{t,e*})/σ); ``load_loss="tutel"`` is bit-exact
  to the code. With ``router_noise=0`` σ is taken as 1/E (tutel refuses noise 0). One expert has no balance to
  keep: its loss is 0 (tutel's unbiased variance of one value is NaN).
- **FFM balancing loss.** Code: 0.01 added inside the 12-block loop, i.e. 0.12 × (l_aux of the *last* call of each
  mixture). ``ffm_aux_calls="mean"`` (default) returns the sum over the two mixtures of the mean over each
  mixture's calls (the criterion weights it 0.01, like FRM); ``ffm_aux_calls="last"`` returns the last calls'
  (weight 0.12 in the criterion for the code).
- **Generator experts.** Paper: I_experts = {g_f(fc_i(I))} with a per-expert linear fc_i. Code: no fc_i; we follow
  the code — with independent affine experts fc_i would compose with conv1 into one affine map (absorbed).
- **RepAdapter.** Paper cites RepAdapter (Luo et al. 2023, hidden 8); code: hidden 512 at D = 768, dropout 0.1,
  xavier-uniform weights, zero biases, scale 1, and the gate scales the identity inside the adapter too
  (Z = Y + p_top·(u + conv_B(drop(conv_A(u))))). We follow the code. Hidden sizes scale with the width:
  ``frm_hidden`` = round(2D/3) (512 at 768) and ``ffm_hidden`` = round(4D/3) (1024 at 768) when not given.
- **Fusion site.** Paper: "pixel-level". Code: token level, after patch embedding, class token, camera SIE and
  position embedding, before ``ln_pre``. We follow the code. There is **no camera SIE** in our models (the code
  adds a learnable per-camera embedding to the class token; the paper does not mention it).
- **Missing modality** (Eq. 6, §3): batch["present"] tells which modality is missing (the data contract delivers
  it as zero images). ``missing="reconstruct"`` (default) uses the FFM reconstruction; ``missing="zero_fill"``
  ignores ``present`` and runs Eq. 2 on the zero images (the baseline's behaviour). Rules
  (``missing_rule``): ``"paper"`` (default; a uniform reading of Eq. 6, whose λ term the text extraction lost):
  Î_M = λ·[M present]·I_M + Σ_{S present, S≠M} softmax_{available S}(w_{S→M}(I_S))·g(I_S) — a missing modality is
  the softmax-weighted generation from the present ones; a present one keeps λ·I_M plus the generation from the
  other present ones. ``"code"`` is the code's table (spec §3): the same for one missing modality; with two
  missing, the present modality is kept as I_M (no λ), and when only RGB is present the two generated modalities
  use the raw scalars w_{R→M}(I_R) (no softmax). A missing modality's own tokens are never a generator input (its
  calls run only on the samples whose source is present) and never reach its reconstruction. Without FFM there is
  nothing to reconstruct from: the zero images are used.
- **Not reproduced**: the code skips FFM and FRM for a batch of one image (``3B > 3`` guards); we always run them.
  tutel's reseeding of torch's global RNG during construction. The ``GLOBAL_LOCAL`` head of the RGBNT100 config
  (not described in the paper). The pretrained MLP of an FRM block is removed (the code keeps it, unused), so
  parameter counts are honest.

:class:`MFRNet` switches (all recipe keys, see :mod:`reidlab.methods.mfrnet`): ``ffm`` (Table 5), ``ffm_position``
(Table 10), ``ffm_experts`` (Table 8), ``lambda_`` (λ, Table 9), ``ffm_aux_calls``, ``frm`` (Table 5),
``frm_experts`` (Table 6), ``frm_layers`` (Table 7), ``shared_experts``, ``capacity_factor``, the router's
``router_*`` and ``load_loss``, ``head``, ``missing`` and ``missing_rule``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reidlab.models.backbones import ViTBackbone, create_backbone
from reidlab.models.baseline import _batch_images
from reidlab.models.heads import BNNeck

MODALITIES: tuple[str, ...] = ("rgb", "nir", "tir")
HEADS: tuple[str, ...] = ("concat", "per_modality")
MISSING: tuple[str, ...] = ("reconstruct", "zero_fill")
MISSING_RULES: tuple[str, ...] = ("paper", "code")
LOAD_LOSSES: tuple[str, ...] = ("logit", "tutel")
FFM_AUX_CALLS: tuple[str, ...] = ("mean", "last")
EXPERT_INITS: tuple[str, ...] = ("default", "xavier")
#: FFM generation directions (source, target, mixture index) in the order the code calls them (``model.py:780-791``).
FFM_CALLS: tuple[tuple[str, str, int], ...] = (("nir", "rgb", 0), ("tir", "rgb", 0), ("rgb", "nir", 0),
                                               ("tir", "nir", 1), ("rgb", "tir", 1), ("nir", "tir", 1))


# ------------------------------------------------------------------------------------------------ sparse MoE

class CosineRouter(nn.Module):
    """Cosine router (Eq. 5 / Eq. 9, tutel ``cosine_top``): tokens [N, D] -> logits [N, E], in float32, autocast off.

    s = normalize(W1 t + b1) · normalize_columns(W_e) · exp(min(θ, ln(1/min_tau))) with W1 = ``proj`` (D → proj_dim,
    with bias), W_e = ``sim_matrix`` [proj_dim, E] initialised N(0, 0.01²), θ = ``log_scale`` = ln(1/τ) initialised at
    ln(1/``tau``); ``learnable_tau=False`` keeps θ fixed (a buffer). ``init="trunc_normal"`` re-initialises W1 with a
    truncated normal (std 0.02) and a zero bias, as the code's FRM blocks do (``model.py:335-341``); ``"default"``
    keeps PyTorch's Linear initialisation (the code's FFM routers).
    """

    def __init__(self, dim: int, num_experts: int, proj_dim: int = 256, *, tau: float = 0.5, learnable_tau: bool = True,
                 min_tau: float = 0.01, init: str = "default") -> None:
        super().__init__()
        if not 0.0 < min_tau <= tau:
            raise ValueError(f"the router temperature needs 0 < min_tau <= tau, got tau={tau}, min_tau={min_tau}")
        if init not in ("default", "trunc_normal"):
            raise ValueError(f"router init must be 'default' or 'trunc_normal', got {init!r}")
        self.proj = nn.Linear(dim, proj_dim)
        if init == "trunc_normal":
            nn.init.trunc_normal_(self.proj.weight, std=0.02)
            nn.init.zeros_(self.proj.bias)
        self.sim_matrix = nn.Parameter(torch.empty(proj_dim, num_experts))
        nn.init.normal_(self.sim_matrix, std=0.01)
        log_scale = torch.tensor(math.log(1.0 / tau))
        if learnable_tau:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(1.0 / min_tau)

    @property
    def tau(self) -> float:
        """The temperature in use, τ = exp(−min(θ, ln(1/min_tau)))."""
        return math.exp(-min(float(self.log_scale.detach()), self.max_log_scale))

    def forward(self, tokens: Tensor) -> Tensor:
        with torch.autocast(tokens.device.type, enabled=False):
            h = F.linear(tokens.float(), self.proj.weight.float(), self.proj.bias.float())
            cosine = F.normalize(h, dim=1) @ F.normalize(self.sim_matrix.float(), dim=0)
            return cosine * self.log_scale.float().clamp(max=self.max_log_scale).exp()


class TokenExperts(nn.Module):
    """E token-wise two-layer affine experts with batched weights (no activation, as both of MFRNet's experts):

        f_e(u) = W2_e · drop(W1_e u + b1_e) + b2_e              (generator, Eq. 4; ``residual=False``)
        f_e(u) = u + scale · (W2_e · drop(W1_e u + b1_e) + b2_e)  (RepAdapter, Eq. 8; ``residual=True``)

    Weights ``weight1`` [G, D, H], ``bias1`` [G, H], ``weight2`` [G, H, D], ``bias2`` [G, D] with G = E, or G = 1
    when ``shared`` (the code: one weight set for every expert). ``forward(x [G, C, D]) -> [G, C, D]`` applies
    weight set g to bucket g (``einsum``). ``init="default"``: PyTorch's Linear/Conv1d initialisation
    (U(±1/√fan_in) for weights and biases; the code's generators); ``"xavier"``: xavier-uniform weights and zero
    biases (the code's RepAdapter). Each independent expert is initialised independently.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, *, shared: bool = False, dropout: float = 0.1,
                 residual: bool = False, scale: float = 1.0, init: str = "default") -> None:
        super().__init__()
        if num_experts < 1 or hidden < 1:
            raise ValueError(f"experts need num_experts >= 1 and hidden >= 1, got {num_experts} and {hidden}")
        if init not in EXPERT_INITS:
            raise ValueError(f"expert init must be one of {', '.join(EXPERT_INITS)}, got {init!r}")
        self.dim, self.hidden, self.num_experts, self.shared = dim, hidden, num_experts, shared
        self.residual, self.scale = residual, float(scale)
        sets = 1 if shared else num_experts
        self.weight1 = nn.Parameter(torch.empty(sets, dim, hidden))
        self.bias1 = nn.Parameter(torch.empty(sets, hidden))
        self.weight2 = nn.Parameter(torch.empty(sets, hidden, dim))
        self.bias2 = nn.Parameter(torch.empty(sets, dim))
        self.drop = nn.Dropout(dropout)
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for weight, bias, fan_in, fan_out in ((self.weight1, self.bias1, self.dim, self.hidden),
                                                  (self.weight2, self.bias2, self.hidden, self.dim)):
                if self.init == "xavier":
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    weight.uniform_(-bound, bound)
                    bias.zero_()
                else:
                    bound = 1.0 / math.sqrt(fan_in)
                    weight.uniform_(-bound, bound)
                    bias.uniform_(-bound, bound)

    @property
    def num_sets(self) -> int:
        return self.weight1.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[0] != self.num_sets or x.shape[2] != self.dim:
            raise ValueError(f"experts expect buckets [{self.num_sets}, C, {self.dim}], got {list(x.shape)}")
        h = torch.einsum("gcd,gdh->gch", x, self.weight1) + self.bias1[:, None]
        y = torch.einsum("gch,ghd->gcd", self.drop(h), self.weight2) + self.bias2[:, None]
        return x + self.scale * y if self.residual else y

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, num_experts={self.num_experts}, shared={self.shared}, "
                f"residual={self.residual}, scale={self.scale:g}, init={self.init}")


class MoEOutput(NamedTuple):
    """One :class:`SparseMoE` call: ``output`` (like the input), ``l_aux`` (scalar, Eq. 11–14), and per token
    ``expert`` (long, top-1 expert), ``gate`` (its probability p_top) and ``kept`` (bool, False = dropped)."""

    output: Tensor
    l_aux: Tensor
    expert: Tensor
    gate: Tensor
    kept: Tensor


class SparseMoE(nn.Module):
    """Top-1 sparse mixture of :class:`TokenExperts` behind a :class:`CosineRouter` (tutel v0.3.2 semantics, spec
    §1.6): ``forward(x [..., D]) -> MoEOutput``; every token is routed on its own.

    ``capacity_factor``: None or 0 = dropless (the clean default); c > 0 = tutel's C = int(c·ceil(N/E)) slots per
    expert, filled by the tokens in order of descending top-1 probability (batch-prioritised routing, ties by token
    order), the rest output 0 — in eval too. ``noise``: std·E of the Gaussian added to the logits in training
    (tutel's ``gate_noise``, 1.0). ``load_loss``: ``"logit"`` or ``"tutel"`` (module docstring).
    """

    def __init__(self, experts: TokenExperts, *, capacity_factor: float | None = None, noise: float = 1.0,
                 load_loss: str = "logit", router_dim: int = 256, tau: float = 0.5, learnable_tau: bool = True,
                 min_tau: float = 0.01, router_init: str = "default") -> None:
        super().__init__()
        if capacity_factor is not None and capacity_factor < 0:
            raise ValueError(f"capacity_factor must be None or 0 (dropless) or > 0, got {capacity_factor}")
        if noise < 0:
            raise ValueError(f"router noise must be >= 0, got {noise}")
        if load_loss not in LOAD_LOSSES:
            raise ValueError(f"load_loss must be one of {', '.join(LOAD_LOSSES)}, got {load_loss!r}")
        self.num_experts, self.dim = experts.num_experts, experts.dim
        self.capacity_factor = capacity_factor if capacity_factor else None
        self.noise, self.load_loss = float(noise), load_loss
        self.router = CosineRouter(experts.dim, experts.num_experts, router_dim, tau=tau, learnable_tau=learnable_tau,
                                   min_tau=min_tau, init=router_init)
        self.experts = experts

    def capacity(self, num_tokens: int) -> int | None:
        """Slots per expert for ``num_tokens`` tokens (None: dropless)."""
        if self.capacity_factor is None:
            return None
        return int(self.capacity_factor * math.ceil(num_tokens / self.num_experts))

    def aux_loss(self, logits: Tensor, noisy: Tensor, expert: Tensor) -> Tensor:
        """(CV²(Imp) + CV²(Load)) / 2 (Eq. 11–14 in the code's form) from the clean ``logits``, the ``noisy`` logits
        and the chosen ``expert`` of every token; CV² = unbiased variance / (mean² + 1e-10)."""
        e = self.num_experts
        if e == 1 or logits.shape[0] == 0:
            return logits.new_zeros(())
        clean = logits.softmax(dim=1)
        importance = clean.sum(dim=0)                                                     # Eq. 11
        l_imp = importance.var() / (importance.mean() ** 2 + 1e-10)                       # Eq. 12
        sigma = (self.noise if self.noise > 0 else 1.0) / e
        threshold = noisy.gather(1, expert[:, None])                                      # η: the chosen noisy logit
        reference = clean if self.load_loss == "tutel" else logits
        load = torch.special.ndtr((reference - threshold) / sigma).sum(dim=0)              # Eq. 13
        l_load = load.var() / (load.mean() ** 2 + 1e-10)
        return (l_imp + l_load) / 2.0                                                     # Eq. 14 (code: / 2)

    @staticmethod
    def locations(expert: Tensor, priority: Tensor | None, num_experts: int) -> Tensor:
        """Slot of every token in its expert's bucket: its rank among the tokens routed to the same expert, in order
        of descending ``priority`` (stable: ties by token order), or in token order when ``priority`` is None."""
        order = (torch.sort(priority, descending=True, stable=True).indices if priority is not None
                 else torch.arange(expert.shape[0], device=expert.device))
        chosen = expert[order]
        ranks = (F.one_hot(chosen, num_experts).cumsum(dim=0) - 1).gather(1, chosen[:, None])[:, 0]
        location = torch.empty_like(expert)
        location[order] = ranks
        return location

    def forward(self, x: Tensor) -> MoEOutput:
        if x.shape[-1] != self.dim:
            raise ValueError(f"the MoE expects tokens [..., {self.dim}], got {list(x.shape)}")
        lead = x.shape[:-1]
        tokens = x.reshape(-1, self.dim)
        n = tokens.shape[0]
        logits = self.router(tokens)
        noisy = logits
        if self.training and self.noise > 0:
            noisy = logits + torch.randn_like(logits) * (self.noise / self.num_experts)
        probs = noisy.softmax(dim=1)
        expert = probs.argmax(dim=1)
        gate = probs.gather(1, expert[:, None])[:, 0]
        l_aux = self.aux_loss(logits, noisy, expert)
        capacity = self.capacity(n)
        with torch.no_grad():
            location = self.locations(expert, gate if capacity is not None else None, self.num_experts)
            if capacity is None:
                capacity = int(location.max()) + 1 if n else 0
            kept = location < capacity
        if self.experts.shared:
            out = self.experts(tokens[None])[0] * kept[:, None].to(tokens.dtype)
        else:
            index = (expert[kept], location[kept])
            buckets = tokens.new_zeros(self.num_experts, capacity, self.dim).index_put(index, tokens[kept])
            processed = self.experts(buckets)
            out = processed.new_zeros(n, self.dim)
            out[kept] = processed[index]
        out = out * gate[:, None].to(out.dtype)
        return MoEOutput(out.reshape(*lead, self.dim), l_aux, expert.reshape(lead), gate.reshape(lead),
                         kept.reshape(lead))


# ----------------------------------------------------------------------------------------------------- FFM

def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Softmax of ``logits`` [B, K] over the entries where ``mask`` is True; rows without any are all zero."""
    filled = torch.where(mask, logits, torch.full_like(logits, -1e9))
    return filled.softmax(dim=1) * mask.to(logits.dtype)


class FeatureFusion(nn.Module):
    """Feature Fusion Module (Eq. 2–6): three token sets [B, L, D] (R, N, T) -> the re-generated Î_R, Î_N, Î_T.

    Two :class:`SparseMoE` mixtures of ``num_experts`` generators (``mixtures[0]``: N→R, T→R, R→N; ``mixtures[1]``:
    T→N, R→T, N→T, :data:`FFM_CALLS`) and six weight functions ``weights["<source>_<target>"]`` = Linear(D → 1) on
    the token mean (Eq. 3). ``forward(tokens, present)`` returns the three fused token sets and the balancing loss:
    per mixture the mean (``aux_calls="mean"``) or the last (``"last"``, the code) of its calls' l_aux, summed over
    the two mixtures. ``present`` [B, 3] (bool) selects the missing-modality rule (module docstring).
    """

    def __init__(self, dim: int, *, num_experts: int = 3, hidden: int | None = None, lambda_: float = 0.5,
                 aux_calls: str = "mean", rule: str = "paper", shared_experts: bool = False, dropout: float = 0.1,
                 **moe_options: Any) -> None:
        super().__init__()
        if aux_calls not in FFM_AUX_CALLS:
            raise ValueError(f"ffm_aux_calls must be one of {', '.join(FFM_AUX_CALLS)}, got {aux_calls!r}")
        if rule not in MISSING_RULES:
            raise ValueError(f"missing_rule must be one of {', '.join(MISSING_RULES)}, got {rule!r}")
        if lambda_ < 0:
            raise ValueError(f"lambda (Eq. 2) must be >= 0, got {lambda_}")
        hidden = round(4 * dim / 3) if hidden is None else int(hidden)
        self.lambda_, self.aux_calls, self.rule = float(lambda_), aux_calls, rule
        self.mixtures = nn.ModuleList([
            SparseMoE(TokenExperts(dim, hidden, num_experts, shared=shared_experts, dropout=dropout), **moe_options)
            for _ in range(2)])
        self.weights = nn.ModuleDict({f"{s}_{t}": nn.Linear(dim, 1) for s, t, _ in FFM_CALLS})

    def source_weight(self, source: str, target: str, tokens: Tensor) -> Tensor:
        """Eq. 3: w_{source→target}(I_source) = fc(AvgPool(I_source)), tokens [B, L, D] -> [B]."""
        return self.weights[f"{source}_{target}"](tokens.mean(dim=1))[:, 0]

    def generate(self, tokens: Sequence[Tensor], present: Tensor) -> tuple[dict[tuple[str, str], Tensor], list]:
        """g(I_S) for every direction of :data:`FFM_CALLS`, computed only on the samples whose source is present
        (zeros elsewhere), and the l_aux of each call per mixture (calls on no sample are skipped)."""
        generated: dict[tuple[str, str], Tensor] = {}
        aux: list[list[Tensor]] = [[], []]
        for source, target, k in FFM_CALLS:
            x = tokens[MODALITIES.index(source)]
            rows = present[:, MODALITIES.index(source)]
            if bool(rows.all()):
                out = self.mixtures[k](x)
                generated[(source, target)] = out.output
            elif bool(rows.any()):
                out = self.mixtures[k](x[rows])
                g = out.output.new_zeros(x.shape)
                g[rows] = out.output
                generated[(source, target)] = g
            else:
                generated[(source, target)] = torch.zeros_like(x)
                continue
            aux[k].append(out.l_aux)
        return generated, aux

    def forward(self, tokens: Sequence[Tensor], present: Tensor) -> tuple[list[Tensor], Tensor]:
        if len(tokens) != len(MODALITIES):
            raise ValueError(f"FFM expects the token sets of {MODALITIES}, got {len(tokens)}")
        generated, aux = self.generate(tokens, present)
        alone = present.sum(dim=1) == 1
        fused = []
        for t, target in enumerate(MODALITIES):
            sources = [m for m in MODALITIES if m != target]
            index = [MODALITIES.index(s) for s in sources]
            logits = torch.stack([self.source_weight(s, target, tokens[i]) for s, i in zip(sources, index,
                                                                                             strict=True)], dim=1)
            available = present[:, index]
            weights = masked_softmax(logits, available)                                  # softmax over A \ {M}
            own = self.lambda_ * present[:, t].to(logits.dtype)                          # λ·I_M if M is present
            if self.rule == "code":
                own = torch.where(alone & present[:, t], torch.ones_like(own), own)    # lone modality: I_M, no λ
                raw = (alone & present[:, 0] & ~present[:, t])[:, None]                # only RGB: raw w, no softmax
                weights = torch.where(raw, logits * available.to(logits.dtype), weights)
            x = own[:, None, None] * tokens[t]
            for j, s in enumerate(sources):
                x = x + weights[:, j, None, None] * generated[(s, target)]               # Eq. 2 / Eq. 6
            fused.append(x)
        parts = [torch.stack(calls).mean() if self.aux_calls == "mean" else calls[-1] for calls in aux if calls]
        return fused, sum(parts, tokens[0].new_zeros(()))


# --------------------------------------------------------------------------------------------------- model

class MFRNet(nn.Module):
    """MFRNet (module docstring): one shared ViT over [R; N; T], FFM before the blocks, FRM in the last block.

    ``backbone_name`` must be a ViT (:func:`~reidlab.models.backbones.create_backbone`; the paper:
    ``vit_base_patch16_clip_224.openai``). Switches: ``ffm``, ``ffm_position`` (0 = before the blocks, k = after
    block k, depth = after the ViT), ``ffm_experts``, ``ffm_hidden`` (None: round(4D/3)), ``lambda_`` (λ),
    ``ffm_aux_calls``; ``frm``, ``frm_experts``, ``frm_layers`` (block indices, negative from the end),
    ``frm_hidden`` (None: round(2D/3)), ``frm_scale``; for both MoEs ``shared_experts``, ``capacity_factor``,
    ``expert_dropout``, ``router_dim``, ``router_tau``, ``router_learnable_tau``, ``router_min_tau``,
    ``router_noise``, ``load_loss``; ``head`` (:data:`HEADS`), ``missing`` (:data:`MISSING`), ``missing_rule``
    (:data:`MISSING_RULES`).
    """

    modalities = MODALITIES
    default_feature = "fused"

    def __init__(self, backbone_name: str, num_classes: int, *, img_size: tuple[int, int], pretrained: bool = False,
                 checkpoint: str | Path | None = None, ffm: bool = True, ffm_position: int = 0, ffm_experts: int = 3,
                 ffm_hidden: int | None = None, lambda_: float = 0.5, ffm_aux_calls: str = "mean", frm: bool = True,
                 frm_experts: int = 6, frm_layers: Sequence[int] = (-1,), frm_hidden: int | None = None,
                 frm_scale: float = 1.0, shared_experts: bool = False, capacity_factor: float | None = None,
                 expert_dropout: float = 0.1, router_dim: int = 256, router_tau: float = 0.5,
                 router_learnable_tau: bool = True, router_min_tau: float = 0.01, router_noise: float = 1.0,
                 load_loss: str = "logit", head: str = "concat", missing: str = "reconstruct",
                 missing_rule: str = "paper", **backbone_kwargs: Any) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {', '.join(MISSING)}, got {missing!r}")
        if missing_rule not in MISSING_RULES:
            raise ValueError(f"missing_rule must be one of {', '.join(MISSING_RULES)}, got {missing_rule!r}")
        backbone = create_backbone(backbone_name, img_size=img_size, pretrained=pretrained, checkpoint=checkpoint,
                                   **backbone_kwargs)
        if not isinstance(backbone, ViTBackbone):
            raise ValueError(f"MFRNet needs a ViT backbone (FFM works on its tokens, FRM replaces a block's MLP), "
                             f"got the {backbone.kind} {backbone_name!r}")
        self.backbone = backbone
        dim = self.feature_dim = backbone.feature_dim
        depth = len(backbone.blocks)
        if not 0 <= ffm_position <= depth:
            raise ValueError(f"ffm_position must be in [0, {depth}] (0 = before the ViT blocks, {depth} = after "
                             f"them), got {ffm_position}")
        layers = sorted({int(i) % depth for i in frm_layers if -depth <= int(i) < depth})
        if frm and (not layers or len(layers) != len(set(frm_layers))):
            raise ValueError(f"frm_layers must be distinct block indices in [-{depth}, {depth - 1}], got "
                             f"{list(frm_layers)}")
        self.head, self.missing, self.missing_rule = head, missing, missing_rule
        self.ffm_position = ffm_position
        self.frm_layers = tuple(layers) if frm else ()
        moe_options = dict(capacity_factor=capacity_factor, noise=router_noise, load_loss=load_loss,
                           router_dim=router_dim, tau=router_tau, learnable_tau=router_learnable_tau,
                           min_tau=router_min_tau)
        self.ffm = FeatureFusion(dim, num_experts=ffm_experts, hidden=ffm_hidden, lambda_=lambda_,
                                 aux_calls=ffm_aux_calls, rule=missing_rule, shared_experts=shared_experts,
                                 dropout=expert_dropout, **moe_options) if ffm else None
        frm_hidden = round(2 * dim / 3) if frm_hidden is None else int(frm_hidden)
        self.frm = nn.ModuleDict({
            str(i): SparseMoE(TokenExperts(dim, frm_hidden, frm_experts, shared=shared_experts, dropout=expert_dropout,
                                           residual=True, scale=frm_scale, init="xavier"),
                              router_init="trunc_normal", **moe_options)
            for i in self.frm_layers})
        for i in self.frm_layers:  # Eq. 7: the MoE replaces the block's MLP (the code keeps the old one, unused)
            backbone.blocks[i].mlp = nn.Identity()
        if head == "concat":
            self.heads = nn.ModuleDict({"fused": BNNeck(3 * dim, num_classes)})
        else:
            self.heads = nn.ModuleDict({m: BNNeck(dim, num_classes) for m in MODALITIES})
        self.cam_reshape: Callable[[Tensor], Tensor] = backbone.cam_reshape
        # Grad-CAM needs one modality per activation: the cam layer sees [R; N; T], so its output is routed
        # through one identity tap per modality (as the shared MultiModalBaseline does).
        self.cam_taps = nn.ModuleDict({m: nn.Identity() for m in MODALITIES})
        backbone.cam_layer.register_forward_hook(self._route_taps)

    def _route_taps(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        chunks = output.chunk(len(MODALITIES), dim=0)
        return torch.cat([self.cam_taps[m](c) for m, c in zip(MODALITIES, chunks, strict=True)])

    def _present(self, batch: Mapping[str, Tensor], images: Tensor) -> Tensor:
        b = images.shape[0]
        present = batch.get("present") if self.missing == "reconstruct" else None
        if present is None:
            return torch.ones(b, len(MODALITIES), dtype=torch.bool, device=images.device)
        present = torch.as_tensor(present, device=images.device)
        if present.shape != (b, len(MODALITIES)) or present.dtype != torch.bool:
            raise ValueError(f"batch['present'] must be a bool tensor [{b}, 3], got {present.dtype} "
                             f"{tuple(present.shape)}")
        if not bool(present.any(dim=1).all()):
            raise ValueError("every sample needs at least one present modality")
        return present

    def _fuse(self, x: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        fused, aux = self.ffm(list(x.chunk(len(MODALITIES), dim=0)), present)
        return torch.cat(fused, dim=0), aux

    @staticmethod
    def _frm_block(block: nn.Module, moe: SparseMoE, x: Tensor) -> tuple[Tensor, MoEOutput]:
        """Eq. 7 and 10: Y = X + MHA(LN(X)); Z = Y + l^moe_Ada(LN(Y)) (timm's layer scale / drop path kept)."""
        y = x + block.drop_path1(block.ls1(block.attn(block.norm1(x))))
        out = moe(block.norm2(y))
        return y + block.drop_path2(block.ls2(out.output)), out

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        images = _batch_images(batch, MODALITIES)
        b, m = images.shape[:2]
        present = self._present(batch, images)
        stacked = images.transpose(0, 1).reshape(m * b, *images.shape[2:])               # [R; N; T]
        self.backbone._check_input(stacked, exact_size=True)
        vit = self.backbone.vit
        x = vit.patch_drop(vit._pos_embed(vit.patch_embed(stacked)))                      # Eq. 1
        aux = {"ffm": x.new_zeros(()), "frm": x.new_zeros(())}
        if self.ffm is not None and self.ffm_position == 0:
            x, aux["ffm"] = self._fuse(x, present)                                        # Eq. 2–6
        x = vit.norm_pre(x)
        routing = None
        for i, block in enumerate(vit.blocks):
            if i in self.frm_layers:
                x, out = self._frm_block(block, self.frm[str(i)], x)                     # Eq. 7–10
                aux["frm"] = aux["frm"] + out.l_aux
                routing = out.expert
            else:
                x = block(x)
            if self.ffm is not None and self.ffm_position == i + 1:
                x, aux["ffm"] = self._fuse(x, present)
        x = vit.norm(x)
        cls = x[:, 0].reshape(m, b, -1)
        features = {mod: cls[i] for i, mod in enumerate(MODALITIES)}
        features["fused"] = torch.cat([features[mod] for mod in MODALITIES], dim=1)
        embeddings = dict(features)
        logits = {}
        bn = {}
        for name, neck in self.heads.items():
            bn[name], logits[name] = neck(features[name])
        embeddings["fused_bn"] = bn["fused"] if self.head == "concat" else torch.cat([bn[mod] for mod in MODALITIES], 1)
        outputs = {"features": features, "embeddings": embeddings, "logits": logits, "aux": aux}
        if routing is not None:
            outputs["frm_routing"] = routing.reshape(m, b, -1).transpose(0, 1)
        return outputs

    def extract(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self(batch)["embeddings"]

    def cam_target_layers(self, modality: str) -> list[nn.Module]:
        """The tap holding ``modality``'s tokens at the last block's ``norm1`` (what its attention reads)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of this model's modalities {MODALITIES}")
        return [self.cam_taps[modality]]


__all__ = ["EXPERT_INITS", "FFM_AUX_CALLS", "FFM_CALLS", "HEADS", "LOAD_LOSSES", "MISSING", "MISSING_RULES",
           "MODALITIES", "CosineRouter", "FeatureFusion", "MFRNet", "MoEOutput", "SparseMoE", "TokenExperts",
           "masked_softmax"]
