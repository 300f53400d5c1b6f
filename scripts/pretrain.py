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
    from trl import TrlParser

    from asclepius import hub
    from asclepius.training import metrics, stage
    from asclepius.training.config import RECIPE_CLASSES
    from asclepius.training.formatting import load_train_and_test, unique_notes
    from asclepius.training.tokenizer import load_tokenizer
    from asclepius.training.trainer import build_trainer, eval_model_kwargs, save_final_model, train_resuming

    script_args, training_args, model_args = TrlParser(RECIPE_CLASSES["pretrain"]).parse_args_and_config(argv)
    push_to_hub = stage.take_over_push(training_args)
    if stage.already_finished(training_args.output_dir):
        return
    set_seed(training_args.seed)

    # 1. Notes: each distinct note once (the instruction dataset repeats it per question).
    train_rows, test_rows = load_train_and_test(
        script_args.dataset_name,
        dataset_config=script_args.dataset_config,
        train_split=script_args.dataset_train_split,
        test_split=script_args.dataset_test_split,
        test_ratio=script_args.test_ratio,
        split_seed=script_args.split_seed,
    )
    train_notes = unique_notes(train_rows, script_args.note_column, script_args.dataset_name)
    test_notes = (
        unique_notes(test_rows, script_args.note_column, script_args.dataset_name) if test_rows else None
    )

    # 2. Tokenizer (pad never = bos) and trainer; TRL loads the model named in the recipe,
    #    adds EOS to each note, tokenizes, and packs (wrapped: fixed blocks).
    tokenizer = load_tokenizer(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        eos_token=training_args.eos_token,
    )
    trainer = build_trainer(
        model_args=model_args,
        training_args=training_args,
        tokenizer=tokenizer,
        train_dataset=train_notes,
        eval_dataset=test_notes,
        log_batch_fingerprints=script_args.log_batch_fingerprints,
    )

    # 3. Train, resuming if an earlier run left checkpoints.
    if trainer.accelerator.is_main_process:
        hub.mark_unfinished(training_args.output_dir)
    result, resumed_from = train_resuming(trainer)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)

    # 4. Save a model that loads with from_pretrained (collective under FSDP/DeepSpeed).
    save_final_model(trainer)

    # 5. Learning signal: held-out note perplexity of the base model and of this one.
    signal = None
    if trainer.accelerator.is_main_process and script_args.learning_signal and test_notes:
        signal = metrics.note_perplexity_signal(
            model_args.model_name_or_path,
            training_args.output_dir,
            tokenizer,
            test_notes["text"][: script_args.max_eval_examples],
            max_length=training_args.max_length,
            model_kwargs=eval_model_kwargs(model_args, training_args),
        )

    # 6. Metrics, the model card (written last: the folder is now finished), the push.
    stage.finish(
        trainer,
        stage="pretrain",
        script_args=script_args,
        model_args=model_args,
        train_metrics=result.metrics,
        resumed_from=resumed_from,
        num_train_examples=len(train_notes),
        signal=signal,
        push_to_hub=push_to_hub,
    )


if __name__ == "__main__":
    run_stage(main)
