"""Print pip's own find-links, indexes and constraints as `uv pip install` arguments.

uv reads neither pip.conf nor the PIP_* variables; without this, `make install` with uv could pick
other wheels than pip would (on a machine whose pip.conf points at a CPU torch on disk, a multi-GB
CUDA build from PyPI). Standard library only: it runs before the virtual environment exists.
"""

import ast
import shlex
import subprocess
import sys

UV_FLAGS = {
    "find-links": "--find-links",
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "constraint": "--constraint",
}


def main() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    from_files, from_env = {}, {}
    for line in listing.splitlines():  # e.g. global.find-links='/opt/wheels' or :env:.find-links='...'
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in UV_FLAGS and value:
            (from_env if key.startswith(":env:") else from_files)[name] = ast.literal_eval(value)
    settings = {**from_files, **from_env}  # pip lets the environment override its files
    # pip takes the best version from every index; uv's default takes the first index that has the name.
    arguments = ["--index-strategy", "unsafe-best-match"]
    arguments += [
        part
        for name, value in settings.items()
        for entry in value.split()
        for part in (UV_FLAGS[name], entry)
    ]
    print(shlex.join(arguments))


if __name__ == "__main__":
    main()
