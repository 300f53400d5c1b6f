"""Every command in the README reaches a real target, script and flag.

`make -n` expands each README `make` line into the commands it would run; every
`--flag` those commands (and the README's direct script calls) pass must be one the
script's own `--help` lists. The demo test runs the stages themselves.
"""

from __future__ import annotations

import re
import shlex
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
    checked = 0
    for command in readme_commands():
        if command.startswith("make "):
            calls = [call for line in expand_make(command).splitlines() for call in script_calls(line)]
        elif command.startswith(("python scripts/", "asclepius ")):
            target = command.split()[1] if command.startswith("python") else " ".join(command.split()[:2])
            calls = [(target, command)]
        else:  # exports, third-party servers (vllm serve)
            continue
        for target, call in calls:
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
