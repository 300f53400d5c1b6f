"""Pacer on a fake clock, rate-limit header parsing, the request key, CLI parsing."""

from __future__ import annotations

import asyncio
import email.utils

import pytest

from asclepius.engine import EngineArguments, request_key
from asclepius.engine.pacing import MAX_PAUSE_SECONDS, Pacer, parse_duration, retry_delay_from_headers


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def acquire_times(pacer: Pacer, clock: FakeClock, costs: list[float]) -> list[float]:
    async def main() -> list[float]:
        times = []
        for cost in costs:
            await pacer.acquire(cost)
            times.append(round(clock.now, 6))
        return times

    return asyncio.run(main())


def make_pacer(rpm: float = 1e9, tpm: float = 1e12, **kwargs) -> tuple[Pacer, FakeClock]:
    clock = FakeClock()
    return Pacer(rpm, tpm, clock=clock, sleep=clock.sleep, **kwargs), clock


def test_requests_are_paced_evenly_after_a_burst_of_half_a_second():
    pacer, clock = make_pacer(rpm=600, burst_seconds=0.5)
    times = acquire_times(pacer, clock, [1] * 20)
    assert times[:6] == [0.0] * 6  # burst: 0.5 s of capacity + the request itself
    assert times[6:] == pytest.approx([0.1 * k for k in range(1, 15)], abs=1e-6)


def test_long_run_rate_matches_the_limit():
    pacer, clock = make_pacer(rpm=600, burst_seconds=0.5)
    times = acquire_times(pacer, clock, [1] * 1200)
    in_first_minute = sum(t < 60.0 for t in times)
    assert 600 <= in_first_minute <= 606  # the limit plus at most the burst


def test_tokens_are_paced_and_a_request_bigger_than_the_burst_still_goes():
    # 100 tokens per second; until the server's headers say more, a request's whole charge must
    # fit in the 0.5 s burst (50 tokens), and a bigger one goes when the burst is full.
    pacer, clock = make_pacer(tpm=6000, burst_seconds=0.5)
    times = acquire_times(pacer, clock, [50, 50, 50, 500, 50])
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 6.5])


def test_both_limits_apply_at_once():
    pacer, clock = make_pacer(rpm=60, tpm=6000, burst_seconds=0.5)  # 1 req/s, 100 tok/s
    assert acquire_times(pacer, clock, [10, 10, 10]) == pytest.approx([0.0, 0.5, 1.5])  # requests bind
    pacer, clock = make_pacer(rpm=60, tpm=600, burst_seconds=0.5)  # 1 req/s, 10 tok/s
    assert acquire_times(pacer, clock, [50, 50]) == pytest.approx([0.0, 5.0])  # tokens bind


def test_usage_correction_refunds_unused_tokens():
    pacer, clock = make_pacer(tpm=6000, burst_seconds=0.5)

    async def main() -> float:
        await pacer.acquire(1000)  # 10 s worth reserved
        pacer.settle(estimated_tokens=1000, actual_tokens=100)  # only 1 s worth used
        await pacer.acquire(10)
        return clock.now

    # 1 s used, and 0.1 s more must fit in the 0.5 s burst: 0.6 s, not 10.
    assert asyncio.run(main()) == pytest.approx(0.6)


class ManualClock(FakeClock):
    """A sleep that lasts until the test moves the clock past its end (or it is cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleepers: list[tuple[float, asyncio.Future]] = []

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, wake))
        await wake

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for until, wake in self.sleepers:
            if until <= self.now and not wake.done():
                wake.set_result(None)
        for _ in range(5):  # let the woken run
            await asyncio.sleep(0)


def test_a_refund_wakes_the_waiting_request_at_once():
    """The waiter slept for the wait it computed before the refund; it must not keep sleeping
    while the server's bucket fills unused (what left 5-8% of a token limit idle)."""
    clock = ManualClock()
    pacer = Pacer(1e9, 6000, burst_seconds=0.5, clock=clock, sleep=clock.sleep)  # 100 tokens/s

    async def main() -> float:
        await pacer.acquire(1000)  # 10 s of the limit reserved
        waiter = asyncio.ensure_future(pacer.acquire(10))
        await clock.advance(1.0)
        assert not waiter.done()  # 9 s of the reservation left: still waiting
        pacer.settle(estimated_tokens=1000, actual_tokens=100)  # only 1 s of it was used
        await clock.advance(0.0)
        assert waiter.done()
        return clock.now

    assert asyncio.run(main()) == pytest.approx(1.0)


