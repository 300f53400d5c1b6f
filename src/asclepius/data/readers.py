"""Stream records out of big source files without loading them whole.

PMC-Patients ships as a ~500 MB CSV or a JSON list of records, MIMIC-III's
NOTEEVENTS.csv is ~4 GB: both are read here chunk by chunk. Every record comes with its
1-based row number (row 1 is the first record after a CSV header, or the first element
of a JSON list), so a bad value can be reported as ``FILE: row N: field 'x': ...``.

Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``) rather than
failing the whole read, so :func:`check_text` can name the row that holds them.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from asclepius.data.loading import load_any
from asclepius.errors import InputError

CSV_SUFFIXES = {".csv"}
JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl"}
# One JSON record larger than this is not a record of a case report: stop growing the buffer.
MAX_JSON_RECORD_CHARS = 64 * 1024 * 1024
_JSON_READ_CHARS = 1 << 20


def iter_records(
    source: str,
    *,
    chunk_size: int = 10_000,
    split: str = "train",
    usecols: list[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row, record)`` pairs from a CSV, JSON list, JSON Lines, parquet file, dataset folder or Hub id."""
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in CSV_SUFFIXES:
        yield from iter_csv(path, chunk_size=chunk_size, usecols=usecols)
    elif path.is_file() and suffix in JSON_SUFFIXES:
        yield from iter_json(path)
    elif path.is_file() and suffix in JSONL_SUFFIXES:
        yield from iter_json_lines(path)
    else:
        yield from iter_dataset(source, split=split)


def read_columns(source: str, *, split: str = "train") -> list[str] | None:
    """Column names of a CSV header, a dataset split; None for JSON (records carry their own keys)."""
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in CSV_SUFFIXES:
        return csv_header(path)
    if path.is_file() and suffix in JSON_SUFFIXES | JSONL_SUFFIXES:
        return None
    return list(_dataset_split(source, split).column_names)


def csv_header(path: Path) -> list[str]:
    """The header's column names, stripped of blanks (a ``", "``-separated header names ``TEXT``, not ``" TEXT"``)."""
    return [name.strip() for name in _raw_csv_header(path)]


def _raw_csv_header(path: Path) -> list[str]:
    import pandas as pd

    try:
        return [str(name) for name in pd.read_csv(path, nrows=0, encoding_errors="surrogateescape").columns]
    except pd.errors.EmptyDataError:
        raise InputError(path, "empty file: expected a CSV header") from None
    except pd.errors.ParserError as error:
        raise InputError(path, f"not a readable CSV file ({str(error).splitlines()[0]})") from None


