"""The paper's perplexity analysis: how natural each corpus reads to each model.

The paper scored real notes, synthetic notes and raw case reports with a model tuned on
real notes: synthetic notes came out close to real ones, case reports far off. Here any
models score any corpora. Perplexity is token-level: exp(total negative log-likelihood /
total scored tokens) over a corpus, so long documents weigh by their tokens. A document
longer than the window is scored with a sliding window: each window moves ``stride``
tokens and scores only the tokens the previous one did not, each with up to
``window - stride`` tokens of context. The 95% interval is a percentile bootstrap over
documents (the unit sampled), reproducible from its seed.

Token perplexity counts in the model's own tokens, so models with different tokenizers
are not comparable by it (a tokenizer with longer tokens pays more per token). Beside it,
bits per byte: the same negative log-likelihood in bits, over the UTF-8 bytes of the
scored text, which any two models share; the report says when the tokenizers differ.

Windows of all documents are sorted by length and scored in batches; each finished
(model, corpus) pair is saved in the output folder's working state, so a rerun scores
only the pairs it lacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asclepius.errors import InputError
from asclepius.offline import offline_unless_hub_reachable_for
from asclepius.stage.files import atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_MAX_WINDOW = 2048


@dataclass
class PerplexityArguments:
    models: list[str] | None = field(
        default=None,
        metadata={
            "help": "Models to score with: local folders or Hub ids (cached; nothing downloads).",
            "nargs": "+",
        },
    )
    corpora: list[str] | None = field(
        default=None,
        metadata={
            "help": "Corpora: notes folders, files or dataset ids, each PATH or NAME=PATH (NAME labels the row).",
            "nargs": "+",
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder of results.json, report.md, plot."}
    )
    text_column: str | None = field(
        default=None,
        metadata={"help": "Text column of every corpus (default: note, text, TEXT, case_report...)."},
    )
    split: str = field(default="train", metadata={"help": "Split of each corpus."})
    max_documents: int | None = field(default=None, metadata={"help": "Score only the first N documents."})
    window: int | None = field(
        default=None,
        metadata={"help": f"Tokens per window (default: the model's context, at most {DEFAULT_MAX_WINDOW})."},
    )
    stride: int | None = field(
        default=None, metadata={"help": "Tokens the window moves (default: half a window)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples of documents."})
    bootstrap_seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    device: str = field(default="auto", metadata={"help": "auto (cuda, then mps, then cpu), cuda, cpu, ..."})
    dtype: str = field(
        default="auto", metadata={"help": "auto (bfloat16 on a GPU that has it, else float32)."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Rescore every pair and rewrite a finished folder."}
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "bootstrap_samples", "max_documents", "window", "stride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ValueError(f"--stride ({self.stride}) must not exceed --window ({self.window})")

    def check_required(self) -> None:
        for name in ("models", "corpora", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"--{name}", "required")

    def named_corpora(self) -> dict[str, str]:
        """NAME -> path; a bare PATH is named after its folder or file."""
        named: dict[str, str] = {}
        for entry in self.corpora or []:
            name, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
            name = name or Path(path.rstrip("/")).name
            if name in named:
                raise InputError("--corpora", f"two corpora are named {name!r}; name them as NAME=PATH")
            named[name] = path
        return named


def sliding_windows(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, scored) per window over ``length`` tokens: the last ``scored`` tokens of each are new.

    The first token of a document has no context, so the first window scores one less
    than it holds; every other token is scored exactly once.
    """
    spans, previous_end, begin = [], 0, 0
    while previous_end < length:
        end = min(begin + window, length)
        spans.append((begin, end, min(end - previous_end, end - begin - 1)))
        previous_end = end
        begin += stride
    return [span for span in spans if span[2] > 0]


