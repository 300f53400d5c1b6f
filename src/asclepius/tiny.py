"""A tiny Llama-architecture model and tokenizer that build offline in seconds.

Every stage loads it exactly like a Hub checkpoint (``from_pretrained(path)``), so the
whole pipeline can run, and be tested, on a laptop CPU with no network. The weights
are random: the model writes nonsense until the demo recipes train it.

    python -m asclepius.tiny --output_dir outputs/tiny-model
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from asclepius import prompts
from asclepius.stage.cards import render_card
from asclepius.stage.provenance import PUBLIC, Provenance
from asclepius.tasks import SEED_QUESTIONS

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# A plain role-tagged chat template: enough for `transformers serve` and for the
# `chat_template` prompt style; real base models bring their own.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=4000,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
)


def demo_corpus(demo_dir: Path = DEMO_DIR) -> Iterator[str]:
    """The bundled fictional demo text plus every prompt, so the tokenizer knows both."""
    yield from (
        prompts.INFERENCE_PROMPT,
        prompts.NOTE_PROMPT,
        prompts.QUESTION_PROMPT,
        prompts.ANSWER_PROMPT,
        prompts.JUDGE_PROMPT,
    )
    for questions in SEED_QUESTIONS.values():
        yield from questions
    case_reports = demo_dir / "case_reports.csv"
    if case_reports.exists():
        with case_reports.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield row["title"]
                yield row["patient"]
    notes = demo_dir / "synthetic_notes.jsonl"
    if notes.exists():
        seen_notes: set[str] = set()
        with notes.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if row["note"] not in seen_notes:
                    seen_notes.add(row["note"])
                    yield row["note"]
                yield row["question"]
                yield row["answer"]


def build_tokenizer(vocab_size: int = TINY_CONFIG["vocab_size"], demo_dir: Path = DEMO_DIR):
    """Byte-level BPE trained on the demo corpus, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(demo_corpus(demo_dir), trainer=trainer)
    # Prepend BOS like Llama tokenizers do; EOS is added by the training code where it belongs.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = TINY_CONFIG["max_position_embeddings"]
    return fast


def build_tiny_model(output_dir: str | Path, seed: int = 0, demo_dir: Path = DEMO_DIR) -> Path:
    """Build the tiny model + tokenizer into ``output_dir`` and return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(demo_dir=demo_dir)
    config = LlamaConfig(
        **{**TINY_CONFIG, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # do_sample: `transformers serve` samples only when the model's generation config says
    # so, and OpenAI clients asking for temperature 1 expect sampling (temperature 0 still
    # decodes greedily). Greedy decoding of these random weights is a run of newlines.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=64,
        do_sample=True,
    )
    from asclepius.training.stamping import save_stamped

    save_stamped(model, output_dir, Provenance(PUBLIC, "random weights, no data", license="apache-2.0"))
    tokenizer.save_pretrained(output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    # The card says public: models trained from it may be pushed (nothing in it is licensed data).
    render_card(
        output_dir,
        kind="model",
        template="tiny_model_card.md",
        card_data={"license": "apache-2.0", "library_name": "transformers",
                   "tags": ["asclepius", "tiny", "random-weights"], "data_provenance": "public"},
        context={"parameters": f"{n_params / 1e6:.2f}M", "seed": seed, "vocab_size": len(tokenizer)},
    )  # fmt: skip
    logger.info("tiny model: %.2fM parameters, vocab %d -> %s", n_params / 1e6, len(tokenizer), output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/tiny-model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if the folder holds a model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if (Path(args.output_dir) / "config.json").exists() and not args.overwrite:
        logger.info("tiny model already in %s (pass --overwrite to rebuild)", args.output_dir)
        return
    build_tiny_model(args.output_dir, seed=args.seed)


if __name__ == "__main__":
    main()
