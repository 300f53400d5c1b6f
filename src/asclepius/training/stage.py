"""What the training scripts do around ``trainer.train()``: open and check the folder, finish, publish.

The folder is a :class:`asclepius.stage.StageFolder`: one run at a time (the main
process holds the lock), and every refusal before the first step: the model path
exists (or names the make target that builds it), the inputs' provenance allows the
asked push. A folder is finished when its model card exists: the card is written last,
after the model, the metrics and the learning signal, and only then is it pushed.
Under ``accelerate launch`` the bookkeeping runs on the main process while the others
wait; the push comes after the process group is gone, so a long upload cannot time
out a collective.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import datasets
import transformers

from asclepius.errors import InputError, reading
from asclepius.offline import offline_unless_hub_reachable_for
from asclepius.recipe_needs import require_for_run, training_settings
from asclepius.recipes import check_model_path
from asclepius.stage import PushRequest, StageFolder, classify
from asclepius.stage.folder import launcher_rank
from asclepius.training import card, metrics
from asclepius.training.formatting import load_train_and_test
from asclepius.training.tokenizer import load_tokenizer
from asclepius.training.trainer import eval_model_kwargs, save_final_model, train_resuming

logger = logging.getLogger(__name__)


def set_log_levels(training_args) -> None:
    """Info on the main process, ``log_level_replica`` (warning by default) on every other one.

    The libraries follow ``training_args.get_process_log_level()`` (as the Trainer sets
    them), and our own loggers and the root logger too, so replicas stay quiet; with the
    default ``log_level: passive`` the main process keeps this project's info lines.
    """
    level = training_args.get_process_log_level()
    ours = logging.INFO if training_args.should_log and training_args.log_level == "passive" else level
    logging.getLogger().setLevel(ours)
    logging.getLogger("asclepius").setLevel(ours)
    if not training_args.should_log or training_args.log_level != "passive":
        transformers.utils.logging.set_verbosity(level)
        datasets.utils.logging.set_verbosity(level)


def take_over_push(training_args) -> PushRequest:
    """The push the stage does at the end; the Trainer itself is told not to push.

    The Trainer would create the repository at start and push half-trained checkpoints
    (and ``training_args.bin``, which pickles ``hub_token``); the stage pushes once, the
    finished folder, with its own card and the policy applied.
    """
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    if push_to_hub and not training_args.hub_model_id:
        raise InputError("--hub_model_id", "--push_to_hub needs --hub_model_id")
    return PushRequest(
        push_to_hub,
        training_args.hub_model_id,
        bool(training_args.hub_private_repo),
        repo_type="model",
        token=training_args.hub_token,  # --hub_token: the push uses it (else huggingface_hub's own)
    )


def open_folder(script_args, training_args, model_args) -> StageFolder | None:
    """The output folder, checked before any work; None when it is finished (a rerun does nothing).

    Restricted or unknown data (the dataset, or a starting model trained on it) is
    refused a public push here, before the model is loaded, not after the last step.
    A finished folder is pushed when the push is asked for (a push that failed is redone
    by rerunning the same command), after the policy checks.
    """
    set_log_levels(training_args)
    check_launch(training_args)
    # No network: the base model and a Hub dataset come from the cache, without per-file retries.
    offline_unless_hub_reachable_for(model_args.model_name_or_path, script_args.dataset_name)
    check_model_path(model_args.model_name_or_path)
    main_process = training_args.process_index == 0 and launcher_rank() == 0
    folder = StageFolder.open(training_args.output_dir, push=take_over_push(training_args), lock=main_process)
    inputs = [
        classify(script_args.dataset_name, declared_license=script_args.dataset_license),
        classify(model_args.model_name_or_path, kind="model"),
    ]
    if folder.state == "finished":
        logger.info(
            "%s is finished (it has its model card); nothing to train. Remove its README.md to train on "
            "from its last checkpoint, or choose another --output_dir.",
            training_args.output_dir,
        )
        if main_process and folder.push_request.push_to_hub:
            folder.check(inputs)
            folder.push_if_asked()
        return None
    # The tracker, bitsandbytes, flash-attn...: missing, one line now rather than a traceback after loading.
    require_for_run(training_settings(training_args, model_args))
    folder.check(inputs)
    if main_process:
        folder.begin()  # card removed, provenance marked: checkpoints inherit it
    return folder


def check_launch(training_args) -> None:
    """A launcher that started several processes the Trainer does not see as one run is refused.

    ``accelerate launch --config_file accelerate_configs/cpu_ddp.yaml`` without
    ``--use_cpu true`` starts 2 processes that each train alone (``process_index`` 0 on
    both) and would write the same folder.
    """
    launched = os.environ.get("WORLD_SIZE", "1").strip()
    if launched.isdigit() and int(launched) > 1 and training_args.world_size == 1:
        raise InputError(
            "--use_cpu",
            f"the launcher started {launched} processes but the Trainer sees 1 (no process group): "
            "on CPU pass --use_cpu true to the script (see accelerate_configs/cpu_ddp.yaml)",
        )


def load_rows(script_args):
    """(train, held-out or None) rows of the recipe's dataset; unreadable input is a one-line error."""
    with reading(script_args.dataset_name):
        return load_train_and_test(
            script_args.dataset_name,
            dataset_config=script_args.dataset_config,
            train_split=script_args.dataset_train_split,
            test_split=script_args.dataset_test_split,
            test_ratio=script_args.test_ratio,
            split_seed=script_args.split_seed,
        )


