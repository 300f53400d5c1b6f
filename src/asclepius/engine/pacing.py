"""Client-side rate limiting: continuous pacing to requests AND tokens per minute.

Providers enforce per-minute limits at a finer grain than a minute, so a client that
fires a minute's worth at once mostly collects 429s. Instead each resource is paced
with GCRA (the "virtual scheduling" form of a token bucket): every unit of cost pushes
a theoretical arrival time (TAT) forward by 60/limit seconds, and a request may go when
the TAT is at most `burst_seconds` ahead of now. That is a steady rate with a burst of
at most `burst_seconds` worth of capacity, and a cost larger than the burst (a prompt
bigger than a second of tokens) still goes, it just delays the next ones.

A 429 pauses everyone until the server's reset time (from its headers) and shrinks the
rate by 10% (at most once a second, floor 50%); the rate recovers linearly over
`recovery_seconds`. The clock and sleep are injectable so tests run on a fake clock.

Tokens are the hard case: a hosted API counts them with its own tokenizer and charges
prompt + max_tokens when it admits a request, so the client's estimate is off by an
unknown factor and its bucket may be larger or smaller than ours. The pacer learns both
per run, without a flag, from what each answer says (:meth:`Pacer.learn`): the ratio of
the server's prompt count (``usage``) to our estimate scales every later estimate, and the
``x-ratelimit-*-tokens`` headers give the server's limit and how much its bucket holds
(remaining + reset x rate), so a request is sent when its charge fits what is left. A
refund (an answer that used less than its max_tokens) wakes the waiting request at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping

# One window of a per-minute limit is the longest a reset can legitimately be; a larger
# value is a misread header and must not stall a run for hours.
MAX_PAUSE_SECONDS = 60.0
# A server's bucket learned from its headers is trusted up to this many seconds of its rate:
# some providers report a minute's refill but enforce at a finer grain.
MAX_LEARNED_BURST_SECONDS = 2.0
# Share of the learned bucket we let ourselves fill: the server admits in arrival order, we
# charge in send order, and a few milliseconds of network between them must not trip it.
BUCKET_SAFETY = 0.9
# Weight (in estimated prompt tokens) of the prior ratio 1.0 in the learned token ratio.
_RATIO_PRIOR_TOKENS = 500.0
_RATIO_BOUNDS = (0.25, 4.0)

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in a header value: "20ms", "1s", "6m0s", "1h2m3.5s" (Go style) or a bare number of seconds."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, value) if math.isfinite(value) else None
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def _is_zero(text: str) -> bool:
    try:
        return float(text) <= 0
    except ValueError:
        return False


def retry_delay_from_headers(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long a 429 asks us to wait, in seconds, or None when the headers do not say.

    Precedence: retry-after-ms, retry-after (seconds or an HTTP date), then the
    x-ratelimit-reset-* of the exhausted resource (remaining == 0), else the sooner reset.
    """
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return min(MAX_PAUSE_SECONDS, max(0.0, float(h["retry-after-ms"]) / 1000))
        except ValueError:
            pass
    if "retry-after" in h:
        seconds = parse_duration(h["retry-after"])
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(h["retry-after"]).timestamp()
                seconds = max(0.0, when - (time.time() if now is None else now))
            except (TypeError, ValueError):
                seconds = None
        if seconds is not None:
            return min(MAX_PAUSE_SECONDS, seconds)
    resets, exhausted = [], []
    for kind in ("requests", "tokens"):
        reset = parse_duration(h.get(f"x-ratelimit-reset-{kind}"))
        if reset is None:
            continue
        resets.append(reset)
        if _is_zero(h.get(f"x-ratelimit-remaining-{kind}", "")):
            exhausted.append(reset)
    if exhausted or resets:
        return min(MAX_PAUSE_SECONDS, max(exhausted) if exhausted else min(resets))
    return None


