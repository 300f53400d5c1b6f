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
import difflib
import importlib
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from asclepius.errors import InputError

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


def _config_flag(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def parse_recipe(classes: tuple[type, ...] | type, argv: list[str] | None = None) -> tuple[Any, ...]:
    """``TrlParser(classes).parse_args_and_config(argv)``, every config mistake a one-line ``InputError``.

    A missing recipe file, malformed YAML, an unknown key (in the file or on the command
    line) and an invalid value (``--limit 0``: the dataclasses' own checks) all end the
    script with exit 2 and one line naming the file and key, not a traceback.
    """
    from trl import TrlParser

    classes = classes if isinstance(classes, tuple) else (classes,)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = TrlParser(classes)
    config = _config_flag(argv)
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise InputError(config, "no such recipe file", field="--config")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            where = getattr(error, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise InputError(
                config, f"not valid YAML{line}: {getattr(error, 'problem', None) or error}"
            ) from None
        if not isinstance(values, dict):
            raise InputError(config, "a recipe must be a YAML mapping of field names to values")
        known = {action.dest for action in parser._actions} | {"env"}
        unknown = [key for key in values if key not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(config, f"unknown key{hint}", field=unknown[0])
    try:
        return tuple(parser.parse_args_and_config(argv))
    except ValueError as error:
        message = " ".join(str(error).split())
        if "not used by the HfArgumentParser" in message:
            message = "unknown flag(s) " + message.split(":", 1)[1].strip()
        raise InputError(config or "command line", message) from None


# Make targets that build the local models the recipes start from.
MODEL_TARGETS = {"tiny-model": "make tiny-model", "smol-model": "make smol-model"}


def check_model_path(name_or_path: str | None, *, flag: str = "--model_name_or_path") -> None:
    """A model that is neither a local folder nor (offline) in the Hub cache: name it and what builds it.

    ``outputs/tiny-model`` looks like a Hub id; without this check a recipe run before
    ``make tiny-model`` ends in a Hub connection error.
    """
    if not name_or_path or Path(name_or_path).exists():
        return
    parts = Path(name_or_path).parts
    # "org/name" and legacy "gpt2" are Hub ids; paths are absolute, relative or deeper, or under outputs/.
    local_looking = name_or_path.startswith((".", "/", "~")) or len(parts) > 2 or parts[0] == "outputs"
    target = next((make for name, make in MODEL_TARGETS.items() if name in name_or_path), None)
    if not local_looking and target is None:
        from asclepius.offline import offline_unless_hub_reachable

        # Without a network, a Hub id comes from the cache (no HF_HUB_OFFLINE needed).
        if not offline_unless_hub_reachable():
            return
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            return
        raise InputError(
            name_or_path,
            "not a local folder, and not in the Hugging Face cache (working offline)",
            field=flag,
        )
    build = f"build it with `{target}`" if target else "run the stage that writes it first"
    raise InputError(name_or_path, f"no such model folder; {build}", field=flag)


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
