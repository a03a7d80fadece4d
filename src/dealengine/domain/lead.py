"""The Lead aggregate: its state, and the pure rules that decide and evolve it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple, cast

from dealengine.domain.errors import IllegalTransition, UnknownAggregate
from dealengine.domain.events import (
    CHAIN_HASH,
    LEAD_STATUS_CHANGES,
    DomainEvent,
    LeadConverted,
    LeadForgotten,
    with_key,
)
from dealengine.domain.interaction import Interaction, InteractionFields, build
from dealengine.domain.streams import id_of

LeadStatus = Literal["open", "qualified", "disqualified", "converted"]


class Lead(NamedTuple):
    """A lead's state, folded from its events (a named tuple: immutable and cheap to make)."""

    id: str
    version: int
    status: LeadStatus = "open"
    deal_id: str | None = None  # the deal it converted to first
    idempotency_keys: frozenset[str] = frozenset()
    head: str | None = None  # the hash of the stream's last event (domain/chain.py)
    deals: tuple[str, ...] = ()  # every deal opened from it, in order: the first, renewals, ...

    @property
    def name(self) -> str:
        return f"lead {self.id}"


def evolve_lead(lead: Lead | None, event: DomainEvent) -> Lead:
    """The lead after `event`: the only way a lead's state changes."""
    fields = event.__dict__
    key = fields["idempotency_key"]
    deals: tuple[str, ...]
    if lead is None:
        lead_id, status, deal_id = id_of(fields["originator_id"]), "open", None
        keys, deals = with_key(frozenset(), key), ()
    else:
        lead_id, status, deal_id, deals = lead.id, lead.status, lead.deal_id, lead.deals
        keys = with_key(lead.idempotency_keys, key)
    match event.event_type:
        case "lead_qualified":
            status = "qualified"
        case "lead_disqualified":
            status = "disqualified"
        case "lead_converted":  # the first converts it; each records a deal opened from it
            opened = cast(LeadConverted, event).deal_id
            status, deal_id, deals = "converted", deal_id or opened, (*deals, opened)
    head = fields.get(CHAIN_HASH) or event.chain_hash()
    # tuple.__new__: what Lead(...) does, one Python call less (this runs once per event)
    return tuple.__new__(
        Lead, (lead_id, fields["originator_version"], status, deal_id, keys, head, deals)
    )


def is_duplicate(state: Lead | object | None, cmd: Interaction) -> bool:
    keys: frozenset[str] = getattr(state, "idempotency_keys", frozenset())
    return cmd.idempotency_key is not None and cmd.idempotency_key in keys


def check_convertible(lead: Lead, deal_id: str) -> None:
    """A deal may be opened from an open, qualified or converted lead (a converted one: a
    further deal, a renewal or an upsell, recorded by another `lead_converted`)."""
    attempted = f"lead_converted to deal {deal_id}"
    if lead.status == "disqualified":
        raise IllegalTransition(
            lead.name, lead.status, attempted, "a disqualified lead must be qualified again first"
        )


def decide_lead(
    lead: Lead | None, cmd: Interaction, now: datetime, key: bytes | None = None
) -> list[DomainEvent]:
    """The events recording `cmd` on a lead (conversion is decided with the deal, in deal.py);
    `key`: the audit key their hashes are made under, if any."""
    assert cmd.event_type != "lead_converted", "conversion is decided by deal.decide_opening"
    if is_duplicate(lead, cmd):
        return []
    if lead is None:
        if cmd.event_type in LEAD_STATUS_CHANGES:
            raise UnknownAggregate(f"lead {cmd.target}")
        version = 1
    else:
        version = lead.version + 1
        refusal = lead_refusal(lead, cmd.event_type)
        if refusal:
            raise IllegalTransition(lead.name, lead.status, cmd.event_type, refusal)
    head = lead.head if lead is not None else None
    return [
        build(cmd.event_class, ("lead", cmd.target), version, cmd, now, head, key, **cmd.fields)
    ]


def lead_refusal(lead: Lead, event_type: str) -> str | None:
    """Why the status rules refuse `event_type` on this lead (None: allowed)."""
    match (event_type, lead.status):
        case ("lead_qualified", "qualified"):
            return "already qualified"
        case ("lead_qualified" | "lead_disqualified", "converted"):
            return f"already converted to deal {lead.deal_id}"
        case ("lead_disqualified", "disqualified"):
            return "already disqualified"
    return None


def decide_forget(
    lead: Lead | None, cmd: InteractionFields, reason: str, key: bytes | None = None
) -> LeadForgotten:
    """The `lead_forgotten` recording that the lead's personal data was erased (`cmd`: who,
    when; `reason`: why). Any lead may be forgotten, again too; its status stays."""
    if lead is None:
        raise UnknownAggregate(f"lead {cmd.target}")
    version, at = lead.version + 1, cmd.occurred_at
    return build(
        LeadForgotten, ("lead", cmd.target), version, cmd, at, lead.head, key, reason=reason
    )
