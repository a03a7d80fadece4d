"""The event catalogue: one frozen pydantic model per interaction, all sharing one envelope.

Events are facts. They are validated once, when they are created at the write boundary, and
stored as JSON with times in one fixed-width UTC format, so that comparing two stored
timestamps as strings orders them in time (the projections rely on this).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, TypeVar, cast
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dealengine.domain.chain import event_hash, split_own_hash, topic_of, with_own_hash
from dealengine.domain.personal import PERSONAL
from dealengine.domain.streams import StreamKind
from dealengine.domain.values import (
    TIME_FORMAT,
    Amount,
    Currency,
    Identifier,
    Text,
    UtcDatetime,
    check_moment,
    format_time,
    format_utc,
)

__all__ = [
    "TIME_FORMAT", "Amount", "Currency", "Identifier", "Text", "UtcDatetime", "format_time",
    "format_utc",
]  # fmt: skip


def with_key(keys: frozenset[str], key: str | None) -> frozenset[str]:
    """A lead's or deal's idempotency keys after an event carrying `key` (None: none)."""
    return keys if key is None else keys | {key}


def parse_moment(text: str) -> datetime:
    """A moment given by a person: a date means the end of that day in UTC; a time without an
    offset is UTC. `2026-03-31` -> 2026-03-31T23:59:59.999999Z."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"not a date or time: {text!r} (use 2026-03-31 or 2026-03-31T18:00:00Z)"
        raise ValueError(msg) from None
    return check_moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


ENVELOPE_FIELDS = (
    "originator_id",
    "originator_version",
    "id",
    "occurred_at",
    "recorded_at",
    "actor",
    "source",
    "idempotency_key",
    "prev_hash",
)
STORED_OUTSIDE_JSON = {"originator_id", "originator_version"}  # the store's own columns
# Where an event keeps its stored JSON and its hash once known: keys of its instance __dict__,
# beside the fields (pydantic ignores keys that are not fields there, in equality too).
# functools.cached_property would do the same, but takes a lock on each first use in 3.11.
STORED_JSON, CHAIN_HASH = "_stored_json", "_chain_hash"


