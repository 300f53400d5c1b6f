"""The offline end-to-end demo: every stage of the method on a real small model and the demo data.

``scripts/demo.py`` tells the story; this module holds the plan (one step per stage,
each the same command a user would type), runs the steps as subprocesses with their
logs kept, and summarises what came out. Each step is skipped when its output folder
is already finished, so a rerun resumes where the last one stopped.

Two profiles: ``smol`` (the default) runs SmolLM2-135M-Instruct as teacher, judge and
student, subset so the whole demo fits a 2-core machine; ``tiny`` runs the ~1M-parameter
random model, for CI, where only the machinery is tested.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from asclepius.stage.files import WORK_DIR_NAME, is_finished

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEMO_CASE_REPORTS = "data/demo/case_reports.csv"
DEMO_INSTRUCTIONS = "data/demo/synthetic_notes.jsonl"
# The models compared at the end: untrained, after continued pretraining, after SFT.
EVALUATED = ("base", "pretrain", "sft")
PROFILES = ("smol", "tiny")
# auto: bf16 where the CPU multiplies bf16 natively and the profile is smol, else float32.
PRECISIONS = ("auto", "bf16", "float32")  # of every model the demo runs

# What the smol profile does when a flag leaves it unset, chosen so the demo fits ~10
# minutes on 2 CPU cores (SmolLM2 trains at ~100 tokens/s and writes ~11 tokens/s there).
SMOL_DEFAULTS = {
    "limit": 2,  # case reports sent to the teacher (~30 s per note)
    # The teacher rarely stops by itself, so each stage's cap is its time: a question is a
    # sentence, an answer a few; notes keep the recipe's 256 tokens.
    "question_max_tokens": 64,
    "answer_max_tokens": 128,
    # x 2 blocks of 512 tokens (one at a time): ~3k of the 13.5k training-note tokens
    "pretrain_max_steps": 3,
    "sft_max_steps": 2,  # x 4 rows of ~630 tokens (one at a time)
    "eval_max_samples": 4,  # held-out questions answered per model, and judged
    "max_eval_examples": 4,  # held-out rows / notes of the stages' learning-signal check
    "benchmark_questions": 10,  # MMLU-medical questions per model (~0.5 s of CPU each for SmolLM2)
}
# The benchmark row: base vs SFT on the first questions of a short-prompt task (MMLU's are the
# shortest of the four), through lm-evaluation-harness; the tiny profile only runs the machinery.
DEMO_BENCHMARK_TASK = "mmlu_medical"
TINY_BENCHMARK_QUESTIONS = 3

# glibc serves large blocks (above a threshold of at most 32 MB) with mmap and hands them
# back to the kernel when freed, and a CPU training step allocates its logits and activations
# anew each time, so it faulted them in again: SFT spent ~30% of its time in the kernel.
# Keeping freed memory in the heap cut the SFT stage from 113 s to 91 s at the same peak
# (6.0 GB against 6.3 GB). The demo's processes (stages and
# teacher) get it unless the user set tunables of their own; ignored where glibc is not used.
HEAP_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296"


def keep_freed_memory(environ: MutableMapping[str, str] = os.environ) -> None:
    """Have the processes started from ``environ`` keep freed memory for reuse (see HEAP_TUNABLES)."""
    environ.setdefault("GLIBC_TUNABLES", HEAP_TUNABLES)


@dataclass
class DemoOptions:
    """Knobs that shrink the demo (the CI test uses them); unset, the profile's defaults apply."""

    output_dir: Path = Path("outputs/demo")
    model: str = "smol"  # profile: smol (SmolLM2-135M-Instruct) or tiny (random, for CI)
    base_model: Path | None = None  # smol: the converted SmolLM2 folder (default outputs/smol-135m)
    limit: int | None = None  # case reports sent to the teacher
    train_max_steps: int | None = None  # cap on optimizer steps per training stage
    eval_max_samples: int | None = None  # held-out rows answered per model
    precision: str = "auto"  # of training, generation, the benchmark and the teacher (see PRECISIONS)

    def __post_init__(self) -> None:
        if self.model not in PROFILES:
            raise ValueError(f"--model must be one of {PROFILES}, got {self.model!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def bf16(self) -> bool:
        """Whether the demo's models run in bf16; the tiny profile (CI) keeps float32 unless asked."""
        if self.precision == "auto":
            return self.model == "smol" and cpu_has_bf16_units()
        return self.precision == "bf16"

    @property
    def teacher_dtype(self) -> str:
        """The served teacher's and judge's weights: bf16 decodes ~15% faster on bf16 units (it samples anyway)."""
        return "bfloat16" if self.bf16 else "auto"

    @property
    def tiny_model(self) -> Path:
        return self.output_dir / "tiny-model"

    @property
    def base(self) -> Path:
        """The student's starting point (and, in the tiny profile, also teacher and judge)."""
        if self.model == "tiny":
            return self.tiny_model
        return Path(self.base_model or ROOT / "outputs" / "smol-135m")

    @property
    def teacher(self) -> Path:
        """The folder the teacher/judge is served from (smol: the base with sampling settings)."""
        return self.tiny_model if self.model == "tiny" else self.output_dir / "teacher"

    def setting(self, name: str) -> int | None:
        """A size knob: the flag when given, else the smol default (tiny: the recipe's own)."""
        flag = {
            "limit": self.limit,
            "pretrain_max_steps": self.train_max_steps,
            "sft_max_steps": self.train_max_steps,
            "eval_max_samples": self.eval_max_samples,
            "max_eval_examples": None,
            "benchmark_questions": None,
            "question_max_tokens": None,
            "answer_max_tokens": None,
        }[name]
        if flag is not None or self.model == "tiny":
            return flag
        return SMOL_DEFAULTS[name]


@functools.cache
def cpu_has_bf16_units() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX) and no GPU will do the work.

    There the bf16 SmolLM2 work took ~0.75-0.85x its float32 time on 2 cores (training:
    float32 weights, bf16 products; generation and the teacher: half the bytes per weight),
    the whole demo ~0.95x; without them bf16 is emulated and slower, so float32 stays.
    """
    import torch

    if torch.cuda.is_available():
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own, private
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def bf16_flags(options: DemoOptions) -> tuple[list[str], list[str]]:
    """(training flags, model-loading flags) that run the student's steps in bf16; empty for float32.

    Training is mixed precision, as the GPU recipes' ``bf16: true``: float32 weights and
    optimizer, bf16 products; transformers wants ``--use_cpu`` to allow it without a GPU.
    Generation and the benchmark load the weights in bf16. The stages' held-out checks
    (perplexity, answer loss) keep the recipes' float32, so they compare across precisions.
    """
    if not options.bf16:
        return [], []
    import torch

    on_cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    return ["--bf16", "true", *on_cpu], ["--dtype", "bfloat16"]


@dataclass
class Step:
    name: str
    output: Path
    command: list[str]
    needs_teacher: bool = False
    seconds: float | None = None
    cpu_seconds: float | None = None  # user+sys of every process meanwhile, the teacher's included
    skipped: bool = False
    extra: dict = field(default_factory=dict)


def cpu_seconds() -> float:
    """User+system CPU so far of this process and of every process it started, finished or running.

    The running ones are the teacher server, whose CPU is most of what a data or judge step
    costs; a step's own process is counted once it has exited (RUSAGE_CHILDREN). On a shared
    machine wall time swings with the other load, CPU time much less: compare runs by this.
    """
    import psutil  # a dependency of accelerate

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # exited between the listing and the read: counted once reaped
            continue
        total += times.user + times.system
    return total


@dataclass
class Stopwatch:
    """Wall and CPU time of the demo's phases that are not steps (model, teacher start), and the total."""

    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def measure(self, name: str, work, *args):
        """Run ``work(*args)`` and record its wall and CPU seconds under ``name``."""
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = work(*args)
        self.phases[name] = (time.perf_counter() - wall, cpu_seconds() - cpu)
        return result

    def total(self, steps: list[Step]) -> tuple[float, float]:
        """Wall time since the start, and the CPU of the phases and steps as the table shows them.

        Not a fresh rusage reading: one came out ~165 s under the figures of its own table
        (likely the teacher's: RUSAGE_CHILDREN counts only the processes this one reaps)."""
        cpu = sum(cpu for _, cpu in self.phases.values())
        cpu += sum(step.cpu_seconds or 0.0 for step in steps if not step.skipped)
        return time.perf_counter() - self.started, cpu


