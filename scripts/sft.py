"""Instruction tuning: teach a (continued-pretrained) model to answer questions about notes.

    python scripts/sft.py --config recipes/tiny/sft/config_full.yaml [--flag value ...]
    python scripts/sft.py --config recipes/tiny/sft/config_lora.yaml          # LoRA adapter
    accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 8 \\
        scripts/sft.py --config recipes/asclepius-llama2-7b/sft/config_full.yaml

The paper's second stage: each row becomes a prompt (the published inference template
filled with the note and the question) and a completion (the answer, then EOS), and the
loss falls on the completion only. ``use_peft: true`` trains a LoRA adapter instead of
the full model (``load_in_4bit: true`` for QLoRA); ``scripts/merge_adapter.py`` merges it.

A rerun resumes from the last complete checkpoint in ``output_dir``. The folder is
finished when its README.md (the model card) exists; it is written last, and a rerun
on a finished folder does nothing. With a test split (or ``test_ratio``), the held-out
answer loss of the starting model and of the tuned one is printed and written to
``output_dir/.asclepius/metrics.json``.
"""

from __future__ import annotations

from asclepius.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    from transformers import set_seed

    from asclepius.recipes import parse_recipe
    from asclepius.training import stage
    from asclepius.training.formatting import to_prompt_completion, tokenize_for_sft
    from asclepius.training.trainer import build_trainer

    script_args, training_args, model_args = parse_recipe("sft", argv)
    # The lock, the model path, and the push policy for the inputs' provenance: before any work.
    folder = stage.open_folder(script_args, training_args, model_args)
    if folder is None:
        return
    set_seed(training_args.seed)

    # 1. Rows -> (prompt, completion), tokenized so that the prompt's tokens are exactly
    #    those the model sees at inference and only the answer and its EOS carry a loss.
    tokenizer = stage.tokenizer_for(model_args, training_args)
    train_rows, test_rows = stage.load_rows(script_args)
    columns = dict(
        note_column=script_args.note_column,
        question_column=script_args.question_column,
        answer_column=script_args.answer_column,
        source=script_args.dataset_name,
        prompt_format=script_args.prompt_format,  # readme (default) or the original's training bytes
    )
    # The main process tokenizes first and caches; the others then read its cache.
    with training_args.main_process_first(desc="tokenizing the dataset"):
        train_dataset = tokenize_for_sft(to_prompt_completion(train_rows, **columns), tokenizer)
        eval_dataset = None
        if test_rows and training_args.eval_strategy != "no":
            eval_dataset = tokenize_for_sft(to_prompt_completion(test_rows, **columns), tokenizer)

    # 2. Trainer: full fine-tuning, or LoRA/QLoRA when the recipe sets use_peft.
    trainer = build_trainer(
        model_args=model_args,
        training_args=training_args,
        tokenizer=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        log_batch_fingerprints=script_args.log_batch_fingerprints,
    )

    # 3. Train, resuming if an earlier run left checkpoints; save the model (or adapter) and tokenizer.
    train_metrics, resumed_from = stage.train_and_save(trainer)

    # 4. Learning signal: held-out answer loss of the starting model and of this one.
    signal = stage.learning_signal(trainer, script_args, model_args, tokenizer, test_rows)

    # 5. Metrics, the model card (written last: the folder is now finished), the push.
    stage.finish(
        trainer,
        folder,
        stage="sft",
        script_args=script_args,
        model_args=model_args,
        train_metrics=train_metrics,
        resumed_from=resumed_from,
        num_train_examples=len(train_dataset),
        signal=signal,
    )


if __name__ == "__main__":
    run_stage(main)
