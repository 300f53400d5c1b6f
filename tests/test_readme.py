"""Every command in the README reaches a real target, script and flag.

`make -n` expands each README `make` line into the commands it would run; every
`--flag` those commands (and the README's direct script calls) pass must be one the
script's own `--help` lists. The demo test runs the stages themselves.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip().rstrip("&").strip()
            if line:
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


@cache
def help_text(target: str) -> str:
    """``--help`` of a script (``scripts/x.py``) or of ``asclepius <subcommand>``."""
    if target.startswith("asclepius "):
        command = [sys.executable, "-m", "asclepius.cli", *target.split()[1:], "--help"]
    else:
        command = [sys.executable, str(ROOT / target), "--help"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{target} --help failed:\n{result.stderr[-2000:]}"
    return result.stdout


def flags_of(command: str) -> list[str]:
    return [token.split("=")[0] for token in shlex.split(command) if token.startswith("--")]


def script_calls(command: str) -> list[tuple[str, str]]:
    """(script, the command line calling it) for each script call in a shell command."""
    found = re.findall(r"(scripts/\w+\.py)", command)
    return [(script, command[command.index(script) :]) for script in found]


def expand_make(command: str) -> str:
    result = subprocess.run(
        ["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"`{command}` does not expand: {result.stderr}"
    return re.sub(r"\\\n\s*", " ", result.stdout)


def test_readme_states_the_two_commands():
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands


def test_every_readme_command_uses_existing_targets_scripts_and_flags():
    from concurrent.futures import ThreadPoolExecutor

    checked, calls = 0, []
    for command in readme_commands():
        if command.startswith("make "):
            found = [call for line in expand_make(command).splitlines() for call in script_calls(line)]
        elif command.startswith(("python scripts/", "asclepius ")):
            target = command.split()[1] if command.startswith("python") else " ".join(command.split()[:2])
            found = [(target, command)]
        else:  # exports, third-party servers (vllm serve)
            continue
        calls += [(command, target, call) for target, call in found]
    # Each --help is a Python start-up importing torch and transformers: run them side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(help_text, sorted({target for _, target, _ in calls})))
    for command, target, call in calls:
        listed = help_text(target)
        for flag in flags_of(call):
            if flag in ("--config",):
                continue
            assert re.search(rf"(^|\s|\[){re.escape(flag)}[\s,\]=]", listed), (
                f"{command!r}: {target} has no {flag}"
            )
            checked += 1
    assert checked > 40  # the README really exercises the scripts' flags


def test_readme_files_and_recipes_exist():
    text = README.read_text(encoding="utf-8")
    for path in set(
        re.findall(
            r"\b((?:recipes|accelerate_configs|data/demo|scripts)/[\w./-]+\.(?:yaml|py|csv|jsonl|txt))", text
        )
    ):
        if "$(" not in path:
            assert (ROOT / path).exists(), path
    for recipe in re.findall(r"RECIPE=([\w.-]+)", text):
        assert (ROOT / "recipes" / recipe).is_dir(), recipe


# --- paths: every outputs/ folder a command reads is one something writes --------------------
# Flags whose value is a folder the command writes; every other outputs/ path it names is read.
# (The demo converts SmolLM2 into its --base_model when the folder is missing.)
OUTPUT_FLAGS = ("--output_dir", "--base_model")
# Written by make targets beside their --output_dir (asclepius.smol writes the teacher next to the model).
WRITTEN_BESIDE = {"outputs/smol-135m": ("outputs/smol-135m-teacher",)}
RECIPE_OUTPUT_KEYS = ("output_dir", "notes_dir", "questions_dir", "instructions_dir", "mimic_notes_dir")
RECIPE_INPUT_KEYS = ("model_name_or_path", "dataset_name", "input", "model", "train_dataset", "judge_model")


def recipe_values(keys: tuple[str, ...]) -> set[tuple[Path, str]]:
    import yaml

    found = set()
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found |= {(path, str(values[key])) for key in keys if str(values.get(key, "")).startswith("outputs/")}
    return found


def recipe_outputs() -> set[str]:
    return {value for _, value in recipe_values(RECIPE_OUTPUT_KEYS)}


def is_under(path: str, folders: set[str]) -> bool:
    path = path.rstrip("/")
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def expand_make_quietly(command: str) -> str:
    """``make -n`` of a README command, leaving out the install (the stamp may be stale)."""
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", *shlex.split(command)[1:]],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, f"`{command}` does not expand: {result.stderr}"
    return re.sub(r"\\\n\s*", " ", result.stdout)


def outputs_paths(command_line: str) -> tuple[list[str], list[str]]:
    """(read, written) outputs/ paths of one expanded shell command."""
    tokens = shlex.split(command_line, comments=True)
    read, written = [], []
    for index, token in enumerate(tokens):
        writes = (index and tokens[index - 1] in OUTPUT_FLAGS) or token.startswith("OUTPUT=")  # a sub-make's
        # Quoted lists ("a b"), NAME=PATH pairs (CORPORA, make variables); shell variables are not paths.
        for word in token.split():
            value = word.rsplit("=", 1)[-1]
            if value.startswith("outputs/") and "$" not in value:
                (written if writes else read).append(value)
    return read, written


def test_every_outputs_path_the_readme_reads_is_written_by_a_recipe_or_an_earlier_command():
    written = recipe_outputs()
    unknown = []
    for command in readme_commands():
        if command.startswith("make "):
            lines = expand_make_quietly(command).splitlines()
        elif command.startswith(("python ", "asclepius ")):
            lines = [command]
        else:
            continue
        reads, writes = [], []
        for line in lines:
            line_reads, line_writes = outputs_paths(line)
            reads += line_reads
            writes += line_writes
        for folder in writes:
            written |= {folder, *WRITTEN_BESIDE.get(folder, ())}
        # A stage may read a file inside a folder an earlier command wrote (the ledger's batch files).
        unknown += [f"{command!r} reads {path}" for path in reads if not is_under(path, written)]
    assert unknown == [], "README paths no recipe or earlier command writes:\n" + "\n".join(unknown)


def test_recipes_read_only_folders_that_recipes_or_make_targets_write():
    written = recipe_outputs() | {"outputs/tiny-model", "outputs/smol-135m", "outputs/smol-135m-teacher"}
    unread = [f"{path.relative_to(ROOT)}: {value}" for path, value in recipe_values(RECIPE_INPUT_KEYS)
              if not is_under(value, written)]  # fmt: skip
    assert unread == []


def test_every_model_recipe_can_be_evaluated():
    """A recipe that trains a model has an eval.yaml evaluating that model, and make generate finds it."""
    import yaml

    from asclepius.recipes import check_recipe

    trained = sorted(path.parent.parent for path in (ROOT / "recipes").glob("*/sft/config_full.yaml"))
    assert len(trained) >= 9
    for recipe in trained:
        eval_recipe = recipe / "eval.yaml"
        assert eval_recipe.is_file(), f"{recipe.name} has no eval.yaml"
        sft_output = yaml.safe_load((recipe / "sft/config_full.yaml").read_text())["output_dir"]
        generate_args = check_recipe(eval_recipe, stage="generate")
        assert generate_args[1].model == sft_output, recipe.name
        # The judge's decontamination is optional: a recipe names no training folder that may not exist.
        judge_args = check_recipe(eval_recipe, stage="judge")[0]
        assert judge_args.train_dataset is None or (ROOT / judge_args.train_dataset).exists(), recipe.name
        expanded = expand_make_quietly(f"make generate RECIPE={recipe.name}")
        assert f"--config recipes/{recipe.name}/eval.yaml" in expanded


def test_the_allowed_endpoints_help_points_inside_the_repository():
    from asclepius.stage.policy import ALLOWED_ENDPOINTS_HELP

    assert "shared/" not in ALLOWED_ENDPOINTS_HELP
    section = re.search(r"README\.md, '([^']+)'", ALLOWED_ENDPOINTS_HELP)
    assert section and f"## {section.group(1)}\n" in README.read_text(encoding="utf-8")


def test_make_clean_keeps_outputs_and_clean_outputs_removes_them(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in ("outputs/tiny-sft", ".pytest_cache", "src/__pycache__"):
        (tmp_path / folder).mkdir(parents=True)
    make = ["make", "-f", str(tmp_path / "Makefile")]
    subprocess.run([*make, "clean"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert (tmp_path / "outputs/tiny-sft").is_dir(), "make clean deleted the trained models"
    assert not (tmp_path / ".pytest_cache").exists() and not (tmp_path / "src/__pycache__").exists()
    subprocess.run([*make, "clean-outputs"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert not (tmp_path / "outputs").exists()
