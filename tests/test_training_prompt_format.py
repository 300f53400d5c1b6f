"""prompt_format original end to end: sft trains on the original bytes, the card records it, and
generation and `asclepius chat` then prompt the model in those bytes."""

from __future__ import annotations

import subprocess
import sys

from test_training_scripts import REPO, SFT_RECIPE, env, run, script  # noqa: F401

from asclepius import prompts
from asclepius.evaluation.generation import Decoding, LocalGenerator
from asclepius.evaluation.prompting import model_prompt_format
from asclepius.stage.files import read_card_metadata
from asclepius.training.metrics import read_metrics


def test_sft_with_the_original_bytes_is_prompted_in_them(tiny_model_path, tmp_path, env):  # noqa: F811
    output_dir = tmp_path / "sft-original"
    run(
        script(
            "sft.py", "--config", SFT_RECIPE, "--model_name_or_path", tiny_model_path, "--output_dir", output_dir,
            "--max_steps", 1, "--per_device_train_batch_size", 2, "--save_strategy", "no",
            "--max_eval_examples", 4, "--report_to", "none", "--prompt_format", "original",
        ),
        env,
    )  # fmt: skip
    # The held-out answer loss is measured on the same (original) bytes the model trained on.
    assert read_metrics(output_dir)["heldout_answer_loss_after"] > 0
    card = (output_dir / "README.md").read_text(encoding="utf-8")
    assert read_card_metadata(output_dir)["prompt_format"] == "original"
    assert "`prompt_format: original`" in card and prompts.PROMPT_FORMAT_HASHES["original"] in card
    assert "[Instruction End]\n" in card and "[Instruction End] \n" not in card
    assert model_prompt_format(str(output_dir)) == "original"
    generator = LocalGenerator(
        str(output_dir), decoding=Decoding(do_sample=False, num_beams=1, max_new_tokens=2), device="cpu"
    )
    assert generator.prompt_style == "asclepius_original"
    assert generator.prompt("\nNote.\n", "Q?").endswith("[Discharge Summary Begin]\nNote.\n[Discharge Summary End]\n\n"
                                                      "[Instruction Begin]\nQ?\n[Instruction End]\n")  # fmt: skip
    # `asclepius prompt --model` shows the bytes the model gets, as its card says.
    note = tmp_path / "note.txt"
    note.write_text("Pt admitted w/ CP.", encoding="utf-8")
    shown = subprocess.run(
        [sys.executable, "-m", "asclepius.cli", "prompt", "--note_file", str(note), "--question", "Why?",
         "--model", str(output_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert shown.endswith("[Instruction Begin]\nWhy?\n[Instruction End]\n")
