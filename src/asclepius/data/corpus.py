"""Any corpus of clinical notes as a notes folder: real notes to evaluate (and measure) models on.

An institution's own notes, ACI-BENCH-style clinic notes, MIMIC-III notes held out by the
original's exclusion list: whatever the format (CSV, JSON list, JSON Lines, parquet, a
dataset folder or a Hub id), the records are streamed, each note checked (one-line error
naming file, row and field), and written with the columns of a notes folder
(``patient_id``, ``note``) plus ``note_id`` and ``source``, so ``make questions`` and
``make answers`` take the folder unchanged and the ``source`` name travels with every
row down to the judge's report.

Nothing is assumed about who may see the notes: the user states the corpus licence and
whether it is restricted; a table with MIMIC's NOTEEVENTS columns is restricted
whatever is stated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from asclepius.arguments import HubDatasetArguments
from asclepius.data.readers import check_int, check_text, is_noteevents, iter_records, read_columns
from asclepius.data.stage import SOURCE_ROW
from asclepius.errors import InputError
from asclepius.stage import classify
from asclepius.stage.provenance import Provenance, restricted

logger = logging.getLogger(__name__)

SOURCE_COLUMN = "source"  # the corpus name a row comes from, carried through every later stage
CORPUS_COLUMNS = ["patient_id", "note_id", "note", SOURCE_COLUMN]
CORPUS_FEATURES = Features(
    {
        "patient_id": Value("int64"),
        "note_id": Value("string"),
        "note": Value("string"),
        SOURCE_COLUMN: Value("string"),
        SOURCE_ROW: Value("int64"),
    }
)
# Text columns tried, in order, when a corpus given to perplexity names none.
TEXT_COLUMN_GUESSES = ("note", "text", "TEXT", "case_report", "patient")


@dataclass
class CorpusArguments(HubDatasetArguments):
    """``scripts/prepare_notes.py``: a note corpus in, a notes folder out (the push flags are the data stages')."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "The corpus: a .csv/.json/.jsonl/.parquet file, a dataset folder or a Hub dataset id."
        },
    )
    text_column: str | None = field(
        default=None, metadata={"help": "Column holding the note text (required)."}
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "Column holding a note id, kept as note_id (default: the row number)."},
    )
    patient_column: str | None = field(
        default=None,
        metadata={
            "help": "Integer patient id column: later stages split train/test by it "
            "(default: each note is its own patient)."
        },
    )
    source: str | None = field(
        default=None, metadata={"help": "Name of the corpus (required), e.g. hospital-x-2024 or aci-bench."}
    )
    source_license: str | None = field(
        default=None,
        metadata={"help": "Licence of the corpus, stated by you (required): a Hub licence id, or 'other'."},
    )
    source_restricted: bool | None = field(
        default=None,
        metadata={
            "help": "Required: true if the notes are credentialed or otherwise not public (patients' records, "
            "MIMIC): never pushed publicly, sent only to allowed endpoints. MIMIC NOTEEVENTS columns are "
            "restricted whatever is stated."
        },
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a dataset folder or Hub id."})
    where: str | None = field(
        default=None,
        metadata={
            "help": "Keep rows whose COLUMN equals VALUE, as COLUMN=VALUE (e.g. CATEGORY=Discharge summary)."
        },
    )
    keep_ids: str | None = field(
        default=None,
        metadata={
            "help": "File of note ids (one a line; values of --id_column) to keep, e.g. the 517 MIMIC-III ROW_IDs "
            "the original held out of training."
        },
    )
    exclude_ids: str | None = field(default=None, metadata={"help": "File of note ids to drop (one a line)."})
    limit: int | None = field(default=None, metadata={"help": "Keep at most this many notes."})
    chunk_size: int = field(default=10_000, metadata={"help": "Rows per chunk when reading large CSV files."})
    output_dir: str | None = field(default=None, metadata={"help": "The notes folder to write (required)."})
    overwrite: bool = field(default=False, metadata={"help": "Rebuild a finished output folder."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.chunk_size < 1:
            raise ValueError(f"--chunk_size must be >= 1, got {self.chunk_size}")
        if self.where is not None and "=" not in self.where:
            raise ValueError(f"--where must be COLUMN=VALUE, got {self.where!r}")

    def check_required(self) -> None:
        """The statements a user must make: one line naming the first one missing."""
        for name in ("input", "text_column", "source", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"--{name}", "required")
        if self.source_restricted is None:
            raise InputError(
                "--source_restricted",
                "required: state whether the notes are restricted (true: credentialed or private patients' records, "
                "e.g. MIMIC; false: public)",
            )
        if not self.source_license:
            raise InputError(
                "--source_license", "required: state the corpus licence (a Hub licence id, or 'other')"
            )


def corpus_provenance(args: CorpusArguments, columns: list[str] | None) -> Provenance:
    """What the corpus is, classified by the stage layer with the user's statement (a stamp, a card of
    this project, or the readers' NOTEEVENTS detector speak first); a Hub dataset with NOTEEVENTS
    columns, known only once read, is restricted too."""
    found = classify(
        args.input, declared_license=args.source_license, declared_restricted=args.source_restricted
    )
    if is_noteevents(columns) and not found.mimic_derived:
        found = restricted(args.input, "MIMIC NOTEEVENTS columns")
    if found.mimic_derived and not args.source_restricted:
        logger.warning("%s is restricted (%s) whatever --source_restricted says", args.input, found.reason)
    return found


def read_id_list(path: str | Path) -> set[str]:
    """Note ids, one a line ('#' comments, blank lines and a header line of letters allowed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file (a list of note ids, one a line)")
    ids = set()
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            value = line.split("#", 1)[0].strip().strip(",")
            if value and not (number == 1 and value.isalpha()):
                ids.add(value)
    return ids


@dataclass
class CorpusCounts:
    rows_read: int = 0
    kept: int = 0
    drops: dict[str, int] = field(
        default_factory=lambda: {"not_selected": 0, "excluded": 0, "not_kept_id": 0}
    )


def corpus_columns(args: CorpusArguments) -> list[str] | None:
    """The corpus's columns (None for JSON, whose records carry their own), the named ones checked."""
    columns = read_columns(args.input, split=args.dataset_split)
    if columns is not None:
        wanted = [args.text_column, args.id_column, args.patient_column, _where(args)[0]]
        for name in filter(None, wanted):
            if name not in columns:
                raise InputError(args.input, f"missing column; found {columns}", field=name)
    return columns


def _where(args: CorpusArguments) -> tuple[str | None, str | None]:
    if not args.where:
        return None, None
    column, _, value = args.where.partition("=")
    return column.strip(), value.strip()


def iter_corpus(args: CorpusArguments, counts: CorpusCounts) -> Iterator[dict[str, Any]]:
    """Rows of the notes folder, streamed; a missing or empty field is a one-line error."""
    keep = read_id_list(args.keep_ids) if args.keep_ids else None
    exclude = read_id_list(args.exclude_ids) if args.exclude_ids else set()
    if (keep is not None or exclude) and not args.id_column:
        raise InputError("--id_column", "required with --keep_ids / --exclude_ids (the ids are its values)")
    where_column, where_value = _where(args)
    path = args.input
    columns = read_columns(path, split=args.dataset_split)
    usecols = None
    if columns is not None and Path(path).suffix.lower() == ".csv":
        usecols = sorted(
            {c for c in (args.text_column, args.id_column, args.patient_column, where_column) if c}
        )
    for row, record in iter_records(
        path, chunk_size=args.chunk_size, split=args.dataset_split, usecols=usecols
    ):
        counts.rows_read += 1
        if where_column is not None and str(_field(path, record, where_column, row)).strip() != where_value:
            counts.drops["not_selected"] += 1
            continue
        note_id = str(_field(path, record, args.id_column, row)).strip() if args.id_column else str(row)
        if note_id in exclude:
            counts.drops["excluded"] += 1
            continue
        if keep is not None and note_id not in keep:
            counts.drops["not_kept_id"] += 1
            continue
        note = check_text(path, _field(path, record, args.text_column, row), row=row, field=args.text_column)
        patient = (
            check_int(
                path, _field(path, record, args.patient_column, row), row=row, field=args.patient_column
            )
            if args.patient_column
            else row
        )
        counts.kept += 1
        yield {
            "patient_id": patient,
            "note_id": note_id,
            "note": note.strip(),
            SOURCE_COLUMN: args.source,
            SOURCE_ROW: row,
        }
        if args.limit is not None and counts.kept >= args.limit:
            logger.info("stopping at --limit %d notes", args.limit)
            return


def _field(path: str, record: dict[str, Any], name: str, row: int) -> Any:
    if name not in record:
        raise InputError(path, "missing field", row=row, field=name)
    return record[name]


def has_source(dataset: Dataset) -> bool:
    """True when rows carry a corpus name (a notes folder written by prepare_notes, and what follows)."""
    return SOURCE_COLUMN in dataset.column_names


def with_source(columns: list[str], dataset: Dataset) -> list[str]:
    """``columns`` plus ``source`` when rows carry a corpus name: published columns stay as they are otherwise."""
    carried = has_source(dataset) and any(value is not None for value in dataset[SOURCE_COLUMN])
    return [*columns, SOURCE_COLUMN] if carried and SOURCE_COLUMN not in columns else list(columns)


def load_texts(source: str, *, text_column: str | None = None, split: str = "train") -> tuple[list[str], str]:
    """Every text of a corpus (notes folder, file, dataset) for perplexity: (texts, the column read).

    Without ``text_column``, the first of TEXT_COLUMN_GUESSES the corpus has. Empty texts
    are one-line errors, like everywhere else.
    """
    columns = read_columns(source, split=split)
    if text_column is None:
        if columns is None:
            text_column = "note"
        else:
            found = [c for c in TEXT_COLUMN_GUESSES if c in columns]
            if not found:
                raise InputError(source, f"no text column among {list(TEXT_COLUMN_GUESSES)}; found {columns}")
            text_column = found[0]
    elif columns is not None and text_column not in columns:
        raise InputError(source, f"missing column; found {columns}", field=text_column)
    texts = []
    for row, record in iter_records(source, split=split, usecols=[text_column] if columns else None):
        texts.append(check_text(source, _field(source, record, text_column, row), row=row, field=text_column))
    if not texts:
        raise InputError(source, "no texts")
    return texts, text_column
