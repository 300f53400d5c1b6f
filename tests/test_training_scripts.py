"""The training scripts end to end on CPU with the tiny model and the bundled demo data.

Each test runs the real script in a subprocess, as a user would, with the tiny recipes
and a few steps: continued pretraining, instruction tuning (full and LoRA), merging,
a run killed mid-way and resumed, and a 2-process data-parallel run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asclepius.stage.files import read_card_metadata
from asclepius.stage.stamps import read_stamp
from asclepius.training.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
PRETRAIN_RECIPE = "recipes/tiny/pretrain/config_full.yaml"
SFT_RECIPE = "recipes/tiny/sft/config_full.yaml"
LORA_RECIPE = "recipes/tiny/sft/config_lora.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("training-env")
    for name in ("hf", "wandb", "trackio"):
        (home / name).mkdir()
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(home / "hf"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(home / "wandb"),
        "TRACKIO_DIR": str(home / "trackio"),
        "TOKENIZERS_PARALLELISM": "false",
        # One thread: on a busy machine a second one that loses its core makes the first spin.
        "OMP_NUM_THREADS": "1",
    }


def run(
    command: list[str], env: dict, *, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    process = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and process.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {process.returncode}:\n{process.stderr[-4000:]}")
    return process


def script(name: str, *args) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / name), *map(str, args)]


def load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def pretrained(tiny_model_path, tmp_path_factory, env) -> Path:
    """Continued pretraining of the tiny model: 12 steps of the tiny recipe, logged to trackio (locally)."""
    output_dir = tmp_path_factory.mktemp("runs") / "tiny-pretrain"
    run(
        script(
            "pretrain.py", "--config", PRETRAIN_RECIPE, "--model_name_or_path", tiny_model_path,
            "--output_dir", output_dir, "--max_steps", 12, "--save_strategy", "no", "--report_to", "trackio",
        ),
        env,
    )  # fmt: skip
    return output_dir


def test_pretrain_makes_a_finished_model_with_a_learning_signal(pretrained, env):
    model, tokenizer = load(pretrained)
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.bos_token_id
    assert model.config.use_cache is True
    card = read_card_metadata(pretrained)
    # The stricter of the demo data's CC0 and the tiny model's Apache-2.0, not PMC-Patients' licence.
    assert card["license"] == "apache-2.0" and "continued-pretraining" in card["tags"]
    text = (pretrained / "README.md").read_text()
    assert "Research use only" in text and "kweon2024publicly" in text and "| packing | wrapped |" in text
    metrics = read_metrics(pretrained)
    assert metrics["stage"] == "pretrain" and metrics["heldout_notes"] == 5  # the demo's held-out patients
    # The goal: held-out note perplexity at least 30% lower after continued pretraining.
    assert metrics["heldout_note_perplexity_reduction"] >= 0.30, metrics
    # The weights carry the run's provenance, as the card says it (a copy of the file keeps it).
    assert read_stamp(pretrained / "model.safetensors")["status"] == card["data_provenance"]
    # trackio, the recipes' tracker, is in the default install and logs to TRACKIO_DIR without a Space.
    assert list(Path(env["TRACKIO_DIR"]).glob("*.db")), "nothing logged to trackio"


def test_sft_tunes_the_pretrained_model_and_lowers_answer_loss(pretrained, tmp_path, env):
    output_dir = tmp_path / "tiny-sft"
    run(
        script(
            "sft.py", "--config", SFT_RECIPE, "--model_name_or_path", pretrained, "--output_dir", output_dir,
            "--max_steps", 6, "--per_device_train_batch_size", 2, "--save_strategy", "no", "--max_eval_examples", 6,
        ),
        env,
    )  # fmt: skip
    model, tokenizer = load(output_dir)
    assert model.num_parameters() > 0 and tokenizer.eos_token == "</s>"
    text = (output_dir / "README.md").read_text()
    assert "[Instruction End] \n" in text, "the card shows the prompt byte for byte"
    metrics = read_metrics(output_dir)
    assert metrics["stage"] == "sft" and metrics["heldout_rows"] == 6
    assert metrics["heldout_answer_loss_after"] < metrics["heldout_answer_loss_before"], metrics
    assert metrics["resumed_from_checkpoint"] is None


def test_lora_adapter_merges_into_a_model_that_generates(pretrained, tmp_path, env):
    import torch
    from safetensors.torch import load_file

    adapter_dir, merged_dir = tmp_path / "tiny-sft-lora", tmp_path / "tiny-sft-merged"
    run(
        script(
            "sft.py", "--config", LORA_RECIPE, "--model_name_or_path", pretrained, "--output_dir", adapter_dir,
            "--max_steps", 2, "--per_device_train_batch_size", 2, "--save_strategy", "no", "--learning_signal", "false",
        ),
        env,
    )  # fmt: skip
    assert (adapter_dir / "adapter_config.json").exists() and (
        adapter_dir / "adapter_model.safetensors"
    ).exists()
    assert not (adapter_dir / "model.safetensors").exists() and not (adapter_dir / "config.json").exists()
    assert read_card_metadata(adapter_dir)["library_name"] == "peft"
    status = read_card_metadata(adapter_dir)["data_provenance"]
    assert read_stamp(adapter_dir / "adapter_model.safetensors")["status"] == status

    run(script("merge_adapter.py", "--adapter_dir", adapter_dir, "--output_dir", merged_dir), env)
    assert not (merged_dir / "adapter_config.json").exists()
    model, tokenizer = load(merged_dir)
    card = read_card_metadata(merged_dir)
    assert (
        card["library_name"] == "transformers"
        and "merged into the base" in (merged_dir / "README.md").read_text()
    )
    # The adapter changed the weights it wraps.
    assert read_stamp(merged_dir / "model.safetensors")["status"] == card["data_provenance"]
    merged = load_file(merged_dir / "model.safetensors")
    base = load_file(pretrained / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[name], base[name])
    inputs = tokenizer("Reason for Admission:", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 8


def test_a_missing_column_is_a_one_line_error(tiny_model_path, tmp_path, env):
    process = run(
        script(
            "pretrain.py", "--config", PRETRAIN_RECIPE, "--model_name_or_path", tiny_model_path,
            "--output_dir", tmp_path / "out", "--note_column", "discharge_summary",
        ),
        env,
        check=False,
    )  # fmt: skip
    assert process.returncode == 2, process.stderr[-2000:]
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "error: data/demo/synthetic_notes.jsonl: field 'discharge_summary': missing column"
    )


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tiny_model_path, tmp_path, env):
    output_dir = tmp_path / "resume"
    command = script(
        "pretrain.py", "--config", PRETRAIN_RECIPE, "--model_name_or_path", tiny_model_path,
        "--output_dir", output_dir, "--num_train_epochs", 1, "--max_length", 128, "--per_device_train_batch_size", 4,
        "--save_strategy", "steps", "--save_steps", 4, "--save_total_limit", 2, "--learning_signal", "false",
    )  # fmt: skip
    first = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first_state = output_dir / "checkpoint-4" / "trainer_state.json"
    try:
        deadline = time.monotonic() + 300
        while not first_state.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode != 0, "the run finished before it could be interrupted"
    assert first_state.exists() and not (output_dir / "README.md").exists(), (
        "an interrupted run looks finished"
    )
    planned_steps = json.loads(first_state.read_text())["max_steps"]
    # A checkpoint cut off while saving (no trainer_state.json) must be skipped, not resumed from.
    (output_dir / f"checkpoint-{planned_steps + 100}").mkdir()

    run(command, env)
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == planned_steps, "the resumed run did not reach the planned step count"
    resumed_from = Path(read_metrics(output_dir)["resumed_from_checkpoint"]).name
    assert resumed_from.startswith("checkpoint-") and 4 <= int(resumed_from.split("-")[1]) < planned_steps
    assert (output_dir / "README.md").exists()
    load(output_dir)
    # Every checkpoint's weights carry the run's provenance too (the Trainer's saves are stamped).
    status = read_card_metadata(output_dir)["data_provenance"]
    assert all(
        read_stamp(path)["status"] == status for path in output_dir.glob("checkpoint-*/model.safetensors")
    )

    # A finished folder is left alone by a rerun.
    weights = (output_dir / "model.safetensors").stat().st_mtime_ns
    assert "is finished" in run(command, env).stderr
    assert (output_dir / "model.safetensors").stat().st_mtime_ns == weights
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == planned_steps


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_process_ddp_on_cpu_reads_different_data_per_rank(tiny_model_path, tmp_path, env):
    output_dir = tmp_path / "ddp"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    process = run(
        [
            accelerate, "launch", "--config_file", "accelerate_configs/cpu_ddp.yaml",
            "--num_cpu_threads_per_process", "1", "--main_process_port", str(free_port()),
            "scripts/pretrain.py", "--config", PRETRAIN_RECIPE, "--use_cpu", "true",
            "--model_name_or_path", str(tiny_model_path), "--output_dir", str(output_dir), "--max_steps", "3",
            "--save_strategy", "no", "--learning_signal", "false", "--log_batch_fingerprints", "true",
            "--ddp_find_unused_parameters", "false",
        ],
        env,
    )  # fmt: skip
    ranks = {}
    for rank in (0, 1):
        records = [
            json.loads(line) for line in (output_dir / ".asclepius" / f"batches-rank{rank}.jsonl").open()
        ]
        assert [r["step"] for r in records] == [0, 1, 2]
        assert all(r["world_size"] == 2 and r["rank"] == rank for r in records)
        ranks[rank] = {r["fingerprint"] for r in records}
    assert len(ranks[0]) == 3 and not ranks[0] & ranks[1], "both ranks trained on the same batches"
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 3
    load(output_dir)
    # Only the main process logs at info: each rank reads the notes, one says so.
    said = [line.split(" INFO ", 1)[1] for line in process.stderr.splitlines() if "distinct notes" in line]
    assert said and len(said) == len(set(said)), said
