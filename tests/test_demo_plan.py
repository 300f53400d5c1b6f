"""The demo's plan per profile: the smol profile runs SmolLM2 with the smol recipes, capped to fit 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asclepius.demo import SMOL_DEFAULTS, DemoOptions, _side_by_side, plan


def _flags(command: list[str]) -> dict[str, str]:
    return {command[i][2:]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}


def test_smol_profile_uses_smol_recipes_teacher_folder_and_caps(tmp_path):
    options = DemoOptions(output_dir=tmp_path, base_model=Path("/models/smol"))
    steps = {step.name: step for step in plan(options, "http://127.0.0.1:1/v1")}
    notes = _flags(steps["notes"].command)
    assert notes["config"] == "recipes/smol/data.yaml"
    assert notes["model"] == str(tmp_path / "teacher") and notes["limit"] == str(SMOL_DEFAULTS["limit"])
    pretrain = _flags(steps["pretrain"].command)
    assert pretrain["config"] == "recipes/smol/pretrain/config_full.yaml"
    assert pretrain["model_name_or_path"] == "/models/smol"
    assert pretrain["max_steps"] == str(SMOL_DEFAULTS["pretrain_max_steps"])
    assert _flags(steps["sft"].command)["max_steps"] == str(SMOL_DEFAULTS["sft_max_steps"])
    # A 135M teacher rarely stops: questions and answers get their own, shorter caps.
    assert _flags(steps["questions"].command)["max_tokens"] == str(SMOL_DEFAULTS["question_max_tokens"])
    assert _flags(steps["answers"].command)["max_tokens"] == str(SMOL_DEFAULTS["answer_max_tokens"])
    assert "max_tokens" not in _flags(steps["notes"].command)
    assert _flags(steps["generate-base"].command)["model"] == "/models/smol"
    judge = _flags(steps["judge"].command)
    assert judge["judge_model"] == str(tmp_path / "teacher") and judge["config"] == "recipes/smol/eval.yaml"


def test_flags_override_the_smol_defaults_and_tiny_keeps_its_recipes(tmp_path):
    options = DemoOptions(output_dir=tmp_path, limit=5, train_max_steps=1, eval_max_samples=2)
    steps = {step.name: step for step in plan(options)}
    assert _flags(steps["notes"].command)["limit"] == "5"
    assert _flags(steps["sft"].command)["max_steps"] == "1"
    assert _flags(steps["generate-sft"].command)["max_samples"] == "2"
    tiny = {step.name: step for step in plan(DemoOptions(output_dir=tmp_path, model="tiny"))}
    assert _flags(tiny["pretrain"].command)["config"] == "recipes/tiny/pretrain/config_full.yaml"
    assert "max_steps" not in _flags(tiny["pretrain"].command)  # the tiny recipe's own length
    assert "max_tokens" not in _flags(tiny["questions"].command)
    assert _flags(tiny["notes"].command)["model"] == str(tmp_path / "tiny-model")


def test_precision_bf16_trains_mixed_and_loads_bf16_weights_and_float32_adds_nothing(tmp_path):
    base = {"output_dir": tmp_path, "base_model": Path("/models/smol")}
    bf16 = {step.name: step for step in plan(DemoOptions(**base, precision="bf16"))}
    for name in ("pretrain", "sft"):
        flags = _flags(bf16[name].command)
        assert flags["bf16"] == "true"
        # transformers refuses --bf16 without a GPU unless --use_cpu says the CPU is meant
        assert flags.get("use_cpu") == (None if torch.cuda.is_available() else "true")
    for name in ("generate-base", "generate-pretrain", "generate-sft", "benchmark"):
        assert _flags(bf16[name].command)["dtype"] == "bfloat16"
    for name in ("notes", "questions", "answers", "judge"):  # the teacher's steps: the server's own dtype
        assert "dtype" not in _flags(bf16[name].command) and "bf16" not in _flags(bf16[name].command)
    assert DemoOptions(**base, precision="bf16").teacher_dtype == "bfloat16"
    assert DemoOptions(**base, precision="float32").teacher_dtype == "auto"  # the checkpoint's own
    float32 = plan(DemoOptions(**base, precision="float32"))
    assert not any({"bf16", "dtype", "use_cpu"} & set(_flags(step.command)) for step in float32)
    # auto: the tiny profile (CI) stays float32 whatever the CPU
    tiny = plan(DemoOptions(output_dir=tmp_path, model="tiny"))
    assert not any({"bf16", "dtype"} & set(_flags(step.command)) for step in tiny)
    with pytest.raises(ValueError, match="precision"):
        DemoOptions(precision="fp16")


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="smol"):
        DemoOptions(model="llama")


def test_side_by_side_keeps_both_texts():
    lines = _side_by_side("left text " * 10, "right words " * 10, ("case report", "note"), width=20, rows=3)
    assert lines[0].startswith("  case report") and "| note" in lines[0]
    assert all("|" in line for line in lines[2:]) and len(lines) == 5
    assert "left text" in lines[2] and "right words" in lines[2]


def test_benchmark_step_compares_base_and_sft_on_a_small_fixed_subsample(tmp_path):
    from asclepius.demo import DEMO_BENCHMARK_TASK, TINY_BENCHMARK_QUESTIONS

    options = DemoOptions(output_dir=tmp_path, base_model=Path("/models/smol"))
    step = {step.name: step for step in plan(options)}["benchmark"]
    assert step.command[step.command.index("--models") + 1 : step.command.index("--tasks")] == [
        "/models/smol",
        str(tmp_path / "sft"),
    ]
    flags = _flags(step.command)
    assert flags["tasks"] == DEMO_BENCHMARK_TASK and flags["limit"] == str(
        SMOL_DEFAULTS["benchmark_questions"]
    )
    tiny = {step.name: step for step in plan(DemoOptions(output_dir=tmp_path, model="tiny"))}["benchmark"]
    assert _flags(tiny.command)["limit"] == str(TINY_BENCHMARK_QUESTIONS)


def test_benchmark_lines_say_the_subsample_and_whether_the_difference_is_told_from_zero(tmp_path):
    import json

    from asclepius.demo import benchmark_lines

    assert benchmark_lines(tmp_path) == []
    folder = tmp_path / "eval" / "benchmark"
    folder.mkdir(parents=True)
    acc = lambda value, low, high: {"acc": {"value": value, "stderr": 0.1, "ci95": [low, high]}}  # noqa: E731
    results = {
        "models": ["/models/smol", "out/sft"],
        "results": [
            {"model": "/models/smol", "task": "mmlu_medical", "n": 10, "n_total": 1089, "chance": 0.25,
             "metrics": acc(0.1, 0.018, 0.404)},
            {"model": "out/sft", "task": "mmlu_medical", "n": 10, "n_total": 1089, "chance": 0.25,
             "metrics": acc(0.3, 0.108, 0.603)},
        ],
        "paired_vs_first": [{"task": "mmlu_medical", "difference": 0.2, "ci95": [-0.1, 0.5], "n": 10}],
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))
    text = "\n".join(benchmark_lines(tmp_path))
    assert "first 10 of 1089 questions" in text and "chance 0.25" in text
    assert "base 0.10 [0.02, 0.40]; sft 0.30 [0.11, 0.60]" in text
    assert "sft - base +0.20 [-0.10, +0.50], not distinguishable from zero" in text


def test_cpu_seconds_counts_a_running_child_like_the_teacher_server():
    import subprocess
    import sys
    import time

    from asclepius.demo import cpu_seconds

    before = cpu_seconds()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 120  # a wait, not a timing assertion: the count must grow
        while cpu_seconds() - before < 0.5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cpu_seconds() - before >= 0.5
    finally:
        busy.kill()
        busy.wait()


def test_the_summary_ends_with_wall_and_cpu_time_per_phase_and_step(tmp_path):
    from asclepius.demo import Step, Stopwatch, timing_lines

    stopwatch = Stopwatch()
    assert stopwatch.measure("model", lambda x: x + 1, 1) == 2
    ran = Step("notes", tmp_path / "notes", [], seconds=12.4, cpu_seconds=20.6)
    cached = Step("sft", tmp_path / "sft", [], skipped=True)
    lines = timing_lines([ran, cached], stopwatch)
    assert "wall" in lines[0] and "CPU" in lines[0]
    assert lines[1].split()[0] == "model"
    assert lines[2].split()[:3] == ["notes", "12s", "21s"]
    assert lines[3].split()[:2] == ["sft", "cached"]
    wall, cpu = stopwatch.total([ran, cached])
    assert wall >= 0 and cpu == pytest.approx(stopwatch.phases["model"][1] + 20.6)


def test_the_whole_make_demo_is_counted_from_when_make_started(tmp_path, monkeypatch):
    import asclepius.demo as demo

    monkeypatch.setattr(demo.sys, "prefix", str(tmp_path))
    monkeypatch.delenv("ASCLEPIUS_MAKE_STARTED", raising=False)
    assert demo.make_lines(now=1_000) == []  # run by hand: no claim about make
    monkeypatch.setenv("ASCLEPIUS_MAKE_STARTED", "600")
    (tmp_path / ".install-started").write_text("605\n")
    (tmp_path / ".installed").write_text("12\n")
    assert demo.make_lines(now=1_000) == [
        "`make demo` from start to end: 400s, the install included (12s of it)"
    ]
    (tmp_path / ".install-started").write_text("100\n")  # installed by an earlier make
    assert demo.make_lines(now=1_000) == ["`make demo` from start to end: 400s (already installed)"]


def test_the_demos_processes_keep_freed_memory_unless_the_user_tuned_glibc(tmp_path, monkeypatch):
    import sys

    import asclepius.demo as demo

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    demo.keep_freed_memory()
    step = demo.Step(
        "env", tmp_path / "out", [sys.executable, "-c", "import os; print(os.environ['GLIBC_TUNABLES'])"]
    )
    demo.run_step(step, tmp_path / "logs")
    assert (tmp_path / "logs" / "env.log").read_text().strip() == demo.HEAP_TUNABLES

    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    demo.keep_freed_memory(mine)
    assert mine == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}


def test_an_unknown_precision_is_a_one_line_error_before_any_work(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable,
        "scripts/demo.py",
        "--output_dir",
        str(tmp_path / "demo"),
        "--precision",
        "fp16",
    ]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --precision: expected one of auto, bf16, float32, got 'fp16'"
    ]
    assert not (tmp_path / "demo").exists()
