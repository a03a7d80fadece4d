"""The Deal aggregate: its state, and the pure stage rules that decide and evolve it.

The rules read the pipeline definition (`projections/pipeline.toml`): stages in order, which
are closed, which event enters which stage, and which moves are allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, NoReturn

from dealengine.domain.definitions import PipelineDefinition, Pipelines
from dealengine.domain.errors import (
    IllegalTransition,
    InvalidEvent,
    UnknownAggregate,
    undefined_pipeline,
    undefined_stage,
)
from dealengine.domain.events import (
    CHAIN_HASH,
    DealOpened,
    DomainEvent,
    LeadConverted,
    format_time,
    with_key,
)
from dealengine.domain.interaction import Interaction, build
from dealengine.domain.lead import Lead, check_convertible, is_duplicate
from dealengine.domain.streams import id_of

OPENING_TYPES = frozenset({"deal_opened", "lead_converted"})
DEAL_FIELDS = ("amount", "currency", "owner", "expected_close_on")


class Deal(NamedTuple):
    """A deal's state, folded from its events (a named tuple: immutable and cheap to make)."""

    id: str
    version: int
    stage: str
    amount: Decimal
    currency: str
    owner: str
    pipeline: str
    lead_id: str | None = None
    expected_close_on: date | None = None
    closed_from: str | None = None  # the open stage the deal was in when it closed
    idempotency_keys: frozenset[str] = frozenset()
    head: str | None = None  # the hash of the stream's last event (domain/chain.py)
    opened_at: datetime | None = None  # no later event of the deal may be dated before it

    @property
    def name(self) -> str:
        return f"deal {self.id}"


def stage_after(defn: PipelineDefinition, stage: str, event_type: str, to_stage: str | None) -> str:
    """The stage a deal is in after an event: the one rule the aggregate and the views share."""
    if event_type == "deal_opened":
        return defn.initial_stage
    if to_stage is not None:  # deal_stage_changed, deal_reopened
        return to_stage
    return defn.events.get(event_type, stage)


def deal_evolver(pipelines: Pipelines) -> Callable[[Deal | None, DomainEvent], Deal]:
    """`evolve(deal, event)` under these pipelines: the only way a deal's state changes. A
    pipeline or stage they do not define (the store was written under another model) is an
    UndefinedInModel error."""
    by_name = pipelines.by_name

    def undefined(stream: str, name: str) -> NoReturn:
        raise undefined_pipeline(f"deal {id_of(stream)}", name, by_name)

    def evolve(deal: Deal | None, event: DomainEvent) -> Deal:
        if isinstance(event, DealOpened):
            name = event.pipeline or pipelines.default.name
            defn = by_name.get(name) or undefined(event.originator_id, name)
            return Deal(
                id=id_of(event.originator_id),
                version=event.originator_version,
                stage=defn.initial_stage,
                amount=event.amount,
                currency=event.currency,
                owner=event.owner,
                pipeline=defn.name,
                lead_id=event.lead_id,
                expected_close_on=event.expected_close_on,
                idempotency_keys=with_key(frozenset(), event.idempotency_key),
                head=event.chain_hash(),
                opened_at=event.occurred_at,
            )
        assert deal is not None, f"{event.originator_id} has no deal_opened event"
        defn = pipelines[deal.pipeline]
        fields = event.__dict__  # not getattr(): a missing pydantic attribute is slow to miss
        to_stage = fields.get("to_stage")
        if to_stage is not None and to_stage not in defn.index:
            raise undefined_stage(f"deal {deal.id}", defn.name, to_stage)
        stage = stage_after(defn, deal.stage, event.event_type, to_stage)
        amount = fields.get("amount", deal.amount)
        closed_from = (
            deal.stage
            if defn.is_closed(stage) and not defn.is_closed(deal.stage)
            else deal.closed_from
        )
        keys = with_key(deal.idempotency_keys, fields["idempotency_key"])
        # tuple.__new__ in Deal's field order: what deal._replace(...) makes, at a fifth of
        # the cost (this runs once per deal event)
        return tuple.__new__(
            Deal,
            (
                deal.id,
                fields["originator_version"],
                stage,
                amount,
                deal.currency,
                deal.owner,
                deal.pipeline,
                deal.lead_id,
                deal.expected_close_on,
                closed_from,
                keys,
                fields.get(CHAIN_HASH) or event.chain_hash(),
                deal.opened_at,
            ),
        )

    return evolve


