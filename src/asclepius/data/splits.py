"""Train/test splits by patient, stable across runs, machines and dataset sizes.

A patient's rows all land on one side, so no note is seen in training and again at
evaluation. The side is a pure function of (patient_id, seed, ratio): adding rows or
rerunning a stage never moves a patient from one split to the other.
"""

from __future__ import annotations

import hashlib

from datasets import Dataset, DatasetDict


def assign_split(patient_id: object, test_ratio: float, seed: int = 0) -> str:
    """``"test"`` for about ``test_ratio`` of patients, ``"train"`` for the rest."""
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in [0, 1), got {test_ratio}")
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_ratio else "train"


def split_by_patient(
    dataset: Dataset, test_ratio: float, seed: int = 0, column: str = "patient_id"
) -> DatasetDict:
    """Split ``dataset`` into ``train``/``test`` so that no ``column`` value is in both."""
    sides = [assign_split(pid, test_ratio, seed) for pid in dataset[column]]
    train = [i for i, side in enumerate(sides) if side == "train"]
    test = [i for i, side in enumerate(sides) if side == "test"]
    return DatasetDict(train=dataset.select(train), test=dataset.select(test))
