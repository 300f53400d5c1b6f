"""The engine: stream requests through ledger, pacer and client, yield results.

Flow of one request: pulled from the input only when a slot is free -> served from the
ledger if it holds the answer -> joined to an identical request already in flight ->
otherwise paced, sent, retried as needed, COMMITTED to the ledger, then yielded.

A slot is held from pulling a request until its result has been consumed, so at most
`max_concurrency` requests exist at once (memory does not grow with the input) and a
generator sees the effect of every result consumed before it is asked for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from pathlib import Path

from asclepius.engine.client import (
    CallError,
    Secret,
    build_client,
    complete,
    fixable_by_rerun,
    read_api_key,
    resolve_base_url,
)
from asclepius.engine.config import EngineArguments
from asclepius.engine.ledger import Entry, Ledger
from asclepius.engine.pacing import Pacer
from asclepius.engine.progress import EngineSummary, Progress
from asclepius.engine.request import (
    Request,
    Result,
    endpoint_identity,
    estimate_request_tokens,
    request_key,
    scoped_resume_key,
)
from asclepius.errors import InputError
from asclepius.redaction import redact_logs, redact_text, redact_url

logger = logging.getLogger("asclepius.engine")

_END = object()
_MAX_LOGGED_FAILURES = 10


class BudgetExceeded(InputError):
    """The spend cap would be crossed by the next submission; a rerun with a higher cap resumes."""

    def __init__(self, cap: float, spent: float, in_flight: float, next_cost: float):
        super().__init__(
            "--max_budget_usd",
            f"spend cap ${cap:,.4f} reached: ${spent:,.4f} recorded in the ledger + ${in_flight:,.4f} in flight "
            f"(worst case) + ${next_cost:,.4f} for the next submission would exceed it. Nothing was lost: "
            "rerun the same command with a higher --max_budget_usd to continue",
        )
        self.cap, self.spent = cap, spent


class _Crash:
    """Carries an exception from a background task to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def _first(*values):
    return next(v for v in values if v is not None)


