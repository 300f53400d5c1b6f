"""Turn a GGUF checkpoint into a normal Hugging Face model folder.

transformers reads GGUF files (``from_pretrained(folder, gguf_file=name)``, with the
``gguf`` package) by dequantising every tensor, but refuses to ``save_pretrained`` a
model loaded that way, and the config it builds keeps a ``quantization_config`` that
makes the Trainer refuse to fine-tune it ("purely quantized model"). The conversion
here copies the dequantised weights into a model built from the same config, drops the
quantization entry, and saves weights, tokenizer (with its chat template) and
generation config as any Hub checkpoint. The folder's card is written last, so a
crashed conversion never looks finished.

    python -m asclepius.gguf_model --gguf path/to/model.gguf --output_dir outputs/my-model

Quantised weights (Q4_1 and friends) stay quantised in value: the saved fp32 weights
equal the GGUF-loaded model's exactly, not the original unquantised release.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asclepius.errors import InputError
from asclepius.stage.cards import render_card
from asclepius.stage.files import mark_unfinished
from asclepius.stage.provenance import card_provenance

logger = logging.getLogger(__name__)

GGUF_TEMPLATE = "gguf_model_card.md"


@dataclass(frozen=True)
class ModelCardSpec:
    """Which package template a converted folder's card uses, with its YAML and text values."""

    template: str
    card_data: dict[str, Any]
    context: dict[str, Any]


@contextlib.contextmanager
def parse_gguf_once() -> Iterator[None]:
    """While active, each GGUF file is parsed once and each tensor-name map built once.

    transformers parses the whole file three times (tokenizer, config, weights; SmolLM2's
    49k-entry vocabulary in Python each time) and rebuilds gguf's tensor-name map for every
    module it visits (~400 for SmolLM2): two thirds of the conversion's CPU. Both are
    read-only, so sharing them changes no byte of the result; it only cuts the demo's first
    step on a fresh clone. transformers imports both names from ``gguf`` at call time, which
    is what lets this swap them for the duration of one conversion.
    """
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, Any] = {}

    def shared_reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, functools.cache(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


def load_gguf(gguf_path: str | os.PathLike, dtype: str = "float32"):
    """(model, tokenizer) read from a GGUF file: dequantised, as transformers loads it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise InputError(str(gguf_path), "no such GGUF file")
    folder, name = str(gguf_path.parent), gguf_path.name
    with parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
    return model, tokenizer


def plain_copy(model):
    """The same weights in a model built from the config minus its GGUF quantization entry."""
    from transformers import AutoModelForCausalLM

    config = model.config
    # Left in, the saved config reads as a quantized checkpoint: loading tries the GGUF
    # path again and training refuses the folder.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # Tied output embeddings are absent from a tied model's state dict by design.
    missing = [key for key in missing if not (config.tie_word_embeddings and key == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the config: missing {missing}, unexpected {unexpected}")
    plain.generation_config = model.generation_config
    return plain.eval()


def convert_gguf(
    gguf_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    card: ModelCardSpec | None = None,
    dtype: str = "float32",
) -> Path:
    """Write ``gguf_path`` as a model folder in ``output_dir``; its card (``card``, else the
    generic one: licence unknown) is written last."""
    output_dir = Path(output_dir)
    mark_unfinished(output_dir)
    model, tokenizer = load_gguf(gguf_path, dtype=dtype)
    plain = plain_copy(model)
    del model
    output_dir.mkdir(parents=True, exist_ok=True)
    card = card or ModelCardSpec(GGUF_TEMPLATE, {"library_name": "transformers"}, {})
    # The weights carry what the card says (SmolLM2's: public; someone else's GGUF: unknown),
    # written into the header as the file is saved: one write of the weights, not two.
    from asclepius.training.stamping import save_stamped

    save_stamped(plain, output_dir, card_provenance(card.card_data, str(output_dir)))
    tokenizer.save_pretrained(output_dir)
    n_params = sum(p.numel() for p in plain.parameters())
    logger.info("%s -> %s (%.1fM parameters, %s)", gguf_path, output_dir, n_params / 1e6, dtype)
    render_card(
        output_dir,
        kind="model",
        template=card.template,
        card_data=card.card_data,
        context={"gguf_name": Path(gguf_path).name, **card.context},
    )
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", required=True, help="path to a .gguf file")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert_gguf(args.gguf, args.output_dir, dtype=args.dtype)


if __name__ == "__main__":
    from asclepius.errors import run_stage

    run_stage(main)
