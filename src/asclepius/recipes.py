"""Every script's flags: one argument class per stage, recipes parsed and checked against them.

    python -m asclepius.recipes            # or: make check-recipes
    python -m asclepius.recipes recipes/tiny/sft/config_lora.yaml

**Stages.** :data:`STAGES` names, for every script (stage), the dataclasses its flags come
from, e.g. ``make_notes``: ``NotesArguments`` + ``TeacherEngineArguments``. A stage's
class is composed of shared groups (:mod:`asclepius.arguments`: hub, source, allowed
endpoints; each family's own groups in its ``config`` module) plus its own fields, so its
``--help`` lists exactly what it uses. A script parses with ``parse_recipe("make_notes")``.

* Add a flag to one stage: add a field to that stage's class (e.g. ``GenerateArguments``
  in ``evaluation/config.py``), validated in its ``__post_init__`` (call ``super()`` first).
* Add a flag to several stages: add it to a group they share, or to a new group
  (a dataclass deriving from :class:`asclepius.arguments.Arguments`) that each lists.
* Add a stage: one class, one line in :data:`STAGES` (and in :data:`RECIPE_FAMILIES` if it
  reads a shared recipe file).

**Recipe files.** Stages of one family share a file (``data.yaml``: the four data stages;
``eval.yaml``: generate and judge); each takes its own keys and leaves the others'. A
key no stage of the family knows is an error; so is, on the command line, a flag the
stage does not take (the message names the stages that take it). ``<recipe>/pretrain/``
and ``<recipe>/sft/`` files belong to that stage alone.

**Checks.** A misspelt key fails, and so does a value of the wrong type where the field
is a plain number, string or bool (YAML reads ``2e-5`` as a string; ``2.0e-5`` is a float),
and each stage's own ``__post_init__`` checks run. ``--limit abc``, ``--push_to_hub maybe``
and a YAML ``limit: abc`` are one-line errors naming the flag or key (exit 2 in scripts).
Settings that only the target hardware can validate (``bf16``, ``tf32`` need a GPU) are
relaxed on a machine without one, so recipes for 8 GPUs can be checked on a laptop.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from asclepius.arguments import flag_error, flag_names
from asclepius.errors import InputError

_DATA, _EVALUATION, _TRAINING = (
    "asclepius.data.config",
    "asclepius.evaluation.config",
    "asclepius.training.config",
)
# stage -> (module, argument classes in the order the script unpacks them).
STAGES: dict[str, tuple[str, ...]] = {
    "make_notes": (_DATA, "NotesArguments", "TeacherEngineArguments"),
    "prepare_mimic": (_DATA, "MimicArguments"),
    "make_questions": (_DATA, "QuestionsArguments", "TeacherEngineArguments"),
    "make_answers": (_DATA, "AnswersArguments", "TeacherEngineArguments"),
    "generate": (_EVALUATION, "GenerateArguments", "GenerateEngineArguments"),
    "judge": (_EVALUATION, "JudgeArguments", "JudgeEngineArguments"),
    "pretrain": (_TRAINING, "PretrainScriptArguments", "PretrainConfig", "ModelConfig"),
    "sft": (_TRAINING, "TrainScriptArguments", "SFTStageConfig", "ModelConfig"),
    "merge_adapter": (_TRAINING, "MergeArguments"),
    "prepare_notes": ("asclepius.data.corpus", "CorpusArguments"),
    "perplexity": ("asclepius.evaluation.perplexity", "PerplexityArguments"),
    "expert_eval export": ("asclepius.evaluation.expert", "ExportArguments"),
    "expert_eval import": ("asclepius.evaluation.expert", "ImportArguments"),
    "benchmark": ("asclepius.evaluation.benchmarks", "BenchmarkArguments"),
    "push": ("asclepius.stage.push", "PushArguments"),
}
# Stages that share one recipe file: each takes its keys, a key none of them knows fails.
RECIPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "data": ("make_notes", "prepare_mimic", "make_questions", "make_answers"),
    "evaluation": ("generate", "judge"),
}
TRAINING_STAGE_DIRS = ("pretrain", "sft")
# Set on a machine without a GPU so that GPU-only settings pass validation there.
CPU_RELAXATIONS = {"use_cpu": True, "tf32": None}


class RecipeError(ValueError):
    """A recipe that does not parse: the message names the file and every problem found."""


def stage_classes(stage: str) -> tuple[type, ...]:
    """The argument classes of ``stage`` (a key of :data:`STAGES`)."""
    module_name, *names = STAGES[stage]
    module = importlib.import_module(module_name)
    return tuple(getattr(module, name) for name in names)


def stage_of(classes: tuple[type, ...]) -> str | None:
    """The stage whose classes these are (None for a script not in :data:`STAGES`)."""
    for stage, (module_name, *names) in STAGES.items():
        module = sys.modules.get(module_name)  # the classes' module is imported already if they are its
        if module is not None and tuple(getattr(module, name, None) for name in names) == classes:
            return stage
    return None


def recipe_kind(path: Path) -> str:
    if path.parent.name in TRAINING_STAGE_DIRS:
        return "training"
    if path.name == "data.yaml":
        return "data"
    return "evaluation"


def recipe_stages(path: Path) -> tuple[str, ...]:
    """The stages that read this recipe file."""
    kind = recipe_kind(path)
    return (path.parent.name,) if kind == "training" else RECIPE_FAMILIES[kind]


def family_of(stage: str) -> tuple[str, ...]:
    """The stages sharing ``stage``'s recipe file (just itself for a stage with a file of its own)."""
    return next((family for family in RECIPE_FAMILIES.values() if stage in family), (stage,))


