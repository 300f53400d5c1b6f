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

    # One run per folder; a finished one (its card exists) is left as it is unless --overwrite, and
    # pushed when asked; every refusal (a public push of restricted or unknown provenance, a base that
    # does not exist) comes before anything in the folder is deleted.
    push = args.push_request  # --push_to_hub, --hub_model_id, --hub_private_repo, --hub_token
    folder = StageFolder.open(args.output_dir, overwrite=args.overwrite, push=push)
    inputs = [classify(args.adapter_dir, kind="adapter")]
    base_model = args.base_model or adapter_base(args.adapter_dir)
    if base_model:
        check_model_path(base_model, flag="--base_model" if args.base_model else "the adapter's base model")
        inputs.append(classify(base_model, kind="model"))
    folder.check(inputs)
    if folder.skip_if_finished():
        folder.push_if_asked()
        return
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


def adapter_base(adapter_dir: str) -> str | None:
    """The base model a local adapter names in its adapter_config.json (None for a Hub adapter)."""
    import json
    from pathlib import Path

    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, AttributeError) as error:
        raise InputError(config, f"not valid JSON ({error})") from None


if __name__ == "__main__":
    run_stage(main)
