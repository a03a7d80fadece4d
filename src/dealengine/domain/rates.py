"""Exchange rates: dated facts on their own streams, and the rule that converts an amount.

A rate is an event on the stream `rates:<FROM>-<TO>` (`ExchangeRateSet`): one unit of FROM is
`rate` units of TO from `effective_from` (a UTC day) until the next rate of the pair takes
effect. A wrong rate is voided by an `ExchangeRateVoided` on the same stream, never rewritten.
The rules, with worked examples: docs/currencies.md.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator

from dealengine.domain.events import DomainEvent
from dealengine.domain.streams import StreamKind
from dealengine.domain.streams import rates_stream as stream_of_pair
from dealengine.domain.values import Currency, Rate, Text, minor_unit

RATES: StreamKind = "rates"  # the streams' kind: `rates:EUR-USD` (domain/streams.py)
Pair = tuple[str, str]  # (from, to)


def rates_stream(pair: Pair) -> str:
    """The stream that holds the rates of `pair`."""
    return stream_of_pair(pair_id(pair))


def pair_id(pair: Pair) -> str:
    """The id of a pair's stream within its kind: `EUR-USD`."""
    return f"{pair[0]}-{pair[1]}"


class RateEvent(DomainEvent):
    aggregate: ClassVar[StreamKind] = RATES


class ExchangeRate(BaseModel):
    """A rate's own fields, the rules of a rate wherever one is given (an event, a CSV line,
    `rates set`): one `from_currency` is `rate` `to_currency` from the start of
    `effective_from` (UTC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_currency: Currency
    to_currency: Currency
    rate: Rate
    effective_from: date

    @model_validator(mode="after")
    def _two_currencies(self) -> Self:
        if self.from_currency == self.to_currency:
            raise ValueError(f"a rate converts between two currencies, got {self.from_currency}")
        return self

    @property
    def pair(self) -> Pair:
        return self.from_currency, self.to_currency


class ExchangeRateSet(ExchangeRate, RateEvent):  # (this order: the envelope's fields first)
    """A rate recorded on the stream of its pair."""

    event_type: ClassVar[str] = "exchange_rate_set"


class ExchangeRateVoided(RateEvent):
    """The rate `voided_event_id` of the same stream is taken as never set."""

    event_type: ClassVar[str] = "exchange_rate_voided"
    voided_event_id: UUID
    reason: Text


RATE_EVENTS: tuple[type[RateEvent], ...] = (ExchangeRateSet, ExchangeRateVoided)


def rate_key(pair: Pair, rate: Decimal, effective_from: date) -> str:
    """The idempotency key of a rate: the same pair, rate and date stored twice is one fact."""
    text = f"{pair[0]}-{pair[1]} {rate.normalize()} {effective_from.isoformat()}"
    return "rate-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class KnownRate:
    """A rate as recorded, with who recorded it, when, and from what source."""

    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: date
    id: str
    recorded_at: str
    actor: str
    source: str

    @property
    def pair(self) -> Pair:
        return self.from_currency, self.to_currency

    def as_json(self) -> dict[str, str]:
        """As `dealengine rates list --format json` and `GET /v1/rates` show it."""
        return {
            "from": self.from_currency, "to": self.to_currency, "rate": str(self.rate),
            "effective_from": self.effective_from.isoformat(), "recorded_at": self.recorded_at,
            "actor": self.actor, "source": self.source, "id": self.id,
        }  # fmt: skip


def known_rates(events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[KnownRate]:
    """The rates of (event type, stored JSON) rate events in recorded order, voided ones left
    out."""
    rates: dict[str, KnownRate] = {}
    for event_type, data in events:
        if event_type == ExchangeRateVoided.event_type:
            rates.pop(str(data["voided_event_id"]), None)
        elif event_type == ExchangeRateSet.event_type:
            rates[str(data["id"])] = KnownRate(
                data["from_currency"], data["to_currency"], Decimal(data["rate"]),
                date.fromisoformat(data["effective_from"]), str(data["id"]),
                data["recorded_at"], data["actor"], data["source"],
            )  # fmt: skip
    return list(rates.values())


class ExchangeRates:
    """The rates in force on each day, per pair. Of two rates of a pair with the same date,
    the one recorded later counts. Without a rate of the pair itself, its inverse converts
    (dividing by the inverse's rate); no other triangulation."""

    def __init__(self, rates: Iterable[KnownRate] = ()) -> None:
        self.rates = list(rates)
        by_pair: dict[Pair, dict[date, Decimal]] = {}
        for r in self.rates:  # recorded order: a later rate of the same day replaces
            by_pair.setdefault(r.pair, {})[r.effective_from] = r.rate
        self._days: dict[Pair, list[date]] = {}
        self._values: dict[Pair, list[Decimal]] = {}
        for pair, by_day in by_pair.items():
            days = sorted(by_day)
            self._days[pair], self._values[pair] = days, [by_day[d] for d in days]

    def __bool__(self) -> bool:
        return bool(self._days)

    def _in_force(self, pair: Pair, day: date) -> Decimal | None:
        days = self._days.get(pair)
        if days is None:
            return None
        i = bisect_right(days, day)
        return self._values[pair][i - 1] if i else None

    def convert(self, amount: Decimal, pair: Pair, day: date) -> Decimal | None:
        """`amount` of pair[0] in pair[1] at the rate in force on `day`, rounded half-even to
        pair[1]'s minor unit; None when no rate of the pair (or its inverse) is in force."""
        rate = self._in_force(pair, day)
        if rate is not None:
            value = amount * rate
        else:
            inverse = self._in_force((pair[1], pair[0]), day)
            if inverse is None:
                return None
            value = amount / inverse
        return value.quantize(minor_unit(pair[1]), ROUND_HALF_EVEN)

    def in_force(self, day: date) -> list[KnownRate]:
        """The rate of each pair in force on `day` (pairs in name order)."""
        latest: dict[Pair, KnownRate] = {}
        for r in self.rates:
            if r.effective_from <= day:
                held = latest.get(r.pair)
                if held is None or r.effective_from >= held.effective_from:
                    latest[r.pair] = r
        return [latest[p] for p in sorted(latest)]

    def with_rates(self, extra: Iterable[KnownRate]) -> ExchangeRates:
        """These rates and `extra`, recorded after them."""
        return ExchangeRates([*self.rates, *extra])

    def overridden(self, replacing: Iterable[KnownRate]) -> ExchangeRates:
        """These rates with every rate of the pairs in `replacing` replaced by those (a
        what-if's `rates`): the other pairs, and the inverses, as they are."""
        new = list(replacing)
        pairs = {r.pair for r in new}
        return ExchangeRates([*(r for r in self.rates if r.pair not in pairs), *new])


NO_RATES = ExchangeRates()


def day_of(moment: datetime | str) -> date:
    """The UTC day of a moment (a stored fixed-width UTC string, or an aware datetime)."""
    if isinstance(moment, str):
        return date(int(moment[:4]), int(moment[5:7]), int(moment[8:10]))
    return moment.astimezone(UTC).date()
