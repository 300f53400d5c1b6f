"""Answers for an evaluation set: batched local generation, or an API through the engine.

The original evaluation decoded one sample at a time with 5-beam sampling. Here a local
model answers in batches: prompts sorted by length (little padding), left padding (the
answer of every row starts at the same position), the KV cache on. Greedy decoding is
the default; the paper's setting stays one flag away (``--decoding paper``, which pins
5-beam sampling at temperature 1 and 400 new tokens whatever the checkpoint's
generation config says).

A prompt longer than the budget is cut in the note, never in the instruction: the
template, the question and the answer cue are always kept (:func:`prompting.fit_note`),
and how often and how much was cut is recorded in the folder's provenance.

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

from asclepius.engine.request import estimate_request_tokens
from asclepius.errors import InputError
from asclepius.evaluation.config import DEFAULT_MAX_NEW_TOKENS, GenerateArguments
from asclepius.evaluation.prompting import (
    TruncationLog,
    api_request,
    fit_note,
    render_prompt,
    renders_special_tokens,
    style_for_model,
)
from asclepius.stage.files import atomic_write_text

logger = logging.getLogger(__name__)

# (do_sample, num_beams) of each --decoding choice.
DECODING_PRESETS = {
    "greedy": (False, 1),
    "paper": (True, 5),  # the original evaluation: beam search with sampling, 400 new tokens
    "sample": (True, 1),
}
# What --decoding paper pins, whatever the flags or the checkpoint's generation config say:
# the original evaluation's settings (5 beams with sampling, temperature 1, 400 new tokens, and
# the generation default early_stopping=False: beam search runs until no beam can improve).
PAPER_DECODING = {"do_sample": True, "num_beams": 5, "temperature": 1.0, "max_new_tokens": 400}
PAPER_ONLY = {"early_stopping": False, "cut_long_prompts": False}


@dataclass(frozen=True)
class Decoding:
    do_sample: bool
    num_beams: int
    max_new_tokens: int
    temperature: float | None = None  # None: the model's generation_config (sampling only)
    top_p: float | None = None
    seed: int = 0
    # None: ours, stop a beam search as soon as every beam is done (True); paper: False.
    early_stopping: bool | None = None
    # True: an over-long prompt has the end of its note cut; False (paper): it is an error naming the row.
    cut_long_prompts: bool = True

    @classmethod
    def from_arguments(
        cls, args: GenerateArguments, *, max_tokens: int | None = None, temperature: float | None = None
    ) -> Decoding:
        do_sample, num_beams = DECODING_PRESETS[args.decoding]
        if args.decoding == "paper":
            return cls.paper(
                seed=args.seed, num_beams=args.num_beams, max_new_tokens=max_tokens, temperature=temperature
            )
        return cls(
            do_sample=do_sample,
            num_beams=args.num_beams or num_beams,
            max_new_tokens=max_tokens or DEFAULT_MAX_NEW_TOKENS,
            temperature=temperature if do_sample else None,
            top_p=args.top_p if do_sample else None,
            seed=args.seed,
        )

    @classmethod
    def paper(
        cls,
        *,
        seed: int = 0,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Decoding:
        """The original evaluation's decoding; other values given for it are overridden, with a warning."""
        given = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "temperature": temperature}
        for name, value in given.items():
            if value is not None and value != PAPER_DECODING[name]:
                logger.warning(
                    "--decoding paper pins %s=%s; the %s given is ignored", name, PAPER_DECODING[name], value
                )
        return cls(**PAPER_DECODING, **PAPER_ONLY, top_p=None, seed=seed)

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
        subfolder: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        # "asclepius" becomes the bytes the model's card says it was trained on.
        self.prompt_style = style_for_model(prompt_style, self.model_path)
        self.subfolder = subfolder or ""
        self.decoding = decoding or Decoding(
            do_sample=False, num_beams=1, max_new_tokens=DEFAULT_MAX_NEW_TOKENS
        )
        self.cache_implementation = cache_implementation
        self.device = pick_device(device)
        # Left padding: in a batch every prompt then ends at the same column and the new
        # tokens of all rows line up after it.
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, padding_side="left", subfolder=self.subfolder
        )
        if self.tokenizer.pad_token is None:
            # Padding is masked out, so any token works; EOS is what most causal LMs use.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=pick_dtype(dtype, self.device), subfolder=self.subfolder, **extra
        ).to(self.device)
        self.model.eval()
        context = getattr(self.model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = max_prompt_tokens or (
            context - self.decoding.max_new_tokens if context else None
        )
        self.generation_config = self._generation_config()
        self.truncation = TruncationLog()  # prompts whose note had to be cut to fit the context

    @property
    def truncated(self) -> int:
        return self.truncation.prompts_cut

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
        # Beam search stops when every beam is done (ours); paper: the generation default, False.
        if d.early_stopping is not None:
            config.early_stopping = d.early_stopping
        elif d.num_beams > 1:
            config.early_stopping = True
        return config

    # --- prompts ---------------------------------------------------------------------
    def prompt(self, note: str, question: str) -> str:
        return render_prompt(self.prompt_style, note, question, self.tokenizer)

    def encode(self, note: str, question: str, *, row: int | None = None) -> list[int]:
        """Token ids of the prompt; a note too long for the budget is cut at its end, nothing else.

        Under ``--decoding paper`` nothing is cut (the original did not cut): a prompt over the
        budget is a one-line error naming its row (1-based).
        """
        special = not renders_special_tokens(self.prompt_style)

        def ids_of(note_text: str) -> list[int]:
            return self.tokenizer(self.prompt(note_text, question), add_special_tokens=special)["input_ids"]

        ids = ids_of(note)
        limit = self.max_prompt_tokens
        if limit is None or len(ids) <= limit:
            return ids
        if not self.decoding.cut_long_prompts:
            raise InputError(
                "evaluation set",
                f"the prompt is {len(ids)} tokens, over the {limit}-token budget of {self.model_path} (its context "
                f"minus {self.decoding.max_new_tokens} new tokens); --decoding paper does not cut prompts: drop "
                "the row or use --decoding greedy (which cuts the note)",
                row=None if row is None else row + 1,
                field="note",
            )
        # Cut in the note's own tokens and re-render: the header, question and answer cue stay whole.
        note_ids = self.tokenizer(note, add_special_tokens=False)["input_ids"]
        cut_note, tokens_cut = fit_note(
            note_ids,
            lambda units: self.tokenizer.decode(units),
            lambda text: len(ids_of(text)),
            limit,
            what=f"prompt for {self.model_path}",
        )
        self.truncation.record(tokens_cut)
        return ids_of(cut_note)

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
        before = self.truncation.as_dict()
        encoded = {i: self.encode(notes[i], questions[i], row=i) for i in todo}
        todo.sort(key=lambda i: (-len(encoded[i]), i))
        if self.truncation.prompts_cut > before["prompts_cut"]:
            logger.warning(
                "%d prompts were longer than %d tokens: the end of their notes was cut (%d note tokens in all)",
                self.truncation.prompts_cut - before["prompts_cut"],
                self.max_prompt_tokens,
                self.truncation.note_tokens_cut - before["note_tokens_cut"],
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
    model_path: str,
    prompt_style: str,
    decoding: Decoding,
    max_prompt_tokens: int | None,
    subfolder: str | None = None,
) -> str:
    """What determines the answers: shards made with other settings are never reused."""
    model = str(Path(model_path).resolve()) if Path(model_path).exists() else model_path
    # Fields at their defaults are left out, so shards made before a field existed still match.
    settings = {
        name: value
        for name, value in asdict(decoding).items()
        if name not in _LATER_FIELDS or value != _LATER_FIELDS[name]
    }
    payload = {
        "model": model,
        "prompt_style": prompt_style,
        "decoding": settings,
        "max_prompt_tokens": max_prompt_tokens,
        **({"subfolder": subfolder} if subfolder else {}),  # absent when unused: older shards still match
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


_LATER_FIELDS = {
    "early_stopping": None,
    "cut_long_prompts": True,
}  # Decoding fields added later, their defaults


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
    max_prompt_tokens: int | None = None,
    truncation: TruncationLog | None = None,
):
    """Answers from an OpenAI-compatible endpoint; returns (answers or None, errors, summary).

    A raw prompt style is sent to ``/v1/completions`` in its exact bytes (no chat template,
    so a model without one works too); ``chat_template`` to ``/v1/chat/completions``.
    A permanently failed row (content filter, HTTP 400...) gets ``None`` and its reason;
    the judge counts it as a model without an answer for that item. With
    ``max_prompt_tokens``, a longer prompt (by the engine's tokenizer-free estimate) has
    its note cut to fit, counted in ``truncation``; under ``--decoding paper`` nothing is cut: a
    longer prompt is a one-line error naming its row, before anything is sent.
    """
    from asclepius.engine import Engine, run_requests

    if max_prompt_tokens is not None and not decoding.cut_long_prompts:
        for index, (note, question) in enumerate(zip(notes, questions)):
            size = estimate_request_tokens(api_request(prompt_style, note, question))
            if size > max_prompt_tokens:
                raise InputError(
                    "evaluation set",
                    f"the prompt is about {size} tokens, over --max_prompt_tokens {max_prompt_tokens}; --decoding "
                    "paper does not cut prompts: drop the row or use --decoding greedy (which cuts the note)",
                    row=index + 1,
                    field="note",
                )

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

    truncation = truncation if truncation is not None else TruncationLog()

    def requests():
        for index, (note, question) in enumerate(zip(notes, questions)):
            yield fit_api_request(prompt_style, note, question, max_prompt_tokens, truncation, index=index)

    def on_result(result) -> None:
        index = result.request.metadata["index"]
        if result.ok:
            answers[index] = (result.content or "").strip()
        else:
            errors[index] = result.error

    summary = run_requests(engine, requests(), on_result, total=len(notes))
    if truncation.prompts_cut:
        logger.warning(
            "%d prompts were over the %d-token budget: the end of their notes was cut (~%d tokens in all)",
            truncation.prompts_cut,
            max_prompt_tokens,
            truncation.note_tokens_cut,
        )
    return answers, errors, summary


def fit_api_request(
    prompt_style: str,
    note: str,
    question: str,
    max_prompt_tokens: int | None,
    truncation: TruncationLog,
    *,
    index: int | None = None,
):
    """The request for one row (raw or chat by style), the note cut (by characters) so the estimate fits."""
    metadata = {"index": index}
    request = api_request(prompt_style, note, question, metadata=metadata)
    if max_prompt_tokens is None or estimate_request_tokens(request) <= max_prompt_tokens:
        return request
    cut_note, characters_cut = fit_note(
        list(note),
        "".join,
        lambda text: estimate_request_tokens(api_request(prompt_style, text, question)),
        max_prompt_tokens,
        what="prompt for the endpoint",
    )
    # Recorded in estimated tokens (about 4 characters each), like the budget.
    truncation.record(-(-characters_cut // 4))
    return api_request(prompt_style, cut_note, question, metadata=metadata)
