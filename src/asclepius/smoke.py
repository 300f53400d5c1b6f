"""A check that runs every recipe the way a user would, at toy scale, on a CPU.

    python -m asclepius.smoke --recipe asclepius-llama3.1-8b      # or: make smoke RECIPE=...
    python -m asclepius.smoke --all                                # or: make smoke-all

For each recipe under ``recipes/``: a random model of the recipe's architecture (its
``model_type``, from a small table of the Hub ids recipes name; nothing is downloaded),
then the recipe's own scripts with the recipe's own files: pretraining, instruction
tuning (full and LoRA; QLoRA only where ``bitsandbytes`` and a GPU exist, else a stated
skip), generation and the judge (the project's test server plays the judge and any API
model). Each stage runs 2 steps or 2 rows on the bundled demo data. What a CPU cannot
honour (bf16, tf32, flash attention, bf16 weights) and what makes a run long (batch,
accumulation, length, checkpoints, trackers) is overridden, and every override is printed.

It fails on what would fail a user: an unknown key (the scripts refuse it), a missing
file (a stage without its recipe), a missing dependency (the tracker a recipe logs to,
``bitsandbytes`` for QLoRA on a GPU), a wrong path (an sft recipe that does not start
from its pretraining output, an evaluation that reads a folder no recipe writes), or a
stage folder whose card does not render.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import logging
import re
import runpy
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = "data/demo/synthetic_notes.jsonl"
logger = logging.getLogger("asclepius.smoke")

# model_type of the Hub ids (and local models) the recipes name, by prefix: no download needed.
KNOWN_MODEL_TYPES = {
    "meta-llama/": "llama",
    "huggyllama/": "llama",
    "mistralai/Mistral": "mistral",
    "HuggingFaceTB/SmolLM": "llama",
    "chaoyi-wu/PMC_LLAMA": "llama",
    "chavinlo/alpaca": "llama",
    "lmsys/vicuna": "llama",
    "medalpaca/": "llama",
    "starmpcc/Asclepius": "llama",
    "wanglab/ClinicalCamel": "llama",
    "zl111/ChatDoctor": "llama",
    "outputs/tiny-model": "llama",
    "outputs/smol-135m": "llama",
}
# The size of every random model: a few seconds per stage on a CPU.
RANDOM_MODEL_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
# Trackers a recipe may log to (report_to) -> the module that must import.
TRACKER_MODULES = {"trackio": "trackio", "wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow"}
# Toy scale: what each stage is capped at, whatever the recipe says.
TRAIN_CAPS = {"per_device_train_batch_size": 2, "max_length": 1024}
SMOKE_SCORE_REPLY = "The answers were read against the note."


class SmokeFailure(Exception):
    """A stage of a recipe that would fail a user: the message says which and why."""


@dataclass
class Step:
    name: str
    status: str  # ok | skipped | failed
    detail: str = ""


@dataclass
class RecipeReport:
    recipe: str
    steps: list[Step] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status != "failed" for step in self.steps)

    def lines(self) -> list[str]:
        lines = [f"== {self.recipe}: {'ok' if self.ok else 'FAILED'}"]
        lines += [f"   override  {item}" for item in self.overrides]
        lines += [f"   {s.status:<8}  {s.name}{': ' + s.detail if s.detail else ''}" for s in self.steps]
        return lines


# --- what the recipes are --------------------------------------------------------------
def recipe_names(root: str | Path = "recipes") -> list[str]:
    """Every recipe: a folder with a data.yaml, an eval.yaml or a pretrain/ or sft/ folder."""
    root = Path(root)
    names = set()
    for path in root.rglob("*.yaml"):
        folder = path.parent.parent if path.parent.name in ("pretrain", "sft") else path.parent
        names.add(folder.relative_to(root).as_posix())
    return sorted(names)


def read_recipe(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise SmokeFailure(f"{path}: a recipe must be a YAML mapping")
    return values


def model_type_of(name: str) -> str:
    """The architecture of a Hub id or local model a recipe names, without downloading it."""
    for prefix, model_type in KNOWN_MODEL_TYPES.items():
        if name.startswith(prefix):
            return model_type
    config = Path(name) / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8"))["model_type"]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - not an id the cache can hold
        cached = None
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text(encoding="utf-8"))["model_type"]
    raise SmokeFailure(
        f"{name}: unknown architecture; add its model_type to asclepius.smoke.KNOWN_MODEL_TYPES"
    )


@functools.cache
def shared_tokenizer():
    """The tiny model's tokenizer, trained once per process (every random model shares it)."""
    from asclepius.tiny import build_tokenizer

    return build_tokenizer()