class DomainEvent(BaseModel):
    """The envelope every event carries. `originator_id` is `lead:<id>` or `deal:<id>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    aggregate: ClassVar[StreamKind]
    class_version: ClassVar[int] = 1  # raised by one per change, with an upcaster: see upcast

    originator_id: str
    originator_version: int = Field(ge=1)
    id: UUID
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime
    actor: Text
    source: Text
    idempotency_key: Text | None = None
    prev_hash: str | None = None  # hash of the stream's previous event (domain/chain.py)
    # (its own hash is not a field: it is written after the fields, see domain/chain.py)

    def stored_json(self) -> bytes:
        """The JSON the store holds for this event, its own hash last (domain/chain.py),
        serialized once: by `build` for a new event (its hash is needed at decide time, the
        mapper reuses both), or the bytes read from the store for a stored one."""
        cached: bytes | None = self.__dict__.get(STORED_JSON)
        if cached is None:
            state = dump_stored_json(self)
            own = event_hash(
                self.originator_id, self.originator_version, topic_of(type(self)), state
            )
            cached = self.__dict__[STORED_JSON] = with_own_hash(state, own)
            self.__dict__[CHAIN_HASH] = own
        return cached

    def remember_stored_json(self, state: bytes) -> None:
        """Keep the stored JSON of an event read back from the store."""
        self.__dict__[STORED_JSON] = state

    def chain_hash(self) -> str:
        """This event's hash in its stream's chain (the next event's `prev_hash`): the own hash
        it stores, or for an event stored without one, the hash of its JSON."""
        cached: str | None = self.__dict__.get(CHAIN_HASH)
        if cached is None:
            state, own = split_own_hash(self.stored_json())
            if own is None:
                topic = topic_of(type(self))
                own = event_hash(self.originator_id, self.originator_version, topic, state)
            cached = self.__dict__[CHAIN_HASH] = own
        return cached

    @classmethod
    def payload_fields(cls) -> list[str]:
        """The fields an interaction of this type carries beside the envelope."""
        return [name for name in cls.model_fields if name not in ENVELOPE_FIELDS]

    def payload(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.payload_fields()}


def _decimal_as_text(value: object) -> str:
    if type(value) is Decimal:
        return str(value)
    raise TypeError  # orjson reports it; dump_stored_json falls back to pydantic


def dump_stored_json(event: DomainEvent) -> bytes:
    """The stored JSON of a validated event: byte for byte what pydantic's serializer writes
    (`to_json(event, exclude=STORED_OUTSIDE_JSON)`: fields in order, the envelope's two times
    by `format_time`, decimals as strings, UUIDs and dates in ISO form), written by orjson
    from the event's fields, several times faster. A value orjson cannot write goes through
    pydantic, so what fails fails as before (tests/test_events.py compares the two for every
    event type: a new time field must be added here)."""
    data = event.__dict__.copy()
    del data["originator_id"], data["originator_version"]  # STORED_OUTSIDE_JSON
    data["occurred_at"] = format_utc(data["occurred_at"])  # one per command: no cache
    data["recorded_at"] = format_time(data["recorded_at"])  # one per batch: cached
    version = type(event).class_version
    if version != 1:  # version 1 is stored without a marker, as before versions existed
        data[VERSION_KEY] = version
    try:
        return orjson.dumps(data, default=_decimal_as_text)
    except orjson.JSONEncodeError:
        return type(event).__pydantic_serializer__.to_json(event, exclude=STORED_OUTSIDE_JSON)


VERSION_KEY = "class_version"  # eventsourcing's name for it


def upcast(cls: type[DomainEvent], data: dict[str, Any]) -> dict[str, Any]:
    """The stored JSON `data` of an event of `cls` brought to the class's version: each
    upcaster from the stored version on, `cls.upcast_v1_v2(data)` then `upcast_v2_v3`, ...
    (eventsourcing's rule: one static method per version step, beside the event, changing
    `data` in place). The stored bytes are not touched: the hash chain covers them."""
    version = data.pop(VERSION_KEY, 1)
    while version < cls.class_version:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(data)
        version += 1
    return data


def check_upcasters(cls: type[DomainEvent]) -> None:
    """ValueError unless `cls` has an upcaster for each step up to its version."""
    for version in range(1, cls.class_version):
        name = f"upcast_v{version}_v{version + 1}"
        if not callable(getattr(cls, name, None)):
            msg = f"{cls.event_type} is at version {cls.class_version} but has no {name}"
            raise ValueError(msg)


# The errors of rules tightened since events were first stored (domain/values.py): an event
# stored before, which breaks one of them, is read back as it was written (`as_stored`).
TIGHTENED = frozenset({"string_pattern_mismatch", "less_than", "decimal_max_places"})
_READ_AS: dict[str, Any] = {
    "id": UUID,
    "voided_event_id": UUID,
    "occurred_at": datetime.fromisoformat,
    "recorded_at": datetime.fromisoformat,
    "amount": Decimal,
    "expected_close_on": date.fromisoformat,
}


E = TypeVar("E", bound=DomainEvent)


def as_stored(cls: type[E], data: dict[str, Any]) -> E:
    """An event from its stored JSON, not validated again: its values typed as validation
    types them (for an event stored before a rule it breaks was written)."""
    read = _READ_AS
    values = {k: read[k](v) if k in read and v is not None else v for k, v in data.items()}
    return cast(E, cls.model_construct(**values))


class LeadEvent(DomainEvent):
    aggregate: ClassVar[StreamKind] = "lead"


class DealEvent(DomainEvent):
    aggregate: ClassVar[StreamKind] = "deal"
    moves_to_stage: ClassVar[str | None] = None  # a declared interaction's `stage`


# --- on a Lead -------------------------------------------------------------------------------


class AdViewed(LeadEvent):
    event_type: ClassVar[str] = "ad_viewed"
    channel: Identifier
    campaign: Text | None = None


class SiteVisited(LeadEvent):
    event_type: ClassVar[str] = "site_visited"
    channel: Identifier
    page: Text | None = None


class NewsletterSignedUp(LeadEvent):
    event_type: ClassVar[str] = "newsletter_signed_up"


class ContentDownloaded(LeadEvent):
    event_type: ClassVar[str] = "content_downloaded"
    asset: Text


class WebinarAttended(LeadEvent):
    event_type: ClassVar[str] = "webinar_attended"
    webinar: Text


class DemoRequested(LeadEvent):
    event_type: ClassVar[str] = "demo_requested"


class LeadQualified(LeadEvent):
    event_type: ClassVar[str] = "lead_qualified"
    by: Text


class LeadDisqualified(LeadEvent):
    event_type: ClassVar[str] = "lead_disqualified"
    reason: Text


class LeadConverted(LeadEvent):
    event_type: ClassVar[str] = "lead_converted"
    deal_id: Identifier


class LeadIdentified(LeadEvent):
    """Who is behind a lead: personal data, sealed with the lead's key (domain/personal.py).
    Like any interaction but a status change it may be a lead's first event; it counts in
    the funnel only where a step names it."""

    event_type: ClassVar[str] = "lead_identified"
    email: Annotated[Text | None, PERSONAL] = None
    name: Annotated[Text | None, PERSONAL] = None
    phone: Annotated[Text | None, PERSONAL] = None
    company: Annotated[Text | None, PERSONAL] = None

    @model_validator(mode="after")
    def _names_someone(self) -> LeadIdentified:
        if all(getattr(self, f) is None for f in IDENTITY_FIELDS):
            named = [f"'{f}'" for f in IDENTITY_FIELDS]
            raise ValueError(f"field {', '.join(named[:-1])} or {named[-1]}: give one at least")
        return self


IDENTITY_FIELDS = ("email", "name", "phone", "company")


# --- on a Deal -------------------------------------------------------------------------------


class DealOpened(DealEvent):
    event_type: ClassVar[str] = "deal_opened"
    lead_id: Identifier | None = None
    amount: Amount
    currency: Currency
    owner: Text
    expected_close_on: date | None = None
    pipeline: Identifier | None = None  # None in events stored before pipelines: the default
    segment: Text | None = None  # the customer's business segment, as the source names it
    lead_type: Text | None = None


class DiscoveryCompleted(DealEvent):
    event_type: ClassVar[str] = "discovery_completed"


class ProposalSent(DealEvent):
    event_type: ClassVar[str] = "proposal_sent"
    amount: Amount


class NegotiationStarted(DealEvent):
    event_type: ClassVar[str] = "negotiation_started"


class DealAmountChanged(DealEvent):
    event_type: ClassVar[str] = "deal_amount_changed"
    amount: Amount
    reason: Text


class DealStageChanged(DealEvent):
    event_type: ClassVar[str] = "deal_stage_changed"
    to_stage: Identifier
    reason: Text


class DealWon(DealEvent):
    event_type: ClassVar[str] = "deal_won"
    amount: Amount


class DealLost(DealEvent):
    event_type: ClassVar[str] = "deal_lost"
    reason: Text


class DealReopened(DealEvent):
    event_type: ClassVar[str] = "deal_reopened"
    reason: Text
    to_stage: Identifier  # the open stage the deal returns to (the one it was closed from)


LEAD_EVENTS: tuple[type[LeadEvent], ...] = (
    AdViewed,
    SiteVisited,
    NewsletterSignedUp,
    ContentDownloaded,
    WebinarAttended,
    DemoRequested,
    LeadQualified,
    LeadDisqualified,
    LeadConverted,
    LeadIdentified,
)
DEAL_EVENTS: tuple[type[DealEvent], ...] = (
    DealOpened,
    DiscoveryCompleted,
    ProposalSent,
    NegotiationStarted,
    DealAmountChanged,
    DealStageChanged,
    DealWon,
    DealLost,
    DealReopened,
)
EVENT_TYPES: dict[str, type[DomainEvent]] = {c.event_type: c for c in LEAD_EVENTS + DEAL_EVENTS}


# --- corrections (not interactions: recorded by Engine.void, never ingested) -----------------


class EventVoided(DomainEvent):
    """A correction: the event `voided_event_id` of the same stream is taken as never having
    happened. Nothing is rewritten: both stay in the stream, and the state, the as-of replays
    and the views leave the voided event out (dealengine.domain.replay has the rule)."""

    event_type: ClassVar[str] = "event_voided"
    voided_event_id: UUID
    reason: Text


class LeadEventVoided(EventVoided):
    aggregate: ClassVar[StreamKind] = "lead"


class DealEventVoided(EventVoided):
    aggregate: ClassVar[StreamKind] = "deal"


VOID_EVENTS: tuple[type[EventVoided], ...] = (LeadEventVoided, DealEventVoided)


class LeadForgotten(LeadEvent):
    """An erasure (recorded by Engine.forget, never ingested): the lead's data key was
    destroyed, so its personal fields read `[erased]` from then on; who asked, when and why.
    The lead's status and its place in the funnel and pipeline do not change."""

    event_type: ClassVar[str] = "lead_forgotten"
    reason: Text


# The lead interactions that change its status; every other one (built-in or declared) is a
# touch, which may be a lead's first event (it creates the lead when it is new).
LEAD_STATUS_CHANGES = frozenset({"lead_qualified", "lead_disqualified", "lead_converted"})
# The built-in touches.
LEAD_TOUCHES = frozenset(
    {
        "ad_viewed",
        "site_visited",
        "newsletter_signed_up",
        "content_downloaded",
        "webinar_attended",
        "demo_requested",
    }
)
