"""Check that every recipe under ``recipes/`` parses into its config classes, with no unknown keys.

    python -m asclepius.recipes            # or: make check-recipes
    python -m asclepius.recipes recipes/tiny/sft/config_lora.yaml

Which classes a file parses into depends on where it lives:

* ``<recipe>/pretrain/*.yaml`` and ``<recipe>/sft/*.yaml``: the training classes of that
  stage (:data:`asclepius.training.config.RECIPE_CLASSES`);
* ``data.yaml``: :data:`asclepius.data.config.RECIPE_CLASSES`;
* any other YAML (``eval.yaml``...): :data:`asclepius.evaluation.config.RECIPE_CLASSES`.

A misspelt key fails, and so does a value of the wrong type where the field is a plain
number, string or bool (YAML reads ``2e-5`` as a string; ``2.0e-5`` is a float).
Settings that only the target hardware can validate (``bf16``, ``tf32`` need a GPU) are
relaxed on a machine without one, so recipes for 8 GPUs can be checked on a laptop.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

TRAINING_STAGE_DIRS = ("pretrain", "sft")
# Module holding RECIPE_CLASSES for each kind of recipe file.
CONFIG_MODULES = {
    "training": "asclepius.training.config",
    "data": "asclepius.data.config",
    "evaluation": "asclepius.evaluation.config",
}
# Set on a machine without a GPU so that GPU-only settings pass validation there.
CPU_RELAXATIONS = {"use_cpu": True, "tf32": None}


class RecipeError(ValueError):
    """A recipe that does not parse: the message names the file and every problem found."""


def recipe_kind(path: Path) -> str:
    if path.parent.name in TRAINING_STAGE_DIRS:
        return "training"
    if path.name == "data.yaml":
        return "data"
    return "evaluation"


def recipe_classes(path: Path) -> tuple[type, ...] | None:
    """The config classes of a recipe file, or None while the module owning them does not exist yet."""
    kind = recipe_kind(path)
    module_name = CONFIG_MODULES[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            return None
        raise
    if kind == "training":  # one set of classes per stage
        return tuple(module.RECIPE_CLASSES[path.parent.name])
    return tuple(module.RECIPE_CLASSES)


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """Plain types a YAML value may have for this annotation, or None to skip the check."""
    plain = (bool, int, float, str, type(None))
    if annotation in plain:
        return (int, float) if annotation is float else (annotation,)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        allowed: list[type] = []
        for member in typing.get_args(annotation):
            member_types = _allowed_types(member)
            if member_types is None:
                return None  # a list, dict, enum or literal member: too loose to check simply
            allowed.extend(member_types)
        return tuple(allowed)
    return None


def field_types(classes: tuple[type, ...]) -> dict[str, Any]:
    """Resolved annotation of every field of ``classes`` (fields whose annotation does not resolve are left out)."""
    hints: dict[str, Any] = {}
    for cls in classes:
        try:
            hints.update(typing.get_type_hints(cls))
        except (NameError, TypeError):
            for cls_field in fields(cls):
                if not isinstance(cls_field.type, str):
                    hints[cls_field.name] = cls_field.type
    return hints


def type_problems(classes: tuple[type, ...], config: dict[str, Any]) -> list[str]:
    hints = field_types(classes)
    problems = []
    for key, value in config.items():
        allowed = _allowed_types(hints[key]) if key in hints else None
        if allowed is None:
            continue
        # bool is an int to Python, but `true` where a number is expected is a mistake.
        if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
            continue
        problems.append(
            f"{key}: {value!r} is a {type(value).__name__}, expected {' or '.join(t.__name__ for t in allowed)}"
            + (
                " (write floats with a dot: 2.0e-5, not 2e-5)"
                if isinstance(value, str) and float in allowed
                else ""
            )
        )
    return problems


def check_recipe(path: str | Path, *, gpu_available: bool | None = None) -> tuple[Any, ...] | None:
    """Parse one recipe into its config classes; raise :class:`RecipeError` listing every problem.

    Returns the dataclass instances, or None when the classes of this kind of recipe
    are not written yet (their module does not exist).
    """
    from trl import TrlParser

    path = Path(path)
    classes = recipe_classes(path)
    if classes is None:
        return None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of field names to values")
    config = dict(config)
    env = config.pop("env", None)
    if env is not None and not isinstance(env, dict):
        raise RecipeError(f"{path}: env must be a mapping of variable names to values")

    parser = TrlParser(classes)
    known = {action.dest for action in parser._actions}
    problems = [f"unknown key {key!r}" for key in config if key not in known]
    problems += type_problems(classes, {key: value for key, value in config.items() if key in known})
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))

    if gpu_available is None:
        import torch

        gpu_available = torch.cuda.is_available()
    values = dict(config)
    if not gpu_available and recipe_kind(path) == "training":
        values.update(CPU_RELAXATIONS)
    parser.set_defaults_with_config(**values)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=[]))
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{path}: {error}") from error


def check_all(root: str | Path = "recipes") -> dict[Path, str]:
    """Check every ``*.yaml`` under ``root``; return {path: "ok" | "skipped: ..."}; raise listing all failures."""
    results: dict[Path, str] = {}
    failures = []
    paths = sorted(Path(root).rglob("*.yaml"))
    if not paths:
        raise RecipeError(f"{root}: no recipes found")
    for path in paths:
        try:
            parsed = check_recipe(path)
        except RecipeError as error:
            failures.append(str(error))
            continue
        kind = recipe_kind(path)
        results[path] = "ok" if parsed is not None else f"skipped: {CONFIG_MODULES[kind]} does not exist yet"
    if failures:
        raise RecipeError("\n".join(failures))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="recipe files to check (default: every YAML under recipes/)")
    parser.add_argument("--root", default="recipes")
    args = parser.parse_args(argv)
    try:
        if args.paths:
            results = {Path(p): "ok" if check_recipe(p) is not None else "skipped" for p in args.paths}
        else:
            results = check_all(args.root)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path, status in results.items():
        print(f"{status:>4}  {path}" if status == "ok" else f"{path}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