def build_random_model(model_type: str, output_dir: str | Path, *, subfolder: str | None = None) -> Path:
    """A tiny random model of ``model_type`` with the tiny model's tokenizer, public by its card."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from asclepius.stage.cards import render_card
    from asclepius.stage.provenance import PUBLIC, Provenance
    from asclepius.training.stamping import save_stamped

    output_dir = Path(output_dir)
    target = output_dir / subfolder if subfolder else output_dir
    tokenizer = shared_tokenizer()
    config = AutoConfig.for_model(
        model_type,
        **RANDOM_MODEL_SIZES,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    save_stamped(model, target, Provenance(PUBLIC, "random weights, no data", license="apache-2.0"))
    tokenizer.save_pretrained(target)
    render_card(
        output_dir,
        kind="model",
        template="tiny_model_card.md",
        card_data={"license": "apache-2.0", "library_name": "transformers",
                   "tags": ["asclepius", "smoke", "random-weights"], "data_provenance": "public"},
        context={"architecture": model_type, "parameters": f"{model.num_parameters() / 1e6:.2f}M", "seed": 0,
                 "vocab_size": len(tokenizer)},
    )  # fmt: skip
    return output_dir


# --- what a CPU cannot honour, and toy scale ----------------------------------------------
def training_overrides(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(flags, notes): the CPU and toy-scale overrides of a training recipe, and why."""
    flags = {
        "max_steps": 2,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "max_eval_examples": 2,
        "push_to_hub": False,
        "use_cpu": True,
    }
    for key, cap in TRAIN_CAPS.items():
        if key in config and int(config[key]) > cap:
            flags[key] = cap
    notes = [f"{key}={value} (toy scale)" for key, value in flags.items() if key != "use_cpu"]
    for key in ("bf16", "tf32", "fp16"):
        if config.get(key):
            flags[key] = False
            notes.append(f"{key}=false (a CPU cannot)")
    if config.get("dtype") in ("bfloat16", "float16"):
        flags["dtype"] = "float32"
        notes.append(f"dtype=float32 ({config['dtype']} is a GPU's)")
    if str(config.get("attn_implementation", "")).startswith("flash"):
        flags["attn_implementation"] = "sdpa"
        notes.append(f"attn_implementation=sdpa ({config['attn_implementation']} needs a GPU)")
    if config.get("report_to") not in (None, "none", ["none"]):
        flags["report_to"] = "none"
        notes.append(f"report_to=none (its tracker {config['report_to']} is checked, not run)")
    return as_flags(flags), notes


def missing_dependencies(config: dict[str, Any]) -> list[str]:
    """What a recipe needs that is not installed (the tracker it logs to, flash-attn on a GPU)."""
    import torch

    trackers = config.get("report_to") or []
    trackers = [trackers] if isinstance(trackers, str) else list(trackers)
    missing = [
        f"{name} (report_to)"
        for name in trackers
        if name in TRACKER_MODULES and importlib.util.find_spec(TRACKER_MODULES[name]) is None
    ]
    if str(config.get("attn_implementation", "")).startswith("flash") and torch.cuda.is_available():
        if importlib.util.find_spec("flash_attn") is None:
            missing.append("flash-attn (attn_implementation)")
    return missing


