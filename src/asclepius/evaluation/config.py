"""Argument classes of the evaluation stages; their recipe file is ``recipes/<name>/eval.yaml``.

``scripts/generate.py`` (:class:`GenerateArguments` + :class:`GenerateEngineArguments`) and
``scripts/judge.py`` (:class:`JudgeArguments` + :class:`JudgeEngineArguments`) share one
recipe file: each takes its own keys and leaves the others'. What both use (the output
folder, the backend, the by-patient split, the allowed endpoints) is a shared group,
:class:`EvaluationStageArguments`. Generate's engine flags describe the model under
evaluation (``--model``, ``--base_url``, ``--temperature``, ``--max_tokens``); the judge has
its own endpoint and sampling (``--judge_*``) and takes only the engine's pacing, retries,
prices and budget. ``make check-recipes`` parses every eval.yaml for both stages.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from asclepius.arguments import AllowedEndpointsArguments, Arguments, flag_of, not_a_flag
from asclepius.engine import EngineArguments
from asclepius.prompts import PROMPT_STYLES

logger = logging.getLogger(__name__)

# batch: the endpoint's Batch API (half price) for generate's answers and the judge's replies.
BACKENDS = ("transformers", "openai", "batch")
# The prompt styles of prompts.PROMPT_STYLES, plus the model's own chat template, plus auto (the
# original evaluation's choice by model id, evaluation.prompting.auto_style).
PROMPT_STYLE_CHOICES = (*PROMPT_STYLES, "chat_template", "auto")
DECODING_CHOICES = ("greedy", "paper", "sample")
JUDGE_STYLES = ("ours", "paper")
# What judge_style paper pins: the original judge's settings (temperature 0, 2048 tokens) and
# its single try per item (a reply of fewer tokens than candidates scores 0 for every model of the item).
PAPER_JUDGE_SETTINGS = {"judge_temperature": 0.0, "judge_max_tokens": 2048, "max_parse_attempts": 1}
# The paper's evaluation budget (max_new_tokens 400), used unless --max_tokens says otherwise.
DEFAULT_MAX_NEW_TOKENS = 400


def plain_engine_arguments(engine_args: EngineArguments, **changes) -> EngineArguments:
    """A plain :class:`EngineArguments` with ``engine_args``' values and ``changes`` (what the engine takes)."""
    values = {each.name: getattr(engine_args, each.name) for each in dataclasses.fields(EngineArguments)}
    return EngineArguments(**{**values, **changes})


