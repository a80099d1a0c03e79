"""MFRNet's study (notebook 04): Table 5's module rows, independent vs shared experts, the missing-modality rows of
Table 3, the sweeps of Tables 6, 8, 9 and 10, the expert analyses (Fig. 3) and the claims.

The paper — Feng, Li, Xie, Tan, Ji, "Multi-Modal Object Re-Identification via Sparse Mixture-of-Experts", ICML 2025 —
lives in: ``reidlab/models/mfrnet.py`` (sparse MoE, FFM Eq. 2–6, FRM Eq. 7–10), ``reidlab/losses/mfrnet.py``
(Eq. 11–15), ``reidlab/methods/mfrnet.py``, ``reidlab/recipes/mfrnet.yaml``, ``reidlab/papers/mfrnet.yaml`` (its
tables as printed) and this module.

Every row is MFRNet's recipe with switches changed (Table 5's baseline is MFRNet without FFM and FRM: the shared
ViT with the same head, loss and solver), so the run cache trains a row that two studies share once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reidlab.analysis.missing import missing_scores
from reidlab.data.synthetic import object_masks
from reidlab.engine.experiment import Run
from reidlab.papers import paper_results
from reidlab.recipes import Recipe
from reidlab.studies.claims import Claim, PaperDelta
from reidlab.studies.variants import runs_of
from reidlab.viz.style import PALETTE, denormalize, new_figure, style

BASELINE, FFM, FRM, FULL = "baseline (shared ViT)", "+FFM", "+FRM", "MFRNet"
#: Table 5: row -> overrides of MFRNet's recipe.
TABLE5: dict[str, dict] = {BASELINE: {"model.ffm": False, "model.frm": False}, FFM: {"model.frm": False},
                           FRM: {"model.ffm": False}, FULL: {}}
INDEPENDENT, SHARED = "independent experts (paper)", "shared experts (released code)"
NOISELESS = "independent experts, no router noise"
#: Beyond the paper: the experts of the paper against the one weight set of the released code, and the paper's
#: experts without the training noise on the router logits (the noise re-routes tokens in training only).
EXPERTS: dict[str, dict] = {INDEPENDENT: {}, SHARED: {"model.shared_experts": True},
                            NOISELESS: {"model.router_noise": 0.0}}
#: Table 3's settings (a missing modality is missing in query and gallery alike).
SETTINGS = ("complete", "M(R)", "M(N)", "M(T)", "M(RN)", "M(RT)", "M(NT)")
RECONSTRUCT, ZERO_FILL = "MFRNet · reconstruct", "MFRNet · zero-fill"
#: Sweeps (Tables 6, 8, 9, 10): symbol -> recipe key.
SWEEPS = {"FRM experts": "model.frm_experts", "FFM experts": "model.ffm_experts", "λ": "model.lambda",
          "FFM position": "model.ffm_position"}
#: The paper's chosen value of each sweep (Tables 6, 8, 9, 10).
SWEEP_BEST = {"FRM experts": 6, "FFM experts": 3, "λ": 0.5, "FFM position": 0}
#: Our missing-setting names -> the paper's Table 3 column labels.
PAPER_SETTINGS = {"M(R)": "M(RGB)", "M(N)": "M(NIR)", "M(T)": "M(TIR)", "M(RN)": "M(RGB+NIR)",
                  "M(RT)": "M(RGB+TIR)", "M(NT)": "M(NIR+TIR)"}


def variants(recipe: Recipe, rows: Mapping[str, Mapping]) -> dict[str, Recipe]:
    """``{row: MFRNet's recipe with the row's overrides}``."""
    return {row: recipe.override(dict(changes)) for row, changes in rows.items()}


@contextmanager
def missing_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Within the block, ``model.missing = mode`` (``reconstruct`` or ``zero_fill``); restored after."""
    previous = model.missing
    model.missing = mode
    try:
        yield model
    finally:
        model.missing = previous


