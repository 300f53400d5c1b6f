"""Hugging Face Space: clinical language models answer one discharge summary side by side.

The same app as ``asclepius compare`` (src/asclepius/apps/compare.py), on Hub model ids.
Set the Space's variables to choose: ``MODELS`` (space-separated Hub ids), ``PROMPT_STYLE``
(``asclepius``: as each model's card says it was trained; or ``chat_template``) and
``MAX_NEW_TOKENS``. The examples are fictional notes from the project's demo data (CC0).
"""

import os
from pathlib import Path

from asclepius.apps import LAUNCH_OPTIONS
from asclepius.apps.compare import create_app

MODELS = os.environ.get(
    "MODELS", "HuggingFaceTB/SmolLM2-135M-Instruct HuggingFaceTB/SmolLM2-360M-Instruct"
).split()

app = create_app(
    MODELS,
    prompt_style=os.environ.get("PROMPT_STYLE", "asclepius"),
    max_new_tokens=int(os.environ.get("MAX_NEW_TOKENS", "256")),
    examples_path=Path(__file__).with_name("examples.jsonl"),
)

if __name__ == "__main__":
    app.launch(**LAUNCH_OPTIONS)
