"""Request engine: paced, retried, resumable calls to an OpenAI-compatible chat API.

    engine = Engine(args, Path(output_dir) / ".asclepius" / "ledger.sqlite", default_max_tokens=300)
    summary = run_requests(engine, requests, on_result)

Modules, one concern each: `config` (CLI/recipe flags), `request` (Request, Result, key),
`pacing` (RPM/TPM pacer, rate-limit headers), `ledger` (SQLite record of answers and of
submitted batches), `client` (API key, openai client, one classified call), `pricing`
(per-token prices, batch discount), `progress` (summary, tqdm bar), `runner`
(Engine.stream, run_requests, the spend cap), `batch` (the Batch API backend,
``--backend batch``, and the import of local batch results).
"""

from asclepius.engine.config import EngineArguments
from asclepius.engine.progress import EngineSummary
from asclepius.engine.request import Request, Result, request_key
from asclepius.engine.runner import BudgetExceeded, Engine, run_requests

__all__ = [
    "BudgetExceeded",
    "Engine",
    "EngineArguments",
    "EngineSummary",
    "Request",
    "Result",
    "request_key",
    "run_requests",
]
