"""Engine settings, shared by every stage that calls an LLM API.

A plain dataclass so `HfArgumentParser` / `TrlParser` turn each field into a CLI flag
(`--max_requests_per_minute 300`) and recipes can set them in YAML. It holds the NAME
of the environment variable with the API key, never the key: a config object gets
printed, logged and saved next to outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asclepius.engine.pricing import Price, price_for

BACKENDS = ("sync", "batch")
# The OpenAI Batch API's documented limits per input file (requests, bytes).
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1024 * 1024


@dataclass
class EngineArguments:
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible API base URL (e.g. http://127.0.0.1:8000/v1); None = api.openai.com."
        },
    )
    model: str = field(
        default="gpt-4o-mini", metadata={"help": "Model (or Azure deployment) name to request."}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "help": "Name of the environment variable holding the API key (the key itself is never logged)."
        },
    )
    azure_api_version: str | None = field(
        default=None,
        metadata={
            "help": "Set to use Azure OpenAI (base_url is then the azure_endpoint) with this api_version."
        },
    )
    max_requests_per_minute: float = field(
        default=500.0, metadata={"help": "Requests per minute, paced continuously (no bursts beyond ~1 s)."}
    )
    max_tokens_per_minute: float = field(
        default=200_000.0,
        metadata={"help": "Tokens per minute (prompt estimate + max_tokens, corrected by reported usage)."},
    )
    max_concurrency: int = field(default=64, metadata={"help": "Maximum requests in flight at once."})
    request_timeout: float = field(
        default=120.0, metadata={"help": "Seconds before one HTTP attempt times out."}
    )
    max_attempts: int = field(
        default=8,
        metadata={"help": "Attempts per request (429, 5xx, timeouts, malformed bodies are retried)."},
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Count requests, estimated tokens and cost; send nothing."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature; None = the stage's default."}
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "Completion token limit; None = the stage's default."}
    )
    fail_on_length: bool = field(
        default=False, metadata={"help": "Count finish_reason=length as a failure instead of an answer."}
    )
    retry_failed: bool = field(
        default=False,
        metadata={"help": "Resend requests the ledger holds as permanently failed (e.g. HTTP 400) on rerun."},
    )
    input_price_per_million: float | None = field(
        default=None, metadata={"help": "USD per million prompt tokens, for the cost estimate."}
    )
    output_price_per_million: float | None = field(
        default=None, metadata={"help": "USD per million completion tokens, for the cost estimate."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})
    backend: str = field(
        default="sync",
        metadata={
            "help": "sync: one paced HTTP call per request; batch: the OpenAI/Azure Batch API (half price, "
            "results within 24 h), through the same ledger and resume."
        },
    )
    max_budget_usd: float | None = field(
        default=None,
        metadata={
            "help": "Stop submitting when the ledger's spend plus the worst case of what is in flight would "
            "exceed this many USD; rerun with a higher cap to continue. Needs prices (given or known model)."
        },
    )
    batch_max_requests: int = field(
        default=BATCH_MAX_REQUESTS, metadata={"help": "Batch backend: requests per batch file."}
    )
    batch_max_bytes: int = field(
        default=BATCH_MAX_BYTES,
        metadata={"help": "Batch backend: bytes per batch file (larger files are also split if refused)."},
    )
    batch_max_enqueued_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Batch backend: the provider's enqueued-token limit for the model (prompt estimate + "
            "max_tokens of every request in open batches); batches wait until they fit. None = no limit."
        },
    )
    batch_round_size: int | None = field(
        default=BATCH_MAX_REQUESTS,
        metadata={
            "help": "Batch backend: requests per round; a round is submitted, waited for and its results "
            "handed to the stage before the next round's prompts are built (the question pool is frozen "
            "within a round). Bounds memory: a round's requests are held until its results are in. "
            "None = everything in one round."
        },
    )
    batch_poll_seconds: float = field(
        default=30.0, metadata={"help": "Batch backend: seconds between status checks of open batches."}
    )
    batch_max_stalled_expiries: int = field(
        default=3,
        metadata={
            "help": "Batch backend: stop after this many batches in a row expire or are cancelled with "
            "nothing answered (a provider that never gets to them); everything done stays in the ledger. "
            "Rerun to try again, or finish the rest with --backend sync."
        },
    )
    batch_completion_window: str = field(
        default="24h", metadata={"help": "Batch backend: completion_window of each batch."}
    )
    batch_write_only: bool = field(
        default=False,
        metadata={
            "help": "Batch backend: write the batch JSONL files (runnable with `vllm run_batch`) and stop, "
            "without uploading."
        },
    )
    batch_results: str | None = field(
        default=None,
        metadata={
            "help": "Import a Batch-API-format output file (e.g. from `vllm run_batch`) into the ledger "
            "before the run; requests it answers are not sent."
        },
    )

    def __post_init__(self) -> None:
        # Fail at parse time with the flag's name rather than deep inside a run.
        for name in ("max_requests_per_minute", "max_tokens_per_minute", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "max_concurrency",
            "max_attempts",
            "batch_max_requests",
            "batch_max_bytes",
            "batch_max_stalled_expiries",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        for name in ("batch_poll_seconds", "max_budget_usd", "batch_round_size", "batch_max_enqueued_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be > 0, got {value}")

    @property
    def batch(self) -> bool:
        return self.backend == "batch"

    def price(self) -> Price | None:
        """Per-token prices: the flags, else the table's for --model, else None (unknown)."""
        return price_for(self.model, self.input_price_per_million, self.output_price_per_million)

    def estimate_cost(
        self, prompt_tokens: float, completion_tokens: float, *, batch: bool | None = None
    ) -> float | None:
        """USD for these token counts (batch: half price), or None when no price is known."""
        price = self.price()
        if price is None:
            return None
        return price.cost(prompt_tokens, completion_tokens, batch=self.batch if batch is None else batch)
