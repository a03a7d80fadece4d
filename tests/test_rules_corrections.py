"""Corrections, given / when / then, with no database (tests/rulebook.py has the words).

A mistaken event is voided by an `event_voided` event, never rewritten. Voiding is refused
for a deal's opening and its lead's conversion, for a correction, for an event already
voided, and when the rest of the stream would break the stage rules; the state leaves the
voided event out, but its idempotency key still makes a repeat a no-op.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from dealengine.domain.corrections import decide_void
from dealengine.domain.errors import DealEngineError, InvalidEvent, UnknownEvent
from dealengine.domain.events import DealEventVoided, DomainEvent, LeadEventVoided
from dealengine.domain.replay import replay, select
from tests.rulebook import EVOLVE, NOW, PIPELINES, day, history, opened, then_refused, when

VISITED = ("site_visited", {"channel": "web"})
QUALIFIED = ("lead_qualified", {"by": "sdr-2"})
DISQUALIFIED = ("lead_disqualified", {"reason": "no budget"})
PROPOSAL = ("proposal_sent", {"amount": Decimal("10000")})


def voiding(
    stream: str, events: list[DomainEvent], event_id: str, key: str | None = None
) -> DomainEvent | None:
    """When: void `event_id` (an id, or `vN`) in `stream`, whose stored events are `events`."""
    return decide_void(
        PIPELINES,
        EVOLVE,
        stream,
        events,
        event_id,
        reason="entered on the wrong deal",
        actor="maria",
        source="cli",
        idempotency_key=key,
        now=NOW,
    )


def with_void(events: list[DomainEvent], void: DomainEvent | None) -> list[DomainEvent]:
    assert void is not None
    return [*events, void]


# --- what a void records, and what the state becomes ---------------------------------------


def test_a_mistaken_amount_change_is_voided_and_left_out_of_the_state() -> None:
    events = history(
        "deal:D-1", opened(), ("deal_amount_changed", {"amount": Decimal("1"), "reason": "typo"})
    )
    void = voiding("deal:D-1", events, "v2")
    assert isinstance(void, DealEventVoided)
    assert (void.originator_id, void.originator_version) == ("deal:D-1", 3)
    assert (void.voided_event_id, void.reason, void.actor) == (
        events[1].id,
        "entered on the wrong deal",
        "maria",
    )
    assert void.prev_hash == events[-1].chain_hash()  # the chain goes on; nothing is rewritten
    deal = replay(with_void(events, void), EVOLVE)
    assert deal is not None
    assert (deal.amount, deal.version, deal.head) == (Decimal("10000"), 3, void.chain_hash())


def test_an_event_is_named_by_its_id_as_well_as_by_its_version() -> None:
    events = history("lead:L-1", VISITED, ("newsletter_signed_up", {}))
    void = voiding("lead:L-1", events, str(events[1].id))
    assert isinstance(void, LeadEventVoided)
    assert void.voided_event_id == events[1].id


def test_a_voided_stage_move_takes_the_deal_back() -> None:
    events = history("deal:D-1", opened(), "discovery_completed", PROPOSAL)
    deal = replay(with_void(events, voiding("deal:D-1", events, "v3")), EVOLVE)
    assert deal is not None and deal.stage == "discovery"


def test_a_voided_interactions_key_still_makes_a_repeat_a_no_op() -> None:
    events = history("lead:L-1", VISITED, ("demo_requested", {"key": "form-3"}))
    lead = replay(with_void(events, voiding("lead:L-1", events, "v2")), EVOLVE)
    assert lead is not None
    assert when("demo_requested", "L-1", given=(lead,), key="form-3") == []


def test_a_repeated_void_key_records_nothing() -> None:
    events = history("lead:L-1", VISITED, ("newsletter_signed_up", {}), ("demo_requested", {}))
    first = voiding("lead:L-1", events, "v2", key="fix-1")
    assert voiding("lead:L-1", with_void(events, first), "v3", key="fix-1") is None


# --- refusals ------------------------------------------------------------------------------


def test_voiding_in_a_stream_with_no_events_is_refused() -> None:
    with pytest.raises(UnknownEvent, match=r"^lead L-404 has no events$"):
        voiding("lead:L-404", [], "v1")


def test_voiding_an_event_the_stream_does_not_have_is_refused() -> None:
    events = history("deal:D-1", opened())
    with pytest.raises(UnknownEvent, match=r"^deal D-1 has no event v9$"):
        voiding("deal:D-1", events, "v9")


def test_an_event_named_neither_by_id_nor_by_version_is_refused() -> None:
    events = history("deal:D-1", opened())
    with pytest.raises(InvalidEvent, match=r"^event_voided: 'second' is not an event id nor vN$"):
        voiding("deal:D-1", events, "second")


def test_a_deals_opening_is_not_voided() -> None:
    events = history("deal:D-1", opened(), "discovery_completed")
    with then_refused(
        "deal D-1",
        "discovery",
        "event_voided of v1 (deal_opened)",
        "close a deal opened by mistake with deal_lost",
    ):
        voiding("deal:D-1", events, "v1")


def test_a_leads_conversion_is_not_voided() -> None:
    events = history("lead:L-1", VISITED, QUALIFIED, ("lead_converted", {"deal_id": "D-1"}))
    with then_refused(
        "lead L-1",
        "converted",
        "event_voided of v3 (lead_converted)",
        "a deal's opening and its lead's conversion record one act on two streams",
    ):
        voiding("lead:L-1", events, "v3")


def test_a_correction_is_not_voided() -> None:
    events = history("lead:L-1", VISITED, ("newsletter_signed_up", {}))
    events = with_void(events, voiding("lead:L-1", events, "v2"))
    with then_refused(
        "lead L-1",
        "open",
        "event_voided of v3 (event_voided)",
        "a correction is not voided: record the event again instead",
    ):
        voiding("lead:L-1", events, "v3")


def test_an_event_is_not_voided_twice() -> None:
    events = history("lead:L-1", VISITED, ("newsletter_signed_up", {}))
    events = with_void(events, voiding("lead:L-1", events, "v2"))
    with then_refused(
        "lead L-1", "open", "event_voided of v2 (newsletter_signed_up)", "already voided by v3"
    ):
        voiding("lead:L-1", events, "v2")


def test_a_leads_only_event_is_not_voided() -> None:
    events = history("lead:L-1", VISITED)
    with then_refused(
        "lead L-1",
        "open",
        "event_voided of v1 (site_visited)",
        "without it, it would have no events",
    ):
        voiding("lead:L-1", events, "v1")


def test_a_leads_first_touch_is_not_voided_when_a_qualification_would_start_the_lead() -> None:
    events = history("lead:L-1", VISITED, QUALIFIED)
    with then_refused(
        "lead L-1",
        "qualified",
        "event_voided of v1 (site_visited)",
        "without it, v2 (lead_qualified) would start the lead",
    ):
        voiding("lead:L-1", events, "v1")


def test_a_disqualification_is_not_voided_when_a_requalification_follows() -> None:
    events = history("lead:L-1", VISITED, QUALIFIED, DISQUALIFIED, QUALIFIED)
    with then_refused(
        "lead L-1",
        "qualified",
        "event_voided of v3 (lead_disqualified)",
        "without it, v4 (lead_qualified) would be refused in 'qualified': already qualified",
    ):
        voiding("lead:L-1", events, "v3")


def test_a_requalification_is_not_voided_when_a_conversion_follows() -> None:
    events = history(
        "lead:L-1", VISITED, DISQUALIFIED, QUALIFIED, ("lead_converted", {"deal_id": "D-1"})
    )
    with then_refused(
        "lead L-1",
        "converted",
        "event_voided of v3 (lead_qualified)",
        "without it, v4 (lead_converted) would be refused in 'disqualified': "
        "a disqualified lead must be qualified again first",
    ):
        voiding("lead:L-1", events, "v3")


def test_a_close_is_not_voided_when_a_reopening_follows() -> None:
    events = history(
        "deal:D-1",
        opened(),
        PROPOSAL,
        ("deal_won", {"amount": Decimal("1")}),
        ("deal_reopened", {"reason": "x", "to_stage": "proposal"}),
    )
    with then_refused(
        "deal D-1",
        "proposal",
        "event_voided of v3 (deal_won)",
        "without it, v4 (deal_reopened) would be refused in 'proposal': "
        "only a closed deal can be reopened",
    ):
        voiding("deal:D-1", events, "v3")


def test_a_reopening_is_not_voided_when_the_deal_moved_on_after_it() -> None:
    events = history(
        "deal:D-1",
        opened(),
        ("deal_lost", {"reason": "timing"}),
        ("deal_reopened", {"reason": "back", "to_stage": "prospecting"}),
        "discovery_completed",
    )
    with then_refused(
        "deal D-1",
        "discovery",
        "event_voided of v3 (deal_reopened)",
        "without it, v4 (discovery_completed) would be refused in 'closed_lost': "
        "the deal is closed; only deal_reopened can move it",
    ):
        voiding("deal:D-1", events, "v3")


def test_a_forward_move_is_not_voided_when_a_stage_change_back_to_it_follows() -> None:
    events = history(
        "deal:D-1",
        opened(),
        "negotiation_started",
        ("deal_stage_changed", {"to_stage": "prospecting", "reason": "new buyer"}),
    )
    with then_refused(
        "deal D-1",
        "prospecting",
        "event_voided of v2 (negotiation_started)",
        "without it, v3 (deal_stage_changed) would be refused in 'prospecting': "
        "the deal is already in that stage",
    ):
        voiding("deal:D-1", events, "v2")


def test_a_stage_change_is_not_voided_when_the_next_event_would_be_a_backward_move() -> None:
    events = history(
        "deal:D-1",
        opened(),
        "negotiation_started",
        ("deal_stage_changed", {"to_stage": "discovery", "reason": "new buyer"}),
        PROPOSAL,
    )
    with then_refused(
        "deal D-1",
        "proposal",
        "event_voided of v3 (deal_stage_changed)",
        "without it, v4 (proposal_sent) would be refused in 'negotiation': "
        "a backward move to 'proposal' needs deal_stage_changed with a reason",
    ):
        voiding("deal:D-1", events, "v3")


# --- replays: which events count (dealengine.domain.replay) ---------------------------------


def test_as_of_a_moment_before_its_opening_a_deal_did_not_exist() -> None:
    events = history("deal:D-1", opened(), PROPOSAL)
    assert replay(select(events, as_of=day(1) - (day(2) - day(1))), EVOLVE) is None
    as_of_day_one = replay(select(events, as_of=day(1)), EVOLVE)
    assert as_of_day_one is not None and as_of_day_one.stage == "prospecting"


def test_known_at_a_moment_before_a_correction_the_mistake_still_shows() -> None:
    events = history("deal:D-1", opened(), PROPOSAL)
    void = voiding("deal:D-1", events, "v2")  # recorded at NOW, 1 June
    stream = with_void(events, void)
    before = replay(select(stream, known_at=day(30)), EVOLVE)
    now = replay(select(stream), EVOLVE)
    assert before is not None and now is not None
    assert (before.stage, now.stage) == ("proposal", "prospecting")


def test_up_to_a_version_only_the_first_events_count() -> None:
    events = history("deal:D-1", opened(), "discovery_completed", PROPOSAL)
    deal = replay(select(events, version=2), EVOLVE)
    assert deal is not None and (deal.version, deal.stage) == (2, "discovery")


def test_a_negative_version_is_refused() -> None:
    with pytest.raises(DealEngineError, match=r"^version: must be 0 or more, got -1$"):
        select(history("deal:D-1", opened()), version=-1)


def test_a_moment_that_is_not_a_date_is_refused_naming_the_option() -> None:
    with pytest.raises(DealEngineError, match=r"^as_of: not a date or time: 'last week'"):
        select(history("deal:D-1", opened()), as_of="last week")
