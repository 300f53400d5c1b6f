"""Build the TRL trainer for a stage, resume it, and save what it made.

One trainer class serves both stages: continued pretraining is ``SFTTrainer`` on a
``text`` column (language modelling), instruction tuning is ``SFTTrainer`` on
prompt/completion rows (answer-only loss). What differs lives in the recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config, get_quantization_config

from asclepius.errors import InputError
from asclepius.stage.files import work_dir
from asclepius.stage.provenance import read_marker
from asclepius.stage.stamps import stamp_weights
from asclepius.training.stamping import stamped_saves

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
# transformers writes a checkpoint's trainer_state.json after its weights and optimizer:
# a checkpoint without it was cut off while saving and cannot be resumed from.
CHECKPOINT_COMPLETE_MARKER = "trainer_state.json"


class AsclepiusTrainer(SFTTrainer):
    """``SFTTrainer`` that leaves the folder's card to the stage and can fingerprint batches.

    TRL writes a README.md into ``output_dir`` at every checkpoint; in this project a
    README means "finished" (the stage writes its card last), so a run killed after its
    first checkpoint would look complete. The card is written by :mod:`asclepius.training.card`.
    """

    def __init__(self, *args, batch_log: str | Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_log = Path(batch_log) if batch_log is not None else None

    def create_model_card(self, *args, **kwargs) -> None:
        return None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save as the Trainer does (final model and every checkpoint), then stamp the weights with the
        run's provenance, read from the marker the stage wrote before the first step: a checkpoint
        copied elsewhere is still recognised."""
        provenance = read_marker(self.args.output_dir)
        with stamped_saves(provenance):
            super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:  # and stamp what the save wrote another way (a peft adapter)
            stamp_weights(output_dir or self.args.output_dir, provenance)

    def training_step(self, model, inputs, *args, **kwargs):
        if self.batch_log is not None:
            self._log_batch(inputs)
        return super().training_step(model, inputs, *args, **kwargs)

    def _log_batch(self, inputs: dict[str, Any]) -> None:
        input_ids = inputs["input_ids"].detach().cpu().contiguous()
        record = {
            "rank": self.args.process_index,
            "world_size": self.args.world_size,
            "step": self.state.global_step,
            "fingerprint": hashlib.sha256(input_ids.numpy().tobytes()).hexdigest()[:16],
            "tokens": int(input_ids.numel()),
        }
        with self.batch_log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def model_init_kwargs(model_args: ModelConfig, training_args: SFTConfig) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for the model named in the recipe."""
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        # The Trainer (or FSDP/DeepSpeed) places the model. TRL's default, device_map="auto",
        # would spread it over every visible GPU in each process of a sharded run.
        "device_map": None,
    }
    if model_args.load_in_4bit or model_args.load_in_8bit:
        # A quantized model cannot be moved after loading: put each process's copy on its own GPU.
        kwargs["device_map"] = {"": training_args.local_process_index}
    return {**kwargs, **(training_args.model_init_kwargs or {})}


def eval_model_kwargs(model_args: ModelConfig, training_args: SFTConfig) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments to load a model of this run for scoring on one device."""
    kwargs = model_init_kwargs(model_args, training_args)
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    return kwargs


def build_trainer(
    *,
    model_args: ModelConfig,
    training_args: SFTConfig,
    tokenizer,
    train_dataset,
    eval_dataset=None,
    log_batch_fingerprints: bool = False,
) -> AsclepiusTrainer:
    """An :class:`AsclepiusTrainer` for the recipe's model, with LoRA/QLoRA when ``use_peft`` is set."""
    if not model_args.model_name_or_path:
        raise InputError(None, "no model: set model_name_or_path in the recipe or pass --model_name_or_path")
    training_args.model_init_kwargs = model_init_kwargs(model_args, training_args)
    batch_log = None
    if log_batch_fingerprints:
        batch_log = work_dir(training_args.output_dir) / f"batches-rank{training_args.process_index}.jsonl"
        batch_log.unlink(missing_ok=True)
    return AsclepiusTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        batch_log=batch_log,
    )


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was saved completely, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    newest = get_last_checkpoint(str(output_dir))
    if newest is None or (Path(newest) / CHECKPOINT_COMPLETE_MARKER).exists():
        return newest
    steps = sorted(
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := CHECKPOINT_PATTERN.fullmatch(path.name))
    )
    for _, path in reversed(steps):
        if (path / CHECKPOINT_COMPLETE_MARKER).exists():
            return str(path)
        logger.warning(
            "skipping %s: it has no %s (the run stopped while saving it)", path, CHECKPOINT_COMPLETE_MARKER
        )
    return None


def train_resuming(trainer: SFTTrainer):
    """Train, resuming from ``--resume_from_checkpoint`` or else the last complete checkpoint.

    Returns (TrainOutput, the checkpoint resumed from or None).
    """
    checkpoint = trainer.args.resume_from_checkpoint or last_complete_checkpoint(trainer.args.output_dir)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    return result, checkpoint


def save_final_model(trainer: SFTTrainer) -> None:
    """Save a model that ``from_pretrained`` loads (or the LoRA adapter), its tokenizer and trainer state.

    Checkpoints under FSDP may use sharded state dicts (fast, resumable only by FSDP);
    the final model is gathered into one full state dict so that it loads anywhere.
    Collective under FSDP/DeepSpeed: call it on every process.
    """
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(trainer.args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.save_state()
        # Gradient checkpointing turns the KV cache off during training; generation wants it back.
        config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
        if (
            config is not None
            and hasattr(config, "use_cache")
            and not (Path(trainer.args.output_dir) / "adapter_config.json").exists()
        ):
            config.use_cache = True
            config.save_pretrained(trainer.args.output_dir)
