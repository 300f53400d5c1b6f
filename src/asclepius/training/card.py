"""The model card of a training stage: what was trained, from what, how, and how it did.

The facts are gathered once into a JSON-able dict, kept in ``.asclepius/card_facts.json``
(so ``scripts/merge_adapter.py`` can re-render the card of a merged model), and rendered
through the package template ``model_card.md`` with :func:`asclepius.stage.cards.render_card`.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from asclepius.prompts import (
    DEFAULT_PROMPT_FORMAT,
    INFERENCE_PROMPT_HASH,
    PROMPT_FORMAT_HASHES,
    PROMPT_FORMATS,
)
from asclepius.stage.cards import MODEL_TEMPLATE, PAPER_CITATION, PMC_PATIENTS_CITATION
from asclepius.stage.cards import render_card as render_template
from asclepius.stage.files import WORK_DIR_NAME, atomic_write_text, read_card_metadata, today, work_dir
from asclepius.stage.provenance import (
    CARD_KEY,
    MIMIC_LICENSE,
    MIMIC_LICENSE_LINK,
    MIMIC_LICENSE_NAME,
    PMC_PATIENTS_LICENSE,
    PUBLIC,
    RESTRICTED,
    UNKNOWN,
    Provenance,
    card_provenance,
    classify,
    combine,
)
from asclepius.training import licenses

logger = logging.getLogger(__name__)

FACTS_FILE = "card_facts.json"
STAGE_TITLES = {
    "pretrain": "continued pretraining on synthetic discharge summaries",
    "sft": "instruction tuning on clinical-note instructions",
}


def is_local(name_or_path: str | None) -> bool:
    return bool(name_or_path) and Path(name_or_path).exists()


def resolve_base_model(model_name_or_path: str) -> str | None:
    """The Hub id this model descends from: itself if it is a Hub id, else what its local card says."""
    if not is_local(model_name_or_path):
        return model_name_or_path
    base = read_card_metadata(model_name_or_path).get("base_model")
    return base[0] if isinstance(base, list) and base else base


def input_licenses(dataset: str | None, started_from: str | None, *, declared: str | None = None) -> dict:
    """The licences a model is bound by (JSON-able): its data's, and its base weights' (local card, Hub id).

    A local starting model (a CPT folder) carries the licence of its own inputs on its card;
    the Hub model it descends from is read too, so a card never names less than its base's.
    """
    found = {"data": licenses.of_input(dataset, declared), "base_model": licenses.of_input(started_from)}
    base = resolve_base_model(started_from) if started_from else None
    if base and base != started_from:
        found["original_base_model"] = licenses.of_input(base)
    return {role: vars(item) for role, item in found.items()}


def governing_license(facts: dict[str, Any]) -> licenses.License:
    """The licence the card names: the stricter of the data's and the base model's."""
    found = facts.get("licenses")
    if not found:  # facts written before licences were recorded: nothing known about the base
        return licenses.License(PMC_PATIENTS_LICENSE)
    return licenses.stricter(*(licenses.License(**item) for item in found.values()))


def license_lines(facts: dict[str, Any]) -> list[str]:
    """'data: cc0-1.0, from its card' etc., for the card's text."""
    labels = {"data": "training data", "base_model": "starting model", "original_base_model": "base model"}
    return [
        f"{labels.get(role, role)}: {licenses.License(**item).describe()}"
        for role, item in (facts.get("licenses") or {}).items()
    ]


def usage_id(facts: dict[str, Any], output_dir: str | Path) -> str:
    """What the card's usage snippet loads: the Hub id when the model has one, else its folder."""
    if facts.get("hub_model_id"):
        return facts["hub_model_id"]
    name = str(facts.get("model_name") or "")
    return name if "/" in name else str(output_dir)


def package_versions() -> dict[str, str]:
    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def hardware_description(world_size: int) -> str:
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.processor() or platform.machine()})"
    return f"{world_size} x {device}"