def headers(limit: float, remaining: float, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-tokens": str(limit),
        "x-ratelimit-remaining-tokens": str(remaining),
        "x-ratelimit-reset-tokens": reset,
    }


def test_the_servers_token_count_is_learned_from_usage():
    pacer, _ = make_pacer(tpm=6000)
    assert pacer.token_cost(100, 50) == 150  # prior: the server counts as we estimate
    for _ in range(500):  # the server counts 30% more prompt tokens than our estimate
        pacer.learn(100, 130)
    assert pacer.token_ratio == pytest.approx(1.3, abs=0.02)
    assert pacer.token_cost(100, 50) == pytest.approx(180, abs=2)
    pacer, _ = make_pacer(tpm=6000)
    for _ in range(500):  # ...or 30% fewer
        pacer.learn(100, 70)
    assert pacer.token_ratio == pytest.approx(0.7, abs=0.02)


def test_the_servers_bucket_and_a_lower_limit_are_learned_from_its_headers():
    # 100 tokens/s; the server's bucket holds 1 s: 40 left + 0.6 s x 100 to refill.
    pacer, clock = make_pacer(tpm=6000)
    pacer.learn(0, None, headers(6000, 40, "600ms"))
    # We fill 90% of it: 90 tokens. A request goes when its whole charge fits what is left.
    assert acquire_times(pacer, clock, [60, 60]) == pytest.approx([0.0, 0.3])
    # A server limit below ours is the one that binds: 50 tokens/s, a bucket of 2 s (50 left
    # + 1 s to refill), 90 of its 100 ours: the third 40 waits for 30 more, 0.6 s at 50/s.
    pacer, clock = make_pacer(tpm=6000)
    pacer.learn(0, None, headers(3000, 50, "1s"))
    assert acquire_times(pacer, clock, [40, 40, 40]) == pytest.approx([0.0, 0.0, 0.6])


class KeepingServer:
    """A 6,000 tokens/s server (1 s bucket) that keeps the max_tokens an answer did not use."""

    rate = 6000.0

    def __init__(self, clock: FakeClock):
        self.clock, self.level, self.updated, self.refused = clock, self.rate, 0.0, 0

    def admit(self, cost: float) -> tuple[bool, dict[str, str]]:
        now = self.clock.now
        self.level = min(self.rate, self.level + (now - self.updated) * self.rate)
        self.updated = now
        admitted = self.level >= cost
        if admitted:
            self.level -= cost
        else:
            self.refused += 1
        reset = f"{max(0, round((self.rate - self.level) / self.rate * 1000))}ms"
        return admitted, headers(self.rate * 60, max(0, int(self.level)), reset)


def test_a_server_that_keeps_unused_max_tokens_is_learned_from_its_remaining_tokens():
    pacer, clock = make_pacer(tpm=KeepingServer.rate * 60)
    server = KeepingServer(clock)

    async def main() -> None:
        for _ in range(100):
            while True:
                room = await pacer.acquire(1100)  # 100 prompt + 1,000 max_tokens
                admitted, answer_headers = server.admit(1100)
                if admitted:
                    break
                pacer.refused(1100, answer_headers, room)
                await clock.sleep(0.05)
            pacer.settle(1100, 120)  # 980 unused, which this server keeps
            pacer.learn(100, 100, answer_headers, room)

    asyncio.run(main())
    assert pacer.refund_share < 0.1  # at first 1.0 (what servers that refund do), then learned
    assert server.refused <= 5  # the first few, while it learns; then none


