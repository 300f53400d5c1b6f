"""The data chain against `transformers serve` with the tiny random model (acceptance, offline).

The tiny model writes nonsense and rarely stops by itself: the tiny recipe keeps
truncated generations, so the chain still produces rows, with the published columns.
"""

from __future__ import annotations

import pytest
from datasets import load_dataset
from test_data_pipeline import PUBLISHED_COLUMNS, run_script, script_env

from asclepius.stage.files import is_finished
from asclepius.tasks import TASKS


@pytest.mark.slow
def test_chain_runs_against_transformers_serve(tiny_serve, tmp_path):
    base_url, model_path = tiny_serve
    model_path = str(model_path)
    env = script_env(tmp_path)
    folders = {
        "notes": tmp_path / "notes",
        "questions": tmp_path / "questions",
        "answers": tmp_path / "instructions",
    }
    flags = ["--config", "recipes/tiny/data.yaml", "--base_url", base_url, "--model", model_path,
             "--show_progress", "false", "--max_tokens", "16"]  # fmt: skip
    chain = {  # each stage takes only its own folders
        "notes": ["--limit", "8", "--output_dir", str(folders["notes"])],
        "questions": ["--input", str(folders["notes"]), "--output_dir", str(folders["questions"])],
        "answers": ["--input", str(folders["questions"]), "--output_dir", str(folders["answers"])],
    }
    for stage, extra in chain.items():
        process = run_script(f"make_{stage}.py", *flags, *extra, env=env)
        assert process.returncode == 0, process.stderr[-3000:]
        assert is_finished(folders[stage])

    dataset = load_dataset(str(folders["answers"]), cache_dir=str(tmp_path / "load"))
    rows = [row for split in dataset.values() for row in split]
    assert rows, "the chain produced no rows"
    for split in dataset.values():
        assert split.column_names == PUBLISHED_COLUMNS
    assert {row["task"] for row in rows} <= set(TASKS)
    patients = {name: set(split["patient_id"]) for name, split in dataset.items()}
    assert not patients.get("train", set()) & patients.get("test", set())
    notes = load_dataset(str(folders["notes"]), "annotated", cache_dir=str(tmp_path / "load"))["train"]
    assert len(notes) == 8 and set(notes["teacher_model"]) == {model_path}
