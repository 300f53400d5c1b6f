"""The one card renderer: dataset and model cards from templates shipped inside the package.

Templates are package data read with ``importlib.resources``, so a plain ``pip install .``
renders every card, not only a checkout: dataset cards (data stages, answers, judgements,
evaluations) from the top-level ``data_cards/`` folder, shipped as ``asclepius/data_cards``;
model cards from ``asclepius/stage/templates``. The card is written atomically and LAST:
its presence marks a folder finished.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from asclepius.redaction import redact
from asclepius.stage.files import CARD_NAME, atomic_write_text, uploaded_files
from asclepius.stage.provenance import Provenance, card_provenance
from asclepius.stage.stamps import CARD_FILES_KEY, CARD_STAMP_KEY, stamp_payload, vouched_files

DATASET_TEMPLATE = "dataset_card.md"
MODEL_TEMPLATE = "model_card.md"
ANSWERS_TEMPLATE = "answers_card.md"
JUDGEMENT_TEMPLATE = "judgement_card.md"
TEMPLATES = (DATASET_TEMPLATE, MODEL_TEMPLATE, ANSWERS_TEMPLATE, JUDGEMENT_TEMPLATE)

PAPER_CITATION = """@inproceedings{kweon2024publicly,
  title     = {Publicly Shareable Clinical Large Language Model Built on Synthetic Clinical Notes},
  author    = {Kweon, Sunjun and Kim, Junu and Kim, Jiyoun and Im, Sujeong and Cho, Eunbyeol and Bae, Seongsu and Oh, Jungwoo and Lee, Gyubok and Moon, Jong Hak and You, Seng Chan and Baek, Seungjin and Han, Chang Hoon and Jung, Yoon Bin and Jo, Yohan and Choi, Edward},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2024},
  year      = {2024},
  eprint    = {2309.00237},
  archivePrefix = {arXiv}
}"""

PMC_PATIENTS_CITATION = """@article{zhao2023pmcpatients,
  title   = {A large-scale dataset of patient summaries for retrieval-based clinical decision support systems},
  author  = {Zhao, Zhengyun and Jin, Qiao and Chen, Fangyuan and Peng, Tuorui and Yu, Sheng},
  journal = {Scientific Data},
  volume  = {10},
  year    = {2023}
}"""


def template_folders() -> tuple[Any, ...]:
    """Where the package's card templates are: dataset cards first, then model cards."""
    return (
        resources.files("asclepius").joinpath("data_cards"),
        resources.files("asclepius.stage") / "templates",
    )


def template_text(name: str) -> str:
    """A card template shipped with the package."""
    for folder in template_folders():
        if folder.joinpath(name).is_file():
            return folder.joinpath(name).read_text(encoding="utf-8")
    raise FileNotFoundError(f"no card template {name!r} in the asclepius package")


def render_card(
    output_dir: str | os.PathLike,
    *,
    kind: str,
    template: str,
    card_data: Mapping[str, Any],
    context: Mapping[str, Any],
    provenance: Provenance | None = None,
) -> Path:
    """Render ``template`` (a package template name) as a ``kind`` card ("dataset"/"model"), write it last.

    Every value passes through :func:`asclepius.redaction.redact` first, so a URL with
    credentials cannot reach the YAML header or the text. The YAML also carries the
    folder's provenance stamp (``provenance``, or what ``card_data`` says) and the files
    the card vouches for: every file an upload would send, by name and sha256. A file
    added later is not listed, so the card says nothing about it.
    """
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    card_cls, data_cls = (DatasetCard, DatasetCardData) if kind == "dataset" else (ModelCard, ModelCardData)
    data = redact(dict(card_data))
    data[CARD_STAMP_KEY] = stamp_payload(provenance or card_provenance(data, str(output_dir)))
    data[CARD_FILES_KEY] = vouched_files(
        output_dir, [name for name in uploaded_files(output_dir) if name != CARD_NAME]
    )
    card = card_cls.from_template(
        data_cls(**data), template_str=template_text(template), **redact(dict(context))
    )
    path = Path(output_dir) / CARD_NAME
    atomic_write_text(path, str(card))
    return path
