"""Stage rules, given / when / then: what a deal or lead may do next, and what is refused.

Every refusal names the aggregate, its current stage and the attempted move, and stores nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from dealengine import Engine, IllegalTransition, UnknownAggregate
from dealengine.domain.definitions import PipelineDefinition, load_pipeline

Line = tuple[str, str, dict[str, Any]]


def at(day: int) -> str:
    return f"2026-04-{day:02d}T10:00:00Z"


def given(engine: Engine, *lines: Line) -> None:
    """Record the lines a day apart, after what the engine holds (time moves forward)."""
    for day, (event_type, target, fields) in enumerate(lines, start=engine.store.position() + 1):
        engine.record(event_type, target, at(day), **fields)


OPEN_DEAL: tuple[Line, ...] = (
    ("site_visited", "L-1", {"channel": "web"}),
    ("lead_qualified", "L-1", {"by": "sdr"}),
    ("deal_opened", "D-1", {"lead_id": "L-1", "amount": "1000", "owner": "ana"}),
)
IN_NEGOTIATION = (*OPEN_DEAL, ("negotiation_started", "D-1", {}))
WON = (*OPEN_DEAL, ("deal_won", "D-1", {}))
LOST = (*OPEN_DEAL, ("proposal_sent", "D-1", {}), ("deal_lost", "D-1", {"reason": "timing"}))


def then_refused(
    engine: Engine,
    event_type: str,
    target: str,
    fields: dict[str, Any],
    aggregate: str,
    current: str,
    because: str,
) -> None:
    before = engine.store.position()
    with pytest.raises(IllegalTransition) as refused:
        engine.record(event_type, target, at(28), **fields)
    assert refused.value.aggregate == aggregate
    assert refused.value.current == current
    assert refused.value.attempted.startswith(event_type)
    assert because in refused.value.reason
    assert str(refused.value).startswith(f"{aggregate} is in {current!r}: {event_type}")
    assert engine.store.position() == before, "a refused command stored something"


@pytest.mark.parametrize(
    ("history", "event_type", "fields", "current", "because"),
    [
        (IN_NEGOTIATION, "discovery_completed", {}, "negotiation", "backward move"),
        (IN_NEGOTIATION, "proposal_sent", {"amount": "5"}, "negotiation", "backward move"),
        (WON, "proposal_sent", {}, "closed_won", "closed"),
        (
            WON,
            "deal_stage_changed",
            {"to_stage": "proposal", "reason": "x"},
            "closed_won",
            "closed",
        ),
        (WON, "deal_amount_changed", {"amount": "5", "reason": "x"}, "closed_won", "closed"),
        (WON, "deal_lost", {"reason": "x"}, "closed_won", "closed"),
        (LOST, "deal_won", {}, "closed_lost", "closed"),
        (OPEN_DEAL, "deal_reopened", {"reason": "x"}, "prospecting", "only a closed deal"),
        (
            LOST,
            "deal_reopened",
            {"reason": "x", "to_stage": "closed_won"},
            "closed_lost",
            "not an open stage",
        ),
        (
            OPEN_DEAL,
            "deal_stage_changed",
            {"to_stage": "prospecting", "reason": "x"},
            "prospecting",
            "already",
        ),
        (
            OPEN_DEAL,
            "deal_stage_changed",
            {"to_stage": "closed_won", "reason": "x"},
            "prospecting",
            "open stage",
        ),
        (
            OPEN_DEAL,
            "deal_stage_changed",
            {"to_stage": "limbo", "reason": "x"},
            "prospecting",
            "open stage",
        ),
        (
            OPEN_DEAL,
            "deal_opened",
            {"lead_id": "L-1", "amount": "1", "owner": "x"},
            "prospecting",
            "already open",
        ),
    ],
)
def test_illegal_deal_moves_are_refused(
    memory_engine: Engine,
    history: tuple[Line, ...],
    event_type: str,
    fields: dict[str, Any],
    current: str,
    because: str,
) -> None:
    given(memory_engine, *history)
    then_refused(memory_engine, event_type, "D-1", fields, "deal D-1", current, because)


@pytest.mark.parametrize(
    ("history", "event_type", "fields", "current", "because"),
    [
        (OPEN_DEAL[:2], "lead_qualified", {"by": "x"}, "qualified", "already qualified"),
        (OPEN_DEAL, "lead_qualified", {"by": "x"}, "converted", "already converted to deal D-1"),
        (OPEN_DEAL, "lead_disqualified", {"reason": "x"}, "converted", "already converted"),
        (
            (*OPEN_DEAL[:1], ("lead_disqualified", "L-1", {"reason": "spam"})),
            "lead_disqualified",
            {"reason": "x"},
            "disqualified",
            "already disqualified",
        ),
        (
            (*OPEN_DEAL[:1], ("lead_disqualified", "L-1", {"reason": "spam"})),
            "lead_converted",
            {"deal_id": "D-9", "amount": "1", "owner": "x"},
            "disqualified",
            "qualified again",
        ),
    ],
)
def test_illegal_lead_moves_are_refused(
    memory_engine: Engine,
    history: tuple[Line, ...],
    event_type: str,
    fields: dict[str, Any],
    current: str,
    because: str,
) -> None:
    given(memory_engine, *history)
    then_refused(memory_engine, event_type, "L-1", fields, "lead L-1", current, because)


def test_a_further_deal_for_a_converted_lead_is_stored_on_both_streams(
    memory_engine: Engine,
) -> None:
    given(memory_engine, *OPEN_DEAL)
    memory_engine.record("deal_opened", "D-2", at(9), lead_id="L-1", amount="5", owner="x")
    assert memory_engine.deal("D-2").lead_id == "L-1"
    lead = memory_engine.lead("L-1")
    assert (lead.status, lead.deal_id, lead.deals) == ("converted", "D-1", ("D-1", "D-2"))
    assert [e.event_type for e in memory_engine.history("L-1")][-2:] == [
        "lead_converted", "lead_converted",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("event_type", "target", "fields", "missing"),
    [
        ("proposal_sent", "D-404", {}, "deal D-404"),
        ("lead_qualified", "L-404", {"by": "x"}, "lead L-404"),
        ("lead_converted", "L-404", {"deal_id": "D-1", "amount": "1", "owner": "x"}, "lead L-404"),
        ("deal_opened", "D-1", {"lead_id": "L-404", "amount": "1", "owner": "x"}, "lead L-404"),
    ],
)
def test_unknown_leads_and_deals_are_named(
    memory_engine: Engine, event_type: str, target: str, fields: dict[str, Any], missing: str
) -> None:
    with pytest.raises(UnknownAggregate, match=f"unknown {missing}"):
        memory_engine.record(event_type, target, at(1), **fields)
    assert memory_engine.store.position() == 0


def test_forward_moves_may_skip_stages_and_backward_needs_stage_changed(
    memory_engine: Engine,
) -> None:
    given(memory_engine, *OPEN_DEAL, ("negotiation_started", "D-1", {}))
    assert memory_engine.deal("D-1").stage == "negotiation"
    given(
        memory_engine,
        ("deal_stage_changed", "D-1", {"to_stage": "discovery", "reason": "new buyer"}),
    )
    assert memory_engine.deal("D-1").stage == "discovery"
    given(
        memory_engine,
        ("proposal_sent", "D-1", {"amount": "1500"}),
        ("proposal_sent", "D-1", {"amount": "1400"}),
    )
    deal = memory_engine.deal("D-1")
    assert (deal.stage, str(deal.amount)) == ("proposal", "1400")


def test_a_reopened_deal_returns_to_the_stage_it_closed_from(memory_engine: Engine) -> None:
    given(memory_engine, *LOST, ("deal_reopened", "D-1", {"reason": "budget approved"}))
    deal = memory_engine.deal("D-1")
    assert deal.stage == "proposal"
    given(memory_engine, ("deal_won", "D-1", {"amount": "900"}))
    assert memory_engine.deal("D-1").stage == "closed_won"


def test_a_disqualified_lead_can_be_qualified_again_and_converted(memory_engine: Engine) -> None:
    given(
        memory_engine,
        ("site_visited", "L-1", {"channel": "web"}),
        ("lead_disqualified", "L-1", {"reason": "no budget"}),
        ("lead_qualified", "L-1", {"by": "sdr"}),
        ("lead_converted", "L-1", {"deal_id": "D-1", "amount": "10", "owner": "ana"}),
    )
    assert memory_engine.lead("L-1").status == "converted"


def strict_pipeline(**moves: Any) -> PipelineDefinition:
    data = load_pipeline().model_dump()
    data["moves"] = moves
    return PipelineDefinition.model_validate(data)


def test_a_pipeline_that_forbids_skipping_refuses_a_skip(clock: Any) -> None:
    with Engine.in_memory(pipeline=strict_pipeline(skip=False), clock=clock) as engine:
        given(engine, *OPEN_DEAL)
        then_refused(
            engine, "proposal_sent", "D-1", {}, "deal D-1", "prospecting", "skips discovery"
        )
        given(engine, ("discovery_completed", "D-1", {}), ("proposal_sent", "D-1", {}))
        assert engine.deal("D-1").stage == "proposal"


def test_a_pipeline_that_forbids_backward_moves_refuses_them(clock: Any) -> None:
    with Engine.in_memory(pipeline=strict_pipeline(backward="never"), clock=clock) as engine:
        given(engine, *IN_NEGOTIATION)
        then_refused(
            engine,
            "deal_stage_changed",
            "D-1",
            {"to_stage": "proposal", "reason": "x"},
            "deal D-1",
            "negotiation",
            "backward moves are not allowed",
        )
