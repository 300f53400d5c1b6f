"""Training throughput: useful tokens per second and padding share, packed vs padded batches.

Continued pretraining of the tiny offline model on the bundled demo notes, with TRL's
``SFTTrainer`` on CPU, four ways:

* ``padded``: what the original did, one note per row padded to the longest in a random
  batch, no packing (the baseline);
* ``wrapped``: notes joined by EOS and cut into full blocks (the paper's method, and the
  project's default: the pretrain recipes' ``packing_strategy``);
* ``bfd``: best-fit-decreasing packing, padding-free rows with per-sequence attention;
* ``padding_free``: one row per batch, notes concatenated, no packing step.

Useful tokens are non-padding tokens. Each repeat measures every strategy in turn
(interleaved, so drift on a shared machine hits all of them alike) for a few warm-up
steps and then a timed stretch; ratios are taken against the padded baseline of the
same repeat.

    python bench/training.py            # about 2-3 minutes on 2 CPU cores
    python bench/training.py --quick    # one repeat, a few steps

Prints one ``BENCH_RESULT {json}`` line per figure: useful tokens/s of each strategy as
a ratio to the padded baseline (min/median/max over repeats), and each strategy's
padding share.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runnable from a checkout without installing

DEMO_NOTES = ROOT / "data" / "demo" / "synthetic_notes.jsonl"
DEFAULT_RECIPE = ROOT / "recipes" / "tiny" / "pretrain" / "config_full.yaml"
BASELINE = "padded"
STRATEGIES = {
    "padded": dict(packing=False, padding_free=False),
    "wrapped": dict(packing=True, packing_strategy="wrapped"),
    "bfd": dict(packing=True, packing_strategy="bfd"),
    "padding_free": dict(packing=False, padding_free=True, max_length=None),
}
GOAL_WORKLOAD = "demo notes"
SPEEDUP_GOAL = 1.5
PADDING_GOAL = 0.03


def project_default_strategy() -> str:
    import yaml

    recipe = yaml.safe_load(DEFAULT_RECIPE.read_text(encoding="utf-8"))
    return recipe.get("packing_strategy", "bfd") if recipe.get("packing") else BASELINE


def measure(strategy: str, model_path: Path, tokenizer, notes, args, output_dir: Path) -> dict:
    """Train ``warmup + steps`` steps; return useful tokens/s and padding share of the timed steps."""
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class CountingTrainer(SFTTrainer):
        """Records (useful, total) tokens of every batch it trains on."""

        def training_step(self, model, inputs, *rest, **kwargs):
            input_ids = inputs["input_ids"]
            useful = (
                int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(input_ids.numel())
            )
            self.token_counts.append((useful, int(input_ids.numel())))
            return super().training_step(model, inputs, *rest, **kwargs)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.step_ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

    config = dict(
        output_dir=str(output_dir),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        bf16=False,
        use_cpu=True,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        seed=0,
    )
    config.update(STRATEGIES[strategy])
    clock = StepClock()
    trainer = CountingTrainer(
        model=str(model_path),
        args=SFTConfig(**config),
        train_dataset=notes,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.token_counts = []
    trainer.train()
    timed = trainer.token_counts[args.warmup :]
    seconds = clock.step_ends[-1] - clock.step_ends[args.warmup - 1]
    useful, total = sum(u for u, _ in timed), sum(t for _, t in timed)
    return {"tokens_per_second": useful / seconds, "padding_share": 1.0 - useful / total}


def mixed_length(notes, seed: int = 0):
    """Each note cut to a random share (15-100%) of its characters: the spread of lengths real notes have."""
    import random

    rng = random.Random(seed)
    return notes.map(
        lambda row: {"text": row["text"][: max(1, int(len(row["text"]) * rng.uniform(0.15, 1.0)))]}
    )


def summarize(workload: str, runs: dict[str, list[dict]], default: str) -> list[dict]:
    """Print the table of one workload and return its BENCH_RESULT figures."""
    baseline = [run["tokens_per_second"] for run in runs[BASELINE]]
    baseline_padding = statistics.median(run["padding_share"] for run in runs[BASELINE])
    print(
        f"\n{workload}\n{'strategy':>18} | useful tokens/s (median) | x padded (min / median / max) | padding"
    )
    results = []
    for name, measured in runs.items():
        speeds = [run["tokens_per_second"] for run in measured]
        ratios = [speed / base for speed, base in zip(speeds, baseline)]
        shares = [run["padding_share"] for run in measured]
        is_goal = name == default and workload == GOAL_WORKLOAD
        label = f"{name} (default)" if name == default else name
        print(
            f"{label:>18} | {statistics.median(speeds):24.0f} | {min(ratios):.2f} / {statistics.median(ratios):.2f}"
            f" / {max(ratios):.2f} | {100 * statistics.median(shares):.1f}%"
        )
        if name != BASELINE:
            results.append(
                {
                    "name": f"useful tokens/s, {label} vs padded, {workload}",
                    "value": round(statistics.median(speeds)),
                    "baseline": round(statistics.median(baseline)),
                    "ratio": round(statistics.median(ratios), 3),
                    "goal": f">= {SPEEDUP_GOAL}x" if is_goal else "",
                    "met": statistics.median(ratios) >= SPEEDUP_GOAL if is_goal else None,
                    "min": round(min(ratios), 3),
                    "median": round(statistics.median(ratios), 3),
                    "max": round(max(ratios), 3),
                }
            )
        results.append(
            {
                "name": f"padding share, {label}, {workload}",
                "value": round(statistics.median(shares), 4),
                "baseline": round(baseline_padding, 4),
                "goal": f"< {PADDING_GOAL:.0%}" if is_goal else "",
                "met": statistics.median(shares) < PADDING_GOAL if is_goal else None,
                "min": round(min(shares), 4),
                "median": round(statistics.median(shares), 4),
                "max": round(max(shares), 4),
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per strategy and repeat")
    parser.add_argument("--batch_size", type=int, default=4, help="rows per step")
    parser.add_argument("--max_length", type=int, default=512, help="block length (packing) / truncation")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads. 1 by default: on a shared machine a second thread that loses its core makes "
        "the other spin, and single steps then take 10x longer at random, which buries the comparison",
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat of 4 timed steps (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 4
    logging.basicConfig(level=logging.WARNING)

    import torch
    from datasets import Dataset

    from asclepius.tiny import build_tiny_model
    from asclepius.training.formatting import unique_notes
    from asclepius.training.tokenizer import load_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    default = project_default_strategy()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = build_tiny_model(Path(tmp) / "tiny-model", seed=0)
        tokenizer = load_tokenizer(str(model_path))
        rows = [json.loads(line) for line in DEMO_NOTES.open(encoding="utf-8")]
        notes = unique_notes(Dataset.from_list(rows))
        # The goal is judged on the demo notes as they are; the mixed-length view (padded
        # vs the default only) shows how the gain grows with the spread of note lengths.
        workloads = {
            GOAL_WORKLOAD: (notes, list(STRATEGIES)),
            "mixed-length notes": (mixed_length(notes), [BASELINE, default]),
        }
        print(
            f"{len(notes)} distinct demo notes, batch {args.batch_size} x {args.max_length} tokens, "
            f"{args.warmup} warm-up + {args.steps} timed steps, {args.repeats} repeats, {args.threads} thread(s); "
            f"project default: {default}",
            flush=True,
        )
        runs = {workload: {name: [] for name in names} for workload, (_, names) in workloads.items()}
        for repeat in range(args.repeats):
            for workload, (dataset, names) in workloads.items():
                for name in names:
                    folder = Path(tmp) / f"{len(runs[workload][name])}-{name}-{workload.split()[0]}"
                    result = measure(name, model_path, tokenizer, dataset, args, folder)
                    runs[workload][name].append(result)
                    print(
                        f"repeat {repeat + 1}, {workload}: {name:>12}: {result['tokens_per_second']:8.0f} useful "
                        f"tokens/s, padding {100 * result['padding_share']:5.1f}%",
                        flush=True,
                    )

    results = [figure for workload in workloads for figure in summarize(workload, runs[workload], default)]
    for result in results:
        print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
