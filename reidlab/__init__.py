"""reidlab: multi-modal and visible-infrared re-identification, reproduced side by side.

The front door — a handful of calls cover a paper notebook::

    import reidlab
    reidlab.list_methods()                          # ['baseline_crossmodal', 'baseline_multimodal', 'coen', ...]
    recipe = reidlab.load_recipe("coen", "tutorial")
    run = reidlab.train(recipe)                     # cached by the recipe and the training code
    run.evaluate().summary()                        # {'mAP': ..., 'R-1': ...}
    runs = reidlab.studies.train_variants({"CoEN": recipe}, seeds=[0, 1, 2])

Names are imported on first use (``import reidlab`` loads neither torch nor a model).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (a module itself where the name is a submodule).
_EXPORTS: dict[str, str] = {
    "list_methods": "reidlab.methods",
    "build_method": "reidlab.methods",
    "load_recipe": "reidlab.recipes",
    "available_recipes": "reidlab.recipes",
    "load_split": "reidlab.data.formats",
    "synthetic_tree": "reidlab.data.synthetic.cache",
    "train": "reidlab.engine.experiment",
    "Run": "reidlab.engine.experiment",
    "dataset_root": "reidlab.engine.experiment",
    "train_many": "reidlab.engine.parallel",
    "evaluate": "reidlab.eval",
    "paper_results": "reidlab.papers",
    "paper_spec": "reidlab.papers",
    "Report": "reidlab.reports",
    "studies": "reidlab.studies",
    "viz": "reidlab.viz",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reidlab' has no attribute {name!r}; public names: {', '.join(__all__)}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"reidlab.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
