"""Hub-ready folders: dataset and model cards, atomic writes, pushing, and the MIMIC guard.

Every stage's ``--output_dir`` is a folder that ``datasets.load_dataset(folder)`` or
``from_pretrained(folder)`` loads as it is, and that ``push_folder`` uploads unchanged.
A folder is *finished* when its card (``README.md``) exists: stages write the card
last and remove it first, so a crash never leaves a folder that looks complete.
Working state (the request ledger, checkpoints of a stage) lives in ``.asclepius/``
inside the folder and is never uploaded.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_DIR = Path(__file__).resolve().parents[2] / "data_cards"
WORK_DIR_NAME = ".asclepius"
CARD_NAME = "README.md"

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

# Licences by source; MIMIC is under the PhysioNet credentialed data use agreement.
PMC_PATIENTS_LICENSE = "cc-by-nc-sa-4.0"
MIMIC_LICENSE = "other"
MIMIC_LICENSE_NAME = "physionet-credentialed-health-data-license-1.5.0"
MIMIC_LICENSE_LINK = "https://physionet.org/content/mimiciii/view-license/1.4/"


class MimicPublicPushError(RuntimeError):
    """Raised when MIMIC-derived data would be pushed to a public repository."""


def work_dir(output_dir: str | os.PathLike) -> Path:
    """The stage's private working folder inside its output folder (ledger, staging)."""
    path = Path(output_dir) / WORK_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_finished(output_dir: str | os.PathLike) -> bool:
    return (Path(output_dir) / CARD_NAME).exists()


def mark_unfinished(output_dir: str | os.PathLike) -> None:
    """Remove the card so a folder being rewritten never looks finished."""
    card = Path(output_dir) / CARD_NAME
    if card.exists():
        card.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def size_category(n: int) -> str:
    for bound, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < bound:
            return label
    return "1M<n<10M"


def today() -> str:
    return _dt.date.today().isoformat()


def write_dataset_configs(
    output_dir: str | os.PathLike, configs: Mapping[str, Mapping[str, Any]]
) -> list[dict]:
    """Write ``{config: {split: Dataset}}`` as ``data/<config>/<split>-00000-of-00001.parquet``.

    Each file is written under a temporary name and renamed, so a crash leaves no
    truncated parquet. Returns the ``configs`` YAML entries for the card (the first
    config is the default).
    """
    output_dir = Path(output_dir)
    entries = []
    for index, (config_name, splits) in enumerate(configs.items()):
        folder = output_dir / "data" / config_name
        folder.mkdir(parents=True, exist_ok=True)
        data_files = []
        for split, dataset in splits.items():
            final = folder / f"{split}-00000-of-00001.parquet"
            tmp = folder / f".{split}.parquet.tmp"
            dataset.to_parquet(str(tmp))
            os.replace(tmp, final)
            data_files.append({"split": split, "path": f"data/{config_name}/{split}-*.parquet"})
        entry = {"config_name": config_name, "data_files": data_files}
        if index == 0:
            entry["default"] = True
        entries.append(entry)
    return entries


def _render_card(
    kind: str, output_dir, template: str, card_data: Mapping[str, Any], context: Mapping[str, Any]
) -> Path:
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    card_cls, data_cls = (DatasetCard, DatasetCardData) if kind == "dataset" else (ModelCard, ModelCardData)
    card = card_cls.from_template(
        data_cls(**dict(card_data)), template_path=str(CARD_DIR / template), **dict(context)
    )
    path = Path(output_dir) / CARD_NAME
    atomic_write_text(path, str(card))
    return path


def render_dataset_card(
    output_dir: str | os.PathLike,
    *,
    template: str,
    card_data: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Path:
    """Render ``data_cards/<template>`` with YAML ``card_data`` and write it LAST, atomically."""
    return _render_card("dataset", output_dir, template, card_data, context)


def render_model_card(
    output_dir: str | os.PathLike,
    *,
    template: str,
    card_data: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Path:
    """Render ``data_cards/<template>`` as a model card (YAML ``card_data``) and write it atomically."""
    return _render_card("model", output_dir, template, card_data, context)


def read_card_metadata(folder: str | os.PathLike) -> dict:
    """The YAML metadata of a folder's card, or {} when it has none."""
    from huggingface_hub import RepoCard

    path = Path(folder) / CARD_NAME
    if not path.exists():
        return {}
    return RepoCard.load(path).data.to_dict()


def is_mimic_derived(folder: str | os.PathLike) -> bool:
    """True if the folder's card or provenance marks it as derived from MIMIC.

    Checked two ways so that neither a rewritten card nor a missing marker file alone
    can let MIMIC data out: the card's ``mimic_derived`` / tags, and the
    ``.asclepius/provenance.json`` marker that every MIMIC-derived stage writes.
    """
    folder = Path(folder)
    metadata = read_card_metadata(folder)
    if metadata.get("mimic_derived") or "mimic" in [str(t).lower() for t in metadata.get("tags") or []]:
        return True
    marker = folder / WORK_DIR_NAME / "provenance.json"
    if marker.exists():
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("mimic_derived"))
    return False


def mark_mimic_derived(output_dir: str | os.PathLike) -> None:
    atomic_write_text(work_dir(output_dir) / "provenance.json", json.dumps({"mimic_derived": True}) + "\n")


def check_push_allowed(folder: str | os.PathLike, *, private: bool) -> None:
    if is_mimic_derived(folder) and not private:
        raise MimicPublicPushError(
            f"{folder}: refusing to push MIMIC-derived data to a public repository "
            "(PhysioNet credentialed licence); pass --private to push to a private repository"
        )


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a Hub-ready folder (its working state excluded). Returns the repo URL.

    The token comes from huggingface_hub's usual sources (``HF_TOKEN`` or the cached
    login) and is never logged.
    """
    from huggingface_hub import HfApi

    check_push_allowed(folder, private=private)
    if not is_finished(folder):
        raise RuntimeError(f"{folder}: no {CARD_NAME}; the stage did not finish, nothing to push")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        ignore_patterns=[f"{WORK_DIR_NAME}/*", f"{WORK_DIR_NAME}/**", "checkpoint-*/**", "*.tmp"],
        commit_message=commit_message or "Upload with the Asclepius recipe",
    )
    logger.info("pushed %s to %s", folder, url)
    return str(url)
