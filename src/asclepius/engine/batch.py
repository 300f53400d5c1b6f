"""The Batch API backend: the same requests, keys and ledger, at half price.

One run takes the stage's requests in rounds (``--batch_round_size``; one round by
default). A round's requests that the ledger cannot serve are written as Batch API JSONL
(``custom_id`` = the ledger key) in shards within the provider's limits, uploaded,
submitted, polled, and their output and error files written to the ledger exactly as
synchronous answers are. Only then does the stage see the round's results (in request
order), so prompts built from earlier answers (the question pool) are frozen within a
round and the same on a rerun.

Crash safety: every step is recorded in the ledger before the step that depends on it.

    written    the shard's file exists and its member keys are recorded
    uploading  an upload may have reached the server: a rerun looks for the file by name
    uploaded   file id recorded
    creating   a create may have reached the server: a rerun looks for a batch on the file
    submitted  batch id recorded: a rerun polls it, never submits the shard again
    collected  its results are in the ledger (one transaction with the state change)

An expired or cancelled batch resubmits only the requests without a result; errored
rows (429/5xx) are resubmitted up to ``--max_attempts`` times, then recorded as failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from tqdm.auto import tqdm

from asclepius.engine.client import CallError, _status_error
from asclepius.engine.ledger import Entry, Shard
from asclepius.engine.request import Request, Result, estimate_request_tokens
from asclepius.errors import InputError

logger = logging.getLogger("asclepius.engine")

TERMINAL = ("completed", "failed", "expired", "cancelled")
# The batch ended before these requests ran: resubmit them, it was not their fault.
_UNFINISHED_CODES = {"batch_expired", "batch_cancelled"}


@dataclass
class _Pending:
    key: str
    request: Request
    resume_key: str | None
    size: int  # bytes of its JSONL line (the line itself is rebuilt when a file is written)
    tokens: int  # enqueued-token estimate
    worst: float  # USD at batch price if max_tokens were used


class BatchAPIError(InputError):
    """A Batch API call failed for good (wrong key, no access...): one line, rerun resumes."""


def request_line(engine, request: Request, key: str) -> dict[str, Any]:
    """One Batch API input line; the same body a synchronous call sends."""
    temperature, max_tokens = engine.sampling(request)
    path = "/completions" if request.prompt is not None else "/chat/completions"
    url = path if engine.args.azure_api_version else "/v1" + path
    content = {"prompt": request.prompt} if request.prompt is not None else {"messages": request.messages}
    body = {
        "model": engine.args.model,
        **content,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if getattr(request, "response_format", None):
        body["response_format"] = request.response_format
    return {"custom_id": key, "method": "POST", "url": url, "body": body}


def shard_endpoint(shard) -> str:
    """The endpoint of a batch: its file's lines' (chat or raw completions, one kind per file)."""
    with open(shard.path, encoding="utf-8") as handle:
        return json.loads(handle.readline())["url"]


def entry_from_line(line: dict, attempts: int = 1) -> tuple[str, Entry | None, bool]:
    """(key, entry, retryable) of one output/error-file line; entry None = unfinished, resend."""
    key = line.get("custom_id")
    response = line.get("response") or None
    error = line.get("error") or None
    if response is None:
        code = (error or {}).get("code") or "no response"
        if code in _UNFINISHED_CODES:
            return key, None, False
        message = f"batch error {code}: {(error or {}).get('message') or ''}".strip()
        return key, Entry(key, "failed", None, None, 0, 0, message[:300], True, attempts), True
    status = int(response.get("status_code") or 0)
    body = response.get("body") or {}
    if status == 200:
        choices = body.get("choices") or []
        message = (choices[0].get("message") if choices else None) or None
        text = choices[0].get("text") if choices else None  # a /v1/completions line
        if message is None and text is None:
            reason = "malformed response: no choices"
            return key, Entry(key, "failed", None, None, 0, 0, reason, True, attempts), True
        usage = body.get("usage") or {}
        content = (message.get("content") if message is not None else text) or ""
        return (
            key,
            Entry(
                key,
                "done",
                content,
                choices[0].get("finish_reason"),
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or len(content) // 4),
                None,
                False,
                attempts,
            ),
            False,
        )
    detail = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
    reason = f"http {status}: {' '.join(str(detail or '').split())[:300]}"
    retryable = status in (408, 409, 429) or status >= 500
    return key, Entry(key, "failed", None, None, 0, 0, reason, retryable, attempts), retryable


def import_results(engine, path: str | os.PathLike) -> int:
    """Write a Batch-API-format output file (``vllm run_batch -o``) into the ledger; returns rows."""
    source = Path(path)
    if not source.is_file():
        raise InputError(source, "no such file (--batch_results)")
    ledger = engine.open_ledger()
    rows, written = [], 0
    try:
        with source.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                    key, entry, _ = entry_from_line(line)
                except (ValueError, AttributeError, TypeError):
                    raise InputError(source, "not a Batch API output line", row=number) from None
                if not isinstance(key, str) or entry is None:
                    continue
                # Failures of a local run are worth another try; answers are final.
                if entry.status == "failed":
                    entry = Entry(key, "failed", None, None, 0, 0, entry.error, True, 1)
                resume_key = ledger.member_resume_key(key)
                rows.append((entry, resume_key, engine.args.model, "batch_results", None))
                written += 1
        ledger.put_many(rows)
    finally:
        ledger.close()
    logger.info("imported %d results from %s into the ledger", written, source)
    return written


class BatchRun:
    """One stream() call of the batch backend."""

    def __init__(self, engine, total: int | None):
        self.engine, self.args, self.summary = engine, engine.args, engine.summary
        self.ledger = engine.open_ledger()
        self.folder = Path(engine.ledger_path).parent / "batches"
        self.spent = self.ledger.spent()
        self.summary.spent_before = self.spent
        self.attempts: Counter = Counter()  # key -> errored submissions in this run
        self.bar = tqdm(
            total=total,
            desc=f"{self.summary.description} (batch)",
            unit="req",
            disable=not self.args.show_progress,
            dynamic_ncols=True,
        )
        self.states: Counter = Counter()
        # Batches in a row that expired or were cancelled without answering anything: a provider
        # that never reaches them would otherwise be polled and resubmitted forever.
        self.stalled_expiries = 0
        self._started = asyncio.get_event_loop().time()

    # --- the stage's side: rounds of requests in, results out in order ------------------
    async def stream(self, requests: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Result]:
        size = self.args.batch_round_size
        try:
            iterator = _aiter(requests)
            while True:
                round_requests = []
                async for request in iterator:
                    round_requests.append(request)
                    if size is not None and len(round_requests) >= size:
                        break
                if not round_requests:
                    break
                results = await self.run_round(round_requests)
                for result in results:
                    self.summary.record(result.ok, result.error, result.from_ledger, result.endpoint)
                    self.bar.update(1)
                    yield result
                if size is None:
                    break
        finally:
            self.summary.elapsed = asyncio.get_event_loop().time() - self._started
            self.summary.estimated_cost = self.args.estimate_cost(
                self.summary.prompt_tokens, self.summary.completion_tokens, batch=True
            )
            self.bar.close()
            self.ledger.close()
            logger.info("%s", self.summary.format())

    async def run_round(self, requests: list[Request]) -> list[Result]:
        engine, summary = self.engine, self.summary
        summary.requested += len(requests)
        entries: dict[str, Entry] = {}
        pending: dict[str, _Pending] = {}
        order: list[tuple[Request, str, bool]] = []  # (request, key, served without a call)
        for request in requests:
            key = engine.key(request)
            entry = engine.lookup(self.ledger, request, key)
            if entry is not None:
                entries[key] = entry
                order.append((request, entry.key, True))
                continue
            order.append((request, key, key in pending))
            if key not in pending:
                size = len(self.line(request, key))
                tokens = estimate_request_tokens(request) + engine.sampling(request)[1]
                worst = self.args.estimate_cost(
                    estimate_request_tokens(request), engine.sampling(request)[1], batch=True
                )
                pending[key] = _Pending(key, request, engine.resume_key(request), size, tokens, worst or 0.0)
        summary.batch_rounds.append(len(pending))
        summary.sent += len(pending)
        if pending:
            await self.settle(pending, entries)
        return [engine.to_result(request, entries[key], from_ledger=served) for request, key, served in order]

    def line(self, request: Request, key: str) -> bytes:
        return (json.dumps(request_line(self.engine, request, key), ensure_ascii=False) + "\n").encode()

    # --- the API side: shards until every pending key has an entry -----------------------
    async def settle(self, pending: dict[str, _Pending], entries: dict[str, Entry]) -> None:
        client = self.engine.client()
        unsettled = set(pending)
        # Shards of an earlier (killed) run that carry some of these keys are picked up, not redone.
        assigned: set[str] = set()
        mine: dict[str, Shard] = {}
        for shard in self.ledger.open_shards():
            keys = {key for key, _ in self.ledger.members(shard.shard)}
            if not keys & unsettled:
                continue
            if shard.state in ("written", "uploading", "uploaded") and not keys <= unsettled:
                # Not submitted, and some of it was answered meanwhile (imported results, an
                # earlier round): submitting it would pay twice. Write the rest afresh.
                self.ledger.update_shard(shard.shard, state="dropped")
                continue
            mine[shard.shard] = shard
            assigned |= keys & unsettled
        loose = [key for key in pending if key not in assigned]
        while unsettled:
            if loose:
                for shard in self.write_shards([pending[key] for key in loose], pending):
                    mine[shard.shard] = shard
                loose = []
            progressed = False
            for shard_id in list(mine):
                shard = mine[shard_id]
                if shard.state in ("written", "uploading"):
                    shard = await self.upload(client, shard, pending, mine)
                    progressed = True
                    if shard is None:
                        continue
                if shard.state in ("uploaded", "creating"):
                    created = await self.create(client, shard, mine)
                    if created is None:
                        continue  # waits for room under the cap or the enqueued-token limit
                    shard, progressed = created, True
                mine[shard_id] = shard
            submitted = [shard for shard in mine.values() if shard.state == "submitted"]
            for shard in submitted:
                batch = await self.call(client.batches.retrieve, shard.batch_id, what="batches.retrieve")
                self.summary.batch_polls += 1
                if batch.status != shard.status:
                    self.ledger.update_shard(shard.shard, status=batch.status)
                    shard = mine[shard.shard] = self.ledger.shard(shard.shard)
                self.states[shard.shard] = (batch.status, batch.request_counts)
                if batch.status in TERMINAL:
                    resend = await self.collect(client, shard, batch, pending, entries, unsettled)
                    del mine[shard.shard]
                    self.states.pop(shard.shard, None)
                    loose += resend
                    progressed = True
            self.show()
            if not mine and not loose and unsettled:
                # Keys whose shard was collected by a request outside this round: read the ledger.
                for key in list(unsettled):
                    entry = self.ledger.get(key)
                    if entry is not None:
                        entries[key] = entry
                        unsettled.discard(key)
                if unsettled:
                    loose = sorted(unsettled)
                    continue
            if unsettled and not progressed:
                await asyncio.sleep(self.args.batch_poll_seconds)

    def write_shards(self, items: list[_Pending], pending: dict[str, _Pending]) -> list[Shard]:
        """Split requests into files within the request, byte and enqueued-token limits; record them."""
        args, shards, current = self.args, [], []
        size = tokens = 0

        def flush() -> None:
            nonlocal current, size, tokens
            if current:
                shards.append(self.record_shard(current))
            current, size, tokens = [], 0, 0

        for item in items:
            # One endpoint per batch: chat and raw completions never share a file.
            other_kind = bool(current) and (current[0].request.prompt is None) != (
                item.request.prompt is None
            )
            too_many = other_kind or len(current) >= args.batch_max_requests
            too_big = size + item.size > args.batch_max_bytes
            limit = args.batch_max_enqueued_tokens
            too_long = limit is not None and tokens + item.tokens > limit
            if current and (too_many or too_big or too_long):
                flush()
            current.append(item)
            size, tokens = size + item.size, tokens + item.tokens
        flush()
        return shards

    def record_shard(self, items: list[_Pending]) -> Shard:
        content = b"".join(self.line(item.request, item.key) for item in items)
        # Content hash + a nonce: resubmitting the same requests makes a new shard, never reuses a collected one.
        shard_id = f"{hashlib.sha256(content).hexdigest()[:24]}-{random.randrange(1 << 32):08x}"
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"asclepius-{shard_id}.jsonl"
        partial = path.with_suffix(".jsonl.tmp")
        partial.write_bytes(content)
        os.replace(partial, path)
        shard = Shard(
            shard_id,
            str(path),
            "written",
            None,
            None,
            None,
            len(items),
            len(content),
            sum(item.tokens for item in items),
            sum(item.worst for item in items),
            len(self.summary.batch_rounds),
        )
        members = [(item.key, item.resume_key) for item in items]
        self.ledger.add_shard(shard, members)
        return shard

    async def upload(self, client, shard: Shard, pending: dict[str, _Pending], mine: dict) -> Shard | None:
        name = Path(shard.path).name
        if shard.state == "uploading":  # an earlier run may have uploaded it: find it by name
            async for file in client.files.list(purpose="batch"):
                if file.filename == name and file.bytes == shard.bytes:
                    self.ledger.update_shard(shard.shard, state="uploaded", file_id=file.id)
                    self.summary.batch_api_calls += 1
                    return self.ledger.shard(shard.shard)
            self.summary.batch_api_calls += 1
        if self.args.batch_write_only:
            raise _WriteOnly(self.folder)
        self.ledger.update_shard(shard.shard, state="uploading")
        content = Path(shard.path).read_bytes()
        try:
            file = await self.call(
                client.files.create,
                file=(name, content, "application/jsonl"),
                purpose="batch",
                what="files.create",
            )
        except _TooLarge:
            return self.split(shard, pending, mine)
        self.ledger.update_shard(shard.shard, state="uploaded", file_id=file.id)
        return self.ledger.shard(shard.shard)

    def split(self, shard: Shard, pending: dict[str, _Pending], mine: dict) -> None:
        """The provider refused the file as too large: two halves replace it."""
        keys = [key for key, _ in self.ledger.members(shard.shard)]
        self.ledger.update_shard(shard.shard, state="dropped")
        del mine[shard.shard]
        items = [pending[key] for key in keys if key in pending]
        if len(items) < 2:
            raise BatchAPIError(shard.path, "one request is larger than the provider's file size limit")
        half = len(items) // 2
        logger.info("batch file of %d bytes refused as too large: split in two", shard.bytes)
        for part in (items[:half], items[half:]):
            new = self.record_shard(part)
            mine[new.shard] = new
        return None

    def in_flight(self, mine: dict) -> tuple[float, int]:
        shards = [shard for shard in mine.values() if shard.state == "submitted"]
        return sum(shard.worst_cost or 0.0 for shard in shards), sum(shard.tokens for shard in shards)

    async def create(self, client, shard: Shard, mine: dict) -> Shard | None:
        if shard.state == "creating":  # an earlier run may have created it: find it by its file
            self.summary.batch_api_calls += 1
            async for batch in client.batches.list(limit=100):
                if batch.input_file_id == shard.file_id:
                    self.ledger.update_shard(
                        shard.shard, state="submitted", batch_id=batch.id, status=batch.status
                    )
                    return self.ledger.shard(shard.shard)
        cost, tokens = self.in_flight(mine)
        cap, limit = self.args.max_budget_usd, self.args.batch_max_enqueued_tokens
        over_cap = cap is not None and self.spent + cost + (shard.worst_cost or 0.0) > cap
        over_tokens = limit is not None and tokens + shard.tokens > limit
        if over_cap or over_tokens:
            if cost or tokens:
                return None  # wait for open batches to finish
            if over_cap:
                from asclepius.engine.runner import BudgetExceeded

                raise BudgetExceeded(cap, self.spent, cost, shard.worst_cost or 0.0)
        self.ledger.update_shard(shard.shard, state="creating")
        batch = await self.call(
            client.batches.create,
            input_file_id=shard.file_id,
            endpoint=shard_endpoint(shard),
            completion_window=self.args.batch_completion_window,
            metadata={"asclepius_shard": shard.shard},
            what="batches.create",
        )
        self.summary.batches_created += 1
        self.ledger.update_shard(shard.shard, state="submitted", batch_id=batch.id, status=batch.status)
        return self.ledger.shard(shard.shard)

    async def collect(
        self, client, shard: Shard, batch, pending: dict, entries: dict, unsettled: set
    ) -> list[str]:
        """Write a finished batch's results to the ledger; return the keys to submit again."""
        lines: list[dict] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self.call(client.files.content, file_id, what="files.content")
                lines += [json.loads(text) for text in content.text.splitlines() if text.strip()]
        members = dict(self.ledger.members(shard.shard))
        rows, seen, resend = [], set(), []
        for line in lines:
            key, entry, retryable = entry_from_line(line)
            if key not in members or key in seen:
                continue
            seen.add(key)
            if entry is None:
                continue  # expired/cancelled before it ran
            if retryable and key in unsettled:
                self.attempts[key] += 1
                if self.attempts[key] < self.args.max_attempts:
                    resend.append(key)
                    continue
                entry = Entry(key, "failed", None, None, 0, 0, f"max_attempts: {entry.error}", True, 1)
            cost = self.args.estimate_cost(entry.prompt_tokens, entry.completion_tokens, batch=True)
            rows.append((entry, members[key], self.args.model, "batch", cost))
        # One transaction: the results and "collected" land together, or neither does.
        self.ledger.put_many(rows, then=lambda: self.ledger._update_shard(shard.shard, state="collected"))
        for entry, _, _, _, cost in rows:
            self.spent += cost or 0.0
            if entry.key in unsettled:
                entries[entry.key] = entry
                unsettled.discard(entry.key)
                self.summary.prompt_tokens += entry.prompt_tokens
                self.summary.completion_tokens += entry.completion_tokens
                self.summary.calls += entry.attempts
        missing = [key for key in members if key in unsettled and key not in resend]
        if batch.status == "failed":  # the whole file was refused: count it as an attempt for each
            for key in list(missing):
                self.attempts[key] += 1
                if self.attempts[key] >= self.args.max_attempts:
                    reason = f"batch failed: {_batch_errors(batch)}"
                    entry = Entry(key, "failed", None, None, 0, 0, reason, True, self.attempts[key])
                    self.ledger.put(entry, resume_key=members[key], model=self.args.model, backend="batch")
                    entries[key] = entry
                    unsettled.discard(key)
                    missing.remove(key)
        resend += missing
        self.summary.batch_resubmitted += len(resend)
        if resend:
            logger.info("batch %s %s: %d request(s) to submit again", batch.id, batch.status, len(resend))
        self.check_stalled(batch, answered=len(rows), still_open=len(unsettled))
        return resend

    def check_stalled(self, batch, *, answered: int, still_open: int) -> None:
        """Stop (everything done kept) after too many expiries in a row that answered nothing."""
        if batch.status not in ("expired", "cancelled") or answered:
            self.stalled_expiries = 0
            return
        self.stalled_expiries += 1
        limit = self.args.batch_max_stalled_expiries
        if self.stalled_expiries >= limit:
            raise BatchAPIError(
                f"batch API ({self.engine.endpoint})",
                f"{limit} batches in a row {batch.status} with nothing answered; {still_open} request(s) "
                "still open, everything answered is kept in the ledger: rerun the same command to try "
                "again, or add --backend sync to finish the rest synchronously",
            )

    async def call(self, method, *args, what: str, **kwargs):
        """One Batch API call with the engine's retry policy for 429/5xx/timeouts."""
        secret = self.engine._api_key
        for attempt in range(1, self.args.max_attempts + 1):
            self.summary.batch_api_calls += 1
            try:
                return await method(*args, **kwargs)
            except openai.APIStatusError as error:
                failure = _status_error(error)
                if error.status_code == 413 or "too large" in failure.reason.lower():
                    raise _TooLarge() from None
            except (openai.APITimeoutError, openai.APIConnectionError) as error:
                failure = CallError(f"{type(error).__name__}", retryable=True)
            reason = secret.scrub(failure.reason)
            if not failure.retryable:
                raise BatchAPIError(f"batch API ({self.engine.endpoint})", f"{what} failed: {reason}")
            if attempt < self.args.max_attempts:
                delay = failure.retry_after or min(30.0, self.engine.backoff_base * 2 ** (attempt - 1))
                await asyncio.sleep(delay)
        raise BatchAPIError(
            f"batch API ({self.engine.endpoint})", f"{what} failed {self.args.max_attempts} times: {reason}"
        )

    def show(self) -> None:
        if self.bar.disable:
            return
        statuses = Counter(status for status, _ in self.states.values())
        done = sum((counts.completed + counts.failed) if counts else 0 for _, counts in self.states.values())
        total = sum(counts.total if counts else 0 for _, counts in self.states.values())
        postfix = {status: str(count) for status, count in sorted(statuses.items())}
        postfix["rows"] = f"{done}/{total}"
        self.bar.set_postfix(postfix, refresh=True)


class _TooLarge(Exception):
    pass


class _WriteOnly(InputError):
    """--batch_write_only: the files are written; the stage stops unfinished until results come back."""

    def __init__(self, folder: Path):
        super().__init__(
            folder,
            "batch files written, nothing uploaded (--batch_write_only). Run each with `vllm run_batch -i FILE "
            "-o FILE.out --model MODEL`, then rerun this command with --batch_results FILE.out for each output",
        )


def _batch_errors(batch) -> str:
    data = getattr(getattr(batch, "errors", None), "data", None) or []
    return "; ".join(f"{e.code}: {e.message}" for e in data[:3]) or "no reason given"


async def _aiter(requests: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Request]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request