def decide_deal(
    pipelines: Pipelines,
    deal: Deal | None,
    cmd: Interaction,
    now: datetime,
    key: bytes | None = None,
) -> list[DomainEvent]:
    """The events recording `cmd` on an existing deal, or a domain error; never both (`key`:
    the audit key their hashes are made under, if any)."""
    assert cmd.event_type not in OPENING_TYPES, "openings are decided by decide_opening"
    if deal is None:
        raise UnknownAggregate(f"deal {cmd.target}")
    if is_duplicate(deal, cmd):
        return []
    fields = dict(cmd.fields)
    defn = pipelines[deal.pipeline]
    refusal = deal_refusal(defn, deal, cmd.event_type, fields)
    if refusal:
        raise IllegalTransition(deal.name, deal.stage, _attempt(cmd.event_type, fields), refusal)
    if cmd.event_type == "deal_reopened":
        fields.setdefault("to_stage", deal.closed_from or defn.initial_stage)
    if cmd.event_type in ("proposal_sent", "deal_won"):
        fields.setdefault("amount", deal.amount)
    version = deal.version + 1
    event = build(cmd.event_class, ("deal", deal.id), version, cmd, now, deal.head, key, **fields)
    if deal.opened_at is not None and event.occurred_at < deal.opened_at:
        raise IllegalTransition(
            deal.name,
            deal.stage,
            _attempt(cmd.event_type, fields),
            f"it occurred at {format_time(event.occurred_at)}, before the deal was opened "
            f"at {format_time(deal.opened_at)}",
        )
    return [event]


def _attempt(event_type: str, fields: dict[str, Any]) -> str:
    to_stage = fields.get("to_stage")
    return f"{event_type} to {to_stage!r}" if to_stage else event_type


def deal_refusal(
    defn: PipelineDefinition, deal: Deal, event_type: str, fields: dict[str, Any]
) -> str | None:
    """Why the stage rules refuse `event_type` (with these fields) on this deal (None: allowed)."""
    closed = defn.is_closed(deal.stage)
    if event_type == "deal_reopened":
        to_stage = fields.get("to_stage")
        if not closed:
            return "only a closed deal can be reopened"
        if to_stage is not None and to_stage not in defn.open_stages:
            return f"{to_stage!r} is not an open stage ({', '.join(defn.open_stages)})"
        return None
    if closed:
        return "the deal is closed; only deal_reopened can move it"
    if event_type == "deal_stage_changed":
        to_stage = fields.get("to_stage")
        if not isinstance(to_stage, str) or to_stage not in defn.open_stages:
            return (
                f"to_stage must be an open stage ({', '.join(defn.open_stages)}); "
                "close a deal with deal_won or deal_lost"
            )
        if to_stage == deal.stage:
            return "the deal is already in that stage"
        if defn.index[to_stage] < defn.index[deal.stage]:
            return (
                "backward moves are not allowed by this pipeline"
                if defn.moves.backward == "never"
                else None
            )
        return _skip_refusal(defn, deal.stage, to_stage)
    target = defn.events.get(event_type)
    if target is None or defn.is_closed(target) or target == deal.stage:
        return None  # closing is allowed from any open stage; a repeat stays in the stage
    if defn.index[target] < defn.index[deal.stage]:
        return f"a backward move to {target!r} needs deal_stage_changed with a reason"
    return _skip_refusal(defn, deal.stage, target)


def _skip_refusal(defn: PipelineDefinition, current: str, target: str) -> str | None:
    skipped = defn.open_stages[defn.open_stages.index(current) + 1 : defn.open_stages.index(target)]
    if skipped and not defn.moves.skip:
        return f"skips {', '.join(skipped)}; this pipeline does not allow skipping stages"
    return None


def opening_ids(cmd: Interaction) -> tuple[str, str | None]:
    """(deal id, lead id) of a deal_opened or lead_converted interaction."""
    if cmd.event_type == "deal_opened":
        return cmd.target, cmd.fields.get("lead_id")  # an Identifier (checked by Interaction)
    deal_id = cmd.fields.get("deal_id")
    if not isinstance(deal_id, str) or not deal_id.strip():
        raise InvalidEvent("lead_converted: field 'deal_id': missing")
    return deal_id, cmd.target


def decide_opening(
    pipelines: Pipelines,
    lead: Lead | None,
    deal: Deal | None,
    cmd: Interaction,
    now: datetime,
    key: bytes | None = None,
) -> list[DomainEvent]:
    """Open a deal, converting its lead: both events, linked both ways, or a domain error
    (`key`: the audit key their hashes are made under, if any)."""
    deal_id, lead_id = opening_ids(cmd)
    if is_duplicate(deal if cmd.event_type == "deal_opened" else lead, cmd):
        return []
    if deal is not None:
        raise IllegalTransition(deal.name, deal.stage, cmd.event_type, "the deal is already open")
    if lead_id is not None:
        if lead is None:
            raise UnknownAggregate(f"lead {lead_id}")
        check_convertible(lead, deal_id)
    fields = {k: v for k, v in cmd.fields.items() if k not in ("deal_id", "lead_id")}
    name = fields.setdefault("pipeline", pipelines.default.name)
    if not isinstance(name, str) or name not in pipelines.by_name:
        known = ", ".join(pipelines.by_name)
        raise InvalidEvent(
            f"{cmd.event_type}: field 'pipeline': unknown pipeline {name!r} ({known})"
        )
    fields.setdefault("currency", pipelines[name].currency)  # any other: converted in views
    events: list[DomainEvent] = [
        build(DealOpened, ("deal", deal_id), 1, cmd, now, None, key, lead_id=lead_id, **fields)
    ]
    if lead is not None:
        events.append(
            build(
                LeadConverted,
                ("lead", lead.id),
                lead.version + 1,
                cmd,
                now,
                lead.head,
                key,
                deal_id=deal_id,
            )
        )
    return events