def test_a_refused_request_is_not_charged_and_its_headers_teach():
    pacer, clock = make_pacer(tpm=6000)
    pacer.learn(0, None, headers(6000, 100, "0ms"))

    async def main() -> float:
        room = await pacer.acquire(80)
        pacer.refused(80, headers(6000, 0, "1s"), room)  # the server had nothing left
        await pacer.acquire(80)
        return clock.now

    # Our model thought 10 were left after charging 80; the server had 0 before: the
    # shortfall of 90 is charged, the refused 80 given back: 80 more need 0.8 s.
    assert asyncio.run(main()) == pytest.approx(0.8 + 0.1, abs=0.05)


def test_rate_limit_pauses_everyone_then_slows_down_and_recovers():
    pacer, clock = make_pacer(rpm=600, burst_seconds=0.0, recovery_seconds=30.0)

    async def main() -> list[float]:
        await pacer.acquire(1)
        pacer.on_rate_limited(2.0)
        pacer.on_rate_limited(2.0)  # the same burst of 429s: slows down once
        times = []
        for _ in range(3):
            await pacer.acquire(1)
            times.append(clock.now)
        return times

    times = asyncio.run(main())
    assert times[0] == pytest.approx(2.0)
    slowed = pacer.rate_factor(times[1])
    assert 0.9 <= slowed < 0.91  # 10% slower, recovering linearly over 30 s
    assert times[2] - times[1] == pytest.approx(0.1 / slowed, rel=1e-3)
    assert pacer.rate_factor(clock.now + 30.0) == 1.0


def test_waiters_leave_in_arrival_order():
    pacer, clock = make_pacer(rpm=60, burst_seconds=0.0)

    async def main() -> list[int]:
        order: list[int] = []

        async def one(i: int) -> None:
            await pacer.acquire(1)
            order.append(i)

        await asyncio.gather(*(one(i) for i in range(5)))
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("2", 2.0),
        ("1.5s", 1.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "1m30", "s", "nan"])
def test_parse_duration_rejects_garbage(text):
    assert parse_duration(text) is None


def test_retry_delay_precedence_and_formats():
    assert retry_delay_from_headers({"Retry-After-Ms": "250", "retry-after": "3"}) == pytest.approx(0.25)
    assert retry_delay_from_headers({"retry-after": "3"}) == 3.0
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert retry_delay_from_headers({"retry-after": date}, now=1_000_000.0) == pytest.approx(10.0)
    exhausted_requests = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert retry_delay_from_headers(exhausted_requests) == 1.0  # the exhausted one, not the longer one
    assert (
        retry_delay_from_headers({"x-ratelimit-reset-tokens": "20ms", "x-ratelimit-reset-requests": "2s"})
        == 0.02
    )
    assert retry_delay_from_headers(
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    ) == (MAX_PAUSE_SECONDS)
    assert retry_delay_from_headers({"content-type": "application/json"}) is None


def test_request_key_is_canonical_and_covers_sampling():
    messages = [{"role": "user", "content": "Hi"}]
    key = request_key("m", messages, temperature=1.0, max_tokens=10)
    assert key == request_key("m", [{"content": "Hi", "role": "user"}], max_tokens=10, temperature=1.0)
    assert key == request_key("m", messages, temperature=1.0, max_tokens=10, top_p=None)
    assert key != request_key("m", messages, temperature=0.0, max_tokens=10)
    assert key != request_key("m", messages, temperature=1.0, max_tokens=11)
    assert key != request_key("other", messages, temperature=1.0, max_tokens=10)
    assert len(key) == 64


def test_engine_arguments_parse_as_cli_flags():
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(EngineArguments).parse_args_into_dataclasses(
        [
            "--base_url",
            "http://127.0.0.1:1/v1",
            "--max_requests_per_minute",
            "90",
            "--dry_run",
            "--retry_failed",
            "--temperature",
            "0.2",
            "--show_progress",
            "false",
        ]  # fmt: skip
    )
    assert args.base_url == "http://127.0.0.1:1/v1" and args.max_requests_per_minute == 90.0
    assert args.dry_run and args.retry_failed and not args.show_progress
    assert args.temperature == 0.2 and args.max_tokens is None and args.azure_api_version is None
    with pytest.raises(ValueError, match="max_concurrency"):
        EngineArguments(max_concurrency=0)
