"""The durable record of every answered or permanently failed request (stdlib SQLite).

Rows are keyed by the request's content hash (the endpoint included: a rerun against
another endpoint never serves this one's answers as its own), so a rerun (after a crash, a Ctrl-C or a
finished run with more inputs) serves what it already paid for and sends only the rest.
The ledger records facts (what the server answered, or why no answer came); policy such
as fail_on_length is applied when a row is read, so changing a flag never needs a resend.

Batch API runs add two tables: ``batch_shards`` (one JSONL file submitted as one batch,
with its upload and batch ids recorded before anything waits on them) and
``batch_members`` (which request keys a shard carries), so a killed run finds its
batches again instead of paying for them twice.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from asclepius.redaction import redact_text

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
CREATE TABLE IF NOT EXISTS batch_shards (
    shard TEXT PRIMARY KEY,          -- sha256 of the JSONL bytes; the uploaded file is named after it
    path TEXT NOT NULL,              -- the JSONL file in the work folder
    state TEXT NOT NULL,             -- written, uploading, uploaded, creating, submitted, collected, dropped
    file_id TEXT,
    batch_id TEXT,
    status TEXT,                     -- the provider's last reported batch status
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    tokens INTEGER NOT NULL,         -- enqueued-token estimate: prompt estimate + max_tokens
    worst_cost REAL,                 -- USD if every request used its max_tokens (batch price)
    round INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_members (
    shard TEXT NOT NULL,
    key TEXT NOT NULL,
    resume_key TEXT,
    PRIMARY KEY (shard, key)
);
CREATE INDEX IF NOT EXISTS batch_members_key ON batch_members (key);
"""
# Columns added after the first release; older ledgers get them on open.
_ADDED_COLUMNS = {"backend": "TEXT", "cost_usd": "REAL", "endpoint": "TEXT"}

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
    endpoint: str | None = None  # the (redacted) endpoint that answered; None in rows of older ledgers


@dataclass(frozen=True)
class Shard:
    shard: str
    path: str
    state: str
    file_id: str | None
    batch_id: str | None
    status: str | None
    requests: int
    bytes: int
    tokens: int
    worst_cost: float | None
    round: int


_SHARD_COLUMNS = "shard, path, state, file_id, batch_id, status, requests, bytes, tokens, worst_cost, round"


