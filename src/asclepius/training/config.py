"""Settings of the two training stages, parsed from ``recipes/<name>/{pretrain,sft}/*.yaml``.

A recipe file is exactly three dataclasses (``asclepius.recipes.STAGES``): TRL's
``ModelConfig``; TRL's ``SFTConfig`` (:class:`SFTStageConfig`; for pretraining,
:class:`PretrainConfig`, the same with the paper's defaults for that stage); and
:class:`TrainScriptArguments`, which extends TRL's ``ScriptArguments`` with what this
project needs on top (the held-out split, column names, the learning-signal check). ``make check-recipes`` parses every
training recipe with these classes, so a misspelt key fails before a GPU is rented.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, SFTConfig  # noqa: F401 - ModelConfig: the stages' third class

from asclepius.arguments import HubModelArguments, flag_of, not_a_flag
from asclepius.prompts import DEFAULT_PROMPT_FORMAT, PROMPT_FORMATS

STAGES = ("pretrain", "sft")
# How notes become pretraining blocks (training.formatting): TRL's packing, or the original's stream.
PRETRAIN_STREAMS = ("packed", "original")
DEFAULT_PRETRAIN_STREAM = "packed"


@dataclass
class TrainScriptArguments(ScriptArguments):
    """Data and bookkeeping options of ``scripts/sft.py`` (and, less the prompt's, of ``scripts/pretrain.py``)."""

    # Not flags here: notes are deduplicated over the whole dataset (no streaming), and no
    # DDP-specific buffer handling is done by these scripts.
    dataset_streaming: bool = not_a_flag(ScriptArguments, "dataset_streaming")
    ignore_bias_buffers: bool = not_a_flag(ScriptArguments, "ignore_bias_buffers")

    dataset_license: str | None = field(
        default=None,
        metadata={
            "help": "Licence of dataset_name when it is a raw file or a Hub dataset id (a folder written by this "
            "project carries its own), declared by you. Undeclared, its provenance is unknown and treated as "
            "restricted: the model is then pushed to private repositories only."
        },
    )
    test_ratio: float | None = field(
        default=None,
        metadata={
            "help": "For a source with only a train split (a plain file, the published dataset): hold out this "
            "share of patients as 'test' (by patient_id). The evaluation stage uses the same split with the same "
            "ratio and seed. Leave unset to train on every row."
        },
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the by-patient split (with --test_ratio)."})
    note_column: str = field(default="note", metadata={"help": "Column holding the discharge summary."})
    question_column: str = field(
        default="question", metadata={"help": "Column holding the instruction (sft)."}
    )
    answer_column: str = field(default="answer", metadata={"help": "Column holding the answer (sft)."})
    prompt_format: str = field(
        default=DEFAULT_PROMPT_FORMAT,
        metadata={
            "help": "Bytes of the training prompt (sft). readme (default): the published inference prompt, fields "
            "verbatim, so the model is trained and prompted identically. original: what the original code trained "
            "the released checkpoints on (no space after [Instruction End], every field stripped of leading and "
            "trailing newlines, answer + EOS). Recorded in the model card; generate.py and asclepius chat then "
            "prompt the model in the same bytes.",
            "choices": list(PROMPT_FORMATS),
        },
    )
    learning_signal: bool = field(
        default=True,
        metadata={
            "help": "After training, measure on the held-out split the metric this stage should improve (note "
            "perplexity for pretrain, answer loss for sft) for the starting model and the trained one, and write "
            "both to .asclepius/metrics.json. Needs a test split."
        },
    )
    max_eval_examples: int | None = field(
        default=200,
        metadata={
            "help": "Cap on held-out notes (pretrain) or rows (sft) used by the learning-signal check."
        },
    )
    log_batch_fingerprints: bool = field(
        default=False,
        metadata={
            "help": "Append a short hash of every training batch, per rank, to .asclepius/batches-rank<N>.jsonl: "
            "a cheap way to check that data-parallel ranks read different data."
        },
    )

    def __post_init__(self) -> None:
        if self.test_ratio is not None and not 0.0 <= self.test_ratio < 1.0:
            raise ValueError(f"--test_ratio must be in [0, 1), got {self.test_ratio}")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            raise ValueError(f"--max_eval_examples must be >= 1, got {self.max_eval_examples}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"--prompt_format must be one of {', '.join(PROMPT_FORMATS)}; got {self.prompt_format!r}"
            )


@dataclass
class PretrainScriptArguments(TrainScriptArguments):
    """``scripts/pretrain.py`` reads notes only: no question or answer column, no prompt format."""

    question_column: str = not_a_flag(TrainScriptArguments, "question_column")
    answer_column: str = not_a_flag(TrainScriptArguments, "answer_column")
    prompt_format: str = not_a_flag(TrainScriptArguments, "prompt_format")
    pretrain_stream: str = field(
        default=DEFAULT_PRETRAIN_STREAM,
        metadata={
            "help": "How notes become training blocks. packed (default): TRL's packing (packing_strategy), each "
            "note followed by EOS. original: the original code's stream: the notes shuffled (with --seed), each "
            "with BOS, then EOS + BOS, one stream over the whole corpus cut into max_length blocks, the remainder "
            "dropped (the reproduction recipes).",
            "choices": list(PRETRAIN_STREAMS),
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pretrain_stream not in PRETRAIN_STREAMS:
            raise ValueError(
                f"--pretrain_stream must be one of {', '.join(PRETRAIN_STREAMS)}; got {self.pretrain_stream!r}"
            )


@dataclass
class SFTStageConfig(SFTConfig):
    """TRL's ``SFTConfig``, with this project's other name for a flag (``--private``, as the data stages say)."""

    hub_private_repo: bool | None = flag_of(SFTConfig, "hub_private_repo", aliases=["--private"])


@dataclass
class PretrainConfig(SFTStageConfig):
    """``SFTConfig`` whose defaults are the paper's continued pretraining: one epoch over notes
    joined with EOS and cut into fixed blocks. A recipe that leaves these out still gets them."""

    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the notes (the paper: 1)."})
    packing: bool = field(
        default=True,
        metadata={"help": "Join notes (each followed by EOS) and cut them into max_length blocks."},
    )
    packing_strategy: str = field(
        default="wrapped",
        metadata={
            "help": "'wrapped' (the paper's method: fixed blocks, cut mid-note), 'bfd' (best-fit packing, "
            "each note attends only to itself; fastest on GPU with flash attention) or 'bfd_split'.",
            "choices": ["bfd", "bfd_split", "wrapped"],
        },
    )


@dataclass
class MergeArguments(HubModelArguments):
    """Options of ``scripts/merge_adapter.py``."""

    adapter_dir: str | None = field(
        default=None,
        metadata={"help": "Folder (or Hub id) of a LoRA adapter written by scripts/sft.py --use_peft."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder to write the merged full model to."}
    )
    base_model: str | None = field(
        default=None,
        metadata={"help": "Base model to merge into. Default: the adapter's base_model_name_or_path."},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype the base model is loaded and saved in.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished --output_dir (one with its model card); without it a finished folder "
            "is left as it is (rerun with --push_to_hub to push it)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # --push_to_hub needs --hub_model_id
