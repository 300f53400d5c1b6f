"""Turn the instruction dataset into what each training stage learns from.

* Continued pretraining reads notes. The instruction dataset repeats a note once per
  question, so notes are deduplicated first: otherwise a note with five questions
  would be trained on five times per epoch.
* Instruction tuning reads (prompt, completion) pairs: the inference template filled
  with the note and question, and the answer followed by EOS. ``prompt_format`` picks
  the bytes: ``readme`` (default, the published prompt with the fields verbatim) or
  ``original`` (the original training code's bytes, see :mod:`asclepius.prompts`).
* ``pretrain_stream`` picks how notes become pretraining blocks: ``packed`` (default,
  TRL's wrapped packing: each note + EOS, joined per map batch, each batch's remainder
  kept as a shorter block) or ``original`` (:func:`original_pretraining_blocks`: the
  original code's one global stream, remainder dropped).
"""

from __future__ import annotations

import logging
import random

from datasets import Dataset

from asclepius.data.loading import load_split
from asclepius.errors import InputError
from asclepius.prompts import DEFAULT_PROMPT_FORMAT, render_training_prompt, training_completion

logger = logging.getLogger(__name__)


def load_train_and_test(
    dataset_name: str,
    *,
    dataset_config: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    test_ratio: float | None = None,
    split_seed: int = 0,
) -> tuple[Dataset, Dataset | None]:
    """The training split and, when the source has one (or ``test_ratio`` makes one), the held-out split."""
    if not dataset_name:
        raise InputError(None, "no dataset: set dataset_name in the recipe or pass --dataset_name")
    train = load_split(
        dataset_name, train_split, config=dataset_config, test_ratio=test_ratio, seed=split_seed
    )
    try:
        test = load_split(
            dataset_name, test_split, config=dataset_config, test_ratio=test_ratio, seed=split_seed
        )
    except InputError:
        logger.info("%s has no %r split and no --test_ratio: nothing held out", dataset_name, test_split)
        test = None
    return train, test


def require_columns(dataset: Dataset, columns: list[str], source: str) -> None:
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise InputError(
            source, f"missing column(s) {missing}; the dataset has {dataset.column_names}", field=missing[0]
        )


def unique_notes(dataset: Dataset, note_column: str = "note", source: str = "dataset") -> Dataset:
    """One row per distinct note, in first-seen order, as a ``text`` column (what TRL trains on)."""
    require_columns(dataset, [note_column], source)
    seen: set[str] = set()
    notes = []
    for note in dataset[note_column]:
        if note and note.strip() and note not in seen:
            seen.add(note)
            notes.append(note)
    logger.info("%d rows -> %d distinct notes", len(dataset), len(notes))
    return Dataset.from_dict({"text": notes})


def to_prompt_completion(
    dataset: Dataset,
    *,
    note_column: str = "note",
    question_column: str = "question",
    answer_column: str = "answer",
    source: str = "dataset",
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
) -> Dataset:
    """``prompt`` (the template of ``prompt_format`` with note and question) and ``completion`` (the answer)."""
    require_columns(dataset, [note_column, question_column, answer_column], source)

    def render(row: dict) -> dict:
        return {
            "prompt": render_training_prompt(row[note_column], row[question_column], prompt_format),
            "completion": training_completion(row[answer_column], prompt_format),
        }

    return dataset.map(render, remove_columns=dataset.column_names, desc="Rendering prompts")