def _script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / name), *(str(a) for a in args)]


def _flag(name: str, value: object) -> list[object]:
    return [] if value is None else [f"--{name}", value]


def plan(options: DemoOptions, teacher_url: str = "{teacher_url}") -> list[Step]:
    """The demo's steps in order; ``teacher_url`` is filled in once the teacher is up."""
    out, base, recipe = options.output_dir, options.base, f"recipes/{options.model}"
    teacher = ["--base_url", teacher_url, "--model", str(options.teacher)]
    limit = _flag("limit", options.setting("limit"))
    signal_cap = _flag("max_eval_examples", options.setting("max_eval_examples"))
    samples = _flag("max_samples", options.setting("eval_max_samples"))
    train_precision, load_precision = bf16_flags(options)
    data_yaml = f"{recipe}/data.yaml"
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
                *_flag("max_tokens", options.setting("question_max_tokens")),
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
                *_flag("max_tokens", options.setting("answer_max_tokens")),
            ),
            needs_teacher=True,
        ),
        # Training uses the bundled, human-written instruction set: a handful of notes from
        # a 135M teacher (or the tiny one's nonsense) is too little, and invents facts.
        Step(
            "pretrain",
            out / "pretrain",
            _script(
                "pretrain.py",
                "--config",
                f"{recipe}/pretrain/config_full.yaml",
                "--model_name_or_path",
                base,
                "--dataset_name",
                DEMO_INSTRUCTIONS,
                "--output_dir",
                out / "pretrain",
                *_flag("max_steps", options.setting("pretrain_max_steps")),
                *signal_cap,
                *train_precision,
            ),
        ),
        Step(
            "sft",
            out / "sft",
            _script(
                "sft.py",
                "--config",
                f"{recipe}/sft/config_full.yaml",
                "--model_name_or_path",
                out / "pretrain",
                "--dataset_name",
                DEMO_INSTRUCTIONS,
                "--output_dir",
                out / "sft",
                *_flag("max_steps", options.setting("sft_max_steps")),
                *signal_cap,
                *train_precision,
            ),
        ),
    ]
    models = {"base": base, "pretrain": out / "pretrain", "sft": out / "sft"}
    steps.append(
        Step(
            "benchmark",
            out / "eval" / "benchmark",
            _script(
                "benchmark.py",
                "--models",
                base,
                out / "sft",
                "--tasks",
                DEMO_BENCHMARK_TASK,
                "--limit",
                options.setting("benchmark_questions") or TINY_BENCHMARK_QUESTIONS,
                "--output_dir",
                out / "eval" / "benchmark",
                *load_precision,
            ),
        )
    )
    for name in EVALUATED:
        steps.append(
            Step(
                f"generate-{name}",
                out / "eval" / f"answers-{name}",
                _script(
                    "generate.py",
                    "--config",
                    f"{recipe}/eval.yaml",
                    "--model",
                    models[name],
                    "--input",
                    DEMO_INSTRUCTIONS,
                    "--output_dir",
                    out / "eval" / f"answers-{name}",
                    *samples,
                    *load_precision,
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
                f"{recipe}/eval.yaml",
                "--inputs",
                *(out / "eval" / f"answers-{name}" for name in EVALUATED),
                "--output_dir",
                out / "eval" / "report",
                "--judge_base_url",
                teacher_url,
                "--judge_model",
                options.teacher,
                "--train_dataset",
                DEMO_INSTRUCTIONS,
            ),
            needs_teacher=True,
        )
    )
    return steps