def hyperparameters(training_args, model_args, world_size: int) -> dict[str, Any]:
    """The settings a reader needs to reproduce the run, global batch arithmetic included."""
    per_device = training_args.per_device_train_batch_size
    accumulation = training_args.gradient_accumulation_steps
    values: dict[str, Any] = {
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(
            getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
        ),
        "warmup": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "global_batch_size": f"{per_device * accumulation * world_size} "
        f"({per_device} per device x {accumulation} accumulation x {world_size} processes)",
        "max_length": training_args.max_length,
        "packing": f"{training_args.packing_strategy}" if training_args.packing else "no",
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "activation_checkpointing": getattr(
            training_args, "activation_checkpointing", training_args.gradient_checkpointing
        ),
        "seed": training_args.seed,
    }
    if model_args.use_peft:
        values["lora"] = (
            f"r={model_args.lora_r}, alpha={model_args.lora_alpha}, dropout={model_args.lora_dropout}, "
            f"targets={model_args.lora_target_modules or 'default'}"
            + (", base loaded in 4-bit (QLoRA)" if model_args.load_in_4bit else "")
        )
    return values


def gather_facts(
    *,
    stage: str,
    script_args,
    training_args,
    model_args,
    train_metrics: dict[str, Any],
    log_history: list[dict[str, Any]],
    num_train_examples: int,
    learning_signal: dict[str, Any] | None,
    provenance: Provenance | None = None,
) -> dict[str, Any]:
    """Everything the card says, as plain JSON-able values (``provenance``: the inputs', combined)."""
    world_size = training_args.world_size
    losses = [entry for entry in log_history if "loss" in entry]
    steps = [entry["step"] for entry in log_history if "step" in entry]
    # The stage's provenance alone says what the model may be: restricted, unknown or public.
    mimic = bool(provenance and provenance.mimic_derived)
    status = provenance.status if provenance else UNKNOWN
    # The bytes an sft model learned (readme or original); generate.py and `asclepius chat` read it back.
    prompt_format = getattr(script_args, "prompt_format", DEFAULT_PROMPT_FORMAT) if stage == "sft" else None
    return {
        "stage": stage,
        "model_name": training_args.hub_model_id or Path(training_args.output_dir).name,
        "hub_model_id": training_args.hub_model_id,
        "started_from": model_args.model_name_or_path,
        "base_model": resolve_base_model(model_args.model_name_or_path),
        "dataset": script_args.dataset_name,
        "dataset_is_local": is_local(script_args.dataset_name),
        "num_train_examples": num_train_examples,
        "adapter": bool(model_args.use_peft),
        "merged": False,
        "mimic_derived": mimic,
        "data_provenance": status,
        "restricted_sources": list(provenance.restricted_sources) if provenance else [],
        "licenses": input_licenses(
            script_args.dataset_name,
            model_args.model_name_or_path,
            declared=getattr(script_args, "dataset_license", None),
        ),
        "hyperparameters": hyperparameters(training_args, model_args, world_size),
        "results": {
            "train_loss": train_metrics.get("train_loss"),
            "final_logged_loss": losses[-1]["loss"] if losses else None,
            "global_step": max(steps) if steps else None,
            "train_runtime_s": train_metrics.get("train_runtime"),
            **(learning_signal or {}),
        },
        "hardware": hardware_description(world_size),
        "versions": package_versions(),
        "prompt_format": prompt_format,
        "prompt_hash": PROMPT_FORMAT_HASHES[prompt_format or DEFAULT_PROMPT_FORMAT],
        "date": today(),
    }