class Ledger:
    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, endpoint: str | None = None):
        """``endpoint``: the redacted endpoint recorded on every row this ledger writes."""
        self.path = Path(path)
        self.endpoint = endpoint
        self._snapshot: str | None = None
        self._has_batches, self._old_schema = True, False
        if read_only:
            self._open_snapshot()
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
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
        self._db.commit()
        self._columns = f"{_COLUMNS}, endpoint"

    def _open_snapshot(self) -> None:
        """Read without writing a byte next to the ledger (a dry run leaves the folder as it was).

        SQLite creates -wal/-shm files even for a read-only open of a WAL database, so a
        ledger with a write-ahead log (a killed run leaves one) is copied to a temporary
        folder and read there; a clean ledger is opened as immutable.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists():
            self._snapshot = tempfile.mkdtemp(prefix="asclepius-ledger-")
            copy = Path(self._snapshot) / self.path.name
            shutil.copyfile(self.path, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            self._db = sqlite3.connect(copy)
        else:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        self._has_batches = bool(
            self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'batch_members'").fetchone()
        )
        self._old_schema = not set(_ADDED_COLUMNS) <= present
        self._columns = f"{_COLUMNS}, {'endpoint' if 'endpoint' in present else 'NULL'}"

    @staticmethod
    def _entry(row: tuple | None) -> Entry | None:
        if row is None:
            return None
        key, status, content, finish, prompt, completion, error, transient, attempts, endpoint = row
        return Entry(
            key, status, content, finish, prompt, completion, error, bool(transient), attempts, endpoint
        )

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(f"SELECT {self._columns} FROM results WHERE key = ?", (key,)).fetchone()
        return self._entry(row)

    def get_done_by_resume_key(self, resume_key: str) -> Entry | None:
        row = self._db.execute(
            f"SELECT {self._columns} FROM results WHERE resume_key = ? AND status = 'done' "
            "ORDER BY created_at LIMIT 1",
            (resume_key,),
        ).fetchone()
        return self._entry(row)

    def put(
        self,
        entry: Entry,
        *,
        resume_key: str | None,
        model: str,
        backend: str = "sync",
        cost_usd: float | None = None,
    ) -> None:
        """Write and COMMIT one row; the caller hands out the result only after this returns."""
        with self._db:  # commits, or rolls back on error
            self._put(entry, resume_key=resume_key, model=model, backend=backend, cost_usd=cost_usd)

    def put_many(self, rows: list[tuple[Entry, str | None, str, str, float | None]], *, then=None) -> None:
        """Write (entry, resume_key, model, backend, cost) rows and run ``then()`` in ONE transaction."""
        with self._db:
            for entry, resume_key, model, backend, cost_usd in rows:
                self._put(entry, resume_key=resume_key, model=model, backend=backend, cost_usd=cost_usd)
            if then is not None:
                then()

    def _put(
        self, entry: Entry, *, resume_key: str | None, model: str, backend: str, cost_usd: float | None
    ) -> None:
        now = time.time()
        # Errors quote what servers sent back (echoed keys, URLs with query strings): never stored raw.
        error = redact_text(entry.error) if entry.error else entry.error
        self._db.execute(
            "INSERT INTO results (key, status, content, finish_reason, prompt_tokens, completion_tokens,"
            " error, transient, attempts, resume_key, model, backend, cost_usd, endpoint, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET status = excluded.status, content = excluded.content,"
            " finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,"
            " completion_tokens = excluded.completion_tokens, error = excluded.error,"
            " transient = excluded.transient, attempts = results.attempts + excluded.attempts,"
            " resume_key = COALESCE(excluded.resume_key, results.resume_key),"
            " model = excluded.model, backend = excluded.backend,"
            " cost_usd = COALESCE(results.cost_usd, 0) + COALESCE(excluded.cost_usd, 0),"
            " endpoint = excluded.endpoint,"
            " updated_at = excluded.updated_at",
            (
                entry.key,
                entry.status,
                entry.content,
                entry.finish_reason,
                entry.prompt_tokens,
                entry.completion_tokens,
                error,
                int(entry.transient),
                entry.attempts,
                resume_key,
                model,
                backend,
                cost_usd,
                self.endpoint,
                now,
                now,
            ),
        )

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM results GROUP BY status").fetchall())

    def spent(self) -> float:
        """USD recorded so far (rows whose price was known)."""
        if self._old_schema:
            return 0.0
        return float(self._db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM results").fetchone()[0])

    # --- batches ------------------------------------------------------------------------
    def add_shard(self, shard: Shard, members: list[tuple[str, str | None]]) -> None:
        """Record a written shard and the keys it carries (before anything is uploaded)."""
        now = time.time()
        with self._db:
            self._db.execute(
                f"INSERT OR IGNORE INTO batch_shards ({_SHARD_COLUMNS}, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*[getattr(shard, name) for name in _SHARD_COLUMNS.split(", ")], now, now),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO batch_members (shard, key, resume_key) VALUES (?, ?, ?)",
                [(shard.shard, key, resume_key) for key, resume_key in members],
            )

    def update_shard(self, shard: str, **values) -> None:
        with self._db:
            self._update_shard(shard, **values)

    def _update_shard(self, shard: str, **values) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(
            f"UPDATE batch_shards SET {assignments}, updated_at = ? WHERE shard = ?",
            (*values.values(), time.time(), shard),
        )

    def shard(self, shard: str) -> Shard | None:
        row = self._db.execute(
            f"SELECT {_SHARD_COLUMNS} FROM batch_shards WHERE shard = ?", (shard,)
        ).fetchone()
        return Shard(*row) if row else None

    def open_shards(self) -> list[Shard]:
        """Shards written but not yet collected (or dropped), oldest first."""
        if not self._has_batches:
            return []
        rows = self._db.execute(
            f"SELECT {_SHARD_COLUMNS} FROM batch_shards WHERE state NOT IN ('collected', 'dropped')"
            " ORDER BY created_at"
        ).fetchall()
        return [Shard(*row) for row in rows]

    def members(self, shard: str) -> list[tuple[str, str | None]]:
        return self._db.execute(
            "SELECT key, resume_key FROM batch_members WHERE shard = ? ORDER BY rowid", (shard,)
        ).fetchall()

    def member_resume_key(self, key: str) -> str | None:
        if not self._has_batches:
            return None
        row = self._db.execute(
            "SELECT resume_key FROM batch_members WHERE key = ? AND resume_key IS NOT NULL LIMIT 1", (key,)
        ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()
        if self._snapshot is not None:
            shutil.rmtree(self._snapshot, ignore_errors=True)
