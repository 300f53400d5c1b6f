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

    def wait(self, now: float) -> float:
        return self.tat - self.tolerance - now

    def consume(self, now: float, cost: float, factor: float) -> None:
        self.tat = max(self.tat, now) + cost * self.interval / factor

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
        self._clock, self._sleep = clock, sleep
        self._recovery_seconds = recovery_seconds
        self._paused_until = -math.inf
        self._slowed_factor, self._slowed_at = 1.0, -math.inf
        # FIFO: waiters queue on the lock, so requests leave in the order they asked.
        self._lock = asyncio.Lock()

    def rate_factor(self, now: float | None = None) -> float:
        """Current fraction of the configured rate (1.0 unless recently rate limited)."""
        now = self._clock() if now is None else now
        recovered = (now - self._slowed_at) / self._recovery_seconds
        return min(1.0, self._slowed_factor + (1.0 - self._slowed_factor) * max(0.0, recovered))

    async def acquire(self, tokens: float) -> None:
        """Wait until one request costing `tokens` fits both limits, then charge it."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = max(self._paused_until - now, self._requests.wait(now), self._tokens.wait(now))
                if wait <= 0:
                    break
                await self._sleep(wait)
            factor = self.rate_factor(now)
            self._requests.consume(now, 1, factor)
            self._tokens.consume(now, tokens, factor)

    def settle(self, estimated_tokens: float, actual_tokens: float) -> None:
        """Correct the token charge with the usage the server reported."""
        self._tokens.refund(estimated_tokens - actual_tokens)

    def on_rate_limited(self, delay: float) -> None:
        """A 429: pause everyone for `delay` seconds and slow down a little."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + delay)
        # Requests already in flight when the limit hit all come back 429 together:
        # count that as one signal, not one per request.
        if now - self._slowed_at >= 1.0:
            self._slowed_factor = max(0.5, self.rate_factor(now) * 0.9)
            self._slowed_at = now