def as_flags(values: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in values.items():
        flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


# --- running a script as `python scripts/X.py ...` -------------------------------------
def run_script(name: str, argv: list[str]) -> None:
    """Run ``scripts/<name>`` in this process with ``argv``; a non-zero exit is a SmokeFailure."""
    saved = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")
    except SystemExit as exit_info:
        if exit_info.code not in (0, None):
            raise SmokeFailure(f"{name} exited {exit_info.code} (its one-line error is above)") from None
    finally:
        sys.argv = saved


def check_card(folder: Path) -> None:
    """The stage wrote its card last, and the card parses."""
    from asclepius.stage.files import read_card_metadata

    if not (folder / "README.md").is_file():
        raise SmokeFailure(f"{folder}: the stage finished without its card (README.md)")
    if not read_card_metadata(folder):
        raise SmokeFailure(f"{folder}/README.md: the card does not parse")


def judge_responder(body: dict) -> str:
    """The test server as a judge: a valid score for every answer it is shown, then a reason."""
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    labels = re.findall(r"\[Answer ([A-Z]) Begin\]", user)
    if not labels:  # a generation request (an API model under evaluation)
        return "The note does not say."
    return " ".join("3" for _ in labels) + "\n" + SMOKE_SCORE_REPLY


# --- one recipe ---------------------------------------------------------------------------
class RecipeSmoke:
    """The stages of one recipe, in order, each recorded as ok, skipped (with why) or failed."""

    def __init__(self, recipe: str, root: Path, work: Path, base_url: str):
        self.recipe, self.root, self.work, self.base_url = recipe, root, work, base_url
        self.folder = root / recipe
        self.report = RecipeReport(recipe)
        self.data = read_recipe(self.folder / "data.yaml") if (self.folder / "data.yaml").is_file() else {}
        self.outputs: dict[str, Path] = {}  # recipe output_dir -> where the smoke wrote it
        self.models: dict[str, Path] = {}  # model_type -> random model folder

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        try:
            detail = action() or ""
        except SmokeFailure as error:
            self.report.steps.append(Step(name, "failed", str(error)))
            return
        except Exception as error:  # noqa: BLE001 - a traceback is what a user would meet: a failure
            logger.exception("%s: %s crashed", self.recipe, name)
            self.report.steps.append(Step(name, "failed", f"crashed: {type(error).__name__}: {error}"))
            return
        status = "skipped" if detail.startswith("skipped") else "ok"
        self.report.steps.append(Step(name, status, detail.removeprefix("skipped: ")))

    def run(self) -> RecipeReport:
        if (self.folder / "data.yaml").is_file():
            self.step("data.yaml", lambda: self.parse("data.yaml"))
        pretrain = self.folder / "pretrain" / "config_full.yaml"
        if pretrain.is_file():
            self.step("pretrain", lambda: self.train("pretrain", pretrain))
        for config in ("full", "lora", "qlora"):
            path = self.folder / "sft" / f"config_{config}.yaml"
            if path.is_file():
                self.step(f"sft {config}", lambda path=path: self.train("sft", path))
        if (
            (self.folder / "pretrain").is_dir()
            or (self.folder / "sft").is_dir()
            or self.folder.joinpath("eval.yaml").is_file()
        ):
            self.step("generate + judge", self.evaluate)
        return self.report

    def parse(self, name: str) -> None:
        from asclepius.recipes import RecipeError, check_recipe

        try:
            check_recipe(self.folder / name)
        except RecipeError as error:
            raise SmokeFailure(str(error)) from None

    def model(self, model_type: str, subfolder: str | None = None) -> Path:
        key = f"{model_type}/{subfolder}" if subfolder else model_type
        if key not in self.models:
            folder = self.work / "random-models" / key.replace("/", "-")
            self.models[key] = build_random_model(model_type, folder, subfolder=subfolder)
        return self.models[key]

    def local_input(self, value: str, what: str) -> Path:
        """A local path a recipe reads: written by a stage of this recipe or its data recipe, else wrong."""
        if value in self.outputs:
            return self.outputs[value]
        data_dirs = {
            self.data.get(key)
            for key in ("notes_dir", "questions_dir", "instructions_dir", "mimic_notes_dir")
        }
        if value in data_dirs or (ROOT / value).exists():
            return ROOT / DEMO_DATA  # stands in for the data stages' folder (they need a teacher LLM)
        for other in recipe_names(self.root):  # a folder another recipe writes (the paper baselines)
            data = self.root / other / "data.yaml"
            if data.is_file() and value in read_recipe(data).values():
                return ROOT / DEMO_DATA
        raise SmokeFailure(f"{what}: {value} is written by no stage of this recipe (a wrong path?)")

    def starting_model(self, name: str) -> Path:
        if name in self.outputs:
            return self.outputs[name]
        if name.startswith("outputs/") and model_type_of_or_none(name) is None:
            raise SmokeFailure(
                f"model_name_or_path: {name} is written by no stage of this recipe (a wrong path?)"
            )
        return self.model(model_type_of(name))

    def train(self, stage: str, path: Path) -> str | None:
        import torch

        config = read_recipe(path)
        missing = missing_dependencies(config)
        if missing:
            raise SmokeFailure(f"{path}: not installed: {', '.join(missing)}")
        if config.get("load_in_4bit") or config.get("load_in_8bit"):
            if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
                return "skipped: QLoRA needs bitsandbytes and a GPU"
        flags, notes = training_overrides(config)
        self.note(notes)
        output = self.work / stage / path.stem
        model = self.starting_model(str(config["model_name_or_path"]))
        dataset = config.get("dataset_name", DEMO_DATA)
        data_flags = ["--dataset_name", str(self.data_input(dataset, f"{path}: dataset_name")),
                      "--test_ratio", "0.2", "--dataset_license", "cc0-1.0"]  # fmt: skip
        run_script(f"{stage}.py", ["--config", str(path), "--model_name_or_path", str(model), *data_flags,
                                   "--output_dir", str(output), *flags])  # fmt: skip
        check_card(output)
        self.outputs[str(config["output_dir"])] = output
        return str(output)

    def data_input(self, value: str, what: str) -> Path:
        if "/" in value and not value.startswith(("outputs/", "data/", ".", "/")):
            return ROOT / DEMO_DATA  # a Hub dataset: the demo rows stand in (no download)
        return self.local_input(value, what)

    def note(self, notes: list[str]) -> None:
        self.report.overrides += [note for note in notes if note not in self.report.overrides]

    def evaluate(self) -> str:
        path = self.folder / "eval.yaml"
        if not path.is_file():
            raise SmokeFailure(f"{path}: missing (`make generate RECIPE={self.recipe}` needs it)")
        config = read_recipe(path)
        answers, report = self.work / "eval" / "answers", self.work / "eval" / "report"
        model = str(config.get("model", ""))
        flags = [
            "--config",
            str(path),
            "--output_dir",
            str(answers),
            "--max_samples",
            "2",
            "--max_tokens",
            "8",
        ]
        flags += ["--input", str(self.data_input(str(config.get("input", DEMO_DATA)), f"{path}: input"))]
        flags += ["--test_ratio", "0.2"]
        if config.get("backend", "transformers") == "transformers":
            subfolder = config.get("model_subfolder")
            if model in self.outputs:
                served = self.outputs[model]
            elif model.startswith("outputs/"):
                raise SmokeFailure(
                    f"{path}: model {model} is written by no stage of this recipe (a wrong path?)"
                )
            else:
                served = self.model(model_type_of(model), subfolder)
            flags += ["--model", str(served), "--device", "cpu", "--dtype", "float32", "--batch_size", "2"]
            self.note(["generate: device=cpu, dtype=float32, batch_size=2, max_samples=2, max_tokens=8"])
        else:
            flags += ["--base_url", self.base_url]  # an API model: the test server answers
        run_script("generate.py", flags)
        check_card(answers)
        judge = ["--config", str(path), "--inputs", str(answers), "--output_dir", str(report),
                 "--judge_base_url", self.base_url, "--bootstrap_samples", "20", "--show_progress", "false"]  # fmt: skip
        if config.get("train_dataset"):
            judge += [
                "--train_dataset",
                str(self.data_input(str(config["train_dataset"]), f"{path}: train_dataset")),
            ]
        self.note(["judge: the project's test server at 127.0.0.1 (any judge_model), bootstrap_samples=20"])
        run_script("judge.py", judge)
        check_card(report)
        return str(report)


def model_type_of_or_none(name: str) -> str | None:
    try:
        return model_type_of(name)
    except SmokeFailure:
        return None


def smoke(
    recipes: list[str], *, root: str | Path = "recipes", work_dir: str | Path | None = None
) -> list[RecipeReport]:
    """Run every stage of ``recipes`` at toy scale against one test server; the reports, in order."""
    from asclepius.testing.openai_server import OpenAIServer

    root = Path(root)
    reports = []
    with (
        tempfile.TemporaryDirectory(prefix="asclepius-smoke-") as scratch,
        OpenAIServer(responder=judge_responder) as server,
    ):
        base = Path(work_dir) if work_dir else Path(scratch)
        for recipe in recipes:
            if not (root / recipe).is_dir():
                reports.append(RecipeReport(recipe, [Step("recipe", "failed", f"no folder {root / recipe}")]))
                continue
            work = base / recipe.replace("/", "--")
            reports.append(RecipeSmoke(recipe, root, work, server.base_url).run())
            print("\n".join(reports[-1].lines()), flush=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", default=[], help="recipe folders under --root (e.g. tiny)")
    parser.add_argument("--all", action="store_true", help="every recipe under --root")
    parser.add_argument("--root", default="recipes")
    parser.add_argument(
        "--work_dir", default=None, help="keep the stage folders here (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    if not args.all and not args.recipe:
        parser.error("name --recipe NAME ... or --all")
    recipes = recipe_names(args.root) if args.all else args.recipe
    reports = smoke(recipes, root=args.root, work_dir=args.work_dir)
    failed = [report.recipe for report in reports if not report.ok]
    print(
        f"smoke: {len(reports) - len(failed)} of {len(reports)} recipes ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
