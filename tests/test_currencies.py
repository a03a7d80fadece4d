"""Currencies and exchange rates as rules, with no database: which codes a deal may carry,
which rate is in force on a day, how an amount is converted and rounded (docs/currencies.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from dealengine.domain.definitions import PipelineDefinition
from dealengine.domain.rates import ExchangeRates, KnownRate, day_of, known_rates
from dealengine.domain.values import MINOR_UNITS, Currency, explain, minor_unit

CURRENCY = TypeAdapter(Currency)


def rate(pair: str, value: str, day: str, id: str = "") -> KnownRate:
    f, t = pair.split("-")
    return KnownRate(f, t, Decimal(value), date.fromisoformat(day), id or f"{pair}{day}{value}",
                     "2026-01-01T00:00:00.000000Z", "cfo", "ecb")  # fmt: skip


# --- which currencies ----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["EUR", "USD", "BRL", "JPY", "BHD", "CLF", "CHF", "XOF"])
def test_an_iso_4217_code_is_a_currency(code: str) -> None:
    assert CURRENCY.validate_python(code) == code


@pytest.mark.parametrize("code", ["EUX", "eur", "EURO", "US", "", "XAU", "XXX", "E U"])
def test_anything_else_is_refused_saying_what_a_currency_is(code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CURRENCY.validate_python(code)
    assert explain(refused.value.errors()[0]) == (
        "not an ISO 4217 currency code (three capitals, e.g. EUR)"
    )


def test_each_currency_rounds_to_its_own_minor_unit() -> None:
    assert (minor_unit("EUR"), minor_unit("JPY"), minor_unit("BHD"), minor_unit("CLF")) == (
        Decimal("0.01"), Decimal("1"), Decimal("0.001"), Decimal("0.0001"),
    )  # fmt: skip
    assert len(MINOR_UNITS) >= 150  # every current ISO 4217 code with a minor unit


def test_a_pipeline_in_no_currency_is_refused() -> None:
    stages = [{"name": "open", "probability": 0.5}, {"name": "won", "probability": 1.0,
              "closed": "won"}, {"name": "lost", "probability": 0.0, "closed": "lost"}]  # fmt: skip
    with pytest.raises(ValidationError, match="currency"):
        PipelineDefinition.model_validate(
            {
                "name": "p",
                "currency": "DOLLARS",
                "initial_stage": "open",
                "stages": stages,
                "events": {},
            }
        )


# --- which rate is in force ----------------------------------------------------------------


def test_a_rate_is_in_force_from_its_day_until_the_pairs_next_one() -> None:
    rates = ExchangeRates(
        [rate("EUR-USD", "1.10", "2025-01-01"), rate("EUR-USD", "1.20", "2025-07-01")]
    )
    on = {d: rates.convert(Decimal("100"), ("EUR", "USD"), date.fromisoformat(d))
          for d in ("2024-12-31", "2025-01-01", "2025-06-30", "2025-07-01", "2030-01-01")}  # fmt: skip
    assert on == {"2024-12-31": None, "2025-01-01": Decimal("110.00"),
                  "2025-06-30": Decimal("110.00"), "2025-07-01": Decimal("120.00"),
                  "2030-01-01": Decimal("120.00")}  # fmt: skip


def test_of_two_rates_for_one_day_the_one_recorded_later_counts() -> None:
    rates = ExchangeRates(
        [rate("EUR-USD", "1.10", "2025-01-01"), rate("EUR-USD", "1.15", "2025-01-01")]
    )
    assert rates.convert(Decimal("100"), ("EUR", "USD"), date(2025, 2, 1)) == Decimal("115.00")


def test_the_inverse_pair_divides_and_nothing_is_triangulated() -> None:
    rates = ExchangeRates(
        [rate("EUR-USD", "1.25", "2025-01-01"), rate("USD-BRL", "5", "2025-01-01")]
    )
    # 100 USD / 1.25 = 80 EUR; no EUR->BRL through USD
    assert rates.convert(Decimal("100"), ("USD", "EUR"), date(2025, 1, 2)) == Decimal("80.00")
    assert rates.convert(Decimal("100"), ("EUR", "BRL"), date(2025, 1, 2)) is None
    # the pair's own rate wins over its inverse
    both = rates.with_rates([rate("USD-EUR", "0.5", "2025-01-01")])
    assert both.convert(Decimal("100"), ("USD", "EUR"), date(2025, 1, 2)) == Decimal("50.00")


@pytest.mark.parametrize(
    ("amount", "value", "to", "expected"),
    [
        ("10.005", "1", "USD", "10.00"),  # half to even: down to the even cent
        ("10.015", "1", "USD", "10.02"),  # half to even: up to the even cent
        ("1", "0.125", "USD", "0.12"),
        ("1", "0.135", "USD", "0.14"),
        ("999.50", "1", "JPY", "1000"),  # JPY has no minor unit: to the yen, half to even
        ("998.50", "1", "JPY", "998"),
        ("1", "0.3775", "BHD", "0.378"),  # three places
    ],
)
def test_a_converted_amount_is_rounded_half_even_to_the_target_minor_unit(
    amount: str, value: str, to: str, expected: str
) -> None:
    rates = ExchangeRates([rate(f"EUR-{to}", value, "2025-01-01")])
    converted = rates.convert(Decimal(amount), ("EUR", to), date(2025, 1, 1))
    assert converted is not None and str(converted) == expected


def test_a_voided_rate_is_left_out_and_the_rate_in_force_before_it_returns() -> None:
    def stored(id: str, value: str, day: str) -> tuple[str, dict[str, str]]:
        return "exchange_rate_set", {"id": id, "from_currency": "EUR", "to_currency": "USD",
                                     "rate": value, "effective_from": day, "actor": "cfo",
                                     "source": "ecb", "recorded_at": "2026-01-01T00:00:00Z"}  # fmt: skip

    events = [stored("a", "1.10", "2025-01-01"), stored("b", "11.0", "2025-07-01"),
              ("exchange_rate_voided", {"voided_event_id": "b"}), stored("c", "1.20", "2025-09-01")]  # fmt: skip
    rates = ExchangeRates(known_rates(events))
    assert [r.id for r in rates.rates] == ["a", "c"]
    assert rates.convert(Decimal("10"), ("EUR", "USD"), date(2025, 8, 1)) == Decimal("11.00")
    assert [r.id for r in rates.in_force(date(2025, 8, 1))] == ["a"]


def test_the_day_of_a_moment_is_its_utc_day() -> None:
    from datetime import datetime, timedelta, timezone

    assert day_of("2025-06-30T23:59:59.000000Z") == date(2025, 6, 30)
    late = datetime(2025, 6, 30, 22, 0, tzinfo=timezone(timedelta(hours=-5)))  # 03:00 UTC
    assert day_of(late) == date(2025, 7, 1)
