"""One stage's output folder: state, one run at a time, checks before work, card last, push.

States: *absent*; *unfinished* (a run started and removed the card, or never wrote it:
a rerun resumes); *finished* (the card exists: a rerun says so and does nothing unless
``--overwrite``). See :mod:`asclepius.stage` for the order scripts call this in.

One run per folder: ``open`` takes ``.asclepius/lock.json`` (holder pid, host, start
time, command) with an exclusive create. A second run exits at once naming the holder;
a lock whose holder is gone (same host, pid not alive) is taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from asclepius.errors import InputError
from asclepius.stage.files import CARD_NAME, WORK_DIR_NAME, is_finished, mark_unfinished, work_dir
from asclepius.stage.policy import check_endpoint, check_push
from asclepius.stage.provenance import Provenance, combine, mark
from asclepius.stage.push import push_folder

logger = logging.getLogger(__name__)

LOCK_NAME = "lock.json"


@dataclass
class PushRequest:
    """The push flags of a stage, whatever each family calls them."""

    push_to_hub: bool = False
    repo_id: str | None = None
    private: bool = False
    repo_type: str = "dataset"


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for the holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, ticks: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    current = _start_ticks(pid)
    return ticks is None or current is None or current == ticks


class FolderLock:
    """``.asclepius/lock.json`` created exclusively; released at exit; a dead holder's lock is taken over."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / WORK_DIR_NAME / LOCK_NAME
        self.held = False

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        work_dir(self.folder)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start_ticks": _start_ticks(os.getpid()),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(
                os.path.basename(part) if i == 0 else part for i, part in enumerate(sys.argv[:2])
            ),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if not holder and self._young():
                    # Created this instant by a run that has not written its name yet: in use.
                    raise InputError(
                        self.folder, "another run is starting on this folder; wait for it"
                    ) from None
                if holder and not self._stale(holder):
                    raise InputError(
                        self.folder,
                        f"in use by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
                        f"({holder.get('command') or 'another run'}); wait for it to end "
                        f"(if that run is gone, remove {self.path})",
                    ) from None
                # Stale (or half-written): rename it away; only one contender wins the rename.
                try:
                    os.replace(self.path, self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}"))
                    logger.warning(
                        "taking over the lock of a run that is gone: %s", holder or "unreadable lock"
                    )
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            self.held = True
            atexit.register(self.release)
            return
        raise InputError(self.folder, f"could not take the lock {self.path}; another run is starting")

    def _young(self, seconds: float = 10.0) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < seconds
        except OSError:
            return False

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return False  # another machine's pid cannot be checked from here
        pid = holder.get("pid")
        return not isinstance(pid, int) or not _alive(pid, holder.get("start_ticks"))

    def release(self) -> None:
        if self.held and self.holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
            # A run refused before any work leaves no folder behind (rmdir only removes empty ones).
            for folder in (self.path.parent, self.folder):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        self.held = False


class StageFolder:
    """The output folder of one run of a stage (data, training or evaluation)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        dry_run: bool = False,
        push: PushRequest | None = None,
    ):
        self.path = Path(path)
        self.overwrite, self.dry_run = overwrite, dry_run
        self.lock = FolderLock(self.path)
        self.provenance: Provenance | None = None
        self.push_request = push or PushRequest()

    @classmethod
    def open(cls, path: str | os.PathLike, *, lock: bool = True, **options):
        """The folder (``options``: overwrite, dry_run, push), locked for this run.

        A dry run writes nothing, so it takes no lock; ``lock=False`` for the other
        processes of a distributed run, whose main process holds it.
        """
        folder = cls(path, **options)
        if lock and not folder.dry_run:
            folder.lock.acquire()
        return folder

    @property
    def state(self) -> str:
        if is_finished(self.path):
            return "finished"
        return "unfinished" if self.path.exists() else "absent"

    @property
    def work_dir(self) -> Path:
        """``.asclepius/`` (created on first use: never in a dry run)."""
        return work_dir(self.path)

    def skip_if_finished(self) -> bool:
        """True (and says so) when the folder is finished and --overwrite was not given."""
        if self.state == "finished" and not self.overwrite:
            print(f"{self.path} is already finished (its {CARD_NAME} exists); pass --overwrite to rebuild it")
            return True
        return False

    def check(
        self,
        inputs: Iterable[Provenance],
        *,
        push: PushRequest | None = None,
        endpoints: Iterable[str | None] = (),
        allowed_endpoints: Iterable[str] = (),
        preflight: Iterable[Callable[[], object]] = (),
    ) -> Provenance:
        """Every refusal before any work (and before ``--overwrite`` deletes anything).

        The output's provenance is the most restrictive input's; a restricted output is
        never pushed publicly and its notes go to allowed endpoints only. ``preflight``
        callables (reading the API key, opening the input) run here too, so a run that
        cannot start leaves a finished folder intact.
        """
        provenance = combine(inputs)
        self.push_request = push or self.push_request
        check_push(
            provenance,
            push=self.push_request.push_to_hub,
            private=self.push_request.private,
            folder=str(self.path),
        )
        for url in endpoints:
            check_endpoint(provenance, url, allowed_endpoints)
        for step in preflight:
            step()
        self.provenance = provenance
        return provenance

    def begin(self) -> None:
        """Make the folder unfinished and mark its provenance before any row or weight is written."""
        if self.dry_run:
            raise RuntimeError("a dry run writes nothing into its output folder")
        self.path.mkdir(parents=True, exist_ok=True)
        mark_unfinished(self.path)
        if self.provenance is not None:
            mark(self.path, self.provenance)

    def finish(self, write_card: Callable[[], Path]) -> Path:
        """Write the card (LAST: the folder is now finished) and release the folder."""
        path = write_card()
        self.lock.release()
        return path

    def push_if_asked(self) -> str | None:
        """Upload the finished folder when the push was asked for (policy applied again on the way)."""
        request = self.push_request
        if not request.push_to_hub:
            return None
        url = push_folder(
            self.path,
            request.repo_id,
            repo_type=request.repo_type,
            private=request.private,
            provenance=self.provenance,
        )
        print(f"pushed {self.path} to {url}")
        return url
