"""Engine settings, shared by every stage that calls an LLM API.

A plain dataclass so `HfArgumentParser` / `TrlParser` turn each field into a CLI flag
(`--max_requests_per_minute 300`) and recipes can set them in YAML. It holds the NAME
of the environment variable with the API key, never the key: a config object gets
printed, logged and saved next to outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def __post_init__(self) -> None:
        # Fail at parse time with the flag's name rather than deep inside a run.
        for name in ("max_requests_per_minute", "max_tokens_per_minute", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")

    def estimate_cost(self, prompt_tokens: float, completion_tokens: float) -> float | None:
        """USD for these token counts, or None when no price is configured."""
        if self.input_price_per_million is None and self.output_price_per_million is None:
            return None
        return (
            prompt_tokens * (self.input_price_per_million or 0.0)
            + completion_tokens * (self.output_price_per_million or 0.0)
        ) / 1e6