@dataclass
class CorpusScore:
    """Per document: summed negative log-likelihood (nats), scored tokens, and their UTF-8 bytes."""

    nll: list[float]
    tokens: list[int]
    bytes: list[int] = field(default_factory=list)

    def perplexity(self) -> float:
        total = sum(self.tokens)
        return math.exp(sum(self.nll) / total) if total else float("nan")

    def bits_per_byte(self) -> float:
        total = sum(self.bytes)
        return sum(self.nll) / (math.log(2) * total) if total else float("nan")

    def bootstrap(self, *, samples: int, seed: int, per_byte: bool = False) -> tuple[float, float]:
        """95% percentile interval of the corpus perplexity (or bits per byte), resampling documents."""
        nll = np.asarray(self.nll)
        units = np.asarray(self.bytes if per_byte else self.tokens, dtype=float)
        if nll.size == 0 or units.size != nll.size or units.sum() == 0:
            return float("nan"), float("nan")
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, nll.size, size=(samples, nll.size))
        per_unit = nll[picks].sum(axis=1) / np.maximum(units[picks].sum(axis=1), 1)
        values = per_unit / math.log(2) if per_byte else np.exp(per_unit)
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)


def scored_bytes(tokenizer, text: str, ids: list[int]) -> int:
    """UTF-8 bytes of what is scored: the text, less its first token when that token is text (not BOS).

    The first token has no context and is never scored (see :func:`sliding_windows`).
    """
    if not ids:
        return 0
    total = len(text.encode("utf-8"))
    if ids[0] in set(tokenizer.all_special_ids):
        return total
    return max(0, total - len(tokenizer.decode(ids[:1]).encode("utf-8")))


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the vocabulary (token -> id): two models with the same one count the same tokens."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def score_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    window: int,
    stride: int,
    batch_size: int,
    progress: str | None = None,
) -> CorpusScore:
    """Token-level negative log-likelihood of every text, sliding windows scored in length-sorted batches."""
    import torch
    from tqdm.auto import tqdm

    encoded = [tokenizer(text)["input_ids"] for text in texts]
    work = [
        (doc, ids[begin:end], scored)
        for doc, ids in enumerate(encoded)
        for begin, end, scored in sliding_windows(len(ids), window, stride)
    ]
    work.sort(key=lambda item: -len(item[1]))  # similar lengths together: little padding
    nll, tokens = [0.0] * len(texts), [0] * len(texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    batches = [work[i : i + batch_size] for i in range(0, len(work), batch_size)]
    for batch in tqdm(batches, desc=progress, disable=progress is None, unit="batch"):
        width = max(len(ids) for _, ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), input_ids[:, 1:].to(device), reduction="none"
        ).cpu()
        for row, (doc, ids, scored) in enumerate(batch):
            # Position t predicts token t+1: the window's last ``scored`` tokens are ids[-scored:].
            nll[doc] += float(losses[row, len(ids) - 1 - scored : len(ids) - 1].sum())
            tokens[doc] += scored
    sizes = [scored_bytes(tokenizer, text, ids) for text, ids in zip(texts, encoded)]
    return CorpusScore(nll=nll, tokens=tokens, bytes=sizes)


