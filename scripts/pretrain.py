"""Continued pretraining: teach a base model the language of discharge summaries.

    python scripts/pretrain.py --config recipes/tiny/pretrain/config_full.yaml [--flag value ...]
    accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 8 \\
        scripts/pretrain.py --config recipes/asclepius-llama2-7b/pretrain/config_full.yaml

The paper's first stage: every distinct note of the training split, followed by EOS,
joined and cut into fixed blocks (``packing_strategy: wrapped``), one epoch of
language modelling. Any recipe key can be overridden on the command line.

A rerun resumes from the last complete checkpoint in ``output_dir``. The folder is
finished when its README.md (the model card) exists; it is written last, and a rerun
on a finished folder does nothing. With a test split (or ``test_ratio``), held-out note
perplexity before and after training is printed and written to
``output_dir/.asclepius/metrics.json``.
"""

from __future__ import annotations

from asclepius.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    from transformers import set_seed

    from asclepius.recipes import parse_recipe
    from asclepius.training import stage
    from asclepius.training.formatting import original_pretraining_blocks, unique_notes
    from asclepius.training.trainer import build_trainer

    script_args, training_args, model_args = parse_recipe("pretrain", argv)
    # The lock, the model path, and the push policy for the inputs' provenance: before any work.
    folder = stage.open_folder(script_args, training_args, model_args)
    if folder is None:
        return
    set_seed(training_args.seed)

    # 1. Notes: each distinct note once (the instruction dataset repeats it per question).
    train_rows, test_rows = stage.load_rows(script_args)
    train_notes = unique_notes(train_rows, script_args.note_column, script_args.dataset_name)
    test_notes = (
        unique_notes(test_rows, script_args.note_column, script_args.dataset_name) if test_rows else None
    )

    # 2. Tokenizer (pad never = bos) and trainer; TRL loads the model named in the recipe,
    #    adds EOS to each note, tokenizes, and packs (wrapped: fixed blocks). pretrain_stream
    #    original: the original's one stream of BOS-note-EOS-BOS, cut here; TRL then only trains.
    tokenizer = stage.tokenizer_for(model_args, training_args)
    train_blocks = train_notes
    if script_args.pretrain_stream == "original":
        train_blocks = original_pretraining_blocks(
            train_notes, tokenizer, block_size=training_args.max_length, seed=training_args.seed,
            source=script_args.dataset_name,
        )  # fmt: skip
        training_args.packing = False  # the blocks are whole already
    trainer = build_trainer(
        model_args=model_args,
        training_args=training_args,
        tokenizer=tokenizer,
        train_dataset=train_blocks,
        eval_dataset=test_notes,
        log_batch_fingerprints=script_args.log_batch_fingerprints,
    )

    # 3. Train, resuming if an earlier run left checkpoints; save a model that loads with from_pretrained.
    train_metrics, resumed_from = stage.train_and_save(trainer)

    # 4. Learning signal: held-out note perplexity of the base model and of this one.
    signal = stage.learning_signal(trainer, script_args, model_args, tokenizer, test_notes)

    # 5. Metrics, the model card (written last: the folder is now finished), the push.
    stage.finish(
        trainer,
        folder,
        stage="pretrain",
        script_args=script_args,
        model_args=model_args,
        train_metrics=train_metrics,
        resumed_from=resumed_from,
        num_train_examples=len(train_notes),
        signal=signal,
    )


if __name__ == "__main__":
    run_stage(main)
