"""The training benchmarks stay runnable: bench/training.py's measurement, bench/gpu_sft.py on CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_strategy_is_read_from_the_pretrain_recipe():
    assert load_bench("training").project_default_strategy() == "wrapped"


def test_padded_batches_waste_tokens_that_wrapped_blocks_do_not(tiny_model_path, tmp_path):
    from datasets import Dataset

    from asclepius.training.tokenizer import load_tokenizer

    bench = load_bench("training")
    tokenizer = load_tokenizer(str(tiny_model_path))
    # Notes of very different lengths: padding to the longest wastes most of a padded batch.
    notes = Dataset.from_dict({"text": ["Pt stable. " * n for n in (2, 40, 3, 35, 5, 30, 4, 45)]})
    args = SimpleNamespace(warmup=1, steps=2, batch_size=4, max_length=64)
    padded = bench.measure("padded", tiny_model_path, tokenizer, notes, args, tmp_path / "padded")
    wrapped = bench.measure("wrapped", tiny_model_path, tokenizer, notes, args, tmp_path / "wrapped")
    assert padded["padding_share"] > 0.2
    assert wrapped["padding_share"] < 0.03
    assert padded["tokens_per_second"] > 0 and wrapped["tokens_per_second"] > 0


def test_gpu_sft_packs_documents_and_counts_attention_flops():
    import torch

    bench = load_bench("gpu_sft")
    config = bench.model_config(bench.parse_args(["--tiny", "--seq_length", "256"]))
    batch, lengths = bench.packed_batch(config, 256, 50, torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape == (1, 256) and sum(lengths) == 256 and len(lengths) > 1
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == len(lengths)
    assert (batch["labels"][0, starts] == -100).all()
    # One document of length T: 6 N T for the weights plus 6 d L T^2 for causal attention.
    flops = bench.flops_per_step(1000, config, [100])
    assert flops == 6 * 1000 * 100 + 6 * config.hidden_size * config.num_hidden_layers * 100**2


def test_gpu_sft_runs_on_cpu_with_the_tiny_model(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "bench" / "gpu_sft.py")]
    assert subprocess.run([*command, "--help"], capture_output=True, env=env).returncode == 0
    process = subprocess.run(
        [*command, "--device", "cpu", "--tiny", "--steps", "2", "--warmup", "1", "--seq_length", "256",
         "--mean_doc_length", "60"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    results = {
        json.loads(line.split(" ", 1)[1])["name"]: json.loads(line.split(" ", 1)[1])["value"]
        for line in process.stdout.splitlines()
        if line.startswith("BENCH_RESULT ")
    }
    assert results["training tokens/s, tiny Llama, packed 256"] > 0
    # On CPU accelerate runs the FSDP config as plain single-process training: nothing is wrapped.
    assert results["FSDP wrapped modules (fsdp.yaml, 1 process)"] == 0


def test_gpu_sft_dry_run_prints_the_plan_of_the_1b_model():
    process = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_sft.py"), "--device", "cpu", "--dry_run"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    assert "1,035M matmul parameters, 22 layers" in process.stdout and "TFLOP per step" in process.stdout
