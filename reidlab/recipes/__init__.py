"""Recipes: one YAML file per method, with a section per profile (``smoke``, ``tutorial``, ``paper``).

A recipe file looks like::

    method: baseline_multimodal          # key of reidlab.methods.METHODS
    description: ...
    defaults: {data: {...}, train: {...}}  # shared by every profile
    profiles:
      tutorial: {dataset: rgbnt201, synthetic: {...}, model: {...}, train: {...}}
      paper:
        dataset: rgbnt201
        datasets:                          # per-benchmark settings, applied when that dataset is chosen
          rgbnt100: {train: {lr: 1.0e-3}}

:func:`load_recipe` merges ``defaults`` ← profile ← ``datasets[dataset]`` ← overrides (deep merge;
dotted override keys such as ``"train.epochs"`` reach into sections) and returns a :class:`Recipe`.
A notebook parameter is such an override. Overrides are checked against the recipe's schema first
(:mod:`reidlab.recipes.schema`): an unknown key or a wrong type is a :class:`~reidlab.errors.ConfigError`.
``data_root=None`` means the profile's synthetic tree.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidlab.recipes.schema import check_overrides

RECIPES_DIR = Path(__file__).resolve().parent
PROFILES: tuple[str, ...] = ("smoke", "tutorial", "paper")
SECTIONS: tuple[str, ...] = ("dataset_options", "synthetic", "model", "loss", "data", "train", "eval")


@dataclass(frozen=True)
class Recipe:
    """A fully resolved configuration: everything a run depends on (its hash keys the run cache)."""

    name: str
    method: str
    profile: str
    dataset: str
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_synthetic(self) -> bool:
        return self.data_root is None

    def override(self, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> Recipe:
        """A copy with ``overrides`` applied (dotted keys reach into sections: ``{"train.epochs": 5}``)."""
        merged = self.to_dict()
        for key, value in {**(overrides or {}), **kwargs}.items():
            _set_dotted(merged, key, value)
        return Recipe(**merged)


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str, profile: str = "tutorial", overrides: Mapping[str, Any] | None = None, *,
                dataset: str | None = None, data_root: str | Path | None = None) -> Recipe:
    """Resolve recipe ``name`` for ``profile``; ``dataset``/``data_root`` select a benchmark (None: the profile's)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(available_recipes())}")
    spec = yaml.safe_load(path.read_text())
    profiles = spec.get("profiles", {})
    if profile not in profiles:
        raise ValueError(f"recipe {name!r} has no profile {profile!r}; it has: {', '.join(profiles)}")
    merged = _deep_merge(spec.get("defaults", {}), profiles[profile])
    per_dataset = merged.pop("datasets", {}) or {}
    chosen = (dataset or merged.get("dataset") or "").lower().replace("-", "_")
    if not chosen:
        raise ValueError(f"recipe {name!r} profile {profile!r} names no dataset; pass dataset=...")
    if dataset is not None and per_dataset and chosen not in per_dataset and chosen != merged.get("dataset"):
        raise ValueError(f"recipe {name!r} profile {profile!r} has no settings for dataset {chosen!r}; "
                         f"it supports: {', '.join(sorted({merged.get('dataset'), *per_dataset}))}")
    merged = _deep_merge(merged, per_dataset.get(chosen, {}))
    unknown = set(merged) - set(SECTIONS) - {"dataset"}
    if unknown:
        raise ValueError(f"recipe {name!r}: unknown keys {sorted(unknown)}; expected dataset, datasets, "
                         f"{', '.join(SECTIONS)}")
    check_overrides(name, spec, chosen, dict(overrides or {}), SECTIONS)
    recipe = Recipe(name=name, method=spec["method"], profile=profile, dataset=chosen,
                    data_root=None if data_root is None else str(data_root),
                    **{s: merged.get(s, {}) or {} for s in SECTIONS})
    return recipe.override(overrides)


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in (update or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head not in target:
        raise ValueError(f"unknown recipe field {head!r} in override {key!r}; "
                         f"fields: {', '.join(target)}")
    if not rest:
        target[head] = copy.deepcopy(value)
        return
    section = target[head]
    if not isinstance(section, dict):
        raise ValueError(f"override {key!r}: {head!r} is not a section")
    node = section
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)
