"""What a run did, as numbers (EngineSummary) and live on a tqdm bar.

All counters are scalars or keyed by a short failure category, so a run of millions of
requests keeps a summary of constant size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm


def failure_category(error: str | None) -> str:
    """ "http 400: long server message" -> "http 400": bounded keys for failed_by_reason."""
    return (error or "unknown").split(":", 1)[0].strip()


@dataclass
class EngineSummary:
    description: str = "requests"
    dry_run: bool = False
    requested: int = 0  # requests pulled from the input
    from_ledger: int = 0  # served without a call (ledger hits and in-run duplicates)
    sent: int = 0  # requests that needed at least one call this run
    calls: int = 0  # HTTP attempts, retries included
    ok: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    retried: int = 0  # attempts after the first
    rate_limited: int = 0  # 429 responses
    prompt_tokens: int = 0  # as reported by the server, this run's calls only
    completion_tokens: int = 0
    to_send: int = 0  # dry run: requests that would be sent
    estimated_prompt_tokens: int = 0  # dry run: ~chars/4
    estimated_completion_tokens: int = 0  # dry run: upper bound, max_tokens per request
    elapsed: float = 0.0
    estimated_cost: float | None = None  # USD, when prices are known (this run's calls; dry run: sync price)
    backend: str = "sync"
    spent_before: float = 0.0  # USD the ledger had recorded when the run started
    estimated_batch_cost: float | None = None  # dry run: the same requests through the Batch API
    # Batch backend: rounds (requests per round; a stage's pool is frozen within one),
    # batches created, and API calls spent on uploads, creates, polls and downloads.
    batch_rounds: list[int] = field(default_factory=list)
    batches_created: int = 0
    batch_polls: int = 0
    batch_api_calls: int = 0
    batch_resubmitted: int = 0  # requests sent again (expired/cancelled batch, errored row)
    # Every (redacted) endpoint whose answers this run handed out; a card lists them all.
    endpoints: list[str] = field(default_factory=list)

    def record(self, ok: bool, error: str | None, from_ledger: bool, endpoint: str | None = None) -> None:
        self.from_ledger += from_ledger
        if endpoint and endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        if ok:
            self.ok += 1
        else:
            self.failed += 1
            reason = failure_category(error)
            self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1

    def card_facts(self) -> dict:
        """What a stage card should say about how its requests were run (backend, rounds, spend)."""
        facts: dict = {"backend": self.backend}
        if self.endpoints:
            facts["endpoints"] = sorted(self.endpoints)
        if self.backend == "batch":
            facts["batch_rounds"] = len(self.batch_rounds)
            facts["batch_round_sizes"] = list(self.batch_rounds)
            facts["batch_pool_policy"] = (
                "requests were submitted in rounds; prompts that depend on earlier answers (the question "
                "pool) saw the pool as it stood when their round was submitted (frozen within a round)"
            )
        if self.estimated_cost is not None:
            facts["cost_usd_this_run"] = round(self.estimated_cost, 6)
        return facts

    def format(self) -> str:
        cost = f"${self.estimated_cost:,.4f}" if self.estimated_cost is not None else "n/a (no prices set)"
        if self.dry_run:
            batch = f"${self.estimated_batch_cost:,.4f}" if self.estimated_batch_cost is not None else "n/a"
            return "\n".join(
                [
                    f"{self.description} (dry run, nothing sent)",
                    f"  requests:    {self.requested:,} ({self.from_ledger:,} already in the ledger, "
                    f"{self.to_send:,} to send)",
                    f"  est. tokens: {self.estimated_prompt_tokens:,} prompt + "
                    f"<= {self.estimated_completion_tokens:,} completion",
                    f"  est. cost:   <= {cost} synchronous, <= {batch} with --backend batch"
                    + (f" (ledger already spent ${self.spent_before:,.4f})" if self.spent_before else ""),
                ]
            )
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.failed_by_reason.items()))
        minutes = max(self.elapsed, 1e-9) / 60
        return "\n".join(
            [
                f"{self.description}: {self.requested:,} requests in {self.elapsed:,.1f}s",
                f"  from ledger: {self.from_ledger:,}   sent: {self.sent:,}   calls: {self.calls:,} "
                f"(retried {self.retried:,}, 429s {self.rate_limited:,})",
                f"  ok: {self.ok:,}   failed: {self.failed:,}" + (f" ({reasons})" if reasons else ""),
                f"  tokens: {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion "
                f"({(self.prompt_tokens + self.completion_tokens) / minutes:,.0f}/min)",
                f"  est. cost: {cost} ({self.backend})"
                + (f", ledger spend before this run ${self.spent_before:,.4f}" if self.spent_before else ""),
            ]
            + (
                [
                    f"  batches: {self.batches_created:,} created in {len(self.batch_rounds):,} round(s), "
                    f"{self.batch_resubmitted:,} requests resubmitted, {self.batch_api_calls:,} batch API calls "
                    f"({self.batch_polls:,} status polls)"
                ]
                if self.backend == "batch"
                else []
            )
        )


class Progress:
    """tqdm bar: one tick per result, postfix with counts and rates (refreshed ~twice a second)."""

    def __init__(self, summary: EngineSummary, total: int | None, enabled: bool):
        self.summary = summary
        self.start = time.monotonic()
        self._next_refresh = 0.0
        self.bar = tqdm(
            total=total, desc=summary.description, unit="req", disable=not enabled, dynamic_ncols=True
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _postfix(self) -> dict[str, str]:
        s, minutes = self.summary, max(self.elapsed(), 1e-9) / 60
        finished_sends = s.ok + s.failed - s.from_ledger
        return {
            "done": f"{s.ok}",
            "failed": f"{s.failed}",
            "retried": f"{s.retried}",
            "req/min": f"{finished_sends / minutes:.0f}",
            "tok/min": f"{(s.prompt_tokens + s.completion_tokens) / minutes:.0f}",
        }

    def tick(self) -> None:
        self.bar.update(1)
        now = time.monotonic()
        if now >= self._next_refresh and not self.bar.disable:
            self._next_refresh = now + 0.5
            self.bar.set_postfix(self._postfix(), refresh=False)

    def close(self) -> None:
        if not self.bar.disable:
            self.bar.set_postfix(self._postfix(), refresh=True)
        self.bar.close()
