"""Evaluation answers per second: batched greedy decoding vs the original one-at-a-time 5-beam sampling.

The original evaluation answered one sample at a time with 5-beam sampling; the
evaluation stage here batches prompts (sorted by length, left padding, KV cache) and
decodes greedily by default. Both run on the tiny offline model, on prompts built from
the bundled demo notes, and both write exactly the same number of new tokens per answer
(``min_new_tokens = max_new_tokens``), so the figure compares decoding cost only, not
how soon a random model happens to stop.

    python bench/generation.py            # ~1-2 minutes on 2 CPU cores
    python bench/generation.py --quick

Prints one ``BENCH_RESULT {json}`` line: value = batched samples/s, baseline = 5-beam
samples/s (both medians over repeats), ratio = value / baseline, min/median/max of the
per-repeat ratio.
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

GOAL = 10.0


def demo_rows(n: int) -> tuple[list[str], list[str]]:
    rows = [
        json.loads(line)
        for line in (ROOT / "data" / "demo" / "synthetic_notes.jsonl").read_text().splitlines()
    ]
    rows = (rows * (n // len(rows) + 1))[:n]
    return [r["note"] for r in rows], [r["question"] for r in rows]


def equal_length(generator, max_new_tokens: int):
    """Every answer exactly max_new_tokens long, for both decodings."""
    generator.generation_config.min_new_tokens = max_new_tokens
    return generator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and tokens (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default). One by default: on a shared machine two threads per "
        "process oversubscribe the cores and timings swing by 10x or more.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    from transformers.utils import logging as hf_logging

    from asclepius.evaluation.generation import Decoding, LocalGenerator
    from asclepius.tiny import build_tiny_model

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The original's budget: 400 new tokens. Short answers would mostly time the prompt
    # pass, which batching cannot make cheaper per sample on a CPU.
    new_tokens = 64 if args.quick else 400
    batched_samples = args.batch_size
    beam_samples = (
        1 if args.quick else 2
    )  # the slow baseline is timed on fewer samples; figures are per sample

    with tempfile.TemporaryDirectory() as tmp:
        model_path = str(build_tiny_model(Path(tmp) / "tiny", seed=0))
        # The evaluation stage's defaults (static KV cache) vs the original loop (transformers' defaults).
        batched = equal_length(
            LocalGenerator(model_path, decoding=Decoding(False, 1, new_tokens), device="cpu"), new_tokens
        )
        original = equal_length(
            LocalGenerator(
                model_path,
                decoding=Decoding(True, 5, new_tokens, seed=0),
                device="cpu",
                cache_implementation="dynamic",
            ),
            new_tokens,
        )
        notes, questions = demo_rows(batched_samples)
        batched.answer_all(notes[:2], questions[:2], batch_size=2, show_progress=False)  # warm-up
        original.answer(notes[0][:200], questions[0])

        batched_rates, beam_rates = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            batched.answer_all(notes, questions, batch_size=args.batch_size, show_progress=False)
            batched_rates.append(batched_samples / (time.perf_counter() - start))
            start = time.perf_counter()
            for note, question in zip(notes[:beam_samples], questions[:beam_samples]):
                original.answer(note, question)  # one at a time, like the original evaluation loop
            beam_rates.append(beam_samples / (time.perf_counter() - start))
            print(
                f"repeat {repeat + 1}: batched greedy {batched_rates[-1]:.2f} samples/s, "
                f"one-at-a-time 5-beam sampling {beam_rates[-1]:.3f} samples/s, "
                f"ratio {batched_rates[-1] / beam_rates[-1]:.1f}x",
                flush=True,
            )

    ratios = [b / s for b, s in zip(batched_rates, beam_rates)]
    value, baseline = statistics.median(batched_rates), statistics.median(beam_rates)
    result = {
        "name": f"evaluation samples/s: batched greedy (batch {args.batch_size}) vs one-at-a-time 5-beam "
        f"sampling; tiny model, demo notes, {new_tokens} new tokens, CPU, {torch.get_num_threads()} thread(s)",
        "value": round(value, 3),
        "baseline": round(baseline, 4),
        "ratio": round(value / baseline, 2),
        "goal": f">= {GOAL:g}x",
        "met": value / baseline >= GOAL,
        "min": round(min(ratios), 2),
        "median": round(statistics.median(ratios), 2),
        "max": round(max(ratios), 2),
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