def tokenizer_for(model_args, training_args):
    """The starting model's tokenizer, pad never = bos, EOS as the recipe says."""
    return load_tokenizer(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        eos_token=training_args.eos_token,
    )


def train_and_save(trainer):
    """Train (resuming from the last complete checkpoint), log, save a loadable model; (metrics, resumed_from)."""
    check_rows_left(trainer)
    result, resumed_from = train_resuming(trainer)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    save_final_model(trainer)  # collective under FSDP/DeepSpeed
    return result.metrics, resumed_from


def check_rows_left(trainer) -> None:
    """TRL drops the rows that truncation to ``max_length`` leaves with no answer token; none left is
    a one-line error (not a sampler traceback), before the first step."""
    dataset = trainer.train_dataset
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise InputError(
            "--max_length",
            f"{trainer.args.max_length} tokens leave no training row: every prompt (note and question) fills "
            "it before the answer begins; raise --max_length or use shorter notes",
        )


def learning_signal(trainer, script_args, model_args, tokenizer, heldout) -> dict[str, Any] | None:
    """The metric the stage should improve, for the starting model and the trained one (main process).

    Pretraining: perplexity of held-out notes (``heldout`` is a ``text`` dataset);
    SFT: loss on held-out answers (``heldout`` has note, question and answer columns).
    """
    if not (trainer.accelerator.is_main_process and script_args.learning_signal and heldout):
        return None
    args = trainer.args
    heldout = heldout.select(range(min(len(heldout), script_args.max_eval_examples or len(heldout))))
    common = dict(max_length=args.max_length, model_kwargs=eval_model_kwargs(model_args, args))
    start, trained = model_args.model_name_or_path, args.output_dir
    if heldout.column_names == ["text"]:  # the distinct notes of pretraining
        return metrics.note_perplexity_signal(start, trained, tokenizer, heldout["text"], **common)
    rows = {
        "note": heldout[script_args.note_column],
        "question": heldout[script_args.question_column],
        "answer": heldout[script_args.answer_column],
    }
    # Scored on the bytes the model was trained on (prompt_format readme or original).
    return metrics.answer_loss_signal(
        start, trained, tokenizer, rows, prompt_format=script_args.prompt_format, **common
    )


def describe_signal(signal: dict[str, Any]) -> str:
    """'held-out note perplexity: 4017.39 before, 481.88 after (88% lower)' for each measured metric."""
    lines = []
    for key, before in signal.items():
        if key.endswith("_before"):
            base = key[: -len("_before")]
            after, reduction = signal[f"{base}_after"], signal[f"{base}_reduction"]
            name = base.replace("heldout_", "held-out ").replace("_", " ")
            lines.append(f"{name}: {before:.3f} before, {after:.3f} after ({100 * reduction:.0f}% lower)")
    return "; ".join(lines)


def finish(
    trainer,
    folder: StageFolder,
    *,
    stage: str,
    script_args,
    model_args,
    train_metrics: dict[str, Any],
    resumed_from: str | None,
    num_train_examples: int,
    signal: dict[str, Any] | None,
) -> None:
    """Log the learning signal, write metrics.json and the model card (last), end the run, push."""
    training_args = trainer.args
    if trainer.accelerator.is_main_process:
        if signal:
            trainer.log(dict(signal))  # log() adds keys to the dict it is given
            logger.info(describe_signal(signal))
        metrics.update_metrics(
            training_args.output_dir,
            {"stage": stage, "resumed_from_checkpoint": resumed_from, **train_metrics, **(signal or {})},
        )
        facts = card.gather_facts(
            stage=stage,
            script_args=script_args,
            training_args=training_args,
            model_args=model_args,
            train_metrics=train_metrics,
            log_history=trainer.state.log_history,
            num_train_examples=num_train_examples,
            learning_signal=signal,
            provenance=folder.provenance,
        )
        folder.finish(lambda: card.render_card(training_args.output_dir, facts))
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    if trainer.accelerator.is_main_process:
        folder.push_if_asked()
