"""The offline end-to-end demo: every stage of the method, on the tiny model and the demo data.

``scripts/demo.py`` tells the story; this module holds the plan (one step per stage,
each the same command a user would type), runs the steps as subprocesses with their
logs kept, and summarises what came out. Each step is skipped when its output folder
is already finished, so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from asclepius import hub

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEMO_CASE_REPORTS = "data/demo/case_reports.csv"
DEMO_INSTRUCTIONS = "data/demo/synthetic_notes.jsonl"
# The models compared at the end: untrained, after continued pretraining, after SFT.
EVALUATED = ("base", "pretrain", "sft")


@dataclass
class DemoOptions:
    """Knobs that shrink the demo (the CI test uses them); the defaults run it in full."""

    output_dir: Path = Path("outputs/demo")
    limit: int | None = None  # case reports sent to the teacher
    train_max_steps: int | None = None  # cap on optimizer steps per training stage
    eval_max_samples: int | None = None  # held-out rows answered per model

    @property
    def tiny_model(self) -> Path:
        return self.output_dir / "tiny-model"


@dataclass
class Step:
    name: str
    output: Path
    command: list[str]
    needs_teacher: bool = False
    seconds: float | None = None
    skipped: bool = False
    extra: dict = field(default_factory=dict)


def _script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / name), *(str(a) for a in args)]


def plan(options: DemoOptions, teacher_url: str = "{teacher_url}") -> list[Step]:
    """The demo's steps in order; ``teacher_url`` is filled in once the teacher is up."""
    out, tiny = options.output_dir, options.tiny_model
    teacher = ["--base_url", teacher_url, "--model", str(tiny)]
    limit = ["--limit", options.limit] if options.limit else []
    steps_cap = ["--max_steps", options.train_max_steps] if options.train_max_steps else []
    samples = ["--max_samples", options.eval_max_samples] if options.eval_max_samples else []
    data_yaml = "recipes/tiny/data.yaml"
    steps = [
        Step(
            "notes",
            out / "notes",
            _script(
                "make_notes.py",
                "--config",
                data_yaml,
                "--input",
                DEMO_CASE_REPORTS,
                "--output_dir",
                out / "notes",
                *teacher,
                *limit,
            ),
            needs_teacher=True,
        ),
        Step(
            "questions",
            out / "questions",
            _script(
                "make_questions.py",
                "--config",
                data_yaml,
                "--input",
                out / "notes",
                "--output_dir",
                out / "questions",
                *teacher,
            ),
            needs_teacher=True,
        ),
        Step(
            "answers",
            out / "instructions",
            _script(
                "make_answers.py",
                "--config",
                data_yaml,
                "--input",
                out / "questions",
                "--output_dir",
                out / "instructions",
                *teacher,
            ),
            needs_teacher=True,
        ),
        # Training uses the bundled, human-written instruction set: the tiny teacher's
        # output above is nonsense and would teach nothing.
        Step(
            "pretrain",
            out / "pretrain",
            _script(
                "pretrain.py",
                "--config",
                "recipes/tiny/pretrain/config_full.yaml",
                "--model_name_or_path",
                tiny,
                "--dataset_name",
                DEMO_INSTRUCTIONS,
                "--output_dir",
                out / "pretrain",
                *steps_cap,
            ),
        ),
        Step(
            "sft",
            out / "sft",
            _script(
                "sft.py",
                "--config",
                "recipes/tiny/sft/config_full.yaml",
                "--model_name_or_path",
                out / "pretrain",
                "--dataset_name",
                DEMO_INSTRUCTIONS,
                "--output_dir",
                out / "sft",
                *steps_cap,
            ),
        ),
    ]
    models = {"base": tiny, "pretrain": out / "pretrain", "sft": out / "sft"}
    for name in EVALUATED:
        steps.append(
            Step(
                f"generate-{name}",
                out / "eval" / f"answers-{name}",
                _script(
                    "generate.py",
                    "--config",
                    "recipes/tiny/eval.yaml",
                    "--model",
                    models[name],
                    "--input",
                    DEMO_INSTRUCTIONS,
                    "--output_dir",
                    out / "eval" / f"answers-{name}",
                    *samples,
                ),
            )
        )
    steps.append(
        Step(
            "judge",
            out / "eval" / "report",
            _script(
                "judge.py",
                "--config",
                "recipes/tiny/eval.yaml",
                "--inputs",
                *(out / "eval" / f"answers-{name}" for name in EVALUATED),
                "--output_dir",
                out / "eval" / "report",
                "--judge_base_url",
                teacher_url,
                "--judge_model",
                tiny,
                "--train_dataset",
                DEMO_INSTRUCTIONS,
            ),
            needs_teacher=True,
        )
    )
    return steps


