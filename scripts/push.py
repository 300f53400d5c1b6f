"""Push a finished stage folder to the Hub: the push of a run that failed, or one not asked for then.

    python scripts/push.py --folder outputs/tiny/sft --repo_id user/asclepius-tiny-sft [--private true]
    make push FOLDER=outputs/tiny/sft REPO=user/asclepius-tiny-sft [ARGS="--private true"]

The same checks as a stage's own ``--push_to_hub``: the folder must be finished (its card
exists) and not in use by a run; it is classified as it is right now (its card, the
files in it, any restricted evidence), and restricted or unknown data goes to a private
repository only, whose real visibility is checked after it is created; no token-shaped
string, pickle or working state (``.asclepius/``, at any depth) is uploaded.
``--dry_run true`` makes every check and lists the files, and contacts nothing.
"""

from __future__ import annotations

from pathlib import Path

from asclepius.errors import InputError, run_stage
from asclepius.recipes import parse_recipe
from asclepius.stage import PushRequest, StageFolder
from asclepius.stage.push import PushArguments, folder_repo_type


def main() -> None:
    (args,) = parse_recipe(PushArguments)
    if not args.folder or not args.repo_id:
        raise InputError(
            "--folder/--repo_id", "both are required (a finished stage folder, a Hub repository)"
        )
    if not Path(args.folder).is_dir():
        raise InputError(args.folder, "no such folder", field="--folder")
    request = PushRequest(
        True, args.repo_id, args.private, repo_type=args.repo_type or folder_repo_type(args.folder)
    )
    # The lock: no run may rewrite the folder while it is being uploaded.
    folder = StageFolder.open(args.folder, dry_run=args.dry_run, push=request)
    if folder.state != "finished":
        raise InputError(
            args.folder, f"not a finished stage folder (no README.md; {folder.state}): nothing to push"
        )
    folder.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
