"""The stage-folder layer every script uses, whatever its family (data, training, evaluation).

Each script calls it in the same order, so that every refusal comes before any work::

    folder = StageFolder.open(output_dir, overwrite=..., dry_run=...)   # one run per folder (lock)
    if folder.skip_if_finished():                                       # card exists: nothing to do
        return folder.push_if_asked()
    inputs = [classify(path), declare_source(raw_file, license=..., restricted_source=...)]
    folder.check(inputs, push=PushRequest(...), endpoints=[resolve_base_url(engine_args)],
                 allowed_endpoints=args.allowed_endpoints, preflight=[lambda: read_api_key(engine_args)])
    folder.begin()                                                      # card removed, provenance marked
    ...  the stage's own work  ...
    folder.finish(lambda: render_card(...))                             # card LAST, lock released
    folder.push_if_asked()                                              # policy + real visibility

Modules: :mod:`~asclepius.stage.files` (card, working state, atomic writes),
:mod:`~asclepius.stage.folder` (state, lock, checks), :mod:`~asclepius.stage.provenance`
(public / restricted / unknown; unknown is restricted; ``classify`` is the one entry point),
:mod:`~asclepius.stage.stamps` (the stamp inside parquet, safetensors and cards, which
travels with a copied file), :mod:`~asclepius.stage.policy`
(no public push, allowed endpoints only), :mod:`~asclepius.stage.cards` (one renderer,
templates as package data), :mod:`~asclepius.stage.push` (never tokens or pickles).
"""

from asclepius.stage.cards import render_card
from asclepius.stage.files import CARD_NAME, WORK_DIR_NAME, is_finished, read_card_metadata, work_dir
from asclepius.stage.folder import FolderLock, PushRequest, StageFolder
from asclepius.stage.policy import ALLOWED_ENDPOINTS_HELP, check_endpoint, check_push, endpoint_allowed
from asclepius.stage.provenance import (
    PUBLIC,
    RESTRICTED,
    UNKNOWN,
    Provenance,
    classify,
    combine,
    declare_source,
)
from asclepius.stage.push import push_folder

__all__ = [
    "ALLOWED_ENDPOINTS_HELP",
    "CARD_NAME",
    "PUBLIC",
    "RESTRICTED",
    "UNKNOWN",
    "WORK_DIR_NAME",
    "FolderLock",
    "Provenance",
    "PushRequest",
    "StageFolder",
    "check_endpoint",
    "check_push",
    "classify",
    "combine",
    "declare_source",
    "endpoint_allowed",
    "is_finished",
    "push_folder",
    "read_card_metadata",
    "render_card",
    "work_dir",
]
