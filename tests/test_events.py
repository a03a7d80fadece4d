"""Every event type round-trips through both stores, envelope and fields intact."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from dealengine import Engine, InvalidEvent
from dealengine.domain.events import EVENT_TYPES, DomainEvent

from .conftest import Clock

# (type, target id, occurred_at, fields): a history that uses every event type once or more.
SCRIPT: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "ad_viewed",
        "L-1",
        "2026-03-01T09:00:00+02:00",
        {"channel": "paid_search", "campaign": "spring"},
    ),
    (
        "site_visited",
        "L-1",
        "2026-03-01T08:30:00Z",
        {"channel": "organic_search", "page": "/pricing"},
    ),
    ("newsletter_signed_up", "L-1", "2026-03-02T10:00:00Z", {}),
    ("content_downloaded", "L-1", "2026-03-03T10:00:00Z", {"asset": "ebook"}),
    ("webinar_attended", "L-1", "2026-03-04T10:00:00Z", {"webinar": "pipeline-101"}),
    ("demo_requested", "L-1", "2026-03-05T10:00:00Z", {}),
    ("lead_disqualified", "L-1", "2026-03-06T10:00:00Z", {"reason": "no budget"}),
    ("lead_qualified", "L-1", "2026-03-07T10:00:00Z", {"by": "sdr-1"}),
    (
        "lead_converted",
        "L-1",
        "2026-03-08T10:00:00Z",
        {
            "deal_id": "D-1",
            "amount": "12000.50",
            "currency": "USD",
            "owner": "ana",
            "expected_close_on": "2026-06-30",
        },
    ),
    ("discovery_completed", "D-1", "2026-03-09T10:00:00Z", {}),
    ("proposal_sent", "D-1", "2026-03-10T10:00:00Z", {"amount": "15000"}),
    ("negotiation_started", "D-1", "2026-03-11T10:00:00Z", {}),
    (
        "deal_amount_changed",
        "D-1",
        "2026-03-12T10:00:00Z",
        {"amount": "14000", "reason": "discount"},
    ),
    (
        "deal_stage_changed",
        "D-1",
        "2026-03-13T10:00:00Z",
        {"to_stage": "proposal", "reason": "repricing"},
    ),
    ("deal_lost", "D-1", "2026-03-14T10:00:00Z", {"reason": "no decision"}),
    ("deal_reopened", "D-1", "2026-03-15T10:00:00Z", {"reason": "budget approved"}),
    ("deal_won", "D-1", "2026-03-16T10:00:00Z", {"amount": "13500"}),
    ("site_visited", "L-2", "2026-03-01T10:00:00Z", {"channel": "referral"}),
    (
        "lead_identified",
        "L-2",
        "2026-03-01T10:01:00Z",
        {"email": "bo@example.com", "company": "Acme"},
    ),
    ("lead_qualified", "L-2", "2026-03-02T10:00:00Z", {"by": "sdr-2"}),
    (
        "deal_opened",
        "D-2",
        "2026-03-03T10:00:00Z",
        {"lead_id": "L-2", "amount": "900", "owner": "bruno"},
    ),
]


def record_script(engine: Engine, clock: Clock) -> list[DomainEvent]:
    recorded: list[DomainEvent] = []
    for n, (event_type, target, at, fields) in enumerate(SCRIPT):
        clock.advance(minutes=1)
        result = engine.record(
            event_type,
            target,
            at,
            actor=f"user-{n}",
            source="test",
            idempotency_key=f"key-{n}",
            **fields,
        )
        recorded.extend(result.events)
    return recorded


def test_the_script_covers_every_event_type() -> None:
    assert {t for t, *_ in SCRIPT} | {"deal_opened"} == set(EVENT_TYPES)


def test_every_event_type_round_trips_through_the_store(engine: Engine, clock: Clock) -> None:
    recorded = record_script(engine, clock)
    stored = (
        engine.history("lead:L-1")
        + engine.history("D-1")
        + engine.history("L-2")
        + engine.history("D-2")
    )
    # recorded: as stored, personal values sealed; the history shows them in plaintext
    identified = next(e for e in stored if e.event_type == "lead_identified")
    assert identified.payload() == {
        "email": "bo@example.com",
        "name": None,
        "phone": None,
        "company": "Acme",
    }
    sealed = next(e for e in recorded if e.event_type == "lead_identified")
    assert sealed.email is not None and sealed.email.startswith("enc:v1:")
    plain = {"email": "bo@example.com", "company": "Acme"}
    recorded = [e.model_copy(update=plain) if e is sealed else e for e in recorded]
    assert sorted(stored, key=lambda e: e.id) == sorted(recorded, key=lambda e: e.id)
    assert {e.event_type for e in stored} == set(EVENT_TYPES)
    assert len({e.id for e in stored}) == len(stored)

    lead_events = engine.history("L-1")
    assert [e.originator_version for e in lead_events] == list(range(1, 10))
    first = lead_events[0]
    assert first.occurred_at == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)  # +02:00 stored as UTC
    assert first.recorded_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    assert (first.actor, first.source, first.idempotency_key) == ("user-0", "test", "key-0")
    assert first.payload() == {"channel": "paid_search", "campaign": "spring"}

    deal_events = {e.event_type: e for e in engine.history("D-1")}
    opened = deal_events["deal_opened"]
    assert opened.payload() == {
        "lead_id": "L-1",
        "amount": Decimal("12000.50"),
        "currency": "USD",
        "owner": "ana",
        "expected_close_on": date(2026, 6, 30),
        "pipeline": "new_business",  # the default, recorded explicitly
        "segment": None,
        "lead_type": None,
    }
    assert deal_events["deal_reopened"].payload() == {
        "reason": "budget approved",
        "to_stage": "proposal",
    }
    assert deal_events["deal_won"].payload() == {"amount": Decimal("13500")}
    assert isinstance(deal_events["proposal_sent"].payload()["amount"], Decimal)


def test_conversion_links_lead_and_deal_both_ways(engine: Engine, clock: Clock) -> None:
    record_script(engine, clock)
    assert engine.lead("L-1").deal_id == "D-1"
    assert engine.deal("D-1").lead_id == "L-1"
    assert engine.lead("L-2").deal_id == "D-2"
    assert engine.deal("D-2").lead_id == "L-2"
    assert engine.deal("D-1").stage == "closed_won"
    assert engine.deal("D-1").amount == Decimal("13500")


def test_stored_times_are_fixed_width_utc(memory_engine: Engine, clock: Clock) -> None:
    record_script(memory_engine, clock)
    for _, _, _, state in memory_engine.store.stream():
        data = orjson.loads(state)
        for key in ("occurred_at", "recorded_at"):
            assert len(data[key]) == 27 and data[key].endswith("Z"), data[key]


@pytest.mark.parametrize(
    ("event_type", "target", "at", "fields", "message"),
    [
        ("ad_viewed", "L-9", "2026-03-01T10:00:00", {"channel": "x"}, "occurred_at"),
        ("ad_viewed", "L-9", "yesterday", {"channel": "x"}, "occurred_at"),
        ("ad_viewed", "L-9", "2026-03-01T10:00:00Z", {}, "field 'channel': missing"),
        ("ad_viewed", "L-9", "2026-03-01T10:00:00Z", {"channel": "x", "colour": "red"}, "'colour'"),
        ("content_downloaded", "L-9", "2026-03-01T10:00:00Z", {"asset": 7}, "asset"),
    ],
)
def test_ill_typed_interactions_name_the_field(
    memory_engine: Engine,
    event_type: str,
    target: str,
    at: str,
    fields: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InvalidEvent, match=message):
        memory_engine.record(event_type, target, at, **fields)
    assert memory_engine.store.position() == 0


def test_money_is_decimal_never_float(memory_engine: Engine) -> None:
    memory_engine.record("site_visited", "L-1", "2026-03-01T10:00:00Z", channel="web")
    memory_engine.record("lead_qualified", "L-1", "2026-03-02T10:00:00Z", by="me")
    with pytest.raises(InvalidEvent, match="amount"):
        memory_engine.record(
            "deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="NaN", owner="x"
        )
    with pytest.raises(InvalidEvent, match="currency"):
        memory_engine.record(
            "deal_opened",
            "D-1",
            "2026-03-03T10:00:00Z",
            lead_id="L-1",
            amount="10",
            currency="EURO",
            owner="x",
        )
    memory_engine.record(
        "deal_opened", "D-1", "2026-03-03T10:00:00Z", lead_id="L-1", amount="0.10", owner="x"
    )
    memory_engine.record(
        "deal_amount_changed", "D-1", "2026-03-04T10:00:00Z", amount="0.20", reason="r"
    )
    assert memory_engine.deal("D-1").amount == Decimal("0.20")


def test_the_fast_time_format_equals_strftime() -> None:
    from datetime import timedelta, timezone

    from dealengine.domain.events import TIME_FORMAT, format_time, format_utc

    for value in (
        datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1999, 12, 31, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=14))),
    ):
        assert format_time(value) == value.astimezone(UTC).strftime(TIME_FORMAT)
        assert format_utc(value) == value.astimezone(UTC).strftime(TIME_FORMAT)
    # fixed width before year 1000 too (strftime's %Y does not pad there, isoformat does)
    assert format_utc(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05.000000Z"


def test_the_fast_stored_json_equals_pydantics(memory_engine: Engine, clock: Clock) -> None:
    """dump_stored_json (orjson) writes what pydantic's serializer writes, byte for byte; the
    stored JSON is that with the event's own hash, over it, written last (domain/chain.py)."""
    from uuid import uuid4

    from dealengine.domain.chain import event_hash, split_own_hash, topic_of
    from dealengine.domain.events import (
        STORED_OUTSIDE_JSON,
        VOID_EVENTS,
        dump_stored_json,
    )

    recorded = record_script(memory_engine, clock)
    odd = {"channel": "c\u00e9", "campaign": 'q"\\\u2028\x85\U0001f389 </x>'}
    events: list[DomainEvent] = [
        *recorded,
        type(recorded[0]).model_validate(recorded[0].model_dump() | odd),
    ]
    for amount in ("1E+3", "0.00", "1e-4", "999999999999999.9999", 12.5):
        opened = next(e for e in recorded if e.event_type == "deal_opened")
        events.append(type(opened).model_validate(opened.model_dump() | {"amount": amount}))
    for cls in VOID_EVENTS:
        events.append(
            cls.model_validate(
                recorded[0].model_dump(include=set(DomainEvent.model_fields))
                | {"voided_event_id": uuid4(), "reason": "typo"}
            )
        )
    assert {type(e) for e in events} >= {*EVENT_TYPES.values(), *VOID_EVENTS}
    for event in events:
        fresh = type(event).model_validate(event.model_dump())  # no stored JSON remembered
        expected = type(event).__pydantic_serializer__.to_json(fresh, exclude=STORED_OUTSIDE_JSON)
        assert dump_stored_json(fresh) == expected
        own = event_hash(
            fresh.originator_id, fresh.originator_version, topic_of(type(fresh)), expected
        )
        assert fresh.stored_json() == expected[:-1] + b',"hash":"%s"}' % own.encode()
        assert split_own_hash(fresh.stored_json()) == (expected, own) and fresh.chain_hash() == own


def test_the_batch_mapper_equals_the_mapper(memory_engine: Engine, clock: Clock) -> None:
    """to_stored_events (the write path's batch) makes what to_stored_event makes, per event."""
    from dealengine.store.mapper import PydanticMapper

    recorded = record_script(memory_engine, clock)
    mapper = memory_engine.store.app.mapper
    assert isinstance(mapper, PydanticMapper)
    batch = mapper.to_stored_events(recorded)
    assert batch == [mapper.to_stored_event(e) for e in recorded]
    assert [vars(s) for s in batch] == [vars(mapper.to_stored_event(e)) for e in recorded]


def test_an_event_class_is_stored_under_eventsourcings_own_topic() -> None:
    """domain.chain.topic_of makes the topic without the store: it must be the one
    eventsourcing gives the class (a stored event's topic resolves back to its class)."""
    from eventsourcing.utils import get_topic, resolve_topic

    from dealengine.domain.chain import topic_of
    from dealengine.domain.events import EVENT_TYPES, VOID_EVENTS

    for cls in [*EVENT_TYPES.values(), *VOID_EVENTS]:
        assert topic_of(cls) == get_topic(cls)
        assert resolve_topic(topic_of(cls)) is cls
