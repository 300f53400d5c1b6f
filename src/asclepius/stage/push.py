"""Upload a finished stage folder with the restricted-data policy applied; never a secret.

What is never uploaded, at any depth: the working state (``.asclepius/``: ledger, lock,
staging), checkpoints, temporary files, ``training_args.bin`` (the Trainer pickles the whole
``TrainingArguments`` into it, ``hub_token`` included) and any other pickle, and any
file whose text holds a token-shaped string. Restricted or unknown data goes to a
private repository only, and the repository's real visibility is checked after it is
created (an existing public repository stays public under ``create_repo(private=True)``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from asclepius.errors import InputError
from asclepius.redaction import find_secrets_in_parquet
from asclepius.stage.files import NEVER_UPLOADED, is_finished, uploaded_files
from asclepius.stage.policy import check_push, check_visibility
from asclepius.stage.provenance import Provenance, classify, combine

logger = logging.getLogger(__name__)

# Text files scanned for secrets before an upload (weights and parquet are binary, not scanned).
_TEXT_SUFFIXES = {".md", ".json", ".jsonl", ".txt", ".yaml", ".yml", ".cfg", ".ini", ".py", ".csv", ".log"}
_SECRET = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,})")


def files_with_secrets(folder: str | os.PathLike) -> list[Path]:
    """Files an upload would send that hold a Hub or OpenAI token (text files only)."""
    folder = Path(folder)
    found = []
    for relative in uploaded_files(folder):
        path = folder / relative
        if path.suffix.lower() in _TEXT_SUFFIXES and _SECRET.search(
            path.read_text(encoding="utf-8", errors="ignore")
        ):
            found.append(Path(relative))
    return found


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    private: bool = False,
    provenance: Provenance | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
) -> str | None:
    """Upload a finished Hub-ready folder; returns the repo URL (None for a dry run).

    The folder is classified as it is right before the upload (a file dropped into it
    after the run counts), combined with ``provenance`` (what the run's inputs were):
    the most restrictive wins, unknown is restricted. The token comes from
    huggingface_hub's usual sources and is never logged. A dry run makes every check
    and lists what would be uploaded, and contacts nothing.
    """
    from huggingface_hub import HfApi

    if not repo_id:
        raise InputError(folder, "no repository named to push to", field="repo_id")
    if not is_finished(folder):
        raise InputError(folder, "no README.md: the stage did not finish, nothing to push")
    now = classify(str(folder))
    provenance = combine([provenance, now]) if provenance is not None else now
    check_push(provenance, push=True, private=private, folder=str(folder))
    secrets = files_with_secrets(folder)
    if secrets:
        raise InputError(
            folder, f"refusing to push: {secrets[0]} holds a token-shaped string", field="push_to_hub"
        )
    # Error columns carry what servers sent back: an echoed key or query string stops the upload.
    echoed = find_secrets_in_parquet(folder, uploaded_files(folder))
    if echoed:
        raise InputError(
            folder, f"refusing to push: {echoed[0]} holds a credential-shaped value", field="push_to_hub"
        )
    if dry_run:
        files = uploaded_files(folder)
        print(f"dry run: would push {len(files)} files of {folder} ({provenance.status}) to {repo_type} "
              f"{repo_id} (private={private}); nothing sent")  # fmt: skip
        return None
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if provenance.restricted:
        check_visibility(api, repo_id, repo_type=repo_type)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        ignore_patterns=NEVER_UPLOADED,
        commit_message=commit_message or "Upload with the Asclepius recipe",
    )
    logger.info("pushed %s to %s", folder, url)
    return str(url)


@dataclass
class PushArguments:
    """``scripts/push.py``: push a finished stage folder (again), with the same checks as a stage's push."""

    folder: str | None = field(
        default=None, metadata={"help": "The finished stage folder to push (required)."}
    )
    repo_id: str | None = field(default=None, metadata={"help": "Hub repository, e.g. user/name (required)."})
    private: bool = field(
        default=False,
        metadata={
            "help": "Push to a private repository (required for restricted or unknown data).",
            "aliases": ["--hub_private_repo"],  # the name the training stages use
        },
    )
    repo_type: str | None = field(
        default=None,
        metadata={
            "help": "model or dataset (default: model when the folder holds a model's config, else dataset)."
        },
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Make every check and list the files; contact nothing."}
    )

    def __post_init__(self) -> None:
        if self.repo_type not in (None, "model", "dataset"):
            raise ValueError(f"--repo_type must be model or dataset, not {self.repo_type!r}")


def folder_repo_type(folder: str | os.PathLike) -> str:
    """model for a folder holding a model (config, adapter, weights), else dataset."""
    folder = Path(folder)
    model_files = ("config.json", "adapter_config.json", "model.safetensors", "model.safetensors.index.json")
    if any((folder / name).exists() for name in model_files) or any(folder.glob("*.gguf")):
        return "model"
    return "dataset"
