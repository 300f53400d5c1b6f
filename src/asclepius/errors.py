"""One-line errors for bad input, and the wrapper every stage script runs under.

Users feed these scripts real files (PMC-Patients dumps, MIMIC exports, folders from
earlier stages). When one is wrong, they get one line naming the file, the row and
the field, and a non-zero exit; not a traceback from deep inside pandas.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any


class InputError(ValueError):
    """Bad user input; the message is one line naming the file, row and field."""

    def __init__(
        self,
        path: str | os.PathLike | None,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ):
        parts = [str(path) if path is not None else "input"]
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(f"{': '.join(parts)}: {message}")
        self.path, self.row, self.field = path, row, field


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def run_stage(main: Callable[[], Any]) -> None:
    """Run a script's ``main`` with logging set up; bad input exits 2 with one line on stderr."""
    setup_logging()
    try:
        main()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