@dataclass
class EvaluationStageArguments(Arguments):
    """What generate and the judge both take."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Output folder: generate's answers, the judge's report (required)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Rebuild a finished output folder (generate's answers, the judge's report); without it a "
            "finished folder is left as it is. Every input and flag is checked before anything is deleted."
        },
    )
    backend: str = field(
        default="transformers",
        metadata={
            "help": "transformers: load --model (path or Hub id) and generate in batches; openai: send the "
            "prompts to an OpenAI-compatible endpoint (--base_url, --model) through the request engine; "
            "batch: the same through the endpoint's Batch API at half price. The judge sends its requests "
            "through the Batch API with batch, else one by one."
        },
    )
    test_ratio: float | None = field(
        default=None,
        metadata={
            "help": "For a source with only a train split (a plain file): hold out this share of patients as "
            "'test', the same split the training stage uses with the same ratio and seed: generate answers the "
            "test side of --input, the judge checks notes against the train side of --train_dataset."
        },
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the by-patient split (with --test_ratio)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")

    def engine_arguments(self, engine_args: EngineArguments) -> EngineArguments:
        """The engine settings of the API backends: batch when --backend batch."""
        return plain_engine_arguments(engine_args, backend="batch" if self.backend == "batch" else "sync")


@dataclass
class GenerateArguments(AllowedEndpointsArguments, EvaluationStageArguments):
    """``scripts/generate.py``: a model answers an evaluation set."""

    input: str | None = field(
        default=None,
        metadata={
            "aliases": ["--dataset_name"],
            "help": "Evaluation set: a Hub-ready folder, a .jsonl/.json/.csv/.parquet file or a Hub dataset id "
            "with columns note, question, and optionally answer (reference), task, patient_id.",
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name of --input."})
    split: str = field(default="test", metadata={"help": "Split of --input to evaluate on."})
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate only the first N rows (smoke runs)."}
    )
    model_name: str | None = field(
        default=None, metadata={"help": "Name of the model in the results (default: --model as given)."}
    )
    prompt_style: str = field(
        default="asclepius",
        metadata={
            "help": "asclepius (the published template; for a model whose card records prompt_format original, "
            "its training bytes), asclepius_original (no space after [Instruction End], fields stripped), "
            "asclepius_paper (the published bytes, fields stripped: how the paper's evaluation asked the Asclepius "
            "models), the "
            "paper's baseline formats byte for byte: llama_base (LLaMA, PMC-LLaMA), alpaca (Alpaca, ChatDoctor), "
            "medalpaca, vicuna (Vicuna, Clinical Camel); chat_template (the model's own chat template around "
            "the asclepius prompt); or auto (the original evaluation's choice by model id: its named baselines, "
            "vicuna for ids containing 'vicuna' or 'clinical-camel', asclepius_paper for every other id; a model "
            "whose card records prompt_format gets its training bytes)."
        },
    )
    model_subfolder: str | None = field(
        default=None,
        metadata={
            "help": "Subfolder of --model that holds the weights and tokenizer (ChatDoctor's Hub repo: result)."
        },
    )
    decoding: str = field(
        default="greedy",
        metadata={
            "help": "greedy (default, fast and deterministic), paper (the original evaluation: 5 beams with "
            "sampling at temperature 1, 400 new tokens, pinned whatever --num_beams/--max_tokens/--temperature or "
            "the checkpoint's generation config say) or sample (multinomial). --max_tokens sets the new-token "
            f"limit (default {DEFAULT_MAX_NEW_TOKENS}), --temperature the sampling temperature."
        },
    )
    num_beams: int | None = field(default=None, metadata={"help": "Override the beam count of --decoding."})
    top_p: float | None = field(
        default=None, metadata={"help": "Nucleus sampling (sampling decodings only)."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Prompts per generate() call (prompts are sorted by length first)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for sampling decodings (set per batch)."})
    device: str = field(
        default="auto", metadata={"help": "auto (cuda, then mps, then cpu), cuda, cuda:1, cpu, ..."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 on a GPU that supports it, else float32), or a dtype."},
    )
    cache_implementation: str | None = field(
        default="static",
        metadata={
            "help": "KV cache of local generation: static (preallocated for prompt + answer: fixed shapes and no "
            "copying as answers grow; 1.2-1.5x faster for the tiny model on CPU) or dynamic (transformers' default)."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "sdpa, flash_attention_2, eager, ... (default: transformers' choice)."},
    )
    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Prompt budget in tokens: a longer prompt has the END of its note cut (never the template, "
            "question or answer cue); how often and how much is recorded. Default for local models: "
            "max_position_embeddings minus the new-token limit; for endpoints: no cut (estimated at ~4 "
            "characters a token when set)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # Fail at parse time with the flag's name rather than deep inside a run.
        for name, value, choices in (
            ("prompt_style", self.prompt_style, PROMPT_STYLE_CHOICES),
            ("decoding", self.decoding, DECODING_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"--{name} must be one of {', '.join(choices)}; got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"--max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.num_beams is not None and self.num_beams < 1:
            raise ValueError(f"--num_beams must be >= 1, got {self.num_beams}")


@dataclass
class JudgeArguments(AllowedEndpointsArguments, EvaluationStageArguments):
    """``scripts/judge.py``: an LLM judge grades answers folders; statistics, report, model cards."""

    inputs: list[str] | None = field(
        default=None,
        metadata={"help": "Folders written by scripts/generate.py, one per candidate model.", "nargs": "+"},
    )
    include_reference: bool = field(
        default=False,
        metadata={
            "help": "Also grade the evaluation set's reference answers as a candidate named 'reference'."
        },
    )
    judge_style: str = field(
        default="ours",
        metadata={
            "help": "ours: repair rounds for unreadable replies, then missing (never a score). paper: the original "
            "judge: one user message in its shape, temperature 0, max 2048 tokens, one try, and the reply read as "
            "the original read it (quotes stripped, the first N whitespace tokens are the N scores; fewer than N "
            "tokens scores 0 for every model of the item; a token that is not a score is kept as given and left "
            "out of the means): the paper_score column and the paper-style means, reported beside ours. The judge "
            "model is --judge_model as given (the paper used gpt-4-0314).",
            "choices": list(JUDGE_STYLES),
        },
    )
    judge_model: str = field(
        default="gpt-4o",
        metadata={
            "help": "Judge model (or Azure deployment) name, as its endpoint (--judge_base_url) knows it."
        },
    )
    judge_base_url: str | None = field(
        default=None, metadata={"help": "Judge's OpenAI-compatible base URL (None = api.openai.com)."}
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the judge's API key."}
    )
    judge_azure_api_version: str | None = field(
        default=None,
        metadata={"help": "Set for an Azure OpenAI judge (judge_base_url is then the endpoint)."},
    )
    judge_temperature: float = field(default=0.0, metadata={"help": "Judge sampling temperature."})
    judge_max_tokens: int = field(
        default=1024, metadata={"help": "Judge reply budget: its own answer, the scores, and its reasons."}
    )
    num_shuffles: int = field(
        default=1,
        metadata={"help": "Judge each item this many times with different candidate orders (position bias)."},
    )
    shuffle_seed: int = field(
        default=0, metadata={"help": "Seed of the candidate orders (recorded in the output)."}
    )
    max_parse_attempts: int = field(
        default=3,
        metadata={
            "help": "Tries per judgement: a reply whose first line is not exactly N scores in 1..4 is asked "
            "again this many times in all, then recorded as missing (never as a score)."
        },
    )
    judge_reply_format: str = field(
        default="first_line",
        metadata={
            "help": "first_line (default: the first line must be N scores, parsed strictly) or json_schema: ask for "
            "a JSON object the endpoint enforces (OpenAI structured outputs, vLLM guided decoding; `transformers "
            "serve` rejects it); a reply that is not that JSON is read by the first-line parser."
        },
    )
    train_dataset: str | None = field(
        default=None,
        metadata={"help": "Training data (folder, file or Hub id) to check evaluation notes against."},
    )
    train_split: str = field(default="train", metadata={"help": "Split of --train_dataset."})
    decontamination_ngram: int = field(default=13, metadata={"help": "n of the word n-grams compared."})
    decontamination_threshold: float = field(
        default=0.5,
        metadata={"help": "Flag a note when this share of its n-grams occurs in the training notes."},
    )
    drop_contaminated: bool = field(
        default=False,
        metadata={"help": "Score only the notes that are not flagged (default: flag and report)."},
    )
    bootstrap_samples: int = field(
        default=1000, metadata={"help": "Bootstrap resamples for the 95%% intervals."}
    )
    bootstrap_seed: int = field(
        default=0, metadata={"help": "Seed of the bootstrap (intervals are reproducible)."}
    )
    model_card: list[str] | None = field(
        default=None,
        metadata={
            "help": "Model folders whose README.md gets the results as model-index metadata: DIR, or "
            "CANDIDATE=DIR to name the candidate; any card, when asked here. Automatic only for candidates "
            "generated from a local model this project trained (its card says so), never a base model's.",
            "nargs": "+",
        },
    )
    update_model_cards: bool = field(
        default=True,
        metadata={"help": "Write model-index metadata into the cards of candidates this project trained."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value, choices in (
            ("judge_style", self.judge_style, JUDGE_STYLES),
            ("judge_reply_format", self.judge_reply_format, ("first_line", "json_schema")),
        ):
            if value not in choices:
                raise ValueError(f"--{name} must be one of {', '.join(choices)}; got {value!r}")
        for name in ("num_shuffles", "max_parse_attempts", "bootstrap_samples", "decontamination_ngram"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.judge_style == "paper":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, value in PAPER_JUDGE_SETTINGS.items():
                if getattr(self, name) not in (value, defaults[name]):  # a value the user chose
                    logger.warning(
                        "judge_style paper pins %s=%s (%s given)", name, value, getattr(self, name)
                    )
                setattr(self, name, value)
        if not 0.0 < self.decontamination_threshold <= 1.0:
            raise ValueError(
                f"--decontamination_threshold must be in (0, 1], got {self.decontamination_threshold}"
            )

    def judge_engine_arguments(self, engine_args: EngineArguments) -> EngineArguments:
        """The engine settings of the judge: its own endpoint and sampling, the shared pacing."""
        judge = plain_engine_arguments(
            engine_args,
            model=self.judge_model,
            base_url=self.judge_base_url,
            api_key_env=self.judge_api_key_env,
            azure_api_version=self.judge_azure_api_version,
            temperature=self.judge_temperature,
            max_tokens=self.judge_max_tokens,
        )
        return self.engine_arguments(judge)


@dataclass
class GenerateEngineArguments(EngineArguments):
    """The engine flags of generate: the model under evaluation. Its ``--backend`` is generate's own."""

    backend: str = not_a_flag(EngineArguments, "backend")
    model: str = flag_of(
        EngineArguments,
        "model",
        help="The model under evaluation: a local folder or Hub id (--backend transformers), or the name the "
        "endpoint serves it under (openai, batch).",
        aliases=["--model_name_or_path"],
    )
    max_tokens: int | None = flag_of(
        EngineArguments,
        "max_tokens",
        help=f"New tokens per answer (default {DEFAULT_MAX_NEW_TOKENS}, the paper's budget).",
        aliases=["--max_new_tokens"],
    )
    temperature: float | None = flag_of(
        EngineArguments, "temperature", help="Sampling temperature of the sampling decodings."
    )


@dataclass
class JudgeEngineArguments(EngineArguments):
    """The judge's pacing, retries, prices and budget; its endpoint and sampling are the ``--judge_*`` flags."""

    instead_of: ClassVar[dict[str, str]] = {
        f"--{name}": f"--judge_{name}"
        for name in ("model", "base_url", "api_key_env", "azure_api_version", "temperature", "max_tokens")
    }

    backend: str = not_a_flag(EngineArguments, "backend")
    model: str = not_a_flag(EngineArguments, "model")
    base_url: str | None = not_a_flag(EngineArguments, "base_url")
    api_key_env: str = not_a_flag(EngineArguments, "api_key_env")
    azure_api_version: str | None = not_a_flag(EngineArguments, "azure_api_version")
    temperature: float | None = not_a_flag(EngineArguments, "temperature")
    max_tokens: int | None = not_a_flag(EngineArguments, "max_tokens")
