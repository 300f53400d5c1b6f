"""Card templates are package data: a plain (non-editable) install renders every card kind.

The package is built and installed with pip into a temporary target from a copy of the
sources (so nothing is written into the checkout), then every template is rendered by a
Python that imports ``asclepius`` from that target only. Dataset card templates live in the
top-level ``data_cards/`` (the package links to it); the install must carry them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asclepius.stage.cards import TEMPLATES

ROOT = Path(__file__).resolve().parents[1]

RENDER_EVERY_KIND = """
import tempfile
from importlib import resources
from pathlib import Path

from datasets import Dataset

import asclepius
from asclepius.data.cards import CardFacts, render_card as render_dataset_card
from asclepius.evaluation.folders import with_answers, write_answers_folder
from asclepius.stage import Provenance
from asclepius.stage.cards import render_card
from asclepius.training import card as model_card

assert asclepius.__file__.startswith("{target}"), asclepius.__file__
out = lambda: Path(tempfile.mkdtemp())
rows = Dataset.from_dict({{"patient_id": [1], "note": ["A note."], "question": ["Why?"], "task": ["Question Answering"]}})
public = Provenance("public", "test", license="cc0-1.0")
cards = {{
    "dataset_card.md": render_dataset_card(out(), CardFacts(
        stage="questions", pretty_name="t", summary="s", source=public, configs={{"default": {{"train": rows}}}},
        config_entries=[], rows_in=1, unit_in="notes", length_columns=("note",))),
    "model_card.md": model_card.render_card(out(), model_card.merged_facts("x/adapter", base_model="x/base",
                                                                           model_name="m")),
    "answers_card.md": write_answers_folder(out(), with_answers(rows, "m", ["Because."]), split="test", origin=public,
        provenance={{"model": "m", "source": "s", "backend": "transformers", "prompt_style": "asclepius",
                    "prompt_hash": "h"}}),
}}
from asclepius.stage.cards import template_folders

for name in sorted(p.name for folder in template_folders() for p in folder.iterdir() if p.name.endswith("_card.md")):
    if name not in cards:  # templates filled from one stage's report: title, summary, report text
        context = {{"title": "t", "summary": "s", "report": "r", "judge_model": "j", "prompt_hash": "h"}}
        cards[name] = render_card(out(), kind="dataset", template=name, card_data={{"license": "cc0-1.0"}},
                                  context=context)
for name, path in cards.items():
    assert path.read_text().startswith("---"), name
    print("rendered", name)
"""


@pytest.mark.slow
def test_a_non_editable_install_renders_every_card_kind(tmp_path):
    source = tmp_path / "source"
    # symlinks=True: the copy links src/asclepius/data_cards to data_cards/ as the checkout does.
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore, symlinks=True)
    shutil.copytree(ROOT / "data_cards", source / "data_cards")
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    shipped = sorted(p.name for p in (ROOT / "src" / "asclepius" / "stage" / "templates").glob("*.md"))
    installed = sorted(p.name for p in (target / "asclepius" / "stage" / "templates").glob("*.md"))
    data_cards = sorted(p.name for p in (ROOT / "data_cards").glob("*_card.md"))
    installed_data_cards = sorted(p.name for p in (target / "asclepius" / "data_cards").glob("*.md"))
    assert installed == shipped and installed_data_cards == data_cards and len(data_cards) >= 4
    assert not (target / "asclepius" / "data_cards").is_symlink(), "the install carries the files, not a link"
    licence_files = {path.name for path in target.glob("asclepius-*.dist-info/**/*") if path.is_file()}
    assert {"LICENSE", "NOTICE"} <= licence_files, (
        "the licence and the third-party notices ship with the package"
    )
    assert set(TEMPLATES) <= set(installed) | set(installed_data_cards)
    # -I: isolated (no cwd, no PYTHONPATH, no user site); the target goes first, dependencies from the venv.
    code = f"import sys; sys.path.insert(0, {str(target)!r});" + RENDER_EVERY_KIND.format(target=target)
    render = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert render.returncode == 0, render.stderr[-3000:]
    assert render.stdout.count("rendered") == len(shipped) + len(data_cards)
