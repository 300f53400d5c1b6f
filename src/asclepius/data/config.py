"""Argument classes of the data stages; their recipe file is ``recipes/<name>/data.yaml``.

One class per script (:class:`NotesArguments`, :class:`MimicArguments`,
:class:`QuestionsArguments`, :class:`AnswersArguments`), each composed of the groups it
shares with the others (:class:`DataStageArguments`: input, output, subset and push;
:class:`TeacherStageArguments`: what a stage that sends notes to a teacher declares) and
the recipe folders it reads or writes. The teacher's endpoint, sampling and pacing are
:class:`TeacherEngineArguments`. The four stages share ``data.yaml``: each takes its own
keys and leaves the others'; a key no data stage knows is an error (``make check-recipes``).

Per-stage sampling defaults live here too (``STAGE_DEFAULTS``), in one place, and apply
whenever the recipe leaves the engine's ``temperature`` / ``max_tokens`` unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asclepius.arguments import (
    AllowedEndpointsArguments,
    Arguments,
    HubDatasetArguments,
    SourceArguments,
    flag_of,
)
from asclepius.data.deid import DEFAULT_DEID_STYLE, DEID_STYLES
from asclepius.data.filters import EXTRA_SELF_REFERENCE_PHRASES
from asclepius.engine import EngineArguments
from asclepius.errors import InputError


@dataclass(frozen=True)
class StageDefaults:
    temperature: float
    max_tokens: int


STAGE_DEFAULTS = {
    # The paper samples notes at temperature 1 with max_tokens = context minus prompt;
    # this is the cap on that budget (a long discharge summary is ~1k tokens).
    "notes": StageDefaults(temperature=1.0, max_tokens=2048),
    # The paper's question settings: one brief instruction, temperature 1, 300 tokens.
    "questions": StageDefaults(temperature=1.0, max_tokens=300),
    # Not stated in the paper; the API default temperature and room for a paragraph.
    "answers": StageDefaults(temperature=1.0, max_tokens=1024),
}

# Tokens kept free between prompt + completion and the context limit: the prompt size is
# a character-based estimate, and chat formats add a few tokens of their own.
CONTEXT_SAFETY_MARGIN = 64
# A note budget below this cannot hold a discharge summary: the case report is skipped.
MIN_NOTE_TOKENS = 32


# --- groups the data stages share -------------------------------------------------------
# A stage lists its groups from the most specific to the most general: --help shows the
# general ones (input, output) first and the stage's own flags last.
@dataclass
class DataStageArguments(Arguments):
    """Every data stage: its input, its output folder, a subset."""

    input: str | None = field(
        default=None, metadata={"help": "Stage input. Default: the recipe's folder for the stage."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Hub-ready dataset folder to write. Default: the recipe's folder for the stage."},
    )
    limit: int | None = field(default=None, metadata={"help": "Use a reproducible subset of this many rows."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Rebuild a finished output folder (ledger answers are reused: nothing is resent)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")

    def output_path(self, default: str | None) -> Path:
        """The stage's output folder: --output_dir, else the recipe's folder for the stage."""
        target = self.output_dir or default
        if not target:
            raise InputError(
                "--output_dir", "not given (and the recipe sets no default output for this stage)"
            )
        return Path(target)

    def input_path(self, default: str | None) -> str:
        """The stage's input: --input, else the recipe's default for the stage."""
        source = self.input or default
        if not source:
            raise InputError("--input", "not given (and the recipe sets no default input for this stage)")
        return source


@dataclass
class TeacherStageArguments(SourceArguments, AllowedEndpointsArguments, DataStageArguments):
    """A stage that sends notes to a teacher: what its input is, where notes may go, its seed."""

    seed: int = field(
        default=42, metadata={"help": "Seed of the subset, task assignment and example choice."}
    )
    keep_truncated: bool = field(
        default=False,
        metadata={
            "help": "Keep generations cut by max_tokens (finish_reason 'length') in the default config. "
            "Off for real runs; the tiny demo model rarely stops on its own."
        },
    )


@dataclass
class ChunkedReading(Arguments):
    chunk_size: int = field(default=10_000, metadata={"help": "Rows per chunk when reading large CSV files."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_size < 1:
            raise ValueError(f"--chunk_size must be >= 1, got {self.chunk_size}")


# --- the recipe's folders, which chain the stages (--input / --output_dir override them) ---
@dataclass
class CaseReportsFile(Arguments):
    case_reports: str | None = field(
        default=None,
        metadata={"help": "Default --input of make_notes (case reports file, folder or Hub id)."},
    )


@dataclass
class NotesFolder(Arguments):
    notes_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of make_notes and --input of make_questions."}
    )


@dataclass
class MimicNotesFolder(Arguments):
    mimic_notes_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of prepare_mimic."}
    )


@dataclass
class QuestionsFolder(Arguments):
    questions_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of make_questions and --input of make_answers."}
    )


@dataclass
class InstructionsFolder(Arguments):
    instructions_dir: str | None = field(
        default=None,
        metadata={"help": "Default --output_dir of make_answers (the final instruction dataset)."},
    )


# --- one class per stage ------------------------------------------------------------------
@dataclass
class NotesArguments(
    HubDatasetArguments, ChunkedReading, NotesFolder, CaseReportsFile, TeacherStageArguments
):
    """``scripts/make_notes.py``: case reports in, synthetic discharge summaries out."""

    input: str | None = flag_of(
        DataStageArguments,
        "input",
        help="Case reports: PMC-Patients .csv/.json/.jsonl, a parquet file, a dataset folder or Hub id. "
        "Default: the recipe's case_reports.",
    )
    text_column: str = field(
        default="patient", metadata={"help": "Column holding the case report text (PMC-Patients: 'patient')."}
    )
    id_column: str = field(
        default="patient_id", metadata={"help": "Integer patient id column, carried over as 'patient_id'."}
    )
    uid_column: str = field(
        default="patient_uid",
        metadata={"help": "Unique case id column, carried over as 'patient_uid' if present."},
    )
    dataset_split: str = field(
        default="train", metadata={"help": "Split to read when the input is a dataset folder or Hub id."}
    )
    context_length: int = field(
        default=4096,
        metadata={
            "help": "Teacher context window; a note's max_tokens = this minus the estimated prompt, capped."
        },
    )


@dataclass
class MimicArguments(HubDatasetArguments, ChunkedReading, MimicNotesFolder, DataStageArguments):
    """``scripts/prepare_mimic.py``: MIMIC-III NOTEEVENTS.csv in, a private notes folder out (no teacher)."""

    input: str | None = flag_of(DataStageArguments, "input", help="MIMIC-III NOTEEVENTS.csv (required).")
    exclude_ids: str | None = field(
        default=None,
        metadata={
            "help": "File of NOTEEVENTS ROW_IDs to drop, one integer per line. Default: the original Asclepius's "
            "517 ROW_IDs (shipped with the package, MIT, starmpcc/Asclepius); 'none' drops nothing."
        },
    )
    deid_style: str = field(
        default=DEFAULT_DEID_STYLE,
        metadata={
            "help": "How [**...**] brackets become tags: original (the original code's map, order, fallbacks and "
            "spacing: the released Asclepius-R's bytes) or ours (keyword rules, the note's spacing kept).",
            "choices": list(DEID_STYLES),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deid_style not in DEID_STYLES:
            raise ValueError(f"--deid_style must be one of {', '.join(DEID_STYLES)}; got {self.deid_style!r}")


@dataclass
class QuestionsArguments(HubDatasetArguments, QuestionsFolder, NotesFolder, TeacherStageArguments):
    """``scripts/make_questions.py``: notes in, one task and question per note out."""

    input: str | None = flag_of(
        DataStageArguments, "input", help="A notes folder (or dataset). Default: the recipe's notes_dir."
    )
    dedup_threshold: float = field(
        default=0.7,
        metadata={
            "help": "Drop a question whose ROUGE-L F1 with a question of its task's pool exceeds this. 1.0 keeps "
            "every reply, as the original did (no de-duplication); the reproduction recipes set it."
        },
    )
    num_seed_examples: int = field(default=3, metadata={"help": "Seed questions shown per request."})
    num_pool_examples: int = field(
        default=2, metadata={"help": "Generated questions of the task's pool shown, at most."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dedup_threshold <= 1.0:
            raise ValueError(f"--dedup_threshold must be in [0, 1], got {self.dedup_threshold}")


@dataclass
class AnswersArguments(HubDatasetArguments, InstructionsFolder, QuestionsFolder, TeacherStageArguments):
    """``scripts/make_answers.py``: questions in, the instruction dataset (train/test by patient) out."""

    input: str | None = flag_of(
        DataStageArguments,
        "input",
        help="A questions folder (or dataset). Default: the recipe's questions_dir.",
    )
    self_reference_extra: list[str] = field(
        default_factory=lambda: list(EXTRA_SELF_REFERENCE_PHRASES),
        metadata={
            "help": "Phrases dropped as self-reference beyond the original's 11 (always applied), counted apart as "
            "self_reference_extra in the card. 'none' (or [] in YAML) matches the original's filter and row "
            "counts.",
        },
    )
    test_ratio: float = field(
        default=0.1, metadata={"help": "Share of patients in the 'test' split of the instruction dataset."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if [phrase.lower() for phrase in self.self_reference_extra] == ["none"]:
            self.self_reference_extra = []
        if not 0.0 <= self.test_ratio < 1.0:
            raise ValueError(f"--test_ratio must be in [0, 1), got {self.test_ratio}")


@dataclass
class TeacherEngineArguments(EngineArguments):
    """The engine flags of a data stage: ``--model`` is the teacher."""

    model: str = flag_of(
        EngineArguments,
        "model",
        help="Teacher model (or Azure deployment) name, as the endpoint knows it.",
        aliases=["--teacher_model"],
    )


def sampling_for(stage: str, engine_args: EngineArguments) -> StageDefaults:
    """The stage's temperature and max_tokens: the recipe's values, else the library defaults."""
    defaults = STAGE_DEFAULTS[stage]
    return StageDefaults(
        temperature=defaults.temperature if engine_args.temperature is None else engine_args.temperature,
        max_tokens=defaults.max_tokens if engine_args.max_tokens is None else engine_args.max_tokens,
    )
