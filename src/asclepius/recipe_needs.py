"""What a recipe needs beyond the default install, and whether this machine has it.

    python -m asclepius.recipe_needs                     # every recipe and accelerate config
    python -m asclepius.recipe_needs recipes/asclepius-llama3.1-8b/sft/config_qlora.yaml

A recipe names optional software by its settings: a tracker in ``report_to``, QLoRA's
``load_in_4bit`` (bitsandbytes), an 8-bit optimizer, flash attention, a DeepSpeed
accelerate config. Missing, each fails only once the run is under way (the tracker after
the model has loaded); checked here, each is one line naming the extra that brings it.
``make check-recipes`` runs this after parsing every recipe. Needs that only work on a
CUDA GPU are reported as notes on a machine without one, where the recipe cannot run
anyway; every other missing need fails the check.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INSTALL = 'pip install -e ".[{extra}]"'


@dataclass(frozen=True)
class Need:
    """A package a setting requires: ``module`` to import, ``install`` to get it."""

    package: str
    module: str
    install: str
    gpu: bool = False  # usable only on a CUDA GPU

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


# report_to values and the packages transformers needs for them. trackio is in the default install.
TRACKERS = {
    "trackio": Need("trackio", "trackio", "pip install -e . (trackio is a default dependency)"),
    "wandb": Need("wandb", "wandb", INSTALL.format(extra="tracking")),
    "tensorboard": Need("tensorboard", "tensorboard", INSTALL.format(extra="tracking")),
    "mlflow": Need("mlflow", "mlflow", "pip install mlflow"),
    "comet_ml": Need("comet_ml", "comet_ml", "pip install comet_ml"),
    "clearml": Need("clearml", "clearml", "pip install clearml"),
    "swanlab": Need("swanlab", "swanlab", "pip install swanlab"),
    "dvclive": Need("dvclive", "dvclive", "pip install dvclive"),
}
BITSANDBYTES = Need("bitsandbytes", "bitsandbytes", INSTALL.format(extra="quantization"), gpu=True)
DEEPSPEED = Need("deepspeed", "deepspeed", INSTALL.format(extra="deepspeed"), gpu=True)
FLASH_ATTENTION = Need("flash-attn", "flash_attn", INSTALL.format(extra="flash"), gpu=True)
HUB_KERNELS = Need("kernels", "kernels", "pip install kernels", gpu=True)
LIGER = Need("liger-kernel", "liger_kernel", "pip install liger-kernel", gpu=True)


@dataclass(frozen=True)
class Finding:
    """One need of one file: the setting that asks for it and the need."""

    path: Path
    setting: str
    need: Need

    def line(self, gpu_available: bool) -> str:
        where = f"{self.path}: {self.setting} needs {self.need.package}"
        if self.need.installed():
            return f"{where}, installed" + ("" if gpu_available or not self.need.gpu else " (a CUDA GPU too)")
        gpu = " and a CUDA GPU" if self.need.gpu else ""
        return f"{where}{gpu}, not installed: {self.need.install}"


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def needs_of_settings(settings: dict[str, Any]) -> list[tuple[str, Need]]:
    """(setting, need) for every optional package that a recipe's or accelerate config's keys ask for."""
    found: list[tuple[str, Need]] = []
    for tracker in _listed(settings.get("report_to")):
        if tracker in TRACKERS:
            found.append((f"report_to: {tracker}", TRACKERS[tracker]))
    for key in ("load_in_4bit", "load_in_8bit"):
        if settings.get(key) is True:
            found.append((f"{key}: true", BITSANDBYTES))
    optim = str(settings.get("optim") or "")
    if "8bit" in optim or "bnb" in optim:
        found.append((f"optim: {optim}", BITSANDBYTES))
    attention = str(settings.get("attn_implementation") or "")
    if attention.startswith("flash_attention"):
        found.append((f"attn_implementation: {attention}", FLASH_ATTENTION))
    elif "/" in attention:  # a Hub kernel, e.g. kernels-community/flash-attn
        found.append((f"attn_implementation: {attention}", HUB_KERNELS))
    if settings.get("deepspeed"):
        found.append((f"deepspeed: {settings['deepspeed']}", DEEPSPEED))
    if str(settings.get("distributed_type", "")).upper() == "DEEPSPEED" or settings.get("deepspeed_config"):
        found.append(("distributed_type: DEEPSPEED", DEEPSPEED))
    if settings.get("use_liger_kernel") is True:
        found.append(("use_liger_kernel: true", LIGER))
    return found


def needs_of(path: str | Path) -> list[Finding]:
    """The needs of one recipe or accelerate config file (a file that does not parse has none here)."""
    path = Path(path)
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(settings, dict):
        return []
    return [Finding(path, setting, need) for setting, need in needs_of_settings(settings)]


def config_files(roots: tuple[str | Path, ...] = ("recipes", "accelerate_configs")) -> list[Path]:
    return sorted(path for root in roots for path in Path(root).rglob("*.yaml"))


def check_needs(paths: list[Path], *, gpu_available: bool | None = None) -> tuple[list[str], list[str]]:
    """(failures, notes): a missing need this machine could use fails; one that needs a GPU it lacks is a note."""
    if gpu_available is None:
        import torch

        gpu_available = torch.cuda.is_available()
    failures, notes = [], []
    for path in paths:
        for finding in needs_of(path):
            if finding.need.installed():
                continue
            usable_here = gpu_available or not finding.need.gpu
            (failures if usable_here else notes).append(finding.line(gpu_available))
    return failures, notes


def require_for_run(settings: dict[str, Any], source: str | None = None) -> None:
    """Before any work: one ``InputError`` naming the first package a run's settings need and lack.

    ``source`` names where the settings come from (default: the ``--config`` file of the command line).
    """
    from asclepius.errors import InputError

    if source is None:
        argv = sys.argv[1:]
        source = next(
            (argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"), "the command line"
        )
    for setting, need in needs_of_settings(settings):
        if not need.installed():
            gpu = " (and a CUDA GPU)" if need.gpu else ""
            raise InputError(
                source, f"needs {need.package}{gpu}, not installed: {need.install}", field=setting
            )


def training_settings(training_args: Any, model_args: Any) -> dict[str, Any]:
    """The settings of a parsed training run that :func:`needs_of_settings` reads."""

    def plain(value: Any) -> Any:
        return getattr(value, "value", value)  # enums (optim) as their names

    report_to = getattr(training_args, "report_to", None)
    return {
        "report_to": [plain(item) for item in report_to] if isinstance(report_to, list) else plain(report_to),
        "optim": plain(getattr(training_args, "optim", None)),
        "deepspeed": getattr(training_args, "deepspeed", None),
        "use_liger_kernel": getattr(training_args, "use_liger_kernel", False),
        "load_in_4bit": getattr(model_args, "load_in_4bit", False),
        "load_in_8bit": getattr(model_args, "load_in_8bit", False),
        "attn_implementation": getattr(model_args, "attn_implementation", None),
    }


def report(paths: list[Path], *, gpu_available: bool | None = None) -> int:
    """Print what is missing; 1 when a need this machine could use is missing, else 0."""
    failures, notes = check_needs(paths, gpu_available=gpu_available)
    for line in notes:
        print(f"note (no CUDA GPU here): {line}")
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="files to check (default: recipes/ and accelerate_configs/)")
    args = parser.parse_args(argv)
    return report([Path(path) for path in args.paths] or config_files())


if __name__ == "__main__":
    sys.exit(main())