def missing_table_scores(runs: Mapping[tuple[str, int], Run], settings: Sequence[str] = SETTINGS) -> pd.DataFrame:
    """Table 3's rows from MFRNet's runs (row :data:`FULL`): the same models reconstructing the missing modality's
    tokens (Eq. 6) and zero-filling it (the missing image as a grey image, ``present`` ignored); one line per
    (row, seed, setting)."""
    full = runs_of(runs, FULL)
    frames = []
    for mode, label in (("reconstruct", RECONSTRUCT), ("zero_fill", ZERO_FILL)):
        for key, run in full.items():
            with missing_mode(run.model, mode):
                frames.append(missing_scores({key: run}, list(settings)).assign(row=label))
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def expert_usage(run: Run, max_batches: int = 4) -> pd.DataFrame:
    """FRM routing on test samples (Fig. 3): for every modality, the share of tokens each expert receives, split
    into person (or vehicle) patches and background patches by the synthetic generator's masks, the class token
    apart; one line per (modality, region, expert)."""
    split, model = run.split, run.model
    records = split.query[: max_batches * 32]
    batch = run.batch("query", list(range(len(records))))
    routing = model(batch)["frm_routing"]  # [B, 3, L], top-1 expert of every token
    h, w = model.backbone.grid_size
    lines = []
    for m, modality in enumerate(model.modalities):
        masks = torch.from_numpy(object_masks(records, modality)).float().unsqueeze(1)
        person = torch.nn.functional.adaptive_avg_pool2d(masks, (h, w)).flatten(1) >= 0.5  # [B, h*w]
        experts = routing[:, m, 1:]
        regions = {"person": experts[person], "background": experts[~person], "class token": routing[:, m, 0]}
        for region, chosen in regions.items():
            counts = torch.bincount(chosen, minlength=_num_experts(model)).double()
            for e, c in enumerate(counts.tolist()):
                lines.append({"modality": modality, "region": region, "expert": e,
                              "share": c / max(1.0, counts.sum().item())})
    return pd.DataFrame(lines)


def _num_experts(model: nn.Module) -> int:
    return next(iter(model.frm.values())).num_experts


@torch.no_grad()
def plot_expert_maps(run: Run, n: int = 4) -> Figure:
    """Fig. 3: ``n`` test images (rows) per modality — the image and each patch coloured by its top-1 FRM expert
    (one colour per expert, the same in every panel), the person's outline from the synthetic generator."""
    split, model = run.split, run.model
    positions = list(np.linspace(0, len(split.query) - 1, n).astype(int))
    batch = run.batch("query", positions)
    routing = model(batch)["frm_routing"][:, :, 1:]
    h, w = model.backbone.grid_size
    experts = _num_experts(model)
    colours = ListedColormap(PALETTE[:experts])
    with style():
        fig, axes = new_figure(n, 2 * len(model.modalities), (1.2, 2.2))
        for m, modality in enumerate(model.modalities):
            images = denormalize(batch["images"][:, m], run.transform.mean, run.transform.std)
            masks = object_masks([split.query[i] for i in positions], modality)
            height, width = masks.shape[1:]
            for r in range(n):
                axes[r, 2 * m].imshow(images[r].permute(1, 2, 0).numpy(), extent=(0, width, height, 0))
                axes[r, 2 * m + 1].imshow(routing[r, m].view(h, w).numpy(), cmap=colours, vmin=-0.5,
                                          vmax=experts - 0.5, extent=(0, width, height, 0))
                axes[r, 2 * m + 1].contour(np.arange(width) + 0.5, np.arange(height) + 0.5, masks[r], levels=[0.5],
                                           colors="white", linewidths=0.8)
            axes[0, 2 * m].set_title(modality.upper(), fontsize=8)
            axes[0, 2 * m + 1].set_title(f"{modality.upper()} experts", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [Patch(color=PALETTE[e], label=f"expert {e}") for e in range(experts)]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(experts, 3), fontsize=7, frameon=False)
    return fig


def usage_entropy(usage: pd.DataFrame) -> pd.DataFrame:
    """Normalised entropy of the expert shares per (modality, region): 1 = every expert used equally, 0 = one."""
    def entropy(shares: pd.Series) -> float:
        p = shares.to_numpy()
        p = p[p > 0]
        return max(0.0, float(-(p * np.log(p)).sum() / np.log(len(shares)))) if len(shares) > 1 else 0.0
    return usage.groupby(["modality", "region"], sort=False)["share"].apply(entropy).unstack("region")