class Engine:
    def __init__(
        self,
        args: EngineArguments,
        ledger_path: str | os.PathLike,
        *,
        default_temperature: float = 1.0,
        default_max_tokens: int = 1024,
        description: str = "requests",
    ):
        self.args = args
        self.ledger_path = Path(ledger_path)
        self.default_temperature = default_temperature
        self.default_max_tokens = default_max_tokens
        self.description = description
        self.summary = EngineSummary(description=description, dry_run=args.dry_run)
        # httpx logs every request at INFO, which buries the progress bar and the summary
        # under a line per call; quiet it unless someone configured it on purpose.
        for name in ("httpx", "httpx2"):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        redact_logs()  # and whoever turns them up sees no key or query string in a request line
        # Read once here so a missing key fails before any work; a dry run needs none.
        self._api_key: Secret | None = None if args.dry_run else read_api_key(args)
        self._client = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._imported = False
        # Retry backoff for 5xx/timeouts: base * 2**(attempt-1), capped, half of it jittered.
        self.backoff_base, self.backoff_cap = 0.5, 30.0

        if args.batch_write_only and not args.batch:
            raise InputError("--batch_write_only", "only applies with --backend batch")
        if args.max_budget_usd is not None and args.price() is None:
            raise InputError(
                "--max_budget_usd",
                f"no price known for model {args.model!r}: set --input_price_per_million and "
                "--output_price_per_million",
            )

    def __repr__(self) -> str:
        return (
            f"Engine(model={self.args.model!r}, base_url={self.endpoint!r}, "
            f"backend={self.args.backend!r}, ledger={str(self.ledger_path)!r})"
        )

    @property
    def endpoint(self) -> str:
        """The endpoint the client really calls, credentials removed (for logs, errors and cards)."""
        return redact_url(resolve_base_url(self.args)) or ""

    def sampling(self, request: Request) -> tuple[float, int]:
        """(temperature, max_tokens): per request, else the CLI flag, else the stage default."""
        return (
            _first(request.temperature, self.args.temperature, self.default_temperature),
            _first(request.max_tokens, self.args.max_tokens, self.default_max_tokens),
        )

    def key(self, request: Request) -> str:
        """The request's ledger key: what determines the answer, the endpoint included."""
        temperature, max_tokens = self.sampling(request)
        return request_key(
            self.args.model,
            request.messages,
            endpoint=endpoint_identity(self.endpoint),
            temperature=temperature,
            max_tokens=max_tokens,
            prompt=request.prompt,  # None for chat requests: their keys are unchanged
        )

    def resume_key(self, request: Request) -> str | None:
        """The request's resume_key scoped to model and sampling (None when it has none)."""
        if request.resume_key is None:
            return None
        temperature, max_tokens = self.sampling(request)
        return scoped_resume_key(
            request.resume_key,
            self.args.model,
            endpoint=endpoint_identity(self.endpoint),
            temperature=temperature,
            max_tokens=max_tokens,
        )

    def worst_cost(self, request: Request) -> float:
        """USD if the request used all of its max_tokens (0 when no price is known)."""
        cost = self.args.estimate_cost(estimate_request_tokens(request), self.sampling(request)[1])
        return cost or 0.0

    def client(self):
        """The engine's one client; rebuilt only if a new event loop runs it (asyncio.run again)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = build_client(self.args, self._api_key), loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = self._client_loop = None

    def reusable(self, entry: Entry | None) -> bool:
        """Does a ledger row settle the request? Answers yes; failures unless worth resending."""
        if entry is None:
            return False
        if entry.status == "done":
            return True
        return not (entry.transient or self.args.retry_failed or fixable_by_rerun(entry.error))

    def lookup(self, ledger: Ledger | None, request: Request, key: str) -> Entry | None:
        if ledger is None:
            return None
        resume_key = self.resume_key(request)
        if resume_key is not None:
            entry = ledger.get_done_by_resume_key(resume_key)
            if entry is not None:
                return entry
        entry = ledger.get(key)
        return entry if self.reusable(entry) else None

    def open_ledger(self) -> Ledger:
        """The ledger, writing this engine's (redacted) endpoint on every row."""
        return Ledger(self.ledger_path, endpoint=endpoint_identity(self.endpoint))

    def to_result(self, request: Request, entry: Entry, *, from_ledger: bool) -> Result:
        # Redacted again on the way out: rows of older ledgers were stored as the server sent them.
        ok, error = entry.status == "done", redact_text(entry.error) if entry.error else entry.error
        if ok and entry.finish_reason == "content_filter":
            ok, error = False, "content_filter"
        elif ok and entry.finish_reason == "length" and self.args.fail_on_length:
            ok, error = False, "length"
        return Result(
            request=request,
            key=entry.key,
            ok=ok,
            content=entry.content,
            finish_reason=entry.finish_reason,
            usage={"prompt_tokens": entry.prompt_tokens, "completion_tokens": entry.completion_tokens},
            error=error,
            attempts=entry.attempts,
            from_ledger=from_ledger,
            endpoint=entry.endpoint if from_ledger else endpoint_identity(self.endpoint),
        )

    async def stream(
        self, requests: Iterable[Request] | AsyncIterable[Request], *, total: int | None = None
    ) -> AsyncIterator[Result]:
        """Yield one Result per request, in completion order; requests are pulled lazily.

        In dry_run nothing is sent and nothing is yielded: `summary` holds the counts and
        estimated tokens/cost.
        """
        self.summary = EngineSummary(
            description=self.description, dry_run=self.args.dry_run, backend=self.args.backend
        )
        if self.args.dry_run:
            self._dry_run(requests)
            return
        if self.args.batch_results and not self._imported:  # once per engine, not per stream()
            from asclepius.engine.batch import import_results

            import_results(self, self.args.batch_results)
            self._imported = True
        if self.args.batch:
            from asclepius.engine.batch import BatchRun

            async with contextlib.aclosing(BatchRun(self, total).stream(requests)) as results:
                async for result in results:
                    yield result
            return
        run = _Run(self, total)
        producer = asyncio.create_task(run.produce(requests))
        try:
            while True:
                item = await run.results.get()
                if item is _END:
                    break
                if isinstance(item, _Crash):
                    raise item.error
                run.progress.tick()
                yield item
                run.slots.release()  # only now may the input be asked for another request
        finally:
            await run.shutdown(producer)
            logger.info("%s", self.summary.format())

    def _dry_run(self, requests: Iterable[Request] | AsyncIterable[Request]) -> None:
        if not isinstance(requests, Iterable):
            raise TypeError("dry_run needs a plain iterable of requests")
        ledger = Ledger(self.ledger_path, read_only=True) if self.ledger_path.exists() else None
        s = self.summary
        try:
            for request in requests:
                s.requested += 1
                if self.lookup(ledger, request, self.key(request)) is not None:
                    s.from_ledger += 1
                    continue
                s.to_send += 1
                s.estimated_prompt_tokens += estimate_request_tokens(request)
                s.estimated_completion_tokens += self.sampling(request)[1]
            s.spent_before = ledger.spent() if ledger is not None else 0.0
        finally:
            if ledger is not None:
                ledger.close()
        tokens = (s.estimated_prompt_tokens, s.estimated_completion_tokens)
        s.estimated_cost = self.args.estimate_cost(*tokens, batch=False)
        s.estimated_batch_cost = self.args.estimate_cost(*tokens, batch=True)
        logger.info("%s", s.format())


