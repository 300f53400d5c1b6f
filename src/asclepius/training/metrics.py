"""Held-out measurements that say whether a training stage taught the model anything.

* :func:`note_perplexity`: perplexity of notes the model never trained on; continued
  pretraining should lower it.
* :func:`answer_loss`: mean negative log-likelihood of held-out answers (and their EOS)
  given the published prompt; instruction tuning should lower it.

Both are token-weighted over the whole held-out set (total NLL / total scored tokens),
tokenize exactly as training does, and work on any causal LM loaded on one device, so
the evaluation stage and the demo can call them on any checkpoint.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from asclepius.prompts import DEFAULT_PROMPT_FORMAT, render_training_prompt, training_completion
from asclepius.stage.files import atomic_write_text, work_dir
from asclepius.training.formatting import tokenize_prompt_completion

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
IGNORE_INDEX = -100


@torch.no_grad()
def mean_nll(
    model,
    examples: Sequence[dict[str, list[int]]],
    *,
    pad_token_id: int,
    max_batch_tokens: int = 8192,
) -> tuple[float, int]:
    """Token-weighted mean NLL of the labelled tokens (``labels`` != -100) of tokenized examples.

    Examples are sorted by length and batched up to ``max_batch_tokens`` padded tokens,
    which bounds the memory of the logits on long notes and large vocabularies.
    Returns (mean NLL in nats, number of scored tokens).
    """
    was_training = model.training
    model.eval()
    device = model.device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    total_nll, total_tokens = 0.0, 0
    batch: list[dict[str, list[int]]] = []

    def score(batch: list[dict[str, list[int]]]) -> None:
        nonlocal total_nll, total_tokens
        width = max(len(example["input_ids"]) for example in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, example in enumerate(batch):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.tensor(example["input_ids"])
            labels[row, :length] = torch.tensor(example["labels"])
            attention_mask[row, :length] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        # Token t is predicted from the tokens before it: compare logits[:, :-1] with labels[:, 1:].
        targets = labels[:, 1:].to(logits.device)
        nll = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total_nll += nll.item()
        total_tokens += int((targets != IGNORE_INDEX).sum())

    for index in order:
        example = examples[index]
        width = max([len(example["input_ids"])] + [len(e["input_ids"]) for e in batch])
        if batch and width * (len(batch) + 1) > max_batch_tokens:
            score(batch)
            batch = []
        batch.append(example)
    if batch:
        score(batch)
    model.train(was_training)
    if total_tokens == 0:
        raise ValueError("nothing to score: every example has all its labels masked")
    return total_nll / total_tokens, total_tokens


def note_examples(
    tokenizer, notes: Sequence[str], max_length: int | None = None
) -> list[dict[str, list[int]]]:
    """Each note tokenized as continued pretraining sees it (BOS if the tokenizer adds one, text, EOS)."""
    examples = []
    for note in notes:
        ids = tokenizer(note + tokenizer.eos_token)["input_ids"][:max_length]
        examples.append({"input_ids": ids, "labels": list(ids)})
    return examples


def answer_examples(
    tokenizer,
    notes: Sequence[str],
    questions: Sequence[str],
    answers: Sequence[str],
    max_length: int | None = None,
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
) -> list[dict[str, list[int]]]:
    """Prompt + answer + EOS, labelled on the answer and EOS only, as instruction tuning sees them
    (in the training's ``prompt_format``).

    Like training, a sequence keeps its first ``max_length`` tokens; a row whose answer
    falls entirely past the cut has nothing to score and is skipped.
    """
    examples = []
    for note, question, answer in zip(notes, questions, answers, strict=True):
        prompt = render_training_prompt(note, question, prompt_format)
        tokens = tokenize_prompt_completion(tokenizer, prompt, training_completion(answer, prompt_format))
        ids, mask = tokens["input_ids"][:max_length], tokens["completion_mask"][:max_length]
        if any(mask):
            examples.append(
                {"input_ids": ids, "labels": [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]}
            )
    return examples


def note_perplexity(
    model, tokenizer, notes: Sequence[str], *, max_length: int | None = None, max_batch_tokens: int = 8192
) -> float:
    """Perplexity of ``notes`` (exp of the token-weighted mean NLL, EOS included)."""
    nll, _ = mean_nll(
        model,
        note_examples(tokenizer, notes, max_length),
        pad_token_id=tokenizer.pad_token_id,
        max_batch_tokens=max_batch_tokens,
    )
    return math.exp(nll)


def answer_loss(
    model,
    tokenizer,
    notes: Sequence[str],
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    max_length: int | None = None,
    max_batch_tokens: int = 8192,
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
) -> float:
    """Mean NLL (nats per token) of the answers and their EOS given the prompt the model was trained on."""
    nll, _ = mean_nll(
        model,
        answer_examples(tokenizer, notes, questions, answers, max_length, prompt_format),
        pad_token_id=tokenizer.pad_token_id,
        max_batch_tokens=max_batch_tokens,
    )
    return nll


def load_model_for_eval(name_or_path: str, **model_kwargs: Any):
    """A model (or base + LoRA adapter) for scoring, on the GPU when there is one."""
    from transformers import AutoModelForCausalLM

    if model_kwargs.get("device_map") is None:
        model_kwargs["device_map"] = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(model_kwargs.get("dtype"), str) and model_kwargs["dtype"] != "auto":
        model_kwargs["dtype"] = getattr(torch, model_kwargs["dtype"])
    if (Path(name_or_path) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(name_or_path, **model_kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **model_kwargs)
    return model.eval()


def compare_models(
    score,
    before: str,
    after: str,
    *,
    model_kwargs: dict[str, Any],
) -> tuple[float, float]:
    """``score(model)`` for the model at ``before`` and then at ``after``, one loaded at a time."""
    values = []
    for name_or_path in (before, after):
        model = load_model_for_eval(name_or_path, **dict(model_kwargs))
        values.append(score(model))
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return values[0], values[1]


def read_metrics(output_dir: str | Path) -> dict[str, Any]:
    path = work_dir(output_dir) / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def update_metrics(output_dir: str | Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``.asclepius/metrics.json`` and return the whole record."""
    metrics = {**read_metrics(output_dir), **values}
    atomic_write_text(
        work_dir(output_dir) / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    return metrics


def note_perplexity_signal(
    before: str,
    after: str,
    tokenizer,
    notes: Sequence[str],
    *,
    max_length: int | None,
    model_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Held-out note perplexity of the starting model and of the trained one (continued pretraining)."""
    before_value, after_value = compare_models(
        lambda model: note_perplexity(model, tokenizer, notes, max_length=max_length),
        before,
        after,
        model_kwargs=model_kwargs,
    )
    return {
        "heldout_note_perplexity_before": before_value,
        "heldout_note_perplexity_after": after_value,
        "heldout_note_perplexity_reduction": 1.0 - after_value / before_value,
        "heldout_notes": len(notes),
    }


def answer_loss_signal(
    before: str,
    after: str,
    tokenizer,
    rows: dict[str, Sequence[str]],
    *,
    max_length: int | None,
    model_kwargs: dict[str, Any],
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
) -> dict[str, Any]:
    """Held-out answer loss of the starting model and of the tuned one (instruction tuning).

    ``rows`` has ``note``, ``question`` and ``answer`` lists.
    """
    before_value, after_value = compare_models(
        lambda model: answer_loss(
            model,
            tokenizer,
            rows["note"],
            rows["question"],
            rows["answer"],
            max_length=max_length,
            prompt_format=prompt_format,
        ),
        before,
        after,
        model_kwargs=model_kwargs,
    )
    return {
        "heldout_answer_loss_before": before_value,
        "heldout_answer_loss_after": after_value,
        "heldout_answer_loss_reduction": 1.0 - after_value / before_value,
        "heldout_rows": len(rows["answer"]),
    }