def run_step(step: Step, log_dir: Path) -> None:
    """Run one step, echoing its output and keeping it in ``log_dir/<step>.log``; raise on failure."""
    if hub.is_finished(step.output):
        step.skipped = True
        logger.info("[%s] already finished in %s, skipped", step.name, step.output)
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    logger.info("[%s] %s", step.name, " ".join(step.command[1:]))
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            step.command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            log.write(line)
            # Progress bars stay in the log; the console gets the stage's story.
            if "%|" not in line and line.strip():
                sys.stdout.write(f"  {step.name} | {line}")
        code = process.wait()
    step.seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"demo step {step.name!r} failed with exit code {code}; see {log_path}")


def _rows(folder: Path) -> dict[str, int]:
    # load_any, not load_dataset(folder): datasets' cache would serve a same-named earlier folder.
    from asclepius.data.loading import load_any

    return {split: ds.num_rows for split, ds in load_any(str(folder)).items()}


def _training_facts(folder: Path) -> dict:
    facts: dict = {}
    state = folder / "trainer_state.json"
    candidates = [state] + sorted(folder.glob("checkpoint-*/trainer_state.json"))
    for path in candidates:
        if path.exists():
            history = json.loads(path.read_text())["log_history"]
            losses = [entry["loss"] for entry in history if "loss" in entry]
            if losses:
                facts.update(first_loss=losses[0], last_loss=losses[-1])
            break
    metrics = folder / hub.WORK_DIR_NAME / "metrics.json"
    if metrics.exists():
        facts.update(json.loads(metrics.read_text()))
    return facts


def summarize(options: DemoOptions, steps: list[Step], total_seconds: float) -> str:
    """A short plain-text summary of every stage's output, as printed at the end of the demo."""
    out = options.output_dir
    lines = ["", "=" * 78, "Asclepius demo: what came out (tiny random model, fictional data)", "=" * 78]
    for step in steps:
        timing = "cached" if step.skipped else f"{step.seconds:.0f}s"
        lines.append(f"{step.name:<18} {timing:>7}  {step.output}")
    lines.append("")
    for name in ("notes", "questions", "instructions"):
        folder = out / name
        counts = ", ".join(f"{split} {n}" for split, n in _rows(folder).items())
        lines.append(f"{name:<13} rows: {counts}")
    lines.append("  (the tiny teacher writes nonsense: these rows show the machinery, not the quality;")
    lines.append("   the cards in each folder count what every filter dropped)")
    pretrain, sft = _training_facts(out / "pretrain"), _training_facts(out / "sft")
    for label, facts in (("pretrain", pretrain), ("sft", sft)):
        if "last_loss" in facts:
            lines.append(f"{label:<13} training loss {facts['first_loss']:.3f} -> {facts['last_loss']:.3f}")
    if "heldout_note_perplexity_before" in pretrain:
        lines.append(
            f"held-out note perplexity: {pretrain['heldout_note_perplexity_before']:.1f} before pretraining, "
            f"{pretrain['heldout_note_perplexity_after']:.1f} after "
            f"({100 * pretrain['heldout_note_perplexity_reduction']:.0f}% lower)"
        )
    before, after = sft.get("heldout_answer_loss_before"), sft.get("heldout_answer_loss_after")
    if before is not None and after is not None:
        lines.append(f"held-out answer loss: {before:.3f} for the pretrained model, {after:.3f} after SFT")
    results_path = out / "eval" / "report" / "results.json"
    if results_path.exists():
        lines.append("")
        lines.append(f"judge report: {out / 'eval' / 'report' / 'report.md'}")
        lines.extend(judge_lines(json.loads(results_path.read_text())))
    lines.append(f"\ntotal wall time {total_seconds:.0f}s; everything is under {out}/")
    return "\n".join(lines)


def judge_lines(results: dict) -> list[str]:
    """One line per candidate: mean judge score (or how many were missing) and ROUGE-L."""
    lines = []
    for name, stats in (results.get("models") or {}).items():
        mean = stats.get("mean_score")
        score = "no valid judgement" if mean is None else f"judge mean {mean:.2f}"
        missing = stats.get("missing_rate")
        rouge = stats.get("rougeL")
        parts = [score]
        if missing is not None:
            parts.append(f"missing {100 * missing:.0f}%")
        if rouge is not None:
            parts.append(f"ROUGE-L {rouge:.3f}")
        lines.append(f"  {name:<28} " + ", ".join(parts))
    return lines