class _Gcra:
    """One paced resource: `interval` seconds per unit, `tolerance` seconds of burst."""

    def __init__(self, per_minute: float, tolerance: float):
        self.interval = 60.0 / per_minute
        self.tolerance = tolerance
        self.tat = -math.inf
        # Seconds of rate the server's bucket holds, once its headers said (None: not known).
        self.capacity: float | None = None

    def wait(self, now: float, cost: float = 0.0) -> float:
        if self.capacity is None:
            return self.tat - self.tolerance - now
        # The server admits a request when its whole charge fits what is left of its bucket
        # (a charge above the bucket fits a full one).
        charge = min(cost * self.interval, self.capacity)
        return max(self.tat, now) + charge - self.capacity - now

    def consume(self, now: float, cost: float, factor: float) -> None:
        self.tat = max(self.tat, now) + cost * self.interval / factor

    def room(self, now: float) -> float | None:
        """Units left in the server's bucket as we model it (None while its size is unknown)."""
        if self.capacity is None:
            return None
        return (self.capacity - (max(self.tat, now) - now)) / self.interval

    def charge(self, now: float, cost: float) -> None:
        """Charge what the server says we owe beyond our model (clamped like consume)."""
        self.tat = max(self.tat, now) + cost * self.interval

    def refund(self, cost: float) -> None:
        # A negative cost charges more. TAT falling behind `now` is harmless: consume()
        # clamps it, so a refund never allows more than the normal burst.
        self.tat -= cost * self.interval


