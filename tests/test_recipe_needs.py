"""A recipe's optional needs (tracker, bitsandbytes, deepspeed, flash-attn) are checked and name their extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asclepius import recipe_needs
from asclepius.errors import InputError
from asclepius.recipe_needs import Need, check_needs, config_files, needs_of, require_for_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def missing(monkeypatch):
    """Pretend the named modules are not installed: ``missing.add("bitsandbytes")``."""
    absent: set[str] = set()
    monkeypatch.setattr(Need, "installed", lambda need: need.module not in absent)
    return absent


def write(tmp_path: Path, text: str, name: str = "config_full.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_recipe_runs_on_the_default_install(monkeypatch):
    monkeypatch.chdir(ROOT)
    paths = config_files()
    assert any("deepspeed" in path.name for path in paths) and len(paths) > 30
    trackio_recipes = [path for path in paths if "report_to: trackio" in path.read_text()]
    assert len(trackio_recipes) >= 20, "the big recipes log to trackio"
    assert all(
        finding.need.package == "trackio" for path in trackio_recipes for finding in needs_of(path)[:1]
    )
    # trackio comes with the default install: nothing a CPU machine could run is missing.
    failures, _ = check_needs(paths, gpu_available=False)
    assert failures == []
    assert recipe_needs.main([str(path) for path in trackio_recipes]) == 0


def test_a_missing_tracker_fails_and_names_the_extra(tmp_path, missing, capsys):
    missing.add("wandb")
    path = write(tmp_path, "report_to: [wandb, trackio]\n")
    assert recipe_needs.main([str(path)]) == 1
    assert f'{path}: report_to: wandb needs wandb, not installed: pip install -e ".[tracking]"' in (
        capsys.readouterr().err
    )


def test_gpu_only_needs_are_notes_without_a_gpu_and_failures_with_one(tmp_path, missing):
    missing.update({"bitsandbytes", "deepspeed", "flash_attn"})
    qlora = write(
        tmp_path, "load_in_4bit: true\noptim: paged_adamw_8bit\nattn_implementation: flash_attention_2\n"
    )
    accelerate = write(tmp_path, "distributed_type: DEEPSPEED\nnum_processes: 8\n", "deepspeed_zero3.yaml")
    failures, notes = check_needs([qlora, accelerate], gpu_available=False)
    assert failures == [] and len(notes) == 4
    failures, notes = check_needs([qlora, accelerate], gpu_available=True)
    assert notes == [] and len(failures) == 4
    assert any('load_in_4bit: true needs bitsandbytes and a CUDA GPU' in line and ".[quantization]" in line
               for line in failures)  # fmt: skip
    assert any("flash-attn" in line and ".[flash]" in line for line in failures)
    assert any(str(accelerate) in line and ".[deepspeed]" in line for line in failures)


def test_settings_that_need_nothing_extra(tmp_path):
    path = write(
        tmp_path, "report_to: none\nattn_implementation: sdpa\nload_in_4bit: false\noptim: adamw_torch\n"
    )
    assert needs_of(path) == []


def test_a_run_is_refused_before_any_work_in_one_line(missing):
    missing.add("bitsandbytes")
    with pytest.raises(InputError) as error:
        require_for_run({"report_to": ["none"], "load_in_4bit": True}, "recipes/x/sft/config_qlora.yaml")
    assert str(error.value) == (
        "recipes/x/sft/config_qlora.yaml: field 'load_in_4bit: true': needs bitsandbytes (and a CUDA GPU), "
        'not installed: pip install -e ".[quantization]"'
    )


def test_make_check_recipes_checks_the_needs():
    result = subprocess.run(["make", "-n", "-o", ".venv/.installed", "check-recipes"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "-m asclepius.recipes" in result.stdout and "-m asclepius.recipe_needs" in result.stdout


@pytest.mark.skipif(recipe_needs.BITSANDBYTES.installed(), reason="bitsandbytes is installed here")
def test_the_training_script_refuses_a_missing_need_before_loading(tiny_model_path, tmp_path):
    command = [sys.executable, str(ROOT / "scripts/sft.py"), "--config", "recipes/tiny/sft/config_lora.yaml",
               "--model_name_or_path", str(tiny_model_path), "--output_dir", str(tmp_path / "sft"),
               "--load_in_4bit", "true"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "recipes/tiny/sft/config_lora.yaml: field 'load_in_4bit: true': needs bitsandbytes" in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "sft" / "model.safetensors").exists()
