"""Fold a LoRA adapter into its base model, giving a plain model that loads anywhere.

The base is loaded unquantized (even for a QLoRA adapter) in the chosen dtype, on the
CPU: merging is a weight update, needs no GPU, and a 13B base fits in RAM where it
might not fit next to other work on a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from asclepius.errors import InputError
from asclepius.stage.provenance import Provenance
from asclepius.training.stamping import save_stamped

logger = logging.getLogger(__name__)


def merge_adapter(
    adapter_dir: str,
    output_dir: str | Path,
    *,
    provenance: Provenance,
    base_model: str | None = None,
    dtype: str = "auto",
) -> tuple[Path, str]:
    """Merge ``adapter_dir`` into ``base_model`` (default: the adapter's own base) and save to ``output_dir``.

    The merged weights carry ``provenance`` (the adapter's and the base's, combined).
    Returns (output folder, the base model merged into).
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_model = base_model or PeftConfig.from_pretrained(adapter_dir).base_model_name_or_path
    if not base_model:
        raise InputError(adapter_dir, "the adapter does not name its base model; pass --base_model")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    logger.info("merging %s into %s (%s)", adapter_dir, base_model, dtype)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype, device_map="cpu")
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.config.use_cache = True
    output_dir = Path(output_dir)
    save_stamped(merged, output_dir, provenance)
    # The adapter folder holds the tokenizer the adapter was trained with (pad/eos settled).
    tokenizer_source = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").exists() else base_model
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(output_dir)
    return output_dir, base_model
