"""The exchange rates' write and read side: record a rate (or a CSV of them), void one, and read
the rates known at a position of the store (dealengine.domain.rates has the rules)."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from dealengine.domain.chain import topic_of
from dealengine.domain.errors import (
    DealEngineError,
    InvalidEvent,
    UnknownAggregate,
)
from dealengine.domain.events import DomainEvent
from dealengine.domain.interaction import InteractionFields, Recorded, build, describe
from dealengine.domain.rates import (
    RATE_EVENTS,
    RATES,
    ExchangeRate,
    ExchangeRates,
    ExchangeRateSet,
    ExchangeRateVoided,
    Pair,
    known_rates,
    pair_id,
    rate_key,
    rates_stream,
)
from dealengine.service.writes import retried
from dealengine.store.application import Store

FIELDS = {"from": "from_currency", "to": "to_currency", "rate": "rate",
          "effective_from": "effective_from"}  # fmt: skip
CSV_COLUMNS = tuple(FIELDS)  # a rate's fields as a CSV's header and `rates set` name them
TYPE_OF_RATE_TOPIC = {topic_of(cls): cls.event_type for cls in RATE_EVENTS}


class ExchangeRateBook:
    """Records and reads the exchange rates of one store. Writes take turns in this process
    (one lock) and are kept apart from other processes' by the streams' versions."""

    def __init__(self, store: Store, clock: Callable[[], datetime], key: bytes | None) -> None:
        self.store, self.clock, self._key = store, clock, key
        self._write_lock = threading.Lock()

    def rates(self, stop: int | None = None) -> ExchangeRates:
        """The rates known up to position `stop` of the store (None: now), voided ones left
        out."""
        rows = self.store.rate_rows(stop)
        types = TYPE_OF_RATE_TOPIC
        return ExchangeRates(known_rates((types[t], orjson.loads(s)) for _, _, t, s in rows))

    def set(
        self, lines: Sequence[ExchangeRate], *, actor: str = "api", source: str = "api"
    ) -> Recorded:
        """Record `lines` in one transaction (a rate already recorded, same pair, rate and
        date, records nothing). Each line is validated first: a bad one raises InvalidEvent
        and nothing is stored."""

        def decide(streams: dict[str, list[DomainEvent]]) -> list[DomainEvent]:
            now, new = self.clock(), list[DomainEvent]()
            heads = {s: (len(e), e[-1].chain_hash() if e else None) for s, e in streams.items()}
            stored = [e for events in streams.values() for e in events]
            voided = {str(e.voided_event_id) for e in stored if isinstance(e, ExchangeRateVoided)}
            seen = {e.idempotency_key for e in stored if str(e.id) not in voided}
            for line in lines:
                stream = rates_stream(line.pair)
                key = rate_key(line.pair, line.rate, line.effective_from)
                if key in seen:
                    continue
                seen.add(key)
                version, head = heads[stream]
                cmd = InteractionFields(
                    ExchangeRateSet.event_type, stream, now, {}, actor, source, key
                )
                event = build(
                    ExchangeRateSet, (RATES, pair_id(line.pair)), version + 1, cmd, now, head,
                    self._key, **line.model_dump(),
                )  # fmt: skip
                heads[stream] = (version + 1, event.chain_hash())
                new.append(event)
            return new

        return self._write(sorted({rates_stream(line.pair) for line in lines}), decide)

    def void(
        self, pair: Pair, event_id: str, *, reason: str, actor: str = "api", source: str = "api"
    ) -> Recorded:
        """Void the rate `event_id` of `pair` (a corrected rate: void the wrong one, set the
        right one)."""
        stream = rates_stream(pair)

        def decide(streams: dict[str, list[DomainEvent]]) -> list[DomainEvent]:
            events = streams[stream]
            if not events:
                raise UnknownAggregate(f"exchange rates {pair[0]} {pair[1]}")
            voided = {str(getattr(e, "voided_event_id", "")) for e in events}
            target = next((e for e in events if str(e.id) == event_id.lower()), None)
            if target is None or not isinstance(target, ExchangeRateSet):
                raise InvalidEvent(f"{stream}: no rate with id {event_id}")
            if event_id.lower() in voided:
                return []  # voided already
            now = self.clock()
            cmd = InteractionFields(
                ExchangeRateVoided.event_type, stream, now, {}, actor, source, None
            )
            return [
                build(
                    ExchangeRateVoided,
                    (RATES, pair_id(pair)),
                    len(events) + 1,
                    cmd,
                    now,
                    events[-1].chain_hash(),
                    self._key,
                    voided_event_id=target.id,
                    reason=reason,
                )
            ]

        return self._write([stream], decide)

    def _write(
        self,
        streams: list[str],
        decide: Callable[[dict[str, list[DomainEvent]]], list[DomainEvent]],
    ) -> Recorded:
        def write() -> Recorded:
            found = self.store.events_of(streams)
            new = decide({s: found.get(s, []) for s in streams})
            if new:
                self.store.append(new)  # VersionConflict: read and decided again (retried)
            return Recorded(new)

        return retried(self._write_lock, write, lambda: streams)


def rate_line(values: Mapping[str, Any], where: str) -> ExchangeRate:
    """A rate to record from its four values (`from`, `to`, `rate`, `effective_from`), checked
    by the rate's own rules: InvalidEvent naming `where` and the field otherwise."""
    given = {name: values[key] for key, name in FIELDS.items()}
    for name, value in given.items():
        if isinstance(value, str):
            given[name] = value.strip().upper() if name.endswith("currency") else value.strip()
    try:
        return ExchangeRate.model_validate(given)
    except ValidationError as e:
        reason = describe(e)
        for key, name in FIELDS.items():
            reason = reason.replace(f"'{name}'", f"'{key}'")
        raise InvalidEvent(f"{where}: {reason}") from None


def read_rates_csv(path: Path) -> list[ExchangeRate]:
    """The rates of a CSV file with the columns from,to,rate,effective_from (in any order;
    other columns refused), each line checked: InvalidEvent naming FILE:LINE and the field."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if sorted(header) != sorted(CSV_COLUMNS):
                raise DealEngineError(
                    f"{path}:1: the header must be {','.join(CSV_COLUMNS)}, got {','.join(header)}"
                )
            return [rate_line(row, f"{path}:{reader.line_num}") for row in reader]
    except OSError as e:
        raise DealEngineError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DealEngineError(f"{path}: not UTF-8 at byte {e.start}") from None
