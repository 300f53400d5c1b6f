"""Dataset cards of the evaluation folders (answers of one model; the judge's scores).

The templates live here rather than in ``data_cards/`` because they are filled from
this stage's results only; they render through huggingface_hub's ``DatasetCard`` like
every other card of the project, and the card is written last (the folder's "done" mark).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asclepius.hub import CARD_NAME, PAPER_CITATION, atomic_write_text

ANSWERS_TEMPLATE = """---
{{ card_data }}
---

# Answers of `{{ model }}` on {{ source }}

Answers generated with the [Asclepius recipe](https://arxiv.org/abs/2309.00237) evaluation stage,
one per (note, question) of the `{{ split }}` split of `{{ source }}`: the evaluation rows as they
were, plus `model` (the answering model) and `generated` (its answer; empty where the request failed).

| setting | value |
|---|---|
| model | `{{ model }}` |
| backend | {{ backend }} |
| prompt style | `{{ prompt_style }}` (prompt hash `{{ prompt_hash }}`) |
| decoding | {{ decoding }} |
| rows | {{ rows }} ({{ failed }} without an answer) |

Grade these answers, alone or next to other models' folders, with

```bash
python scripts/judge.py --inputs {{ folder_hint }} [OTHER_ANSWER_FOLDERS ...] --output_dir JUDGE_DIR
```

{% if mimic %}
**This folder holds MIMIC-derived notes.** It is under the PhysioNet credentialed data use
agreement: never share it publicly (the project's push refuses public repositories).
{% endif %}
## Citation

```bibtex
{{ citation }}
```
"""

JUDGEMENT_TEMPLATE = """---
{{ card_data }}
---

# LLM-judge scores: {{ title }}

The Asclepius paper's evaluation protocol, run with the [Asclepius recipe](https://arxiv.org/abs/2309.00237):
for every (note, question), `{{ judge_model }}` saw all candidate answers in one prompt, shuffled and
labelled A, B, C..., worked out its own answer, then scored each candidate from 1 (Unacceptable)
to 4 (Excellent). Judge prompt hash `{{ prompt_hash }}`.

Configs: `scores` (one row per item, shuffle and model; `score` is empty where the judgement is
missing), `judgements` (one row per judge call, with the raw replies).

{{ report }}

## Citation

```bibtex
{{ citation }}
```
"""


def render_card(
    output_dir: str | os.PathLike, template: str, card_data: Mapping[str, Any], context: Mapping[str, Any]
) -> Path:
    """Render a dataset card from a template string and write it atomically as README.md."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**dict(card_data))
    card = DatasetCard.from_template(data, template_str=template, citation=PAPER_CITATION, **dict(context))
    path = Path(output_dir) / CARD_NAME
    atomic_write_text(path, str(card))
    return path
