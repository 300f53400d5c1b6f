"""Stage 3: notes -> one task and one new question per note (Self-Instruct-style bootstrapping).

Each note gets one of the 8 tasks. A request shows 3 of the task's seed questions and
up to 2 questions the teacher already wrote for that task, and asks for one new, brief
question answerable from the note. The task's pool grows while requests are in
flight: the engine pulls the next request only when a result has been consumed, so
each prompt is built from the pool as it stands at that moment.

Because prompts depend on completion order, a rerun would build different prompts for
the same note; each request therefore carries a ``resume_key`` (prompt hash + task + note), and the
ledger's answer for that key is reused whatever the examples were.

New questions too close to the task's pool (ROUGE-L F1 above the threshold, 0.7 as in
Self-Instruct) are dropped, so the pool, and the dataset, keep their diversity.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from datasets import Dataset, Features, Value

from asclepius import prompts
from asclepius.data import filters
from asclepius.data.corpus import SOURCE_COLUMN, with_source
from asclepius.data.readers import check_int, check_text
from asclepius.data.stage import PROVENANCE_FEATURES, SOURCE_ROW, kept_rows, provenance
from asclepius.engine import Request, Result
from asclepius.tasks import SEED_QUESTIONS, TASKS

QUESTION_COLUMNS = ["patient_id", "note", "task", "question"]
QUESTION_FEATURES = Features(
    {
        "patient_id": Value("int64"),
        "note": Value("string"),
        "task": Value("string"),
        "question": Value("string"),
        "raw_question": Value("string"),
        "rouge_l_to_pool": Value("float32"),
        "drop_reason": Value("string"),
        **PROVENANCE_FEATURES,
        SOURCE_COLUMN: Value("string"),  # the corpus name, when the notes carry one (prepare_notes)
        SOURCE_ROW: Value("int64"),
    }
)


def assign_tasks(count: int, seed: int) -> list[str]:
    """One task per note, at random but balanced (each task gets count/8 notes, give or take one).

    A seeded shuffle of the tasks repeated ``count / 8`` times: each note's task is
    random, and with 8 notes or more every task is present (independent draws can miss
    one in a small dataset).
    """
    tasks = [TASKS[i % len(TASKS)] for i in range(count)]
    random.Random(seed).shuffle(tasks)
    return tasks


def note_digest(note: str) -> str:
    return hashlib.sha256(note.encode("utf-8")).hexdigest()[:16]


def validate_notes(notes: Dataset, source: str) -> None:
    """Every row has an integer patient_id and a non-empty note (checked before anything is sent)."""
    row = 0
    for batch in notes.select_columns(["patient_id", "note"]).iter(batch_size=1024):
        for patient_id, note in zip(batch["patient_id"], batch["note"]):
            row += 1
            check_int(source, patient_id, row=row, field="patient_id")
            check_text(source, note, row=row, field="note")


class QuestionPool:
    """Per task: the seed questions and the accepted generated ones, with a ROUGE-L near-duplicate test."""

    def __init__(self, threshold: float):
        from rouge_score import rouge_scorer, tokenizers

        self.threshold = threshold
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self._entries: dict[str, list[tuple[str, Counter, int]]] = {task: [] for task in TASKS}
        self.generated: dict[str, list[str]] = {task: [] for task in TASKS}
        for task, seeds in SEED_QUESTIONS.items():
            for question in seeds:
                self._remember(task, question)

    def _remember(self, task: str, question: str) -> None:
        tokens = self._tokenizer.tokenize(question)
        self._entries[task].append((question, Counter(tokens), len(tokens)))

    def max_similarity(self, task: str, question: str) -> float:
        """Highest ROUGE-L F1 between ``question`` and the task's pool.

        Pairs that cannot exceed the threshold are skipped without scoring: F1 of an LCS
        is at most 2*min(len)/(sum of lens), and the LCS is at most the shared words, so
        the pool can grow to tens of thousands of questions per task.
        """
        tokens = self._tokenizer.tokenize(question)
        counts, length = Counter(tokens), len(tokens)
        best = 0.0
        for text, other_counts, other_length in self._entries[task]:
            total = length + other_length
            if total == 0:
                continue
            bound = 2 * min(length, other_length) / total
            if bound <= max(best, self.threshold):
                continue
            bound = 2 * sum((counts & other_counts).values()) / total
            if bound <= max(best, self.threshold):
                continue
            best = max(best, self._scorer.score(text, question)["rougeL"].fmeasure)
        return best

    def add(self, task: str, question: str) -> None:
        self._remember(task, question)
        self.generated[task].append(question)


class QuestionBootstrap:
    """Builds question requests from the live pool and turns results into rows."""

    def __init__(
        self,
        notes: Dataset,
        *,
        seed: int,
        teacher_model: str,
        dedup_threshold: float = 0.7,
        num_seed_examples: int = 3,
        num_pool_examples: int = 2,
        keep_truncated: bool = False,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.notes = notes
        self.seed = seed
        self.teacher_model = teacher_model
        self.num_seed_examples = num_seed_examples
        self.num_pool_examples = num_pool_examples
        self.keep_truncated = keep_truncated
        self.tasks = assign_tasks(notes.num_rows, seed)
        self.pool = QuestionPool(dedup_threshold)
        self.sink = sink
        self.drops: Counter = Counter()
        self.tokens: Counter = Counter()

    def request_for(self, index: int, patient_id: int, note: str, source: str | None = None) -> Request:
        task = self.tasks[index]
        digest = note_digest(note)
        rng = random.Random(f"{self.seed}:{task}:{digest}")
        seeds = SEED_QUESTIONS[task]
        examples = rng.sample(seeds, min(self.num_seed_examples, len(seeds)))
        generated = self.pool.generated[task]
        examples += rng.sample(generated, min(self.num_pool_examples, len(generated)))
        return Request(
            messages=prompts.question_messages(note, task, examples),
            metadata={
                "index": index,
                "patient_id": int(patient_id),
                "note": note,
                "task": task,
                "source": source,
            },
            # The prompt template's hash too: a changed prompt must ask again, not reuse.
            resume_key=f"question:{prompts.QUESTION_PROMPT_HASH}:{task}:{patient_id}:{digest}",
        )

    def requests(self) -> Iterator[Request]:
        for index, row in enumerate(
            self.notes.select_columns(with_source(["patient_id", "note"], self.notes))
        ):
            yield self.request_for(index, row["patient_id"], row["note"], row.get(SOURCE_COLUMN))

    def on_result(self, result: Result) -> None:
        meta = result.request.metadata
        task = meta["task"]
        question = filters.clean_question(result.content)
        similarity = None
        problem = filters.generation_problem(
            result.ok, question, result.finish_reason, result.error, keep_truncated=self.keep_truncated
        )
        if problem is None and filters.mentions_model(question):
            problem = filters.SELF_REFERENCE
        if problem is None:
            similarity = self.pool.max_similarity(task, question)
            if similarity > self.pool.threshold:
                problem = filters.NEAR_DUPLICATE
            else:
                self.pool.add(task, question)
        if problem:
            self.drops[problem] += 1
        usage = result.usage or {}
        self.tokens.update({key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens")})
        if self.sink is not None:
            self.sink(
                {
                    "patient_id": meta["patient_id"],
                    "note": meta["note"],
                    "task": task,
                    SOURCE_COLUMN: meta.get("source"),
                    "question": question,
                    "raw_question": result.content,
                    "rouge_l_to_pool": similarity,
                    "drop_reason": problem,
                    **provenance(
                        result, teacher_model=self.teacher_model, prompt_hash=prompts.QUESTION_PROMPT_HASH
                    ),
                    SOURCE_ROW: meta["index"],
                }
            )


def question_configs(rows: Dataset) -> dict[str, dict[str, Dataset]]:
    """``default``: kept questions (patient_id, note, task, question); ``annotated``: every row, flagged."""
    return {
        "default": {"train": kept_rows(rows).select_columns(with_source(QUESTION_COLUMNS, rows))},
        "annotated": {"train": rows},
    }
