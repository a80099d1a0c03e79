"""The schema of a recipe's sections, so an override with an unknown key or a wrong type is refused
before anything is loaded (``-o model.shared=false`` must be the bool ``False``, not the string).

The type of ``SECTION.KEY`` is the union of

* the types its value has anywhere in the recipe file (``defaults``, every profile, every
  ``datasets`` entry): a key written ``shared: false`` is a bool, ``margin: 0.3`` a float (an int is
  accepted for a float, a bool never for a number); and
* the annotated parameter types of the code that reads the section, for keys a recipe may add:
  ``dataset_options`` → the format's ``load``, ``synthetic`` → ``synthetic_tree``, ``data`` → the
  transforms and :data:`DATA_LOADER_KEYS`, ``loss`` → :data:`LOSS_KEYS`, ``eval`` → :data:`EVAL_KEYS`.

A key in neither is unknown and refused, except in :data:`PASS_THROUGH` sections (``model``: keys
go to the model builder and on to ``timm.create_model`` as keyword arguments, so any name may be
valid there; the value is still parsed as YAML). ``train`` keys are also checked by
:class:`reidlab.engine.trainer.TrainConfig`. Values come from the command line as YAML literals
(:func:`parse_value`: ``true``/``false``/``null``, numbers, ``[1, 2]``), as ``yaml.safe_load`` reads them.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reidlab.errors import ConfigError

#: A set of accepted types; :data:`ANY` accepts every value.
Types = frozenset[type]
ANY: Types = frozenset({object})
NONE = type(None)

#: Sections whose unknown keys are passed on as keyword arguments (and what receives them).
PASS_THROUGH: dict[str, str] = {
    "model": "passed to the model builder and on to timm.create_model as keyword arguments",
}
#: ``data`` keys read by the loaders (reidlab.engine.experiment), not by the transforms.
DATA_LOADER_KEYS: dict[str, Types] = {"size": frozenset({list}), "p": frozenset({int}), "k": frozenset({int}),
                                      "iters": frozenset({int}), "pipeline": frozenset({str}),
                                      "num_workers": frozenset({int}), "test_batch_size": frozenset({int})}
#: ``loss`` keys some method reads (reidlab.methods: reid_criterion, CoEN, DENet; each rejects the ones it does not).
LOSS_KEYS: dict[str, Types] = {
    "metric": frozenset({str}), "margin": frozenset({float, NONE}), "label_smoothing": frozenset({float}),
    "id_weight": frozenset({float}), "metric_weight": frozenset({float}), "lambda": frozenset({float}),
    "rho": frozenset({float}), "mu": frozenset({float}), "adversarial": frozenset({float})}
EVAL_KEYS: dict[str, Types] = {"flip": frozenset({bool})}


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it (``false`` → False, ``3`` → 3, ``[1, 2]``); else the text itself."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def annotation_types(annotation: Any) -> Types:
    """The plain types a value of ``annotation`` may have (sequences and tuples as ``list``, paths as ``str``)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return ANY
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(annotation_types(a) for a in typing.get_args(annotation)))
    base = origin or annotation
    if base is None or base is NONE:
        return frozenset({NONE})
    if base in (bool, int, float, str, dict):
        return frozenset({base})
    if base is Path:
        return frozenset({str})
    if isinstance(base, type) and issubclass(base, Mapping):
        return frozenset({dict})
    if base in (list, tuple) or (isinstance(base, type) and issubclass(base, Sequence)):
        return frozenset({list})
    return ANY


