"""Former home of folders, cards, licences and push: now :mod:`asclepius.stage`.

Kept as re-exports so existing imports keep working; new code imports from
``asclepius.stage`` directly.
"""

from __future__ import annotations

from asclepius.stage.cards import PAPER_CITATION, PMC_PATIENTS_CITATION
from asclepius.stage.files import (
    CARD_NAME,
    WORK_DIR_NAME,
    atomic_write_text,
    is_finished,
    mark_unfinished,
    read_card_metadata,
    size_category,
    today,
    work_dir,
    write_dataset_configs,
)
from asclepius.stage.provenance import (
    MIMIC_LICENSE,
    MIMIC_LICENSE_LINK,
    MIMIC_LICENSE_NAME,
    PMC_PATIENTS_LICENSE,
    is_mimic_derived,
    mark_mimic_derived,
)
from asclepius.stage.push import push_folder

__all__ = [
    "CARD_NAME",
    "MIMIC_LICENSE",
    "MIMIC_LICENSE_LINK",
    "MIMIC_LICENSE_NAME",
    "PAPER_CITATION",
    "PMC_PATIENTS_CITATION",
    "PMC_PATIENTS_LICENSE",
    "WORK_DIR_NAME",
    "atomic_write_text",
    "is_finished",
    "is_mimic_derived",
    "mark_mimic_derived",
    "mark_unfinished",
    "push_folder",
    "read_card_metadata",
    "size_category",
    "today",
    "work_dir",
    "write_dataset_configs",
]