class Pacer:
    def __init__(
        self,
        requests_per_minute: float,
        tokens_per_minute: float,
        *,
        burst_seconds: float = 0.5,
        recovery_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._requests = _Gcra(requests_per_minute, burst_seconds)
        self._tokens = _Gcra(tokens_per_minute, burst_seconds)
        # Until the server's headers say how much its bucket holds, a request's whole token
        # charge must fit in our burst: the first requests go before any answer can teach us.
        self._tokens.capacity = burst_seconds
        self._clock, self._sleep = clock, sleep
        self._recovery_seconds = recovery_seconds
        self._paused_until = -math.inf
        self._slowed_factor, self._slowed_at = 1.0, -math.inf
        self._configured_tokens_per_minute = tokens_per_minute
        # Server prompt tokens per estimated prompt token, learned from usage (prior: 1.0).
        self._estimated_prompt = self._reported_prompt = _RATIO_PRIOR_TOKENS
        # The server's token bucket in seconds of its rate (smallest seen), and the share of it
        # we fill: each 429 despite the learned bucket makes us a little more careful.
        self._bucket_seconds: float | None = None
        self._bucket_safety, self._tightened_at = BUCKET_SAFETY, -math.inf
        # Does the server give back the max_tokens an answer did not use? Learned from how much
        # its x-ratelimit-remaining-tokens fell short of our model (prior: it does).
        # The server gave back (what we refunded - what its headers showed missing) of the unused.
        self._unused_tokens = self._refunded_tokens = _RATIO_PRIOR_TOKENS
        self._shortfall_tokens = 0.0
        # FIFO: waiters queue on the lock, so requests leave in the order they asked.
        self._lock = asyncio.Lock()
        # Set when room comes back early (a refund): the waiter at the head of the queue slept
        # for the wait it computed before, and would leave the server's bucket filling unused.
        self._room_returned = asyncio.Event()

    def rate_factor(self, now: float | None = None) -> float:
        """Current fraction of the configured rate (1.0 unless recently rate limited)."""
        now = self._clock() if now is None else now
        recovered = (now - self._slowed_at) / self._recovery_seconds
        return min(1.0, self._slowed_factor + (1.0 - self._slowed_factor) * max(0.0, recovered))

    async def acquire(self, tokens: float) -> float | None:
        """Wait until one request costing `tokens` fits both limits, then charge it.

        Returns the tokens our model says are left in the server's bucket right after this
        charge (None while its size is unknown): :meth:`learn` compares it with the server's."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = max(self._paused_until - now, self._requests.wait(now), self._tokens.wait(now, tokens))
                if wait <= 0:
                    break
                self._room_returned.clear()
                await self._sleep_until_room_returns(wait)
            factor = self.rate_factor(now)
            self._requests.consume(now, 1, factor)
            self._tokens.consume(now, tokens, factor)
            return self._tokens.room(now)

    async def _sleep_until_room_returns(self, seconds: float) -> None:
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        returned = asyncio.ensure_future(self._room_returned.wait())
        try:
            await asyncio.wait((sleeping, returned), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            returned.cancel()

    def _give_back(self, resource: _Gcra, cost: float) -> None:
        resource.refund(cost)
        if cost > 0:
            self._room_returned.set()

    @property
    def refund_share(self) -> float:
        """The share of unused max_tokens the server gives back, as learned so far."""
        given_back = self._refunded_tokens - self._shortfall_tokens
        return min(1.0, max(0.0, given_back / self._unused_tokens))

    def settle(self, estimated_tokens: float, actual_tokens: float) -> None:
        """Correct the token charge with the usage the server reported."""
        unused = estimated_tokens - actual_tokens
        if unused > 0:
            share = self.refund_share
            self._unused_tokens += unused
            unused *= share
            self._refunded_tokens += unused
        self._give_back(self._tokens, unused)

    @property
    def token_ratio(self) -> float:
        """The server's prompt tokens per token of our estimate, as learned so far."""
        low, high = _RATIO_BOUNDS
        return min(high, max(low, self._reported_prompt / self._estimated_prompt))

    def token_cost(self, estimated_prompt_tokens: float, max_tokens: float) -> float:
        """What the server will charge at admission, in its own tokens: prompt + max_tokens."""
        return estimated_prompt_tokens * self.token_ratio + max_tokens

    def learn(
        self,
        estimated_prompt_tokens: float,
        reported_prompt_tokens: float | None,
        headers: Mapping[str, str] | None = None,
        room_at_send: float | None = None,
    ) -> None:
        """Learn the server's token count and token bucket from one answer.

        ``room_at_send`` is what :meth:`acquire` returned for it: when the server's
        remaining tokens (at admission) fall short of it, our model was optimistic by the
        difference, which is charged now and counted against the refunds we assumed."""
        if reported_prompt_tokens and estimated_prompt_tokens > 0:
            self._estimated_prompt += estimated_prompt_tokens
            self._reported_prompt += reported_prompt_tokens
        h = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        try:
            limit = float(h["x-ratelimit-limit-tokens"])
            remaining = float(h["x-ratelimit-remaining-tokens"])
        except (KeyError, ValueError):
            return
        reset = parse_duration(h.get("x-ratelimit-reset-tokens"))
        if not (math.isfinite(limit) and limit > 0) or reset is None:
            return
        # A server limit below ours is the real one; above ours, the user chose to stay lower.
        per_minute = min(limit, self._configured_tokens_per_minute)
        if per_minute != 60.0 / self._tokens.interval:
            self._tokens.interval = 60.0 / per_minute
        rate = limit / 60.0
        # The bucket holds what was left plus what refills until it is full again.
        held = (max(0.0, remaining) + reset * rate) / rate
        learned = min(MAX_LEARNED_BURST_SECONDS, held)
        if self._bucket_seconds is None or learned < self._bucket_seconds:
            self._bucket_seconds = learned
        self._tokens.capacity = self._bucket_seconds * self._bucket_safety
        if room_at_send is not None:  # a remaining of 0 may be a clamped negative level: a lower bound
            # Our room is within the share of the bucket we fill; the server's is of all of it.
            margin = (self._bucket_seconds - self._tokens.capacity) / self._tokens.interval
            shortfall = room_at_send + margin - remaining
            # Both signs count towards the refund share (timing noise cancels out); only a
            # shortfall is charged: where the server has more than we think, we just wait less next time.
            self._shortfall_tokens += shortfall
            if shortfall > 0:
                self._tokens.charge(self._clock(), shortfall)

    def refused(self, tokens: float, headers: Mapping[str, str] | None, room_at_send: float | None) -> None:
        """A request :meth:`acquire` charged was refused (429): the server took nothing for it.

        Its headers still say what the server had left, and that it was less than the
        request needed: the most telling sign that our model of the bucket ran ahead."""
        self._give_back(self._requests, 1)
        self._give_back(self._tokens, tokens)
        self.learn(0, None, headers, None if room_at_send is None else room_at_send + tokens)

    def on_rate_limited(self, delay: float) -> None:
        """A 429: pause everyone for `delay` seconds and slow down a little."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + delay)
        if self._bucket_seconds is not None:
            # The server's bucket is known: fill a little less of it from now on, rather than
            # losing a tenth of the rate for half a minute.
            if now - self._tightened_at >= 1.0:
                self._bucket_safety = max(0.5, self._bucket_safety * 0.95)
                self._tokens.capacity = self._bucket_seconds * self._bucket_safety
                self._tightened_at = now
            return
        # Requests already in flight when the limit hit all come back 429 together:
        # count that as one signal, not one per request.
        if now - self._slowed_at >= 1.0:
            self._slowed_factor = max(0.5, self.rate_factor(now) * 0.9)
            self._slowed_at = now
