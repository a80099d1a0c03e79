"""``reidlab pretrain PRESET``: supervised pre-training of a tutorial backbone on the synthetic pool.

Objective — supervised identity classification on the pool (:mod:`reidlab.data.synthetic.pool`), the
analogue of ImageNet / LUPerson-style pre-training: the pool's identities are disjoint from every benchmark
tree, so neither a supervised nor an unsupervised method (MMCF must not see target labels) is taught any
target identity. Loss per batch, Bag of Tricks style: label-smoothed cross-entropy on a BNNeck classifier over
all pool identities plus the batch-hard triplet loss on the pre-BN feature (``loss = CE_ε(W·BN(f), y) +
Tri_m(f, y)``, ε = 0.1, m = 0.3; :mod:`reidlab.losses.reid`).

Cross-modal robustness: every sample is a single image of one modality (RGB, NIR or TIR as three channels),
and a P×K batch draws K images of each identity from all its modalities, so the loss pulls an identity's
RGB, NIR and TIR images together — one backbone serves multi-modal and visible–infrared methods.

Input sizes: batches alternate persons at 64×32 and vehicles at 24×48 (H×W; the tutorial recipes' sizes),
augmented by a random flip and a 4-pixel pad-and-crop. The ViT is built at a square 64×64 grid with timm's
``dynamic_img_size`` (its 8×8 position embedding is resampled bicubically to each batch's grid, as the
checkpoint loader later resamples it to the target grid), so both aspect ratios are pre-trained.
Optimiser: Adam (lr 2e-3, weight decay 5e-4), 4000 steps of 16 identities × 4 images, linear warm-up over the
first 5 % of the steps, cosine to 1e-5. Pool: 300 persons and 300 vehicles, 6 captures each (10,800 images).
Measured (1 thread): ``vit_tutorial`` with its convolutional stem ends at 29 % training accuracy over the 600
identities (the patchify-stem ViT reached 15 % after 2000 steps on half the pool, the stem 28 %),
``resnet_tutorial`` at 39 %; the pool's TIR images alone cannot tell apart identities that share a heat code.
Deterministic for a given seed and thread count.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from reidlab.data.synthetic.identities import PERSON, VEHICLE
from reidlab.data.synthetic.pool import PoolImages, render_pool
from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reidlab.losses.reid import CrossEntropyLabelSmooth, TripletLoss
from reidlab.models.backbones import PRESETS, create_timm_model, unstride
from reidlab.models.heads import BNNeck
from reidlab.models.pretrained import PRETRAINED_TAG, VIT_BASE_SIZE, sha256_of, split_tag, weights_path


@dataclass(frozen=True)
class PretrainConfig:
    """The pool (identities per kind, captures per identity, sizes), the P×K batches and the solver."""

    persons: int = 300
    vehicles: int = 300
    captures: int = 6
    person_size: tuple[int, int] = (64, 32)
    vehicle_size: tuple[int, int] = (24, 48)
    steps: int = 4000
    p: int = 16
    k: int = 4
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    margin: float = 0.3
    pad: int = 4
    seed: int = 0


@dataclass
class PretrainResult:
    path: Path
    sha256: str
    seconds: float
    train_accuracy: float          # identity accuracy on the training batches of the last 10 % of the steps
    provenance: dict


class _Pretrainee(nn.Module):
    """A bare timm backbone with a global feature (ViT: class token; CNN: average pooling) and a BNNeck."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.vit = hasattr(backbone, "cls_token")
        self.head = BNNeck(backbone.num_features, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.backbone.forward_features(x)
        feature = tokens[:, 0] if self.vit else tokens.mean(dim=(2, 3))
        return feature, self.head(feature)[1]


def pretrain_model(preset: str) -> nn.Module:
    """The randomly initialised timm model of ``preset`` as pre-trained: a ViT at the 64×64 base grid with a
    dynamic image size, a ResNet with the ReID last stride 1 (as :func:`create_backbone` builds it)."""
    if preset not in PRESETS:
        raise ValueError(f"reidlab pretrain builds the tutorial presets {sorted(PRESETS)}, got {preset!r}")
    if preset.startswith("vit"):
        return create_timm_model(preset, img_size=VIT_BASE_SIZE, dynamic_img_size=True)
    model = create_timm_model(preset)
    unstride(model.layer4[0])
    return model


def _batches(pools: list[PoolImages], offsets: list[int], config: PretrainConfig, generator: torch.Generator):
    """Endless P×K batches, alternating between the kinds: (normalised images, global labels)."""
    by_id = [[torch.nonzero(pool.labels == i).flatten() for i in range(int(pool.labels.max()) + 1)]
             for pool in pools]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    step = 0
    while True:
        which = step % len(pools)
        pool, ids = pools[which], by_id[which]
        chosen = torch.randperm(len(ids), generator=generator)[:config.p]
        index = torch.cat([ids[i][torch.randint(len(ids[i]), (config.k,), generator=generator)] for i in chosen])
        images = (pool.images[index].float() / 255 - mean) / std
        yield _augment(images, config.pad, generator), pool.labels[index] + offsets[which]
        step += 1


def _augment(images: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random horizontal flip, then zero-pad by ``pad`` and crop back at a random offset (per sample)."""
    b, _, h, w = images.shape
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip.view(b, 1, 1, 1), images.flip(-1), images)
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(2 * pad + 1, (b,), generator=generator).tolist()
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))])


def _lr(step: int, config: PretrainConfig) -> float:
    warmup = max(1, config.steps // 20)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, config.steps - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * t))


def render_pools(config: PretrainConfig, progress: bool = True) -> list[PoolImages]:
    pools = []
    for kind, count, size in ((PERSON, config.persons, config.person_size),
                              (VEHICLE, config.vehicles, config.vehicle_size)):
        if count:
            pools.append(render_pool(kind, count, config.captures, size, config.seed, progress=progress))
    if not pools:
        raise ValueError("the pre-training pool is empty: persons and vehicles are both 0")
    return pools


def train_backbone(preset: str, config: PretrainConfig, pools: list[PoolImages] | None = None,
                   progress: bool = True) -> tuple[dict[str, Tensor], float]:
    """Pre-train ``preset`` on the pool; returns (the backbone's timm state dict, final train accuracy)."""
    pools = render_pools(config, progress) if pools is None else pools
    offsets = np.cumsum([0] + [int(p.labels.max()) + 1 for p in pools]).tolist()
    torch.manual_seed(config.seed)
    model = _Pretrainee(pretrain_model(preset), offsets[-1])
    id_loss, metric_loss = CrossEntropyLabelSmooth(offsets[-1], config.label_smoothing), TripletLoss(config.margin)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    batches = _batches(pools, offsets[:-1], config, generator)
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"pretrain {preset}", unit="step")
    correct = seen = 0
    model.train()
    for step in steps:
        images, labels = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        feature, logits = model(images)
        loss = id_loss(logits, labels) + metric_loss(feature, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= config.steps - max(1, config.steps // 10):
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        if progress and step % 20 == 0:
            steps.set_postfix(loss=f"{loss.item():.3f}")
    state = {k: v.detach().clone().contiguous() for k, v in model.backbone.state_dict().items()}
    return state, correct / max(1, seen)


def pretrain(preset: str, out: str | Path | None = None, config: PretrainConfig | None = None, *,
             progress: bool = True, command: str | None = None) -> PretrainResult:
    """Pre-train ``preset`` and write ``out`` (default: the shipped ``reidlab/weights/<preset>.synth.safetensors``)
    and its provenance ``<out>.json`` (command, reidlab commit, sha256, seconds, final train accuracy, config)."""
    config = PretrainConfig() if config is None else config
    preset = split_tag(preset)[0]
    tagged = f"{preset}.{PRETRAINED_TAG}"
    path = weights_path(tagged) if out is None else Path(out)
    start = time.perf_counter()
    state, accuracy = train_backbone(preset, config, progress=progress)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"tag": tagged})
    path.chmod(0o644)                 # safetensors writes 0600; the file ships in the package
    digest = sha256_of(path)
    provenance = {
        "tag": tagged, "command": command or f"reidlab pretrain {preset} --out {path}", "commit": _commit(),
        "sha256": digest, "seconds": round(seconds, 1), "final_train_accuracy": round(accuracy, 4),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "objective": "label-smoothed CE (BNNeck classifier) + batch-hard triplet on the synthetic pool",
        "config": asdict(config)}
    path.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return PretrainResult(path, digest, seconds, accuracy, provenance)


def cluster_agreement(backbone: str, *, pretrained: bool, like: str = "sysu_mm01", size: tuple[int, int] = (64, 32),
                      k1: int = 30, k2: int = 6, eps: float = 0.6, min_samples: int = 4,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """How well the first pseudo-labels of an unsupervised method agree with the true identities, per modality.

    The training set of the synthetic ``like`` tree (the recipes' tutorial tree, seed ``seed``) goes through
    ``backbone`` (global feature: class token / average pooling); each modality's features are clustered as the
    unsupervised VI-ReID methods (MMCF) do before their first epoch — DBSCAN (``eps``, ``min_samples``) on the
    k-reciprocal Jaccard distance (``k1``, ``k2``; :func:`reidlab.engine.clustering.pseudo_labels`). Per modality:
    ``ari`` (adjusted Rand index) and ``nmi`` (normalised mutual information; DBSCAN's outliers form one cluster
    of their own), ``clusters``, ``outliers`` (share), ``identities`` and ``images``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from reidlab.data.formats import load_split
    from reidlab.data.images import read_image
    from reidlab.data.synthetic.cache import synthetic_tree
    from reidlab.data.transforms import normalise, resize_to_tensor
    from reidlab.engine.clustering import pseudo_labels
    from reidlab.models.backbones import create_backbone

    records = load_split(like, synthetic_tree(like, seed=seed)).train
    torch.manual_seed(seed)
    model = create_backbone(backbone, img_size=size, pretrained=pretrained).eval()
    by_modality: dict[str, list[tuple[int, Tensor]]] = {}
    with torch.no_grad():
        for start in range(0, len(records), 128):
            chunk = [(r.pid, *next(iter(r.images.items()))) for r in records[start:start + 128]]
            images = torch.stack([normalise(resize_to_tensor(read_image(ref), size), IMAGENET_MEAN, IMAGENET_STD)
                                  for _, _, ref in chunk])
            out = model(images)
            feats = out["cls"] if model.kind == "vit" else out["feature_map"].mean(dim=(2, 3))
            for (pid, modality, _), f in zip(chunk, feats, strict=True):
                by_modality.setdefault(modality, []).append((pid, f))
    result = {}
    for modality, items in by_modality.items():
        truth = [pid for pid, _ in items]
        labels = pseudo_labels(torch.stack([f for _, f in items]), k1, k2, eps, min_samples)
        result[modality] = {"ari": float(adjusted_rand_score(truth, labels)),
                            "nmi": float(normalized_mutual_info_score(truth, labels)),
                            "clusters": int(labels.max()) + 1, "outliers": float((labels == -1).mean()),
                            "identities": len(set(truth)), "images": len(items)}
    return result


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, check=True,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


__all__ = ["PretrainConfig", "PretrainResult", "cluster_agreement", "pretrain", "pretrain_model", "render_pools",
           "train_backbone"]
