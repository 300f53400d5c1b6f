"""What both training scripts do around ``trainer.train()``: start, finish, publish.

A stage's folder is finished when its model card exists: the card is written last,
after the model, the metrics and the learning signal, and only then is the folder
pushed. Under ``accelerate launch`` the bookkeeping runs on the main process while the
others wait; the push comes after the process group is gone, so a long upload cannot
time out a collective.
"""

from __future__ import annotations

import logging
from typing import Any

from asclepius import hub
from asclepius.training import card, metrics

logger = logging.getLogger(__name__)


def take_over_push(training_args) -> bool:
    """Whether to push at the end; the Trainer itself is told not to.

    The Trainer would create the repository at start and push half-trained checkpoints;
    the stage pushes once, the finished folder, with its own card.
    """
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    if push_to_hub and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    return push_to_hub


def already_finished(output_dir: str) -> bool:
    """True (and says so) when ``output_dir`` holds a finished model: a rerun then does nothing."""
    if hub.is_finished(output_dir):
        logger.info(
            "%s is finished (it has its model card); nothing to do. Remove its README.md to train on "
            "from its last checkpoint, or choose another --output_dir.",
            output_dir,
        )
        return True
    return False


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
    *,
    stage: str,
    script_args,
    model_args,
    train_metrics: dict[str, Any],
    resumed_from: str | None,
    num_train_examples: int,
    signal: dict[str, Any] | None,
    push_to_hub: bool,
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
        )
        card.render_card(training_args.output_dir, facts)
    trainer.accelerator.wait_for_everyone()
    trainer.end()

    if push_to_hub and trainer.accelerator.is_main_process:
        url = hub.push_folder(
            training_args.output_dir,
            training_args.hub_model_id,
            repo_type="model",
            private=bool(training_args.hub_private_repo),
        )
        logger.info("pushed %s to %s", training_args.output_dir, url)