def tokenize_prompt_completion(tokenizer, prompt: str, completion: str) -> dict[str, list[int]]:
    """Token ids of prompt + completion + EOS, and a mask that is 1 on the completion and EOS only.

    The prompt's ids are exactly those of the prompt tokenized alone, as at inference.
    Tokenizing prompt and answer as one string can merge tokens across the boundary:
    the template ends in " \\n", which a byte-level BPE reads as one token at the end of
    a string but as two before more text. The answer's ids are taken from the joint
    tokenization when the prompt is a clean prefix of it (so SentencePiece vocabularies
    get their usual in-context pieces), else from the answer tokenized on its own.
    """
    prompt_ids = _without_trailing_eos(tokenizer(prompt)["input_ids"], tokenizer.eos_token_id)
    joint_ids = _without_trailing_eos(tokenizer(prompt + completion)["input_ids"], tokenizer.eos_token_id)
    if joint_ids[: len(prompt_ids)] == prompt_ids:
        completion_ids = joint_ids[len(prompt_ids) :]
    else:
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    completion_ids = [*completion_ids, tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + completion_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
    }


def _without_trailing_eos(ids: list[int], eos_token_id: int) -> list[int]:
    # A few tokenizers append EOS to every encoding (add_eos_token=True); the prompt must not end the sequence.
    return ids[:-1] if ids and ids[-1] == eos_token_id else ids


def tokenize_for_sft(dataset: Dataset, tokenizer, num_proc: int | None = None) -> Dataset:
    """Add ``input_ids`` and ``completion_mask`` to a prompt/completion dataset.

    TRL takes a dataset that already has ``input_ids`` as tokenized and builds labels
    from ``completion_mask`` (prompt tokens get -100), which is the answer-only loss.
    """
    return dataset.map(
        lambda row: tokenize_prompt_completion(tokenizer, row["prompt"], row["completion"]),
        num_proc=num_proc,
        desc="Tokenizing prompt + answer",
    )


# --- the original pretraining stream (pretrain_stream: original) --------------------------
def original_stream_blocks(
    token_lists: list[list[int]], *, bos_token_id: int, eos_token_id: int, block_size: int
) -> list[list[int]]:
    """The original code's stream cut into blocks: one BOS, then every note's ids followed by EOS and BOS.

    Each note's ids already start with the BOS its tokenizer adds, so two BOS precede every
    note (the stream's own first BOS and the note's). The stream is one sequence over the
    whole corpus and only whole blocks are kept: the remainder at its end is dropped.
    """
    stream = [bos_token_id]
    for ids in token_lists:
        stream.extend(ids)
        stream.extend((eos_token_id, bos_token_id))
    usable = len(stream) // block_size * block_size
    return [stream[start : start + block_size] for start in range(0, usable, block_size)]


def original_pretraining_blocks(
    notes: Dataset, tokenizer, *, block_size: int, seed: int | None, source: str = "dataset"
) -> Dataset:
    """``input_ids`` blocks of ``block_size`` tokens from a ``text`` dataset, as the original built them.

    The notes are shuffled first (the original shuffled without a seed; ``seed`` makes the
    stream reproducible; None keeps their order), each tokenized with its BOS.
    """
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise InputError(
            "--pretrain_stream",
            "original needs a tokenizer with BOS and EOS tokens (the LLaMA family's); use packed",
        )
    texts = list(notes["text"])
    if seed is not None:
        random.Random(seed).shuffle(texts)
    token_lists = []
    for start in range(0, len(texts), 1000):
        for ids in tokenizer(texts[start : start + 1000], add_special_tokens=True)["input_ids"]:
            # A tokenizer that does not add BOS itself gets it here: each note starts with BOS.
            token_lists.append(ids if ids[:1] == [tokenizer.bos_token_id] else [tokenizer.bos_token_id, *ids])
    blocks = original_stream_blocks(
        token_lists,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        block_size=block_size,
    )
    if not blocks:
        total = sum(len(ids) + 2 for ids in token_lists) + 1
        raise InputError(
            source,
            f"{len(texts)} notes make {total} tokens, less than one {block_size}-token block; lower --max_length",
        )
    logger.info(
        "%d notes -> %d blocks of %d tokens (original stream, remainder dropped)",
        len(texts),
        len(blocks),
        block_size,
    )
    return Dataset.from_dict({"input_ids": blocks})
