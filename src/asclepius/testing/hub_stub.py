"""A stand-in for ``huggingface_hub.HfApi`` that records what a push would do and contacts nothing.

Tests run scripts as subprocesses; :func:`script_env` returns the environment that makes
every process started with it use the stub (a ``sitecustomize`` on ``PYTHONPATH``
replaces ``huggingface_hub.HfApi`` at start-up). Each call is appended to a JSON Lines
log: ``create_repo`` (repo id, private), ``repo_info``, and ``upload_folder`` with the
exact files huggingface_hub would upload after the ignore patterns. Any other Hub call
fails, so a test notices a route the stub does not cover instead of reaching the Hub.

    env = hub_stub.script_env(tmp_path, base_env, private=False)
    subprocess.run([... "--push_to_hub", "true" ...], env=env)
    calls = hub_stub.calls(env)      # [{"call": "create_repo", ...}, {"call": "upload_folder", "files": [...]}]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LOG_ENV = "ASCLEPIUS_HUB_STUB_LOG"
PRIVATE_ENV = "ASCLEPIUS_HUB_STUB_REPO_PRIVATE"  # what repo_info says after create_repo: "1" private

_SITECUSTOMIZE = f"""import os
if os.environ.get({LOG_ENV!r}):
    from asclepius.testing.hub_stub import install
    install()
"""


def _record(entry: dict) -> None:
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


class StubHfApi:
    """Records create_repo, repo_info and upload_folder; refuses every other Hub call."""

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        _record({"call": "create_repo", "repo_id": repo_id, "repo_type": repo_type, "private": private})
        return (
            f"https://huggingface.co/{repo_type + 's/' if repo_type in ('dataset', 'space') else ''}{repo_id}"
        )

    def repo_info(self, repo_id, *, repo_type=None, **kwargs):
        _record({"call": "repo_info", "repo_id": repo_id})
        return type("RepoInfo", (), {"private": os.environ.get(PRIVATE_ENV) == "1"})()

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, ignore_patterns=None, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        files = list(filter_repo_objects(paths, ignore_patterns=ignore_patterns))
        _record({"call": "upload_folder", "repo_id": repo_id, "repo_type": repo_type, "files": files})
        return f"https://huggingface.co/{repo_id}/commit/stub"

    def __getattr__(self, name):
        _record({"call": name, "unexpected": True})
        raise AssertionError(f"the Hub stub does not answer {name}(): a test reached an unstubbed Hub call")


def install() -> None:
    import huggingface_hub

    huggingface_hub.HfApi = StubHfApi


def script_env(tmp: str | os.PathLike, env: dict[str, str], *, private: bool = False) -> dict[str, str]:
    """``env`` plus what makes subprocesses use the stub (log and sitecustomize under ``tmp``)."""
    tmp = Path(tmp)
    site = tmp / "hub_stub_site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": path,
        LOG_ENV: str(tmp / "hub_calls.jsonl"),
        PRIVATE_ENV: "1" if private else "0",
    }


def calls(env: dict[str, str]) -> list[dict]:
    """Every Hub call recorded so far by processes started with ``env``."""
    log = Path(env[LOG_ENV])
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
