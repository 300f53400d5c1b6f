"""Merge a LoRA adapter (from ``scripts/sft.py`` with ``use_peft: true``) into its base model.

    python scripts/merge_adapter.py --adapter_dir outputs/tiny-sft-lora --output_dir outputs/tiny-sft-merged
    make merge ADAPTER=outputs/tiny-sft-lora

The result is a full model folder that ``from_pretrained`` loads without peft, with the
adapter's tokenizer and a model card (re-rendered from the adapter's training facts,
written last). ``--push_to_hub --hub_model_id user/name`` uploads it.
"""

from __future__ import annotations

import logging

from asclepius.errors import InputError, run_stage

logger = logging.getLogger("merge_adapter")


def main(argv: list[str] | None = None) -> None:
    from pathlib import Path

    from asclepius.recipes import check_model_path, parse_recipe
    from asclepius.stage import StageFolder, classify
    from asclepius.training import card
    from asclepius.training.config import MergeArguments
    from asclepius.training.merge import merge_adapter

    (args,) = parse_recipe(MergeArguments, argv)
    if not args.adapter_dir:
        raise InputError(None, "no adapter: pass --adapter_dir")
    if not args.output_dir:
        raise InputError(None, "no output folder: pass --output_dir")
    check_model_path(args.adapter_dir, flag="--adapter_dir")
    if Path(args.adapter_dir).exists() and not (Path(args.adapter_dir) / "adapter_config.json").exists():
        raise InputError(args.adapter_dir, "not a LoRA adapter folder (no adapter_config.json)")

    # One run per folder; a public push of an adapter of restricted or unknown provenance is refused now.
    push = args.push_request  # --push_to_hub, --hub_model_id, --hub_private_repo, --hub_token
    folder = StageFolder.open(args.output_dir, overwrite=True, push=push)
    inputs = [classify(args.adapter_dir, kind="adapter")]
    if args.base_model:
        check_model_path(args.base_model, flag="--base_model")
        inputs.append(classify(args.base_model, kind="model"))
    folder.check(inputs)
    folder.begin()
    output_dir, merged_base = merge_adapter(
        args.adapter_dir, args.output_dir, base_model=args.base_model, dtype=args.dtype,
        provenance=folder.provenance,
    )  # fmt: skip

    # The card says what the adapter's card said (and the MIMIC mark carries over), now as a merged model.
    facts = card.merged_facts(
        args.adapter_dir,
        base_model=args.base_model or merged_base,
        model_name=args.hub_model_id or Path(output_dir).name,
        provenance=folder.provenance,
    )
    folder.finish(lambda: card.render_card(output_dir, facts))
    logger.info("merged model -> %s", output_dir)
    folder.push_if_asked()


if __name__ == "__main__":
    run_stage(main)
