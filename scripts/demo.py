"""Run every stage of Asclepius end to end, offline, on the tiny model and the bundled demo data.

    make demo                       # = python scripts/demo.py --output_dir outputs/demo
    python scripts/demo.py --limit 8 --train_max_steps 5 --eval_max_samples 6   # a smaller run

1. build the tiny model (a ~1M-parameter Llama from a config, a tokenizer from the demo text);
2. start a local teacher: `transformers serve` with the tiny model on 127.0.0.1;
3. synthesize notes, bootstrap questions and answer them from the demo case reports,
   through the real request engine (the random teacher writes nonsense, and the demo says so);
4. continued pretraining, then SFT, with the `tiny` recipes on the bundled instruction set;
5. answer the held-out demo patients with the base, pretrained and fine-tuned models, judge
   them with the local teacher, and write the report, plots and model card;
6. print a summary: output folders, row counts, losses, held-out perplexity, scores, wall time.

Everything lands under --output_dir. A rerun skips finished stages; the teacher is
stopped on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from asclepius.demo import DemoOptions, plan, run_step, summarize
from asclepius.errors import run_stage
from asclepius.serving import serve_model
from asclepius.tiny import build_tiny_model

logger = logging.getLogger("demo")


def parse_args() -> DemoOptions:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"))
    parser.add_argument(
        "--limit", type=int, default=None, help="case reports sent to the teacher (default: all)"
    )
    parser.add_argument("--train_max_steps", type=int, default=None, help="cap on steps per training stage")
    parser.add_argument("--eval_max_samples", type=int, default=None, help="held-out rows answered per model")
    return DemoOptions(**vars(parser.parse_args()))


def main() -> None:
    options = parse_args()
    started = time.perf_counter()
    logs = options.output_dir / "logs"

    # 1. The tiny model: teacher, judge and the base of both training stages.
    if not (options.tiny_model / "config.json").exists():
        build_tiny_model(options.tiny_model, seed=0)
    steps = plan(options)

    # 2. The teacher runs only if a stage that needs it is unfinished (a finished demo reruns in seconds).
    pending_teacher = [s for s in steps if s.needs_teacher and not (s.output / "README.md").exists()]
    if pending_teacher:
        logger.info(
            "the teacher is the tiny random model: it writes nonsense, so expect most rows to be filtered"
        )
        with serve_model(options.tiny_model, log_file=_log_file(logs, "teacher")) as teacher_url:
            steps = plan(options, teacher_url)
            # 3-5. Every stage, in order, as the command a user would type.
            for step in steps:
                run_step(step, logs)
    else:
        for step in steps:
            run_step(step, logs)

    # 6. What came out.
    print(summarize(options, steps, time.perf_counter() - started))


def _log_file(logs: Path, name: str) -> Path:
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{name}.log"


if __name__ == "__main__":
    run_stage(main)