def signature_types(function: Callable[..., Any], skip: Sequence[str] = ()) -> dict[str, Types]:
    """``{parameter: types}`` of ``function``'s named parameters (``*args``/``**kwargs`` and ``skip`` left out)."""
    params = inspect.signature(function, eval_str=True).parameters.values()
    return {p.name: annotation_types(p.annotation) | (frozenset({NONE}) if p.default is None else frozenset())
            for p in params if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def value_types(value: Any) -> Types:
    if value is None:
        return frozenset({NONE})
    if isinstance(value, bool):
        return frozenset({bool})
    if isinstance(value, int | float):
        return frozenset({float if isinstance(value, float) else int})
    if isinstance(value, list | tuple):
        return frozenset({list})
    return frozenset({type(value)})


def accepts(types_: Types, value: Any) -> bool:
    """Whether ``value`` has one of ``types_`` (an int passes for a float; a bool never for a number)."""
    if object in types_:
        return True
    found = next(iter(value_types(value)))
    return found in types_ or (found is int and float in types_) or (found is dict and dict in types_)


def describe(types_: Types) -> str:
    if object in types_:
        return "any value"
    names = {NONE: "null", bool: "a bool (true/false)", int: "an integer", float: "a number",
             str: "a string", list: "a list such as [1, 2]", dict: "a mapping"}
    return " or ".join(sorted(names.get(t, t.__name__) for t in types_))


def check_value(where: str, value: Any, types_: Types) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the expected type unless ``value`` has one of ``types_``."""
    if accepts(types_, value):
        return
    hint = (" (YAML reads 1e-3 as a string: write 1.0e-3)"
            if isinstance(value, str) and float in types_ and _is_number(value) else "")
    raise ConfigError(f"{where}: expected {describe(types_)}, got {value!r} ({type(value).__name__}){hint}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def recipe_types(spec: Mapping[str, Any], section: str) -> dict[str, Types]:
    """``{key: types}`` of ``section`` from every place the recipe file sets it."""
    found: dict[str, Types] = {}
    places = [spec.get("defaults") or {}]
    for profile in (spec.get("profiles") or {}).values():
        places.append(profile or {})
        places.extend(((profile or {}).get("datasets") or {}).values())
    for place in places:
        for key, value in ((place or {}).get(section) or {}).items():
            found[key] = found.get(key, frozenset()) | value_types(value)
    return found


def code_types(section: str, dataset: str) -> dict[str, Types]:
    """``{key: types}`` of ``section`` as the code that reads it declares them."""
    if section == "dataset_options":
        from reidlab.data.formats import get_format

        return signature_types(get_format(dataset).load, skip=("root",))
    if section == "synthetic":
        from reidlab.data.synthetic.cache import synthetic_tree

        return signature_types(synthetic_tree, skip=("like", "progress"))
    if section == "data":
        from reidlab.data.transforms import TestTransform, TrainTransform, build_cross_modal_train_transform

        keys = {**signature_types(TestTransform.__init__, skip=("self",)),
                **signature_types(TrainTransform.__init__, skip=("self", "modality_ops")),
                **signature_types(build_cross_modal_train_transform)}
        return {**keys, **DATA_LOADER_KEYS}
    return {"loss": LOSS_KEYS, "eval": EVAL_KEYS}.get(section, {})


def section_schema(spec: Mapping[str, Any], section: str, dataset: str) -> dict[str, Types]:
    """The known keys of ``section`` and their types (the union of the recipe's and the code's)."""
    schema = dict(code_types(section, dataset))
    for key, found in recipe_types(spec, section).items():
        schema[key] = schema.get(key, frozenset()) | found
    return schema


def check_options(where: str, options: Mapping[str, Any], schema: Mapping[str, Types],
                  pass_through: str | None = None) -> None:
    """Refuse an unknown key (unless ``pass_through`` says where they go) or a value of the wrong type.

    Messages start with ``where`` followed by the key (``where="override model."`` → ``override model.shared``).
    """
    for key, value in options.items():
        if key in schema:
            check_value(f"{where}{key}", value, schema[key])
        elif pass_through is None:
            raise ConfigError(f"{where}{key}: unknown key; known keys: {', '.join(sorted(schema)) or 'none'}")


def check_overrides(recipe: str, spec: Mapping[str, Any], dataset: str, overrides: Mapping[str, Any],
                    sections: Sequence[str]) -> None:
    """Check ``SECTION.KEY`` overrides (or ``SECTION: {KEY: value}``) of recipe ``recipe`` against its schema."""
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        where = f"override {key!r} of recipe {recipe!r}"
        if head not in sections:
            hint = {"dataset": " (use --dataset / dataset=...)", "data_root": " (use --data-root / data_root=...)"}
            what = f"{head!r} cannot be overridden" if head in hint else f"unknown recipe field {head!r}"
            raise ConfigError(f"{where}: {what}{hint.get(head, '')}; expected SECTION.KEY "
                              f"with SECTION one of {', '.join(sections)}")
        if not rest:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {head!r} is a section, got {value!r}; set one key with {head}.KEY=VALUE")
            items = dict(value)
        else:
            name, _, deeper = rest.partition(".")
            items = {name: {deeper: value} if deeper else value}
        schema = section_schema(spec, head, dataset)
        nested = {k for k, v in items.items() if isinstance(v, Mapping) and k in schema and dict not in schema[k]}
        if nested and head not in PASS_THROUGH:
            raise ConfigError(f"{where}: {head}.{sorted(nested)[0]} is not a mapping; expected {head}.KEY=VALUE")
        check_options(f"recipe {recipe!r}: override {head}.", items, schema, PASS_THROUGH.get(head))


__all__ = ["PASS_THROUGH", "check_options", "check_overrides", "parse_value", "section_schema", "signature_types"]
