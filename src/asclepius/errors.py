"""One-line errors for bad input, and the wrapper every stage script runs under.

Users feed these scripts real files (PMC-Patients dumps, MIMIC exports, folders from
earlier stages). When one is wrong, they get one line naming the file, the row and
the field, and a non-zero exit; not a traceback from deep inside pandas.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from asclepius.redaction import redact_text


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


@contextlib.contextmanager
def reading(source: str | os.PathLike | None) -> Iterator[None]:
    """Whatever goes wrong while reading ``source`` (bad bytes, a broken line, a corrupt parquet)
    becomes one ``InputError`` naming it and the root cause, instead of a library traceback."""
    # datasets logs a failed read at ERROR (twice, through its handler and the root's) before
    # raising; the one line below says it all, so its logger is quiet for the read.
    library = logging.getLogger("datasets")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        yield
    except (InputError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:
        root: BaseException = error
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__
        detail = " ".join(str(root).split())[:300]
        raise InputError(source, f"cannot be read ({type(root).__name__}: {detail})") from error
    finally:
        library.setLevel(level)


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
        # A message may quote a URL or a server's reply: credentials never reach the terminal or logs.
        print(f"error: {redact_text(str(error))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
