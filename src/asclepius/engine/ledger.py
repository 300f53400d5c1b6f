"""The durable record of every answered or permanently failed request (stdlib SQLite).

Rows are keyed by the request's content hash, so a rerun (after a crash, a Ctrl-C or a
finished run with more inputs) serves what it already paid for and sends only the rest.
The ledger records facts (what the server answered, or why no answer came); policy such
as fail_on_length is applied when a row is read, so changing a flag never needs a resend.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    content TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    transient INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    resume_key TEXT,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_resume_key ON results (resume_key) WHERE resume_key IS NOT NULL;
"""

_COLUMNS = "key, status, content, finish_reason, prompt_tokens, completion_tokens, error, transient, attempts"


@dataclass(frozen=True)
class Entry:
    key: str
    status: str  # "done": the server answered (any finish_reason); "failed": no answer
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    transient: bool  # failed only because attempts ran out (429/5xx/timeouts): worth resending
    attempts: int


class Ledger:
    def __init__(self, path: str | os.PathLike, *, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            # dry_run peeks at what is already done without creating anything.
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0)
        # WAL: a commit is one append to the -wal file, readers never block the writer.
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process being killed
        # (kill -9, OOM), which is the crash that matters here; only an OS crash or power
        # loss can drop the last few commits, costing a re-paid request, never corruption.
        # FULL would fsync on every answer and cap throughput at the disk's fsync rate.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    @staticmethod
    def _entry(row: tuple | None) -> Entry | None:
        if row is None:
            return None
        key, status, content, finish, prompt, completion, error, transient, attempts = row
        return Entry(key, status, content, finish, prompt, completion, error, bool(transient), attempts)

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM results WHERE key = ?", (key,)).fetchone()
        return self._entry(row)

    def get_done_by_resume_key(self, resume_key: str) -> Entry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM results WHERE resume_key = ? AND status = 'done' "
            "ORDER BY created_at LIMIT 1",
            (resume_key,),
        ).fetchone()
        return self._entry(row)

    def put(self, entry: Entry, *, resume_key: str | None, model: str) -> None:
        """Write and COMMIT one row; the caller hands out the result only after this returns."""
        now = time.time()
        with self._db:  # commits, or rolls back on error
            self._db.execute(
                "INSERT INTO results (key, status, content, finish_reason, prompt_tokens, completion_tokens,"
                " error, transient, attempts, resume_key, model, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET status = excluded.status, content = excluded.content,"
                " finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,"
                " completion_tokens = excluded.completion_tokens, error = excluded.error,"
                " transient = excluded.transient, attempts = results.attempts + excluded.attempts,"
                " resume_key = COALESCE(excluded.resume_key, results.resume_key),"
                " model = excluded.model, updated_at = excluded.updated_at",
                (
                    entry.key,
                    entry.status,
                    entry.content,
                    entry.finish_reason,
                    entry.prompt_tokens,
                    entry.completion_tokens,
                    entry.error,
                    int(entry.transient),
                    entry.attempts,
                    resume_key,
                    model,
                    now,
                    now,
                ),
            )

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM results GROUP BY status").fetchall())

    def close(self) -> None:
        self._db.close()
