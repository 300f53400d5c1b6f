"""Offline only where it must be: make forces HF_HUB_OFFLINE for demo/test/bench alone, and
without a network a model named by its Hub id comes from a pre-filled cache, no flag set.

"No network" is a Hub endpoint (HF_ENDPOINT) on a loopback port where nothing listens:
every connection is refused at once, as on a machine without a route to the Hub.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from asclepius.stage.files import is_finished

ROOT = Path(__file__).resolve().parents[1]
SMOL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any offline variable (the suite sets them), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in OFFLINE_VARIABLES}
    return {**env, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture
def refused_endpoint():
    """A loopback URL whose port is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def make_env_of(target: str, tmp_path: Path) -> str:
    """HF_HUB_OFFLINE as the recipes of ``make target`` see it (``make -n``: nothing runs but a probe)."""
    probe = tmp_path / "probe.mk"
    probe.write_text(f'{target}: u1-probe\nu1-probe: ; +@echo "HF_HUB_OFFLINE=[$$HF_HUB_OFFLINE]"\n')
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-f", "Makefile", "-f", str(probe), target],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = next(line for line in result.stdout.splitlines() if line.startswith("HF_HUB_OFFLINE=["))
    return line.removeprefix("HF_HUB_OFFLINE=[").removesuffix("]")


def test_make_forces_offline_only_for_the_demo_tests_and_benchmarks(tmp_path):
    for target in ("demo", "test", "bench"):
        assert make_env_of(target, tmp_path) == "1", target
    for target in ("pretrain", "sft", "generate", "judge", "notes", "push", "check-recipes"):
        assert make_env_of(target, tmp_path) == "", f"make {target} forces offline mode"


def offline_probe(env: dict[str, str]) -> list[str]:
    code = (
        "import os; from asclepius.offline import offline_unless_hub_reachable as go;"
        "import huggingface_hub.constants as c;"
        "print(go(), c.HF_HUB_OFFLINE, os.environ.get('HF_HUB_OFFLINE'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_an_unreachable_hub_turns_the_process_offline(refused_endpoint):
    assert offline_probe(clean_env(HF_ENDPOINT=refused_endpoint)) == ["True", "True", "1"]


def test_a_reachable_hub_leaves_the_process_online():
    class Hub(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(401)  # an answer, even a refusal, means the network works
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert offline_probe(clean_env(HF_ENDPOINT=endpoint)) == ["False", "False", "None"]
    finally:
        server.shutdown()
        server.server_close()


def test_hub_ids_are_told_from_local_paths(tmp_path):
    from asclepius.offline import looks_like_hub_id

    assert looks_like_hub_id("starmpcc/Asclepius-Synthetic-Clinical-Notes") and looks_like_hub_id("gpt2")
    assert not looks_like_hub_id(str(tmp_path)) and not looks_like_hub_id("outputs/tiny-model")
    assert not looks_like_hub_id("PMC-Patients.csv") and not looks_like_hub_id("./model")
    assert not looks_like_hub_id("data/demo/synthetic_notes.jsonl") and not looks_like_hub_id(None)


def test_a_hub_dataset_without_a_network_turns_the_process_offline_and_local_inputs_do_not(refused_endpoint):
    code = (
        "import sys; from asclepius.offline import offline_unless_hub_reachable_for as go;"
        "print(go(*sys.argv[1:]))"
    )
    env = clean_env(HF_ENDPOINT=refused_endpoint)

    def offline_after(*names: str) -> str:
        result = subprocess.run([sys.executable, "-c", code, *names], env=env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert offline_after("outputs/tiny-model", "data/demo/synthetic_notes.jsonl") == "False"
    assert offline_after("outputs/tiny-model", "starmpcc/Asclepius-Synthetic-Clinical-Notes") == "True"


def test_a_hub_id_missing_from_the_cache_is_one_line_without_a_network(refused_endpoint, tmp_path):
    code = "from asclepius.recipes import check_model_path; check_model_path('someone/not-cached')"
    env = clean_env(HF_ENDPOINT=refused_endpoint, HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert (
        "someone/not-cached: field '--model_name_or_path': not a local folder, and not in the Hugging Face cache"
        in (result.stderr)
    )


def fill_hub_cache(hf_home: Path, repo_id: str, model_folder: Path) -> None:
    """The Hub cache layout (models--org--name/snapshots/<rev>/, refs/main) over a model folder."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in Path(model_folder).iterdir():
        if file.is_file():
            (snapshot / file.name).symlink_to(file.resolve())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_pretrain_and_generate_by_hub_id_from_a_filled_cache_without_a_network(
    smol_model_path, refused_endpoint, tmp_path
):
    hf_home = tmp_path / "hf"
    fill_hub_cache(hf_home, SMOL_HUB_ID, smol_model_path)
    env = clean_env(HF_HOME=str(hf_home), HF_ENDPOINT=refused_endpoint)
    make = ["make", "-o", ".venv/.installed", f"PY={sys.executable}", "RECIPE=smol", f"MODEL={SMOL_HUB_ID}"]

    def run(*args: str) -> str:
        result = subprocess.run(
            [*make, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Retrying in" not in result.stderr, "the Hub was retried file by file"
        assert "working offline from the Hugging Face cache" in result.stderr
        return result.stderr

    pretrained = tmp_path / "pretrain"
    run("pretrain", f"OUTPUT={pretrained}", "ARGS=--max_steps 2 --max_length 64 --learning_signal false")
    assert is_finished(pretrained) and (pretrained / "model.safetensors").exists()
    assert SMOL_HUB_ID in (pretrained / "README.md").read_text(encoding="utf-8")

    answers = tmp_path / "answers"
    run("generate", f"OUTPUT={answers}", "ARGS=--max_samples 2 --max_tokens 4")
    assert is_finished(answers)
    import pandas as pd

    rows = pd.concat(pd.read_parquet(path) for path in sorted((answers / "data").rglob("*.parquet")))
    assert len(rows) == 2


def test_the_readme_says_which_targets_are_offline():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Online and offline", 1)[1].split("\n#", 1)[0]
    named = re.findall(r"`make ([\w-]+)`", section.split(";", 1)[0])
    offline = re.search(r"^OFFLINE_TARGETS := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert named == ["demo", "test", "bench"] and set(named) <= set(offline)
    assert "HF_HUB_OFFLINE=1" in section and "cache" in section


def test_perplexity_and_chat_by_hub_id_read_the_cache_at_once_without_a_network(
    tiny_model_path, refused_endpoint, tmp_path
):
    hf_home = tmp_path / "hf"
    fill_hub_cache(hf_home, "someone/tiny-clinical", tiny_model_path)
    env = clean_env(HF_HOME=str(hf_home), HF_ENDPOINT=refused_endpoint)

    def run(*command: str, stdin: str = "") -> str:
        result = subprocess.run(list(command), cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                                timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Retrying in" not in result.stderr, "the Hub was retried file by file"
        assert "working offline from the Hugging Face cache" in result.stderr
        return result.stdout

    report = tmp_path / "perplexity"
    run(sys.executable, "scripts/perplexity.py", "--models", "someone/tiny-clinical", "--corpora",
        "notes=data/demo/synthetic_notes.jsonl", "--max_documents", "2", "--output_dir", str(report))  # fmt: skip
    assert is_finished(report) and "someone/tiny-clinical" in (report / "report.md").read_text(
        encoding="utf-8"
    )
    answer = run(sys.executable, "-m", "asclepius.cli", "chat", "--model", "someone/tiny-clinical",
                 "--question", "What was the diagnosis?", "--max_new_tokens", "3", stdin="A short note.\n\n")  # fmt: skip
    assert answer.endswith("\n")  # one answer line (the tiny model may answer blanks)