def run_step(step: Step, log_dir: Path) -> None:
    """Run one step, echoing its output and keeping it in ``log_dir/<step>.log``; raise on failure."""
    if is_finished(step.output):
        step.skipped = True
        logger.info("[%s] already finished in %s, skipped", step.name, step.output)
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{step.name}.log"
    logger.info("[%s] %s", step.name, " ".join(step.command[1:]))
    start, start_cpu = time.perf_counter(), cpu_seconds()
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
    step.seconds, step.cpu_seconds = time.perf_counter() - start, cpu_seconds() - start_cpu
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
    metrics = folder / WORK_DIR_NAME / "metrics.json"
    if metrics.exists():
        facts.update(json.loads(metrics.read_text()))
    return facts


def install_seconds() -> int | None:
    """How long ``make install`` took, as its stamp records; None when installed otherwise."""
    try:
        return int((Path(sys.prefix) / ".installed").read_text().strip())
    except (OSError, ValueError):
        return None


def make_lines(now: float | None = None) -> list[str]:
    """The whole ``make demo`` as a fresh clone waits for it: from the moment make started (the
    Makefile passes it in ``ASCLEPIUS_MAKE_STARTED``) to now, and whether it installed first."""
    try:
        started = int(os.environ["ASCLEPIUS_MAKE_STARTED"])
    except (KeyError, ValueError):
        return []
    total = (time.time() if now is None else now) - started
    try:  # the install ran in this make only if it began after make did
        install_started = int((Path(sys.prefix) / ".install-started").read_text().strip())
    except (OSError, ValueError):
        install_started = None
    installed = install_seconds()
    if install_started is not None and install_started >= started and installed is not None:
        return [f"`make demo` from start to end: {total:.0f}s, the install included ({installed}s of it)"]
    return [f"`make demo` from start to end: {total:.0f}s (already installed)"]


