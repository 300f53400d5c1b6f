"""Settings of the four data stages, parsed from ``recipes/<name>/data.yaml`` plus CLI flags.

One dataclass serves every data script (notes, MIMIC, questions, answers) so a recipe's
``data.yaml`` is a single file; each script reads the fields it needs. YAML keys are
exactly these field names: ``make check-recipes`` parses every ``data.yaml`` with
``TrlParser(RECIPE_CLASSES)`` and fails on anything else.

Per-stage sampling defaults live here too (``STAGE_DEFAULTS``), in one place, and apply
whenever the recipe leaves the engine's ``temperature`` / ``max_tokens`` unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asclepius.data.deid import DEFAULT_DEID_STYLE, DEID_STYLES
from asclepius.data.filters import EXTRA_SELF_REFERENCE_PHRASES
from asclepius.engine import EngineArguments
from asclepius.errors import InputError
from asclepius.stage.folder import PushRequest
from asclepius.stage.policy import ALLOWED_ENDPOINTS_HELP


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


@dataclass
class DataArguments:
    # --- where data comes from and goes --------------------------------------------
    input: str | None = field(
        default=None,
        metadata={
            "help": "Stage input: case reports (PMC-Patients .csv/.json/.jsonl, a parquet file, a dataset "
            "folder or Hub id) for make_notes, NOTEEVENTS.csv for prepare_mimic, a notes folder for "
            "make_questions, a questions folder for make_answers. Default: the recipe's folder for the stage."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Hub-ready dataset folder to write. Default: the recipe's folder for the stage."},
    )
    case_reports: str | None = field(
        default=None,
        metadata={"help": "Default --input of make_notes (case reports file, folder or Hub id)."},
    )
    notes_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of make_notes and --input of make_questions."}
    )
    mimic_notes_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of prepare_mimic."}
    )
    questions_dir: str | None = field(
        default=None, metadata={"help": "Default --output_dir of make_questions and --input of make_answers."}
    )
    instructions_dir: str | None = field(
        default=None,
        metadata={"help": "Default --output_dir of make_answers (the final instruction dataset)."},
    )
    # --- reading case reports -------------------------------------------------------
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
    chunk_size: int = field(default=10_000, metadata={"help": "Rows per chunk when reading large CSV files."})
    limit: int | None = field(
        default=None, metadata={"help": "Use a reproducible subset of this many rows (chosen by --seed)."}
    )
    seed: int = field(
        default=42, metadata={"help": "Seed of the subset, task assignment and example choice."}
    )
    # --- notes ------------------------------------------------------------------------
    context_length: int = field(
        default=4096,
        metadata={
            "help": "Teacher context window; a note's max_tokens = this minus the estimated prompt, capped."
        },
    )
    keep_truncated: bool = field(
        default=False,
        metadata={
            "help": "Keep generations cut by max_tokens (finish_reason 'length') in the default config. "
            "Off for real runs; the tiny demo model rarely stops on its own."
        },
    )
    source_license: str | None = field(
        default=None,
        metadata={
            "help": "Licence of a raw input (a file or Hub id with no card of this project), declared by you, e.g. "
            "cc-by-nc-sa-4.0 for PMC-Patients; later stages inherit it. An undeclared raw input is of unknown "
            "provenance and treated as restricted: never pushed publicly, sent to allowed endpoints only. "
            "Folders written by this project carry their own licence."
        },
    )
    source_restricted: bool = field(
        default=False,
        metadata={
            "help": "Declare the raw input credentialed (MIMIC or other PhysioNet data): restricted whatever "
            "its licence. A table with MIMIC's NOTEEVENTS columns is restricted in any case."
        },
    )
    allowed_endpoints: list[str] | None = field(
        default=None, metadata={"help": ALLOWED_ENDPOINTS_HELP, "nargs": "+"}
    )
    # --- MIMIC ------------------------------------------------------------------------
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
    # --- answers: filters ---------------------------------------------------------------
    self_reference_extra: list[str] = field(
        default_factory=lambda: list(EXTRA_SELF_REFERENCE_PHRASES),
        metadata={
            "help": "Phrases dropped as self-reference beyond the original's 11 (always applied), counted apart as "
            "self_reference_extra in the card. 'none' (or [] in YAML) matches the original's filter and row "
            "counts.",
        },
    )
    # --- questions --------------------------------------------------------------------
    dedup_threshold: float = field(
        default=0.7,
        metadata={
            "help": "Drop a question whose ROUGE-L F1 with a question of its task's pool exceeds this."
        },
    )
    num_seed_examples: int = field(default=3, metadata={"help": "Seed questions shown per request."})
    num_pool_examples: int = field(
        default=2, metadata={"help": "Generated questions of the task's pool shown, at most."}
    )
    # --- answers ----------------------------------------------------------------------
    test_ratio: float = field(
        default=0.1, metadata={"help": "Share of patients in the 'test' split of the instruction dataset."}
    )
    # --- output -----------------------------------------------------------------------
    overwrite: bool = field(
        default=False,
        metadata={"help": "Rebuild a finished output folder (ledger answers are reused: nothing is resent)."},
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished folder to the Hub."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset repository, e.g. user/name."}
    )
    private: bool = field(
        default=False, metadata={"help": "Push to a private repository (required for MIMIC data)."}
    )

    def __post_init__(self) -> None:
        if [phrase.lower() for phrase in self.self_reference_extra] == ["none"]:
            self.self_reference_extra = []
        if self.deid_style not in DEID_STYLES:
            raise ValueError(f"--deid_style must be one of {', '.join(DEID_STYLES)}; got {self.deid_style!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if not 0.0 <= self.dedup_threshold <= 1.0:
            raise ValueError(f"--dedup_threshold must be in [0, 1], got {self.dedup_threshold}")
        if not 0.0 <= self.test_ratio < 1.0:
            raise ValueError(f"--test_ratio must be in [0, 1), got {self.test_ratio}")
        if self.chunk_size < 1:
            raise ValueError(f"--chunk_size must be >= 1, got {self.chunk_size}")
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id")

    def output_path(self, default: str | None) -> Path:
        """The stage's output folder: --output_dir, else the recipe's folder for the stage."""
        target = self.output_dir or default
        if not target:
            raise InputError(
                "--output_dir", "not given (and the recipe sets no default output for this stage)"
            )
        return Path(target)

    @property
    def push_request(self) -> PushRequest:
        """The push flags, as the stage folder takes them."""
        return PushRequest(self.push_to_hub, self.hub_dataset_id, self.private, repo_type="dataset")

    def input_path(self, default: str | None) -> str:
        """The stage's input: --input, else the recipe's default for the stage."""
        source = self.input or default
        if not source:
            raise InputError("--input", "not given (and the recipe sets no default input for this stage)")
        return source


def sampling_for(stage: str, engine_args: EngineArguments) -> StageDefaults:
    """The stage's temperature and max_tokens: the recipe's values, else the library defaults."""
    defaults = STAGE_DEFAULTS[stage]
    return StageDefaults(
        temperature=defaults.temperature if engine_args.temperature is None else engine_args.temperature,
        max_tokens=defaults.max_tokens if engine_args.max_tokens is None else engine_args.max_tokens,
    )


RECIPE_CLASSES = (DataArguments, EngineArguments)
