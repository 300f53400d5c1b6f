"""Stage 4: (note, question) -> answer, filtered, grounded, split by patient.

The default config has exactly the published columns ``patient_id, note, question,
answer, task`` in ``train``/``test`` splits (no patient in both), so the folder drops
in for ``starmpcc/Asclepius-Synthetic-Clinical-Notes``. The ``annotated`` config keeps
every row with its drop reason and the grounding check: numbers, doses and dates the
answer states that the note does not contain. The ``prompt_completion`` config holds
the same rows in TRL's prompt-completion format (the prompt rendered in the format our
models are trained on), so TRL alone trains on it:
``trl sft --dataset_name FOLDER --dataset_config prompt_completion ...``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from datasets import Dataset, Features, List, Value

from asclepius import prompts
from asclepius.data import filters
from asclepius.data.corpus import SOURCE_COLUMN, with_source
from asclepius.data.readers import check_int, check_text
from asclepius.data.splits import split_by_patient
from asclepius.data.stage import PROVENANCE_FEATURES, SOURCE_ROW, kept_rows, provenance
from asclepius.engine import Request, Result
from asclepius.errors import InputError
from asclepius.tasks import TASKS

INSTRUCTION_COLUMNS = ["patient_id", "note", "question", "answer", "task"]
ANSWER_FEATURES = Features(
    {
        "patient_id": Value("int64"),
        "note": Value("string"),
        "question": Value("string"),
        "answer": Value("string"),
        "task": Value("string"),
        "drop_reason": Value("string"),
        "ungrounded_values": List(Value("string")),
        "grounded": Value("bool"),
        **PROVENANCE_FEATURES,
        SOURCE_COLUMN: Value("string"),  # the corpus name, when the questions carry one (prepare_notes)
        SOURCE_ROW: Value("int64"),
    }
)


def validate_questions(questions: Dataset, source: str) -> None:
    """Integer patient ids, non-empty notes and questions, known task labels; checked before sending."""
    row = 0
    columns = ["patient_id", "note", "question", "task"]
    for batch in questions.select_columns(columns).iter(batch_size=1024):
        for patient_id, note, question, task in zip(*(batch[column] for column in columns)):
            row += 1
            check_int(source, patient_id, row=row, field="patient_id")
            check_text(source, note, row=row, field="note")
            check_text(source, question, row=row, field="question")
            if task not in TASKS:
                raise InputError(
                    source,
                    f"unknown task label {str(task)[:60]!r}; expected one of: {', '.join(TASKS)}",
                    row=row,
                    field="task",
                )


class AnswerGeneration:
    """One request per question; results become rows with filters and grounding applied."""

    def __init__(
        self,
        questions: Dataset,
        *,
        teacher_model: str,
        keep_truncated: bool = False,
        sink: Callable[[dict[str, Any]], None] | None = None,
        extra_self_reference_phrases: tuple[str, ...] | list[str] = filters.EXTRA_SELF_REFERENCE_PHRASES,
    ):
        self.questions = questions
        # Beyond the original's 11 phrases; rows they catch are counted as self_reference_extra.
        self.extra_self_reference_phrases = tuple(extra_self_reference_phrases)
        self.teacher_model = teacher_model
        self.keep_truncated = keep_truncated
        self.sink = sink
        self.drops: Counter = Counter()
        self.tokens: Counter = Counter()
        self.ungrounded_rows = 0  # kept rows with at least one ungrounded value

    def requests(self) -> Iterator[Request]:
        columns = with_source(["patient_id", "note", "question", "task"], self.questions)
        for index, row in enumerate(self.questions.select_columns(columns)):
            yield Request(
                messages=prompts.answer_messages(row["note"], row["question"]),
                metadata={"index": index, **{column: row[column] for column in columns}},
            )

    def on_result(self, result: Result) -> None:
        meta = result.request.metadata
        answer = (result.content or "").strip()
        problem = filters.generation_problem(
            result.ok, answer, result.finish_reason, result.error, keep_truncated=self.keep_truncated
        )
        if problem is None:
            problem = filters.answer_problem(
                meta["note"], meta["question"], answer, self.extra_self_reference_phrases
            )
        ungrounded = filters.ungrounded_values(answer, meta["note"]) if answer else []
        if problem:
            self.drops[problem] += 1
        elif ungrounded:
            self.ungrounded_rows += 1
        usage = result.usage or {}
        self.tokens.update({key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens")})
        if self.sink is not None:
            self.sink(
                {
                    "patient_id": int(meta["patient_id"]),
                    "note": meta["note"],
                    "question": meta["question"],
                    "answer": answer,
                    "task": meta["task"],
                    SOURCE_COLUMN: meta.get(SOURCE_COLUMN),
                    "drop_reason": problem,
                    "ungrounded_values": ungrounded,
                    "grounded": not ungrounded,
                    **provenance(
                        result, teacher_model=self.teacher_model, prompt_hash=prompts.ANSWER_PROMPT_HASH
                    ),
                    SOURCE_ROW: meta["index"],
                }
            )


PROMPT_COMPLETION_CONFIG = "prompt_completion"


def instruction_configs(rows: Dataset, *, test_ratio: float, seed: int) -> dict[str, dict[str, Dataset]]:
    """``default``: the published columns in train/test split by patient; ``annotated``: all rows, same split;
    ``prompt_completion``: the default rows as TRL's prompt and completion."""
    if test_ratio > 0:
        annotated = dict(split_by_patient(rows, test_ratio, seed))
    else:
        annotated = {"train": rows}
    default = {
        name: kept_rows(split).select_columns(with_source(INSTRUCTION_COLUMNS, split))
        for name, split in annotated.items()
    }
    prompt_completion = {name: as_prompt_completion(split) for name, split in default.items()}
    return {"default": default, "annotated": annotated, PROMPT_COMPLETION_CONFIG: prompt_completion}


def as_prompt_completion(rows: Dataset, prompt_format: str = prompts.DEFAULT_PROMPT_FORMAT) -> Dataset:
    """TRL's prompt-completion format: the training prompt (note and question filled in) and the answer.

    The bytes are those ``scripts/sft.py`` trains on under ``prompt_format`` (the model
    card's), so a model trained with TRL alone is prompted like ours. TRL appends EOS to
    the completion and, by default, puts the loss on the completion only.
    """
    prompt_rows = [
        prompts.render_training_prompt(n, q, prompt_format) for n, q in zip(rows["note"], rows["question"])
    ]
    completions = [prompts.training_completion(answer, prompt_format) for answer in rows["answer"]]
    return Dataset.from_dict(
        {"prompt": prompt_rows, "completion": completions},
        features=Features({"prompt": Value("string"), "completion": Value("string")}),
    )


def prompt_completion_section() -> dict[str, str]:
    """The instruction card's section on training with TRL alone, from the prompt_completion config."""
    return {
        "title": "Training with TRL alone",
        "body": f"The `{PROMPT_COMPLETION_CONFIG}` config holds the default config's rows in TRL's "
        f"prompt-completion format: `prompt` is the Asclepius prompt (`prompt_format: "
        f"{prompts.DEFAULT_PROMPT_FORMAT}`, hash `{prompts.PROMPT_FORMAT_HASHES[prompts.DEFAULT_PROMPT_FORMAT]}`) "
        "with the note and the question filled in, `completion` the answer. TRL appends EOS and puts the loss on "
        "the completion only:\n\n```bash\ntrl sft --model_name_or_path MODEL --dataset_name THIS_DATASET "
        f"--dataset_config {PROMPT_COMPLETION_CONFIG} --output_dir OUT\n```",
    }
