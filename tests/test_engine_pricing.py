"""Prices: the flags, else the table; a price nobody gave is unknown, never 0 (a budget cap must cap)."""

from __future__ import annotations

import pytest

from asclepius.engine.pricing import Price, price_for
from asclepius.errors import InputError


def test_both_prices_given_win_over_the_table():
    assert price_for("gpt-4o", 1.0, 3.0) == Price(1.0, 3.0)
    assert price_for("local-model", 0.0, 0.0) == Price(0.0, 0.0)  # stated free: a local server


def test_a_price_given_alone_is_completed_from_the_table():
    assert price_for("gpt-4o-mini", 0.5, None) == Price(0.5, 0.60)
    assert price_for("openai/gpt-4o-2024-08-06", None, 12.0) == Price(2.50, 12.0)


def test_a_missing_price_of_a_model_not_in_the_table_is_unknown_not_free():
    assert price_for("my-deployment", 2.0, None) is None
    assert price_for("my-deployment", None, 2.0) is None
    assert price_for("my-deployment", None, None) is None


def test_a_budget_cap_without_an_output_price_is_refused_in_one_line(make_engine):
    with pytest.raises(InputError) as error:
        make_engine(
            "http://127.0.0.1:9/v1", model="my-deployment", input_price_per_million=2.0, max_budget_usd=5.0
        )
    assert str(error.value).startswith("--max_budget_usd: no price known for model 'my-deployment'")
    assert "\n" not in str(error.value)
    engine = make_engine("http://127.0.0.1:9/v1", model="my-deployment", input_price_per_million=2.0,
                         output_price_per_million=6.0, max_budget_usd=5.0)  # fmt: skip
    assert engine.args.estimate_cost(1_000_000, 1_000_000) == pytest.approx(8.0)
