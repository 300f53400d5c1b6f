"""One stage's output folder: state, one run at a time, checks before work, card last, push.

States: *absent*; *unfinished* (a run started and removed the card, or never wrote it:
a rerun resumes); *finished* (the card exists: a rerun says so and does nothing unless
``--overwrite``). See :mod:`asclepius.stage` for the order scripts call this in.

One run per folder: ``open`` takes an OS lock (``flock``) on ``.asclepius/lock.json``,
which the OS releases when the holder exits or is killed; the file records the holder
(pid, host, start, command) for the message a second run gets when it exits at once.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from asclepius.errors import InputError
from asclepius.redaction import redact_url
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
    token: str | None = field(default=None, repr=False)  # --hub_token; never printed or recorded


def launcher_rank() -> int:
    """This process's rank as the launcher (``accelerate launch``, ``torchrun``) numbered it; 0 when alone.

    The Trainer's ``process_index`` is 0 on every process when it does not see the
    process group (``cpu_ddp.yaml`` without ``--use_cpu true``), so the folder lock is
    keyed on the launcher's numbering instead: only rank 0 takes it.
    """
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def check_url(url: str | None) -> None:
    """A malformed endpoint (bad port, no host) is a one-line error before any work, not a traceback later."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:
        raise InputError(redact_url(url), f"not a valid endpoint URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(redact_url(url), "not a valid endpoint URL (http or https, with a host)")


class FolderLock:
    """An OS lock (``flock``) on ``.asclepius/lock.json``: the OS releases it when the holder dies.

    The file's content (pid, host, start, command) only names the holder in the message a
    second run gets; whether the folder is held is the kernel's answer, so a stale record
    can never be mistaken for a live run, and two runs can never both win.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / WORK_DIR_NAME / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        work_dir(self.folder)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise InputError(self.folder, self._in_use()) from None
            # The file may have been unlinked by a holder releasing it between our open and our
            # flock: then we hold a lock on a file nobody else can see; start again on the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self.holder()
        if previous.get("pid") not in (None, os.getpid()):
            logger.warning("taking over the lock of a run that is gone: %s", previous)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(
                os.path.basename(part) if i == 0 else part for i, part in enumerate(sys.argv[:2])
            ),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        self._fd = fd
        atexit.register(self.release)

    def _in_use(self) -> str:
        holder = self.holder()
        if not holder:
            return "another run is starting on this folder; wait for it"
        return (
            f"in use by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
            f"({holder.get('command') or 'another run'}); wait for it to end"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock: a contender that opened the old file sees it is gone.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        # A run refused before any work leaves no folder behind (rmdir only removes empty ones).
        for folder in (self.path.parent, self.folder):
            with contextlib.suppress(OSError):
                folder.rmdir()


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

        A dry run writes nothing, so it takes no lock; nor do the processes of a
        distributed run other than the launcher's rank 0 (``lock=False`` says the same
        from the caller's side), whose main process holds it.
        """
        folder = cls(path, **options)
        if lock and not folder.dry_run and launcher_rank() == 0:
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
        """True (and says so) when the folder is finished and --overwrite was not given.

        The caller then calls :meth:`push_if_asked`: a finished folder whose push failed
        (or was not asked for) is pushed by rerunning with the push flags, with the policy
        applied to the folder as it is now.
        """
        if self.state == "finished" and not self.overwrite:
            what = "; pushing it as asked" if self.push_request.push_to_hub else ""
            print(
                f"{self.path} is already finished (its {CARD_NAME} exists){what}; "
                "pass --overwrite to rebuild it"
            )
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
            check_url(url)
            check_endpoint(provenance, url, allowed_endpoints)
        for step in preflight:
            step()
        self.provenance = provenance
        return provenance

    def begin(self) -> None:
        """Make the folder unfinished and mark its provenance before any row or weight is written."""
        if self.dry_run:
            raise RuntimeError("a dry run writes nothing into its output folder")
        if self.provenance is None and self.state == "finished":
            # --overwrite deletes the card here: every refusal must have been made first.
            raise RuntimeError("check() must run before begin() rebuilds a finished folder")
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
        """Upload the finished folder when the push was asked for.

        The policy is applied again on the way: ``push_folder`` re-classifies the folder as
        it is now and combines that with what this run's inputs were.
        """
        request = self.push_request
        if not request.push_to_hub:
            return None
        if self.dry_run and self.state != "finished":  # a dry run contacts nothing (and wrote nothing)
            print(f"dry run: would push {self.path} to {request.repo_id} (private={request.private})")
            return None
        url = push_folder(
            self.path,
            request.repo_id,
            repo_type=request.repo_type,
            private=request.private,
            token=request.token,
            provenance=self.provenance,
            dry_run=self.dry_run,  # checks made, files listed, nothing sent
        )
        if url:
            print(f"pushed {self.path} to {url}")
        return url