def _keys(classes: tuple[type, ...]) -> dict[str, str]:
    """Recipe keys of ``classes``: field names, and aliases without their dashes -> field name."""
    keys: dict[str, str] = {}
    for cls in classes:
        for each in fields(cls):
            if each.init:
                keys[each.name] = each.name
                keys.update({alias.lstrip("-"): each.name for alias in each.metadata.get("aliases", [])})
    return keys


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


# How a YAML value of each type is written (a str field takes any scalar YAML reads as a string).
_YAML_TYPE_NAMES = {bool: "bool (true/false)", int: "int", float: "float", str: "str", type(None): "null"}


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
            f"{key}: {value!r} is a {type(value).__name__}, expected {' or '.join(_YAML_TYPE_NAMES[t] for t in allowed)}"
            + (
                " (write floats with a dot: 2.0e-5, not 2e-5)"
                if isinstance(value, str) and float in allowed
                else ""
            )
        )
    return problems


class _FlagError(Exception):
    """What argparse would print above a usage screen, raised instead."""


class StageParser(TrlParser):
    """``TrlParser`` over one stage's classes; its mistakes are exceptions, not usage screens."""

    def __init__(self, classes: tuple[type, ...], stage: str | None = None):
        description = (
            f"The flags of {stage or 'this script'}. --config FILE reads them from a recipe (YAML keys are the "
            "flag names); flags given here override the file."
        )
        # allow_abbrev=False: --max_tok is not silently --max_tokens; every flag is spelt out.
        super().__init__(classes, description=description, allow_abbrev=False)

    def error(self, message: str) -> typing.NoReturn:
        raise _FlagError(message)


def _foreign_flag(flag: str, stage: str | None, classes: tuple[type, ...]) -> InputError:
    """A flag this stage does not take: name the stages that do, or the closest of its own.

    A class's ``instead_of`` ({other stage's flag: this stage's}) names the stage's own flag for
    the same idea (the judge's ``--judge_model`` for ``--model``).
    """
    own = {spelling for cls in classes for spelling in flag_names(cls)}
    hints = [getattr(cls, "instead_of", {}) for cls in classes]
    name = flag.split("=", 1)[0]
    this = stage or "this script"
    if not name.startswith("-"):
        return InputError(name, f"unexpected argument of {this} (flags are --name value)")
    users = []
    for other in STAGES:
        if other != stage:
            try:
                if any(name in flag_names(cls) for cls in stage_classes(other)):
                    users.append(other)
            except (ImportError, AttributeError):  # a stage being written: its classes do not exist yet
                continue
    instead = next((hint[name] for hint in hints if name in hint), None)
    if users:
        also = f"; {this} takes {instead}" if instead else ""
        return InputError(name, f"not a flag of {this}; it is a flag of {', '.join(users)}{also}")
    close = difflib.get_close_matches(name, sorted(own), n=1)
    return InputError(name, f"not a flag of {this}" + (f"; did you mean {close[0]}?" if close else ""))


def _read_yaml(config: str) -> dict[str, Any]:
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
    env = values.pop("env", None)
    if env is not None and not isinstance(env, dict):
        raise InputError(config, "env must be a mapping of variable names to values", field="env")
    return values | ({"env": env} if env is not None else {})


def _family_keys(stages: tuple[str, ...]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for stage in stages:
        keys.update(_keys(stage_classes(stage)))
    return keys


def unknown_keys(
    values: dict[str, Any], classes: tuple[type, ...], family: tuple[str, ...] | None
) -> list[tuple[str, str | None]]:
    """(key, the closest known key or None) for each key no stage reading the file knows."""
    known = set(_keys(classes)) | (set(_family_keys(family)) if family else set()) | {"env"}
    unknown = [key for key in values if key not in known]
    return [(key, next(iter(difflib.get_close_matches(key, sorted(known), n=1)), None)) for key in unknown]


def take_keys(values: dict[str, Any], classes: tuple[type, ...]) -> tuple[dict[str, Any], list[str]]:
    """(this stage's values by field name, problems): keys of the family's other stages are left out."""
    own = _keys(classes)
    problems = []
    taken: dict[str, Any] = {}
    for key, value in values.items():
        if key in own:
            if own[key] in taken:
                problems.append(f"{key!r} and {own[key]!r} are the same setting; keep one")
            taken[own[key]] = value
    problems += type_problems(classes, taken)
    return taken, problems


def _split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1], argv[:index] + argv[index + 2 :]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1], argv[:index] + argv[index + 1 :]
    return None, argv