def iter_csv(
    path: Path, *, chunk_size: int = 10_000, usecols: list[str] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a CSV, read ``chunk_size`` rows at a time; every value is a string ('' when empty)."""
    import pandas as pd

    raw_header = _raw_csv_header(path)
    header = [name.strip() for name in raw_header]
    if usecols is not None:
        missing = [column for column in usecols if column not in header]
        if missing:
            raise InputError(path, f"missing column; the header has {header}", field=missing[0])
        usecols = [raw for raw, name in zip(raw_header, header) if name in usecols]
    clean_names = dict(zip(raw_header, header))
    row = 0
    try:
        # dtype=object: keep text exactly as written (ids too) and let undecodable bytes
        # through as surrogates; keep_default_na=False: an empty cell is '' not NaN.
        chunks = pd.read_csv(
            path,
            chunksize=chunk_size,
            dtype=object,
            keep_default_na=False,
            usecols=usecols,
            encoding_errors="surrogateescape",
        )
        for chunk in chunks:
            chunk = chunk.rename(columns=clean_names)
            for record in chunk.to_dict("records"):
                row += 1
                yield row, record
    except pd.errors.ParserError as error:
        raise InputError(
            path, f"not a readable CSV file ({str(error).splitlines()[0]})", row=row + 1
        ) from None


def iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a JSON file holding a list of objects, decoded incrementally.

    A file of concatenated objects (JSON Lines saved as ``.json``, as ``Dataset.to_json``
    writes) is read too; a single top-level object (columns, not records) is refused.
    """
    decoder = json.JSONDecoder()
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")
        buffer, pos, eof = "", 0, False

        def fill() -> None:
            nonlocal buffer, pos, eof
            chunk = text.read(_JSON_READ_CHARS)
            eof = not chunk
            buffer, pos = buffer[pos:] + chunk, 0

        def peek() -> str:
            """The next non-blank character ('' at the end of the file), without consuming it."""
            nonlocal pos
            while True:
                while pos < len(buffer) and buffer[pos].isspace():
                    pos += 1
                if pos < len(buffer) or eof:
                    return buffer[pos] if pos < len(buffer) else ""
                fill()

        def decode(row: int) -> Any:
            nonlocal pos
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                    pos = end
                    return value
                except json.JSONDecodeError as error:
                    if eof or len(buffer) - pos > MAX_JSON_RECORD_CHARS:
                        raise InputError(path, f"invalid JSON ({error.msg})", row=row) from None
                    fill()

        first = peek()
        if first == "{":
            yield from _concatenated_objects(path, peek, decode)
            return
        if first != "[":
            raise InputError(path, "not JSON records: expected a list of objects ([{...}, ...])")
        pos += 1
        row = 0
        while True:
            char = peek()
            if char == "]":
                pos += 1
                break
            if row > 0:
                if char != ",":
                    raise InputError(path, "invalid JSON (expected ',' or ']' after a record)", row=row)
                pos += 1
                peek()
            row += 1
            record = decode(row)
            if not isinstance(record, dict):
                raise InputError(
                    path, f"not a record: expected a JSON object, got {type(record).__name__}", row=row
                )
            yield row, record
        if peek() != "":
            raise InputError(path, "invalid JSON (text after the closing ']')")


def _concatenated_objects(path: Path, peek, decode) -> Iterator[tuple[int, dict[str, Any]]]:
    first = decode(1)
    if peek() == "":
        raise InputError(
            path, "not JSON records: the file is one JSON object; expected a list of objects ([{...}, ...])"
        )
    yield 1, first
    row = 1
    while peek() != "":
        row += 1
        record = decode(row)
        if not isinstance(record, dict):
            raise InputError(
                path, f"not a record: expected a JSON object, got {type(record).__name__}", row=row
            )
        yield row, record


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a JSON Lines file (blank lines skipped, rows still counted by line)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for row, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(path, f"invalid JSON ({error.msg})", row=row) from None
            if not isinstance(record, dict):
                raise InputError(
                    path, f"not a record: expected a JSON object, got {type(record).__name__}", row=row
                )
            yield row, record


def _dataset_split(source: str, split: str):
    splits = load_any(source)
    if split not in splits:
        raise InputError(
            source, f"no split {split!r}; available: {sorted(splits)} (choose one with --dataset_split)"
        )
    return splits[split]


def iter_dataset(source: str, *, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a parquet file, dataset folder or Hub dataset (Arrow-backed: memory-mapped, not loaded)."""
    dataset = _dataset_split(source, split)
    yield from enumerate(dataset, start=1)


def has_undecodable_bytes(text: str) -> bool:
    """True when ``text`` holds lone surrogates: bytes that were not valid UTF-8 in the file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(path: str | Path, value: Any, *, row: int, field: str) -> str:
    """The value as non-empty UTF-8 text, or a one-line InputError naming file, row and field."""
    if value is None or (isinstance(value, float) and value != value):
        raise InputError(path, "empty text", row=row, field=field)
    if not isinstance(value, str):
        raise InputError(path, f"expected text, got {type(value).__name__}", row=row, field=field)
    if has_undecodable_bytes(value):
        raise InputError(path, "text is not valid UTF-8", row=row, field=field)
    if not value.strip():
        raise InputError(path, "empty text", row=row, field=field)
    return value


def check_int(path: str | Path, value: Any, *, row: int, field: str) -> int:
    """The value as an integer id ('12', 12, 12.0), or a one-line InputError."""
    if isinstance(value, bool):
        raise InputError(path, f"expected an integer, got {value!r}", row=row, field=field)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
    raise InputError(path, f"expected an integer, got {str(value)[:40]!r}", row=row, field=field)


# -- What a table is, as these readers parse it: the one detector of MIMIC NOTEEVENTS ------------
#
# Provenance (asclepius.stage.provenance) asks the readers, so a file is judged after the
# same parsing that ingests it (pandas for CSV, the JSON decoders above, the parquet and
# Arrow schemas that datasets reads), never by a second, simpler reading.

NOTEEVENTS_TEXT = "TEXT"
NOTEEVENTS_IDS = frozenset({"ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY"})
NOTEEVENTS_COLUMNS = NOTEEVENTS_IDS | {NOTEEVENTS_TEXT}
# Records read from a JSON file to learn its columns (records may differ in their keys).
_SAMPLE_RECORDS = 100


def normalise_column(name: Any) -> str:
    """A column name compared without a byte-order mark, surrounding blanks or case."""
    return str(name).replace("\ufeff", "").strip().upper()


def is_noteevents(columns: Iterable[Any] | None) -> bool:
    """MIMIC's NOTEEVENTS layout, whole or partial: a TEXT column and any two of its id/date/category columns."""
    names = {normalise_column(column) for column in columns or ()}
    return NOTEEVENTS_TEXT in names and len(names & NOTEEVENTS_IDS) >= 2


def table_columns(path: str | Path) -> list[str] | None:
    """The column names of one file as the readers (or datasets' builders) parse it; None when it is no
    table they read, or it does not parse (the stage that ingests it then fails on its own)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if _has_parquet_magic(path):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            import pandas as pd

            separator = "\t" if ".tsv" in name else ","
            header = pd.read_csv(path, nrows=0, sep=separator, encoding_errors="surrogateescape").columns
            return [str(column) for column in header]
        if name.endswith(".arrow"):
            return _arrow_columns(path)
        if name.endswith((".json", ".jsonl")):
            records = iter_json_lines(path) if name.endswith(".jsonl") else iter_json(path)
            columns: dict[str, None] = {}
            for _, record in itertools.islice(records, _SAMPLE_RECORDS):
                columns.update(dict.fromkeys(map(str, record)))
            return list(columns)
    except Exception:  # noqa: BLE001 - unreadable here is unreadable for the stage too
        return None
    return None


def _has_parquet_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def _arrow_columns(path: Path) -> list[str]:
    """An Arrow file's columns (``save_to_disk`` writes the streaming format)."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return list(pa.ipc.open_stream(source).schema.names)
        except pa.ArrowInvalid:
            source.seek(0)
            return list(pa.ipc.open_file(source).schema.names)
