"""Answers for an evaluation set: batched local generation, or an API through the engine.

The original evaluation decoded one sample at a time with 5-beam sampling. Here a local
model answers in batches: prompts sorted by length (little padding), left padding (the
answer of every row starts at the same position), the KV cache on. Greedy decoding is
the default; the paper's setting stays one flag away (``--decoding paper``).

Both backends resume: the local one writes every finished batch to a shard file in the
output's working folder and skips those rows on a rerun; the API one has the engine's
ledger.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from asclepius.evaluation.config import DEFAULT_MAX_NEW_TOKENS, EvaluationArguments
from asclepius.evaluation.prompting import api_messages, render_prompt, renders_special_tokens
from asclepius.hub import atomic_write_text

logger = logging.getLogger(__name__)

# (do_sample, num_beams) of each --decoding choice.
DECODING_PRESETS = {
    "greedy": (False, 1),
    "paper": (True, 5),  # the original evaluation: beam search with sampling, 400 new tokens
    "sample": (True, 1),
}
# Kept free under the context limit when a prompt is cut: re-tokenizing a cut note can
# merge or split a token or two at the cut.
_TRUNCATION_MARGIN = 8


@dataclass(frozen=True)
class Decoding:
    do_sample: bool
    num_beams: int
    max_new_tokens: int
    temperature: float | None = None  # None: the model's generation_config (sampling only)
    top_p: float | None = None
    seed: int = 0

    @classmethod
    def from_arguments(
        cls, args: EvaluationArguments, *, max_tokens: int | None = None, temperature: float | None = None
    ) -> Decoding:
        do_sample, num_beams = DECODING_PRESETS[args.decoding]
        return cls(
            do_sample=do_sample,
            num_beams=args.num_beams or num_beams,
            max_new_tokens=max_tokens or DEFAULT_MAX_NEW_TOKENS,
            temperature=temperature if do_sample else None,
            top_p=args.top_p if do_sample else None,
            seed=args.seed,
        )

    def api_temperature(self) -> float:
        """Endpoints have no beams: greedy is temperature 0, sampling the given (or 1.0)."""
        if not self.do_sample:
            return 0.0
        return 1.0 if self.temperature is None else self.temperature


def row_key(note: str, question: str) -> str:
    """Identity of an evaluation item: the same (note, question) is the same item in every folder."""
    return hashlib.sha256(f"{note}\x1e{question}".encode()).hexdigest()[:16]


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class LocalGenerator:
    """A transformers model and tokenizer that answer (note, question) pairs in a prompt style."""

    def __init__(
        self,
        model_path: str,
        *,
        prompt_style: str = "asclepius",
        decoding: Decoding | None = None,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        max_prompt_tokens: int | None = None,
        cache_implementation: str | None = "static",
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.prompt_style = prompt_style
        self.decoding = decoding or Decoding(
            do_sample=False, num_beams=1, max_new_tokens=DEFAULT_MAX_NEW_TOKENS
        )
        self.cache_implementation = cache_implementation
        self.device = pick_device(device)
        # Left padding: in a batch every prompt then ends at the same column and the new
        # tokens of all rows line up after it.
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            # Padding is masked out, so any token works; EOS is what most causal LMs use.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=pick_dtype(dtype, self.device), **extra
        ).to(self.device)
        self.model.eval()
        context = getattr(self.model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = max_prompt_tokens or (
            context - self.decoding.max_new_tokens if context else None
        )
        self.generation_config = self._generation_config()
        self.truncated = 0  # prompts whose note had to be cut to fit the context

    def _generation_config(self):
        config = copy.deepcopy(self.model.generation_config)
        d = self.decoding
        config.do_sample, config.num_beams, config.max_new_tokens = d.do_sample, d.num_beams, d.max_new_tokens
        config.num_return_sequences = 1
        config.use_cache = True
        # A static cache is preallocated for prompt + answer: no copying as answers grow.
        # "dynamic" is transformers' own default: then the checkpoint's setting is left alone.
        if self.cache_implementation and self.cache_implementation != "dynamic":
            config.cache_implementation = self.cache_implementation
        config.pad_token_id = self.tokenizer.pad_token_id
        if config.eos_token_id is None:
            config.eos_token_id = self.tokenizer.eos_token_id
        if d.do_sample:
            if d.temperature is not None:
                config.temperature = d.temperature
            if d.top_p is not None:
                config.top_p = d.top_p
        else:
            # A checkpoint's sampling defaults (Llama-2: 0.6 / 0.9) mean nothing to greedy search.
            config.temperature, config.top_p, config.top_k = None, None, None
        # Beam search stops when every beam is done, like the original evaluation.
        config.early_stopping = True if d.num_beams > 1 else config.early_stopping
        return config

    # --- prompts ---------------------------------------------------------------------
    def prompt(self, note: str, question: str) -> str:
        return render_prompt(self.prompt_style, note, question, self.tokenizer)

    def encode(self, note: str, question: str) -> list[int]:
        """Token ids of the prompt; a note too long for the context is cut at its end."""
        special = not renders_special_tokens(self.prompt_style)
        ids = self.tokenizer(self.prompt(note, question), add_special_tokens=special)["input_ids"]
        limit = self.max_prompt_tokens
        if limit is None or len(ids) <= limit:
            return ids
        note_ids = self.tokenizer(note, add_special_tokens=False)["input_ids"]
        for _ in range(3):  # re-tokenizing the cut note rarely changes the count; retry if it does
            keep = max(0, len(note_ids) - (len(ids) - limit) - _TRUNCATION_MARGIN)
            note_ids = note_ids[:keep]
            cut_note = self.tokenizer.decode(note_ids)
            ids = self.tokenizer(self.prompt(cut_note, question), add_special_tokens=special)["input_ids"]
            if len(ids) <= limit:
                break
        self.truncated += 1
        return ids[-limit:]

    # --- generation ------------------------------------------------------------------
    def generate_ids(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """Answer a batch of tokenized prompts; returns the decoded new text of each."""
        import torch

        padded = self.tokenizer.pad(
            {"input_ids": [list(ids) for ids in batch]}, padding=True, return_tensors="pt"
        )
        input_ids = padded["input_ids"].to(self.device)
        attention_mask = padded["attention_mask"].to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=self.generation_config
            )
        new_tokens = output[:, input_ids.shape[1] :]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def answer(self, note: str, question: str) -> str:
        return self.generate_ids([self.encode(note, question)])[0]

    def answer_all(
        self,
        notes: Sequence[str],
        questions: Sequence[str],
        *,
        batch_size: int,
        done: dict[int, str] | None = None,
        on_batch: Callable[[list[int], list[str]], None] | None = None,
        show_progress: bool = True,
    ) -> list[str]:
        """Answers for every row, in row order; rows in ``done`` are not generated again.

        Prompts are sorted longest first: rows of similar length share a batch (little
        padding), and an out-of-memory error shows up in the first batch, not the last.
        ``on_batch(indices, answers)`` runs after each batch (the resume shards).
        """
        from tqdm.auto import tqdm
        from transformers import set_seed

        answers: list[str | None] = [None] * len(notes)
        for index, text in (done or {}).items():
            answers[index] = text
        todo = [i for i in range(len(notes)) if answers[i] is None]
        truncated_before = self.truncated
        encoded = {i: self.encode(notes[i], questions[i]) for i in todo}
        todo.sort(key=lambda i: (-len(encoded[i]), i))
        if self.truncated > truncated_before:
            logger.warning(
                "%d prompts were longer than %d tokens: the end of their notes was cut",
                self.truncated - truncated_before,
                self.max_prompt_tokens,
            )
        bar = tqdm(total=len(todo), desc="generating", unit="answer", disable=not show_progress)
        for start in range(0, len(todo), batch_size):
            indices = todo[start : start + batch_size]
            # Seeded per batch from its first row, so a sampled batch is reproducible on rerun.
            set_seed(self.decoding.seed + min(indices))
            texts = self.generate_ids([encoded[i] for i in indices])
            for index, text in zip(indices, texts):
                answers[index] = text
            if on_batch is not None:
                on_batch(indices, texts)
            bar.update(len(indices))
        bar.close()
        return answers  # type: ignore[return-value]


# --- resume shards (local backend) ------------------------------------------------------
def generation_fingerprint(
    model_path: str, prompt_style: str, decoding: Decoding, max_prompt_tokens: int | None
) -> str:
    """What determines the answers: shards made with other settings are never reused."""
    model = str(Path(model_path).resolve()) if Path(model_path).exists() else model_path
    payload = {
        "model": model,
        "prompt_style": prompt_style,
        "decoding": asdict(decoding),
        "max_prompt_tokens": max_prompt_tokens,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class ShardStore:
    """Finished batches as JSONL files: ``{"index", "key", "generated"}`` per row.

    The item key is stored with each answer, so a shard is only reused for the row it
    was made for, even if the evaluation set changed between runs.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def load(self, keys: Sequence[str]) -> dict[int, str]:
        done: dict[int, str] = {}
        for shard in sorted(self.folder.glob("batch-*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                index = record["index"]
                if 0 <= index < len(keys) and keys[index] == record["key"]:
                    done[index] = record["generated"]
        return done

    def write(self, indices: Sequence[int], keys: Sequence[str], answers: Sequence[str]) -> Path:
        # Named by the batch's smallest row: a later batch never holds a finished row, so no clash.
        path = self.folder / f"batch-{min(indices):08d}.jsonl"
        lines = [
            json.dumps({"index": i, "key": keys[i], "generated": text}, ensure_ascii=False)
            for i, text in zip(indices, answers)
        ]
        atomic_write_text(path, "\n".join(lines) + "\n")
        return path


def generate_local(
    generator: LocalGenerator,
    notes: Sequence[str],
    questions: Sequence[str],
    *,
    shard_dir: str | os.PathLike,
    batch_size: int,
    show_progress: bool = True,
) -> tuple[list[str], int]:
    """Answers for all rows, resuming from ``shard_dir``; returns (answers, rows reused)."""
    keys = [row_key(n, q) for n, q in zip(notes, questions)]
    store = ShardStore(shard_dir)
    done = store.load(keys)
    if done:
        logger.info("resuming: %d of %d answers already in %s", len(done), len(keys), shard_dir)
    answers = generator.answer_all(
        notes,
        questions,
        batch_size=batch_size,
        done=done,
        on_batch=lambda indices, texts: store.write(indices, keys, texts),
        show_progress=show_progress,
    )
    return answers, len(done)


# --- API backend ----------------------------------------------------------------------
def generate_api(
    engine_args,
    notes: Sequence[str],
    questions: Sequence[str],
    *,
    prompt_style: str,
    decoding: Decoding,
    ledger_path: str | os.PathLike,
):
    """Answers from an OpenAI-compatible endpoint; returns (answers or None, errors, summary).

    A permanently failed row (content filter, HTTP 400...) gets ``None`` and its reason;
    the judge counts it as a model without an answer for that item.
    """
    from asclepius.engine import Engine, Request, run_requests

    if decoding.num_beams > 1 or decoding.top_p is not None:
        logger.warning(
            "endpoints are called with temperature and max_tokens only: beams (%d) and top_p are not sent",
            decoding.num_beams,
        )
    engine = Engine(
        engine_args,
        ledger_path,
        default_temperature=decoding.api_temperature(),
        default_max_tokens=decoding.max_new_tokens,
        description="answers",
    )
    answers: list[str | None] = [None] * len(notes)
    errors: list[str | None] = [None] * len(notes)

    def requests():
        for index, (note, question) in enumerate(zip(notes, questions)):
            yield Request(messages=api_messages(prompt_style, note, question), metadata={"index": index})

    def on_result(result) -> None:
        index = result.request.metadata["index"]
        if result.ok:
            answers[index] = (result.content or "").strip()
        else:
            errors[index] = result.error

    summary = run_requests(engine, requests(), on_result, total=len(notes))
    return answers, errors, summary