def parse_recipe(stage: str | type | tuple[type, ...], argv: list[str] | None = None) -> tuple[Any, ...]:
    """The stage's dataclasses from ``--config FILE`` and the command line; every mistake one ``InputError``.

    ``stage`` is a key of :data:`STAGES` (or, for a script outside it, its classes).
    A missing recipe file, malformed YAML, a key no stage of the file's family knows, a
    value of the wrong type (``--limit abc``, ``limit: abc``), a flag of another stage
    and an invalid value (``--limit 0``: the dataclasses' own checks) all end the script
    with exit 2 and one line naming the file, flag or key, not a usage screen or a traceback.
    """
    if isinstance(stage, str):
        name, classes = stage, stage_classes(stage)
    else:
        classes = stage if isinstance(stage, tuple) else (stage,)
        name = stage_of(classes)
    family = family_of(name) if name else None
    config, argv = _split_config(list(sys.argv[1:] if argv is None else argv))
    parser = StageParser(classes, name)
    if config is not None:
        values = _read_yaml(config)
        for key, value in (values.pop("env", None) or {}).items():
            os.environ[str(key)] = str(value)
        unknown = unknown_keys(values, classes, family)
        if unknown:
            key, close = unknown[0]
            raise InputError(
                config, "unknown key" + (f"; did you mean {close!r}?" if close else ""), field=key
            )
        taken, problems = take_keys(values, classes)
        if problems:
            raise InputError(config, problems[0])
        parser.set_defaults_with_config(**taken)
    try:
        _, remaining = parser.parse_known_args(argv)
        if remaining:
            raise _foreign_flag(remaining[0], name, classes)
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except _FlagError as error:
        raise flag_error(parser, str(error), argv) from None
    except InputError:
        raise
    except ValueError as error:  # a dataclass's own check
        raise InputError(config or "command line", " ".join(str(error).split())) from None


def check_recipe(
    path: str | Path, *, stage: str | None = None, gpu_available: bool | None = None
) -> tuple[Any, ...]:
    """Check one recipe for every stage that reads it; raise :class:`RecipeError` listing every problem.

    Returns the dataclass instances of ``stage`` (default: the first stage reading the file).
    """
    path = Path(path)
    stages = recipe_stages(path)
    try:
        values = _read_yaml(str(path))
    except InputError as error:
        raise RecipeError(str(error)) from None
    values.pop("env", None)
    if gpu_available is None and recipe_kind(path) == "training":
        import torch

        gpu_available = torch.cuda.is_available()

    problems: list[str] = []
    parsed: dict[str, tuple[Any, ...]] = {}
    for each in stages:
        classes = stage_classes(each)
        unknown = [
            f"unknown key {key!r}" + (f" (did you mean {close!r}?)" if close else "")
            for key, close in unknown_keys(values, classes, stages)
        ]
        taken, stage_problems = take_keys(values, classes)
        stage_problems = unknown + stage_problems
        problems += [problem for problem in stage_problems if problem not in problems]
        if stage_problems:
            continue
        if recipe_kind(path) == "training" and not gpu_available:
            taken.update(CPU_RELAXATIONS)
        parser = StageParser(classes, each)
        parser.set_defaults_with_config(**taken)
        try:
            parsed[each] = tuple(parser.parse_args_into_dataclasses(args=[]))
        except (ValueError, TypeError, _FlagError) as error:
            problems.append(f"{each}: {' '.join(str(error).split())}")
    if problems:
        raise RecipeError(f"{path}: " + "; ".join(problems))
    return parsed[stage or stages[0]]


def check_all(root: str | Path = "recipes") -> dict[Path, str]:
    """Check every ``*.yaml`` under ``root``; return {path: "ok"}; raise listing all failures."""
    results: dict[Path, str] = {}
    failures = []
    paths = sorted(Path(root).rglob("*.yaml"))
    if not paths:
        raise RecipeError(f"{root}: no recipes found")
    for path in paths:
        try:
            check_recipe(path)
        except RecipeError as error:
            failures.append(str(error))
            continue
        results[path] = "ok"
    if failures:
        raise RecipeError("\n".join(failures))
    return results


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
