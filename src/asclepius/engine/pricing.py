"""What a request costs: per-token prices (given, or from a small table), and the batch discount.

The table holds list prices of common OpenAI models, in USD per million tokens, as
published on openai.com/api/pricing when this file was written; prices change, so
``--input_price_per_million`` / ``--output_price_per_million`` always win. The Batch
API bills the same tokens at half price. A model not in the table has no price: the
cost is then reported as unknown, and ``--max_budget_usd`` asks for explicit prices. One
price given alone is completed from the table; without a table entry the other is unknown,
never 0 (a budget cap counting free output tokens would not cap anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (input, output) USD per million tokens, synchronous tier.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}
BATCH_DISCOUNT = 0.5
# Dated snapshots ("gpt-4o-2024-08-06") cost what their family costs.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: float, completion_tokens: float, *, batch: bool = False) -> float:
        usd = (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6
        return usd * BATCH_DISCOUNT if batch else usd


def table_price(model: str) -> Price | None:
    """The table's list price for ``model`` (a dated snapshot or a prefixed id too), or None."""
    name = model.rsplit("/", 1)[-1].lower()  # Azure deployments and "openai/gpt-4o" style ids
    for candidate in (name, _SNAPSHOT_SUFFIX.sub("", name)):
        if candidate in PRICES_PER_MILLION:
            return Price(*PRICES_PER_MILLION[candidate])
    return None


def price_for(model: str, input_per_million: float | None, output_per_million: float | None) -> Price | None:
    """Given prices, a missing one from the table for ``model``; None when either stays unknown."""
    listed = table_price(model)
    if input_per_million is None and listed is not None:
        input_per_million = listed.input_per_million
    if output_per_million is None and listed is not None:
        output_per_million = listed.output_per_million
    if input_per_million is None or output_per_million is None:
        return None
    return Price(input_per_million, output_per_million)
