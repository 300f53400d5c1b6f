"""The demo end to end (shrunk by its own flags to fit CI): every artifact loads, no server is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def serve_processes_for(path: Path) -> list[str]:
    """Command lines of running `transformers serve` processes that serve a model under ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "serve" in cmdline and str(path) in cmdline:
                found.append(cmdline)
    return found


@pytest.mark.slow
def test_demo_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo"
    command = [
        sys.executable, "scripts/demo.py", "--output_dir", str(out), "--model", "tiny",
        "--limit", "4", "--train_max_steps", "3", "--eval_max_samples", "3",
        "--precision", "bf16",  # the smol demo's path where the CPU has bf16 units (emulated elsewhere)
    ]  # fmt: skip
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert serve_processes_for(out) == []  # the teacher is gone

    from datasets import load_dataset
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    notes = load_dataset(str(out / "notes"))
    assert notes["train"].num_rows >= 1 and "note" in notes["train"].column_names
    assert load_dataset(str(out / "questions"))["train"].num_rows >= 1
    instructions = load_dataset(str(out / "instructions"))
    assert set(instructions["train"].column_names) == {"patient_id", "note", "question", "answer", "task"}
    for name in ("base", "pretrain", "sft"):
        answers = load_dataset(str(out / "eval" / f"answers-{name}"))
        assert {"model", "generated"} <= set(next(iter(answers.values())).column_names)
    for stage in ("pretrain", "sft"):
        model = AutoModelForCausalLM.from_pretrained(out / stage)
        tokenizer = AutoTokenizer.from_pretrained(out / stage)
        assert tokenizer.pad_token_id != tokenizer.bos_token_id
        card = ModelCard.load(out / stage / "README.md")
        assert "research" in card.text.lower()
        assert "| precision | bf16 |" in card.text  # mixed precision: the saved weights stay float32
        assert model.dtype == torch.float32
    assert "model-index" in (out / "sft" / "README.md").read_text()
    results = json.loads((out / "eval" / "report" / "results.json").read_text())
    assert results["models"]
    assert (out / "eval" / "report" / "report.md").read_text().strip()
    assert list((out / "eval" / "report").rglob("*.png"))
    summary = first.stdout[first.stdout.index("Asclepius demo: what came out") :]
    assert "held-out note perplexity" in summary and "total wall time" in summary
    assert "precision     bf16" in summary

    # A rerun resumes: every stage is already finished, nothing is redone, no teacher starts.
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("cached") >= 9
    assert "transformers serve" not in second.stderr