def card_data(facts: dict[str, Any]) -> dict[str, Any]:
    """The YAML header: licence, base model, datasets and tags the Hub indexes."""
    data: dict[str, Any] = {
        "language": ["en"],
        "library_name": "peft" if facts["adapter"] and not facts["merged"] else "transformers",
        "pipeline_tag": "text-generation",
        "tags": [
            "asclepius",
            "clinical",
            "medical",
            "trl",
            "continued-pretraining" if facts["stage"] == "pretrain" else "sft",
        ],
        "model_name": facts["model_name"],
    }
    if facts["base_model"]:
        data["base_model"] = facts["base_model"]
    if facts.get("prompt_format"):
        data["prompt_format"] = facts["prompt_format"]
    if facts["dataset"] and not facts["dataset_is_local"]:
        data["datasets"] = [facts["dataset"]]
    if facts["mimic_derived"]:
        data.update(
            license=MIMIC_LICENSE,
            license_name=MIMIC_LICENSE_NAME,
            license_link=MIMIC_LICENSE_LINK,
            mimic_derived=True,
        )
        data["tags"].append("mimic")
    else:
        data.update(governing_license(facts).card_fields())
    # Cards written before provenance was recorded: unknown, hence restricted (fail closed).
    data[CARD_KEY] = RESTRICTED if facts["mimic_derived"] else facts.get("data_provenance") or UNKNOWN
    if data[CARD_KEY] != PUBLIC:
        data["tags"].append("private")
    return data


def table(values: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in values.items():
        if value is None:
            continue
        rows.append((key, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows


def render_card(output_dir: str | Path, facts: dict[str, Any]) -> Path:
    """Write ``README.md`` (the card) from ``facts``; call it last: a card means the folder is finished."""
    atomic_write_text(work_dir(output_dir) / FACTS_FILE, json.dumps(facts, indent=2) + "\n")
    data = card_data(facts)
    context = {
        **facts,
        "stage_title": STAGE_TITLES[facts["stage"]],
        "license_line": data.get("license_name", data["license"]),
        "license_inputs": license_lines(facts),
        "usage_id": usage_id(facts, output_dir),
        "usage_is_local": not (facts.get("hub_model_id") or "/" in str(facts.get("model_name") or "")),
        "prompt": PROMPT_FORMATS[facts.get("prompt_format") or DEFAULT_PROMPT_FORMAT],
        "hyperparameter_rows": table(facts["hyperparameters"]),
        "result_rows": table(facts["results"]),
        "version_line": ", ".join(f"{name} {number}" for name, number in facts["versions"].items()),
        "paper_citation": PAPER_CITATION,
        "pmc_patients_citation": PMC_PATIENTS_CITATION,
    }
    stamp = replace(
        card_provenance(data, str(output_dir)),
        restricted_sources=tuple(facts.get("restricted_sources") or ()),
    )
    path = render_template(
        output_dir, kind="model", template=MODEL_TEMPLATE, card_data=data, context=context, provenance=stamp
    )
    logger.info("model card -> %s", path)
    return path


def read_facts(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / WORK_DIR_NAME / FACTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def merged_facts(
    adapter_dir: str, *, base_model: str, model_name: str, provenance: Provenance | None = None
) -> dict[str, Any]:
    """Facts for the card of a merged model: the adapter's own (when sft.py made it), marked merged.

    ``provenance``: the merge stage's (adapter and the base actually loaded, combined);
    without it, both are classified here.
    """
    facts = read_facts(adapter_dir) if is_local(adapter_dir) else None
    if facts is None:
        # An adapter from elsewhere: say what is known and leave the rest out.
        facts = {
            "stage": "sft",
            "started_from": base_model,
            "base_model": resolve_base_model(base_model),
            "dataset": None,
            "dataset_is_local": False,
            "num_train_examples": None,
            "adapter": True,
            "mimic_derived": False,
            "hyperparameters": {},
            "results": {},
            "hardware": "unknown",
            "versions": package_versions(),
            "prompt_hash": INFERENCE_PROMPT_HASH,
        }
    facts["licenses"] = {
        **(facts.get("licenses") or {"data": vars(licenses.UNKNOWN_LICENSE)}),
        "merged_base_model": vars(licenses.of_input(base_model)),
    }
    if provenance is None:
        provenance = combine([classify(adapter_dir, kind="adapter"), classify(base_model, kind="model")])
    facts.update(
        mimic_derived=provenance.mimic_derived,
        data_provenance=provenance.status,
        restricted_sources=list(provenance.restricted_sources),
    )
    facts.update(merged=True, adapter=True, model_name=model_name, merged_from=adapter_dir, date=today())
    return facts