def timing_lines(steps: list[Step], stopwatch: Stopwatch) -> list[str]:
    """Wall and CPU seconds per phase and step, and the total: where the demo's time went."""
    lines = [
        f"{'stage':<18} {'wall':>7} {'CPU':>7}  output (CPU: user+sys of every process, teacher included)"
    ]
    for name, (wall, cpu) in stopwatch.phases.items():
        lines.append(f"{name:<18} {wall:>6.0f}s {cpu:>6.0f}s")
    for step in steps:
        if step.skipped or step.seconds is None:
            lines.append(f"{step.name:<18} {'cached':>7} {'':>7}  {step.output}")
        else:
            lines.append(f"{step.name:<18} {step.seconds:>6.0f}s {step.cpu_seconds:>6.0f}s  {step.output}")
    return lines


def summarize(options: DemoOptions, steps: list[Step], stopwatch: Stopwatch) -> str:
    """A plain-text summary of every stage's output, as printed at the end of the demo."""
    out = options.output_dir
    who = "SmolLM2-135M-Instruct" if options.model == "smol" else "tiny random model"
    lines = ["", "=" * 78, f"Asclepius demo: what came out ({who}, fictional data)", "=" * 78]
    for name in ("notes", "questions", "instructions"):
        folder = out / name
        counts = ", ".join(f"{split} {n}" for split, n in _rows(folder).items())
        lines.append(f"{name:<13} rows: {counts}")
    if options.model == "tiny":
        lines.append("  (the tiny teacher writes nonsense: these rows show the machinery, not the quality;")
        lines.append("   the cards in each folder count what every filter dropped)")
    else:
        lines.extend(teacher_lines(out))
        lines.extend(heldout_answer_lines(out))
    lines.append("")
    lines.append("Numbers (training used the bundled human-written demo set; held-out = other patients)")
    lines.append(precision_line(options))
    pretrain, sft = _training_facts(out / "pretrain"), _training_facts(out / "sft")
    for label, facts in (("pretrain", pretrain), ("sft", sft)):
        if "last_loss" in facts:
            lines.append(f"{label:<13} training loss {facts['first_loss']:.3f} -> {facts['last_loss']:.3f}")
    if "heldout_note_perplexity_before" in pretrain:
        lines.append(
            f"held-out note perplexity: {pretrain['heldout_note_perplexity_before']:.2f} before pretraining, "
            f"{pretrain['heldout_note_perplexity_after']:.2f} after "
            f"({100 * pretrain['heldout_note_perplexity_reduction']:.1f}% lower)"
        )
    before, after = sft.get("heldout_answer_loss_before"), sft.get("heldout_answer_loss_after")
    if before is not None and after is not None:
        lines.append(f"held-out answer loss: {before:.3f} for the pretrained model, {after:.3f} after SFT")
    lines.extend(rouge_lines(out))
    lines.extend(benchmark_lines(out))
    results_path = out / "eval" / "report" / "results.json"
    if results_path.exists():
        lines.append("")
        lines.append(f"judge report: {out / 'eval' / 'report' / 'report.md'}")
        if options.model == "smol":
            lines.append("  The judge is the same 135M model: it mostly fails the judgement format, so most")
            lines.append("  judgements are missing; read the valid ones below as anecdotes, not a result.")
        lines.extend(judge_lines(json.loads(results_path.read_text())))
    lines.append("")
    lines.append("Where the time went:")
    lines.extend(timing_lines(steps, stopwatch))
    wall, cpu = stopwatch.total(steps)
    lines.append(f"total wall time {wall:.0f}s, CPU time {cpu:.0f}s; everything is under {out}/")
    lines.extend(make_lines())
    return "\n".join(lines)


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + " ..."


def _side_by_side(
    left: str, right: str, titles: tuple[str, str], width: int = 38, rows: int = 12
) -> list[str]:
    import textwrap

    a = textwrap.wrap(left, width)[:rows]
    b = textwrap.wrap(right, width)[:rows]
    lines = [f"  {titles[0]:<{width}} | {titles[1]}", f"  {'-' * width}-+-{'-' * width}"]
    for i in range(max(len(a), len(b))):
        lines.append(f"  {a[i] if i < len(a) else '':<{width}} | {b[i] if i < len(b) else ''}")
    return lines