def model_window(model, window: int | None, stride: int | None) -> tuple[int, int]:
    """The window (the model's context, capped) and stride actually used."""
    context = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_WINDOW
    chosen = window or min(context, DEFAULT_MAX_WINDOW)
    if chosen > context:
        raise InputError("--window", f"{chosen} tokens exceed the model's context of {context}")
    chosen_stride = stride or max(1, chosen // 2)
    if chosen_stride > chosen:
        raise InputError("--stride", f"{chosen_stride} exceeds the window of {chosen}")
    return chosen, chosen_stride


def pair_key(model: str, corpus_path: str, settings: dict[str, Any]) -> str:
    """Name of a (model, corpus) result in the working state: a rerun with other settings rescores."""
    text = json.dumps(
        {"model": model, "corpus": str(Path(corpus_path).resolve()), **settings}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pair_path(store: Path, model: str, corpus_path: str, args: PerplexityArguments) -> Path:
    """Where a finished (model, corpus) result is kept in the folder's working state."""
    settings = dict(window=args.window, stride=args.stride, text_column=args.text_column, split=args.split,
                    max_documents=args.max_documents, samples=args.bootstrap_samples, seed=args.bootstrap_seed,
                    measures="bits_per_byte")  # fmt: skip
    return store / f"{pair_key(model, corpus_path, settings)}.json"


def check_models(args: PerplexityArguments, corpora: dict[str, str], store: Path) -> None:
    """Every model that still has a pair to score exists (before any corpus is read or model loaded).

    A Hub id with the Hub unreachable turns the process offline first: the cache answers at once
    instead of after minutes of retries per file."""
    offline_unless_hub_reachable_for(*args.models, *corpora.values())
    for model in args.models:
        todo = args.overwrite or any(
            not pair_path(store, model, path, args).exists() for path in corpora.values()
        )
        if todo and model.startswith((".", "/")) and not Path(model).is_dir():
            raise InputError(model, "no such model folder")


def score_pairs(
    args: PerplexityArguments, corpora: dict[str, str], texts: dict[str, list[str]], store: Path
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Every (model, corpus) result, one model loaded at a time; pairs already kept are read back."""
    pairs, windows = [], {}
    store.mkdir(parents=True, exist_ok=True)
    for model_name in args.models:
        model, tokenizer = None, None
        for corpus, path in corpora.items():
            saved = pair_path(store, model_name, path, args)
            if saved.exists() and not args.overwrite:
                result = json.loads(saved.read_text(encoding="utf-8"))
            else:
                if model is None:
                    model, tokenizer = load_scoring_model(model_name, device=args.device, dtype=args.dtype)
                window, stride = model_window(model, args.window, args.stride)
                score = score_texts(model, tokenizer, texts[corpus], window=window, stride=stride,
                                    batch_size=args.batch_size, progress=f"{model_name} on {corpus}")  # fmt: skip
                result = pair_result(model_name, corpus, score, window=window, stride=stride,
                                     samples=args.bootstrap_samples, seed=args.bootstrap_seed,
                                     tokenizer=tokenizer_fingerprint(tokenizer))  # fmt: skip
                atomic_write_text(saved, json.dumps(result) + "\n")
            logger.info(
                "%s on %s: perplexity %s %s, %s bits per byte",
                model_name, corpus, result["perplexity"], result["ci95"], result["bits_per_byte"],
            )  # fmt: skip
            windows[model_name] = {"window": result["window"], "stride": result["stride"]}
            pairs.append(result)
    return pairs, windows


def pair_result(
    model: str,
    corpus: str,
    score: CorpusScore,
    *,
    window: int,
    stride: int,
    samples: int,
    seed: int,
    tokenizer: str | None = None,
) -> dict[str, Any]:
    low, high = score.bootstrap(samples=samples, seed=seed)
    bpb_low, bpb_high = score.bootstrap(samples=samples, seed=seed, per_byte=True)
    return {
        "model": model,
        "corpus": corpus,
        "documents": len(score.tokens),
        "tokens": int(sum(score.tokens)),
        "bytes": int(sum(score.bytes)),
        "perplexity": _num(score.perplexity()),
        "ci95": [_num(low), _num(high)],
        "bits_per_byte": _num(score.bits_per_byte()),
        "bits_per_byte_ci95": [_num(bpb_low), _num(bpb_high)],
        "tokenizer": tokenizer,
        "window": window,
        "stride": stride,
        "per_document": {"nll": score.nll, "tokens": score.tokens, "bytes": score.bytes},
    }


def tokenizer_groups(results: dict[str, Any]) -> list[list[str]]:
    """Models grouped by tokenizer (same vocabulary), in the order given."""
    groups: dict[str, list[str]] = {}
    for model in results["models"]:
        fingerprint = next((r.get("tokenizer") for r in results["pairs"] if r["model"] == model), None)
        groups.setdefault(fingerprint or model, []).append(model)
    return list(groups.values())


def tokenizer_note(results: dict[str, Any]) -> str:
    """What the report says about comparing models: one tokenizer, or which models share which."""
    groups = tokenizer_groups(results)
    if len(groups) <= 1:
        return "Every model uses the same tokenizer: their token perplexities count the same units."
    listed = "; ".join(", ".join(f"`{m}`" for m in group) for group in groups)
    return (
        f"**The models use different tokenizers** ({listed}: one group per tokenizer). Token perplexity "
        "counts each model's own tokens, so compare across groups by bits per byte only."
    )


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def _corpus_table(models: list[str], corpora: list[str], cell: dict, format_cell) -> list[str]:
    """Rows are corpora, columns models; a missing pair or value reads n/a."""
    lines = ["| corpus | " + " | ".join(f"`{m}`" for m in models) + " |", "|---|" + "---|" * len(models)]
    for corpus in corpora:
        cells = [format_cell(cell.get((model, corpus))) for model in models]
        lines.append(f"| {corpus} | " + " | ".join(cells) + " |")
    return lines


def _perplexity_cell(r: dict | None) -> str:
    return (
        f"{r['perplexity']:.3f} ({r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})" if r and r["perplexity"] else "n/a"
    )


def _bits_per_byte_cell(r: dict | None) -> str:
    low, high = (r or {}).get("bits_per_byte_ci95") or [None, None]
    if r and r.get("bits_per_byte") and low is not None:
        return f"{r['bits_per_byte']:.4f} ({low:.4f}-{high:.4f})"
    return "n/a"


def render_markdown(results: dict[str, Any]) -> str:
    """The paper's table: rows are corpora, columns models; each cell perplexity (95% CI)."""
    models, corpora = results["models"], list(results["corpora"])
    cell = {(r["model"], r["corpus"]): r for r in results["pairs"]}
    lines = [
        "## Perplexity",
        "",
        "Token-level perplexity, exp(total negative log-likelihood / scored tokens) over each corpus; lower reads "
        "as more natural to the model. 95% intervals: percentile bootstrap over documents "
        f"({results['bootstrap']['samples']} resamples, seed {results['bootstrap']['seed']}).",
        "",
        *_corpus_table(models, corpora, cell, _perplexity_cell),
        "",
        "Bits per byte: the same negative log-likelihood in bits over the UTF-8 bytes of the scored text "
        "(every token but a document's first), comparable across tokenizers; lower is better.",
        "",
        *_corpus_table(models, corpora, cell, _bits_per_byte_cell),
        "",
        tokenizer_note(results),
        "",
        "| corpus | documents | scored tokens (per model) |",
        "|---|---|---|",
    ]
    for corpus in corpora:
        per_model = ", ".join(str(cell[(m, corpus)]["tokens"]) for m in models if (m, corpus) in cell)
        lines.append(f"| {corpus} | {cell[(models[0], corpus)]['documents']} | {per_model} |")
    lines += [
        "",
        "Windows (tokens per window / stride): "
        + ", ".join(
            f"`{m}` {results['windows'][m]['window']}/{results['windows'][m]['stride']}" for m in models
        )
        + ". A document longer than the window is scored window by window; each token once, with at least "
        "window - stride tokens of context after the first window.",
        "",
        "![perplexity](perplexity.png)",
    ]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, results: dict[str, Any]) -> Path:
    """Grouped bars (log scale: perplexities differ by orders of magnitude) with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, corpora = results["models"], list(results["corpora"])
    cell = {(r["model"], r["corpus"]): r for r in results["pairs"]}
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(corpora) + 2), 3.8))
    for k, model in enumerate(models):
        values = [cell[(model, c)]["perplexity"] or np.nan for c in corpora]
        lows = [max(0.0, v - (cell[(model, c)]["ci95"][0] or v)) for v, c in zip(values, corpora)]
        highs = [max(0.0, (cell[(model, c)]["ci95"][1] or v) - v) for v, c in zip(values, corpora)]
        positions = [i + (k - (len(models) - 1) / 2) * width for i in range(len(corpora))]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=3, label=model[-40:])
    ax.set_xticks(range(len(corpora)), corpora, rotation=15, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("Perplexity by corpus, 95% bootstrap interval")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_scoring_model(name: str, *, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) in eval mode; a path that does not exist and is no Hub id is a one-line error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asclepius.evaluation.generation import pick_device, pick_dtype

    if name.startswith((".", "/")) and not Path(name).is_dir():
        raise InputError(name, "no such model folder")
    chosen = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=pick_dtype(dtype, chosen))
    except OSError as error:
        raise InputError(name, f"cannot load the model ({str(error).splitlines()[0]})") from None
    return model.to(chosen).eval(), tokenizer
