"""Dataset cards of the evaluation folders (answers of one model; the judge's scores).

The templates (``answers_card.md``, ``judgement_card.md``) are package data of
:mod:`asclepius.stage` like every other card of the project, and render through the one
renderer, which writes the card last (the folder's "done" mark).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asclepius.stage.cards import ANSWERS_TEMPLATE, JUDGEMENT_TEMPLATE, PAPER_CITATION
from asclepius.stage.cards import render_card as render_template
from asclepius.stage.provenance import Provenance

__all__ = ["ANSWERS_TEMPLATE", "JUDGEMENT_TEMPLATE", "render_card"]


def render_card(
    output_dir: str | os.PathLike,
    template: str,
    card_data: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    provenance: Provenance | None = None,
) -> Path:
    """Render an evaluation dataset card from a package template and write it atomically as README.md."""
    return render_template(
        output_dir,
        kind="dataset",
        template=template,
        card_data=card_data,
        context={"citation": PAPER_CITATION, **dict(context)},
        provenance=provenance,
    )
