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
    pacer, clock = make_pacer(tpm=6000, burst_seconds=0.5)  # 100 tokens per second
    times = acquire_times(pacer, clock, [50, 50, 50, 500, 50])
    assert times == pytest.approx([0.0, 0.0, 0.5, 1.0, 6.0])


def test_both_limits_apply_at_once():
    pacer, clock = make_pacer(rpm=60, tpm=6000, burst_seconds=0.5)  # 1 req/s, 100 tok/s
    assert acquire_times(pacer, clock, [10, 10, 10]) == pytest.approx([0.0, 0.5, 1.5])  # requests bind
    pacer, clock = make_pacer(rpm=60, tpm=600, burst_seconds=0.5)  # 1 req/s, 10 tok/s
    assert acquire_times(pacer, clock, [50, 50]) == pytest.approx([0.0, 4.5])  # tokens bind


def test_usage_correction_refunds_unused_tokens():
    pacer, clock = make_pacer(tpm=6000, burst_seconds=0.5)

    async def main() -> float:
        await pacer.acquire(1000)  # 10 s worth reserved
        pacer.settle(estimated_tokens=1000, actual_tokens=100)  # only 1 s worth used
        await pacer.acquire(10)
        return clock.now

    assert asyncio.run(main()) == pytest.approx(0.5)


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