class _Run:
    """State of one stream() call: ledger, pacer, slots, in-flight requests, result queue."""

    def __init__(self, engine: Engine, total: int | None):
        args = engine.args
        self.engine, self.args, self.summary = engine, args, engine.summary
        self.ledger = engine.open_ledger()
        self.client = engine.client()
        self.pacer = Pacer(args.max_requests_per_minute, args.max_tokens_per_minute)
        self.slots = asyncio.Semaphore(args.max_concurrency)
        self.results: asyncio.Queue = asyncio.Queue()  # bounded in practice by the slots
        self.inflight: dict[str, asyncio.Future] = {}  # "k:"+key / "r:"+resume_key -> Entry future
        self.tasks: set[asyncio.Task] = set()
        self.progress = Progress(self.summary, total, args.show_progress)
        self.logged_failures = 0
        # The spend cap: what the ledger already paid, plus the worst case of what is in flight.
        self.spent = self.ledger.spent()
        self.summary.spent_before = self.spent
        self.in_flight_cost = 0.0
        self.over_budget: BudgetExceeded | None = None

    async def _pull(self, requests: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Request]:
        """Take a slot, THEN pull the next request: the input is never read ahead."""
        if isinstance(requests, AsyncIterable):
            iterator = aiter(requests)
            while True:
                await self.slots.acquire()
                try:
                    yield await anext(iterator)
                except StopAsyncIteration:
                    return
        else:
            iterator = iter(requests)
            while True:
                await self.slots.acquire()
                try:
                    request = next(iterator)
                except StopIteration:
                    return
                yield request

    async def produce(self, requests: Iterable[Request] | AsyncIterable[Request]) -> None:
        try:
            async for request in self._pull(requests):
                if not self.dispatch(request):
                    break
            while self.tasks:
                await asyncio.wait(set(self.tasks))
            if self.over_budget is not None:
                self.results.put_nowait(_Crash(self.over_budget))
                return
            while self.tasks:
                await asyncio.wait(set(self.tasks))
            self.results.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the input raised: hand it to the consumer
            self.results.put_nowait(_Crash(error))

    def dispatch(self, request: Request) -> bool:
        """Serve, join or send one request; False when the spend cap stops the run before it."""
        engine, summary = self.engine, self.summary
        key, resume_key = engine.key(request), engine.resume_key(request)
        entry = engine.lookup(self.ledger, request, key)
        if entry is not None:
            summary.requested += 1
            self.emit(engine.to_result(request, entry, from_ledger=True))
            return True
        twin = self.inflight.get("k:" + key)
        if twin is None and resume_key is not None:
            twin = self.inflight.get("r:" + resume_key)
        if twin is not None:  # the same request is already on its way: send it once
            summary.requested += 1
            self._spawn(self._follow(request, twin))
            return True
        worst = engine.worst_cost(request)
        cap = self.args.max_budget_usd
        if cap is not None and self.spent + self.in_flight_cost + worst > cap:
            self.over_budget = BudgetExceeded(cap, self.spent, self.in_flight_cost, worst)
            self.slots.release()  # this request was pulled but is not processed
            return False
        summary.requested += 1
        summary.sent += 1
        self.in_flight_cost += worst
        future = asyncio.get_running_loop().create_future()
        names = ["k:" + key] + (["r:" + resume_key] if resume_key is not None else [])
        for name in names:
            self.inflight[name] = future
        self._spawn(self._send(request, key, resume_key, worst, future, names))
        return True

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def emit(self, result: Result) -> None:
        self.summary.record(result.ok, result.error, result.from_ledger, result.endpoint)
        self.results.put_nowait(result)

    async def _follow(self, request: Request, twin: asyncio.Future) -> None:
        try:
            entry = await asyncio.shield(twin)
        except asyncio.CancelledError:
            raise
        except BaseException:
            return  # the sender reports the crash
        self.emit(self.engine.to_result(request, entry, from_ledger=True))

    async def _send(
        self,
        request: Request,
        key: str,
        resume_key: str | None,
        worst: float,
        future: asyncio.Future,
        names: list[str],
    ) -> None:
        try:
            entry = await self._call_with_retries(request, key)
            cost = self.args.estimate_cost(entry.prompt_tokens, entry.completion_tokens, batch=False)
            # Durable before anyone sees it: a crash after this line repeats nothing.
            self.ledger.put(
                entry, resume_key=resume_key, model=self.args.model, backend="sync", cost_usd=cost
            )
            self.spent += cost or 0.0
            self.in_flight_cost -= worst
            future.set_result(entry)
            result = self.engine.to_result(request, entry, from_ledger=False)
            if not result.ok:
                self._log_failure(key, result.error)
            self.emit(result)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: the consumer gets it via the queue
            self.results.put_nowait(_Crash(error))
        finally:
            for name in names:
                self.inflight.pop(name, None)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.engine.backoff_cap, self.engine.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _call_with_retries(self, request: Request, key: str) -> Entry:
        args, summary, secret = self.args, self.summary, self.engine._api_key
        temperature, max_tokens = self.engine.sampling(request)
        prompt_estimate = estimate_request_tokens(request)
        reason = "no attempt"
        for attempt in range(1, args.max_attempts + 1):
            # In the server's own tokens, as learned from earlier answers of this run.
            estimate = self.pacer.token_cost(prompt_estimate, max_tokens)
            room = await self.pacer.acquire(estimate)
            summary.calls += 1
            summary.retried += attempt > 1
            try:
                answer = await complete(
                    self.client,
                    args.model,
                    request.messages,
                    temperature,
                    max_tokens,
                    request.response_format,
                    prompt=request.prompt,
                )
            except CallError as error:
                reason = secret.scrub(error.reason)
                if not error.retryable:
                    # 401/403/404 are recorded for the summary but not as final (see reusable).
                    return Entry(key, "failed", None, None, 0, 0, reason, False, attempt)
                if error.rate_limited:
                    summary.rate_limited += 1
                delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
                logger.debug(
                    "attempt %d of %s failed (%s); retrying in %.2fs", attempt, key[:12], reason, delay
                )
                if error.rate_limited or error.retry_after is not None:
                    self.pacer.refused(estimate, error.rate_limit_headers, room)
                    self.pacer.on_rate_limited(delay)  # everyone waits for the reset, not just us
                elif attempt < args.max_attempts:
                    await asyncio.sleep(delay)
                continue
            self.pacer.settle(estimate, answer.prompt_tokens + answer.completion_tokens)
            self.pacer.learn(prompt_estimate, answer.prompt_tokens, answer.rate_limit_headers, room)
            summary.prompt_tokens += answer.prompt_tokens
            summary.completion_tokens += answer.completion_tokens
            return Entry(
                key,
                "done",
                answer.content,
                answer.finish_reason,
                answer.prompt_tokens,
                answer.completion_tokens,
                None,
                False,
                attempt,
            )
        return Entry(key, "failed", None, None, 0, 0, f"max_attempts: {reason}", True, args.max_attempts)

    def _log_failure(self, key: str, error: str | None) -> None:
        self.logged_failures += 1
        if self.logged_failures <= _MAX_LOGGED_FAILURES:
            logger.warning("request %s failed: %s", key[:12], error)
        elif self.logged_failures == _MAX_LOGGED_FAILURES + 1:
            logger.warning("more failures: see the summary and the ledger")

    async def shutdown(self, producer: asyncio.Task) -> None:
        producer.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(producer, *self.tasks, return_exceptions=True)
        self.summary.elapsed = self.progress.elapsed()
        self.summary.estimated_cost = self.args.estimate_cost(
            self.summary.prompt_tokens, self.summary.completion_tokens, batch=False
        )
        self.progress.close()
        self.ledger.close()


def run_requests(
    engine: Engine,
    requests: Iterable[Request] | AsyncIterable[Request],
    on_result: Callable[[Result], None],
    *,
    total: int | None = None,
) -> EngineSummary:
    """Sync convenience for scripts: run `engine.stream`, call `on_result` on each result.

    Returns the summary (also logged). Not for use inside a running event loop (a
    notebook): iterate `engine.stream(...)` there instead.
    """

    async def main() -> None:
        try:
            async with contextlib.aclosing(engine.stream(requests, total=total)) as results:
                async for result in results:
                    on_result(result)
        finally:
            await engine.aclose()

    asyncio.run(main())
    return engine.summary