def expert_spread(model: nn.Module) -> pd.DataFrame:
    """How far apart the experts' weights are: per mixture, the mean pairwise distance between expert weight
    sets relative to their mean norm (0 for shared experts, which are one weight set)."""
    lines = {}
    for name, module in model.named_modules():
        if type(module).__name__ != "TokenExperts":
            continue
        weights = torch.cat([p.detach().flatten(1) for p in module.parameters() if p.ndim >= 2], dim=1)
        if weights.shape[0] < 2:
            lines[name] = {"experts (weight sets)": int(weights.shape[0]), "relative spread": 0.0}
            continue
        distance = torch.cdist(weights, weights)
        n = weights.shape[0]
        lines[name] = {"experts (weight sets)": n,
                       "relative spread": float(distance.sum() / (n * (n - 1)) / weights.norm(dim=1).mean())}
    return pd.DataFrame(lines).T


def cost(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Parameters (M) — all, and those of Linear / Conv modules outside attention (the count that reproduces the
    paper's Tables 4–5, spec §5.4) — and the forward FLOPs (G) of one sample of ``batch`` (every matrix product,
    attention included; a multiply-add = 2)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    counted = sum(p.numel() for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)
                  and ".attn." not in f".{name}." for p in m.parameters(recurse=False))
    return {"parameters, all (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            "parameters, Linear/Conv outside attention (M)": counted / 1e6,
            "forward GFLOPs per sample, all": counter.get_total_flops() / 1e9 / len(batch["images"])}


def claims(scores: Mapping[str, pd.DataFrame]) -> list[Claim]:
    """The paper's claims on our scores: ``{"table5": rows of TABLE5, "table3": missing_table_scores(...),
    "experts": rows of EXPERTS}`` and the sweeps by symbol (value in the symbol's column), paired by seed."""
    def delta(table: int, row: str, reference: str, **where: str) -> PaperDelta:
        return PaperDelta("mfrnet", table, row, reference, where=where)
    t5 = scores["table5"]  # the paper's Table 5 rows are numbered: 1 baseline, 2 +FFM, 3 +FRM, 4 both
    out = [Claim("FFM helps (T5 baseline→+FFM)", t5, FFM, BASELINE, delta(5, "2", "1")),
           Claim("FRM helps (T5 baseline→+FRM)", t5, FRM, BASELINE, delta(5, "3", "1")),
           Claim("FFM + FRM beat FRM alone (T5)", t5, FULL, FRM, delta(5, "4", "3")),
           Claim("FFM + FRM beat FFM alone (T5)", t5, FULL, FFM, delta(5, "4", "2"))]
    if "experts" in scores:
        out.append(Claim("independent experts beat the code's shared one", scores["experts"], INDEPENDENT, SHARED,
                         source="the paper's text describes distinct experts (§3)", expected_sign=1))
    if "table3" in scores:
        out += [Claim(f"reconstruction beats zero-filling under {s}", scores["table3"], RECONSTRUCT, ZERO_FILL,
                      where={"setting": s}, source="§3.1 (no zero-fill row in Table 3)", expected_sign=1)
                for s in SETTINGS[1:]]
    for symbol, best in SWEEP_BEST.items():
        if symbol in scores:
            frame = scores[symbol].rename(columns={symbol: "row"})
            out += [Claim(f"{symbol} = {best:g} beats {value:g}", frame, best, value,
                          paper=_sweep_delta(symbol, best, value), expected_sign=1,
                          source=f"Table {SWEEP_TABLES[symbol]} (no row for this value)")
                    for value in sorted(set(frame["row"]) - {best})]
    return out


#: The paper's table of each sweep.
SWEEP_TABLES = {"FRM experts": 6, "FFM experts": 8, "λ": 9, "FFM position": 10}


def _sweep_delta(symbol: str, best: float, value: float) -> PaperDelta | None:
    """The paper's difference for a swept value it printed (Tables 6, 8, 9); None for other values and for the FFM
    position, whose blocks (of ViT-B's 12) do not map onto the tutorial ViT's."""
    label = {"FRM experts": lambda v: f"{v:g}", "FFM experts": lambda v: f"{v:g}", "λ": lambda v: f"{v:.1f}"}
    if symbol not in label:
        return None
    table = SWEEP_TABLES[symbol]
    printed = set(paper_results("mfrnet", table=table)["setting"])
    row, reference = label[symbol](best), label[symbol](value)
    return PaperDelta("mfrnet", table, row, reference) if {row, reference} <= printed else None
