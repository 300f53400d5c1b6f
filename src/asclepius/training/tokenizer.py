"""Load the base model's tokenizer and settle its pad and end-of-sequence tokens.

The original code set pad = bos, so any code that finds padding by token id (masks
built from ``input_ids != pad_token_id``) also hid the real BOS at the start of every
sequence. Here the pad token is chosen in this order, and never equals BOS:

1. the tokenizer's own pad token, when it is neither BOS nor EOS;
2. a dedicated padding token already in the vocabulary (Llama 3.1 ships
   ``<|finetune_right_pad_id|>``), so nothing is added and no embedding is resized;
3. ``unk`` (Llama 1/2, Mistral; ``<|endoftext|>`` in SmolLM2): it never occurs in
   tokenized text, so it cannot be mistaken for content;
4. ``eos`` (also when the tokenizer ships pad = eos, as SmolLM2-Instruct does, and has
   nothing better): safe here because TRL's collator marks padding by position
   (attention mask, labels of -100), not by token id, so a real EOS is still trained on.
   Any code that masks labels by ``pad_token_id`` would hide every answer's EOS, and the
   model would never learn to stop: so EOS is only the last resort.
"""

from __future__ import annotations

import logging

from transformers import AutoTokenizer, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Padding tokens some base vocabularies reserve but do not declare as pad_token.
RESERVED_PAD_TOKENS = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]")


def choose_pad_token(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """The pad token to use and why (see the module docstring for the order)."""
    bos = tokenizer.bos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token not in (bos, tokenizer.eos_token):
        return tokenizer.pad_token, "the tokenizer's own pad token"
    vocab = tokenizer.get_vocab()
    for candidate in RESERVED_PAD_TOKENS:
        if candidate in vocab and candidate not in (bos, tokenizer.eos_token):
            return candidate, "a padding token reserved in the vocabulary"
    if tokenizer.unk_token is not None and tokenizer.unk_token not in (bos, tokenizer.eos_token):
        return tokenizer.unk_token, "unk (never produced by tokenizing text)"
    if tokenizer.eos_token is None:
        raise ValueError(
            "the tokenizer has no pad, unk or eos token to pad with; pass a tokenizer that has one"
        )
    return tokenizer.eos_token, "eos (padding is masked by position, so real EOS tokens are still trained on)"


def load_tokenizer(
    name_or_path: str,
    *,
    revision: str = "main",
    trust_remote_code: bool = False,
    eos_token: str | None = None,
) -> PreTrainedTokenizerBase:
    """The tokenizer of ``name_or_path`` with a sensible pad token and, if given, a new eos."""
    tokenizer = AutoTokenizer.from_pretrained(
        name_or_path, revision=revision, trust_remote_code=trust_remote_code
    )
    if eos_token is not None:
        if eos_token not in tokenizer.get_vocab():
            raise ValueError(f"eos_token {eos_token!r} is not in the vocabulary of {name_or_path}")
        tokenizer.eos_token = eos_token
    if tokenizer.eos_token is None:
        raise ValueError(f"{name_or_path}: the tokenizer has no eos token; set --eos_token")
    pad_token, reason = choose_pad_token(tokenizer)
    if pad_token != tokenizer.pad_token:
        logger.info("pad token: %r (%s)", pad_token, reason)
        tokenizer.pad_token = pad_token
    return tokenizer