def teacher_lines(out: Path) -> list[str]:
    """A case report beside the note the teacher wrote from it, what the grounding checks flag, one Q+A."""
    from asclepius.data.filters import ungrounded_values
    from asclepius.data.loading import load_any

    lines = [
        "",
        "The teacher (SmolLM2-135M) writes readable English, often not a note at all, and INVENTS FACTS:",
    ]
    notes = load_any(str(out / "notes"), "annotated")["train"]
    written = [row for row in notes if row["note"]]
    if not written:
        return [*lines, "  (no note was written)"]
    row = written[0]
    lines.extend(
        _side_by_side(
            _excerpt(row["case_report"], 600),
            _excerpt(row["note"], 600),
            ("case report (excerpt)", "note written from it (excerpt)"),
        )
    )
    invented = ungrounded_values(row["note"], row["case_report"])
    lines.append(f"  numbers/doses in this note that its case report does not contain: {invented or 'none'}")
    try:
        answers = load_any(str(out / "instructions"), "annotated")["train"]
    except Exception:  # a folder without the annotated config: nothing to show
        return lines
    rows = list(answers)
    flagged = [r for r in rows if r.get("ungrounded_values")]
    lines.append(
        f"  grounding check on the teacher's answers: {len(flagged)} of {len(rows)} cite values "
        "absent from their note" + (f", e.g. {flagged[0]['ungrounded_values'][:5]}" if flagged else "")
    )
    kept = [r for r in rows if r.get("drop_reason") is None] or rows
    if kept:
        lines.append(f"  generated question: {_excerpt(kept[0]['question'], 200)}")
        lines.append(f"  generated answer:   {_excerpt(kept[0]['answer'] or '', 300)}")
    return lines


def _answers(out: Path, name: str):
    from asclepius.data.loading import load_any

    folder = out / "eval" / f"answers-{name}"
    if not is_finished(folder):
        return None
    return next(iter(load_any(str(folder)).values()))


def heldout_answer_lines(out: Path) -> list[str]:
    """One held-out question: the base model's answer beside the trained one's and the reference."""
    base, sft = _answers(out, "base"), _answers(out, "sft")
    if base is None or sft is None or base.num_rows == 0:
        return []
    row, trained = base[0], sft[0]
    return [
        "",
        "A held-out question (a patient no stage trained on):",
        f"  question:  {_excerpt(row['question'], 200)}",
        f"  reference: {_excerpt(row.get('answer') or '', 240)}",
        f"  base:      {_excerpt(row['generated'] or '(empty)', 240)}",
        f"  trained:   {_excerpt(trained['generated'] or '(empty)', 240)}",
    ]


def rouge_lines(out: Path) -> list[str]:
    """ROUGE-L F1 against the reference answers per model, with a 95% bootstrap interval over questions."""
    from asclepius.evaluation.statistics import rouge_l

    lines = []
    for name in EVALUATED:
        answers = _answers(out, name)
        if answers is None or "answer" not in answers.column_names:
            continue
        rouge = rouge_l(answers["answer"], answers["generated"])
        if rouge["rouge_l"] is None:
            continue
        low, high = rouge["ci95"]
        lines.append(
            f"ROUGE-L {name:<9} {rouge['rouge_l']:.3f} (95% CI {low:.3f}-{high:.3f}, n={rouge['n']})"
        )
    return lines


def precision_line(options: DemoOptions) -> str:
    if options.bf16:
        return (
            "precision     bf16 products in training, bf16 weights in generation, benchmark and teacher "
            "(--precision float32: all float32)"
        )
    return "precision     float32 (--precision bf16: faster where the CPU has bf16 units)"


def benchmark_lines(out: Path) -> list[str]:
    """The benchmark row: base and SFT accuracy on the small fixed subsample, and their paired difference."""
    path = out / "eval" / "benchmark" / "results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    names = dict(zip(results["models"], ("base", "sft")))
    first = results["results"][0]
    lines = [
        f"benchmark    {first['task']}, first {first['n']} of {first['n_total']} questions (lm_eval, zero-shot; "
        f"chance {first['chance']:.2f}); accuracy [95% CI]:"
    ]
    cells = []
    for result in results["results"]:
        accuracy = result["metrics"]["acc"]
        low, high = accuracy["ci95"]
        cells.append(f"{names[result['model']]} {accuracy['value']:.2f} [{low:.2f}, {high:.2f}]")
    for paired in results["paired_vs_first"]:
        low, high = paired["ci95"]
        if low is not None:
            told = "distinguishable" if low > 0 or high < 0 else "not distinguishable"
            cells.append(
                f"sft - base {paired['difference']:+.2f} [{low:+.2f}, {high:+.2f}], {told} from zero"
            )
    return lines + ["  " + "; ".join(cells)]


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
