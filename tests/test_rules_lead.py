"""The lead's rules, given / when / then, with no database (tests/rulebook.py has the words).

Any lead interaction (ad, visit, signup, download, webinar, demo request) may create a lead;
qualifying, disqualifying and converting need an existing one; a converted lead stays
converted, and may open further deals; an idempotency key already recorded makes a repeat a no-op.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dealengine.domain.definitions import load_funnel
from dealengine.domain.errors import (
    InvalidDefinition,
    InvalidEvent,
    UnknownAggregate,
    UnknownEventType,
)
from dealengine.domain.events import LEAD_TOUCHES
from dealengine.domain.interaction import Interaction
from dealengine.domain.lead import Lead
from tests.rulebook import (
    EVOLVE,
    NOW,
    day,
    edited,
    given_deal,
    given_lead,
    history,
    opened,
    then_recorded,
    then_refused,
    when,
)

TOUCH_FIELDS = {
    "ad_viewed": {"channel": "paid_social", "campaign": "spring"},
    "site_visited": {"channel": "organic_search", "page": "/pricing"},
    "newsletter_signed_up": {},
    "content_downloaded": {"asset": "buyer-guide.pdf"},
    "webinar_attended": {"webinar": "pipeline hygiene"},
    "demo_requested": {},
}
VISITED = ("site_visited", {"channel": "web"})
QUALIFIED = ("lead_qualified", {"by": "sdr-2"})
DISQUALIFIED = ("lead_disqualified", {"reason": "no budget"})
CONVERTED = ("lead_converted", {"deal_id": "D-1"})


def test_the_touches_are_the_six_marketing_interactions() -> None:
    assert set(TOUCH_FIELDS) == LEAD_TOUCHES


# --- creating a lead ---------------------------------------------------------------------


@pytest.mark.parametrize("touch", sorted(TOUCH_FIELDS))
def test_any_touch_creates_a_new_lead(touch: str) -> None:
    # given no lead L-9; when a touch arrives; then it is the lead's first event
    events = when(touch, "L-9", TOUCH_FIELDS[touch])
    then_recorded(events, (touch, "lead:L-9", 1, TOUCH_FIELDS[touch]))
    assert events[0].prev_hash is None  # the first link of the lead's chain
    lead = EVOLVE(None, events[0])
    assert (lead.id, lead.version, lead.status, lead.deal_id) == ("L-9", 1, "open", None)


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [("lead_qualified", {"by": "sdr-2"}), ("lead_disqualified", {"reason": "spam"})],
)
def test_qualifying_or_disqualifying_an_unknown_lead_is_refused(
    event_type: str, fields: dict[str, str]
) -> None:
    with pytest.raises(UnknownAggregate) as refused:
        when(event_type, "L-404", fields)
    assert str(refused.value) == "unknown lead L-404"


def test_converting_an_unknown_lead_is_refused() -> None:
    with pytest.raises(UnknownAggregate, match=r"^unknown lead L-404$"):
        when("lead_converted", "L-404", {"deal_id": "D-1", "amount": "10", "owner": "ana"})


# --- touches on an existing lead -----------------------------------------------------------


@pytest.mark.parametrize(
    "past",
    [(VISITED,), (VISITED, QUALIFIED), (VISITED, DISQUALIFIED), (VISITED, QUALIFIED, CONVERTED)],
    ids=["open", "qualified", "disqualified", "converted"],
)
def test_a_touch_is_recorded_whatever_the_leads_status(
    past: tuple[tuple[str, dict[str, str]], ...],
) -> None:
    lead = given_lead("L-1", *past)
    events = when("webinar_attended", "L-1", {"webinar": "q3 launch"}, given=(lead,))
    then_recorded(events, ("webinar_attended", "lead:L-1", len(past) + 1, {}))
    assert events[0].prev_hash == lead.head  # chained to the lead's last event
    assert EVOLVE(lead, events[0]).status == lead.status  # a touch never changes the status


# --- qualifying and disqualifying ----------------------------------------------------------


def test_an_open_lead_is_qualified() -> None:
    lead = given_lead("L-1", VISITED)
    events = when("lead_qualified", "L-1", {"by": "sdr-2"}, given=(lead,))
    then_recorded(events, ("lead_qualified", "lead:L-1", 2, {"by": "sdr-2"}))
    assert EVOLVE(lead, events[0]).status == "qualified"


def test_a_qualified_lead_is_not_qualified_twice() -> None:
    lead = given_lead("L-1", VISITED, QUALIFIED)
    with then_refused("lead L-1", "qualified", "lead_qualified", "already qualified"):
        when("lead_qualified", "L-1", {"by": "sdr-3"}, given=(lead,))


@pytest.mark.parametrize("past", [(VISITED,), (VISITED, QUALIFIED)], ids=["open", "qualified"])
def test_an_open_or_qualified_lead_is_disqualified(
    past: tuple[tuple[str, dict[str, str]], ...],
) -> None:
    lead = given_lead("L-1", *past)
    events = when("lead_disqualified", "L-1", {"reason": "no budget"}, given=(lead,))
    then_recorded(events, ("lead_disqualified", "lead:L-1", len(past) + 1, {"reason": "no budget"}))
    assert EVOLVE(lead, events[0]).status == "disqualified"


def test_a_disqualified_lead_is_not_disqualified_twice() -> None:
    lead = given_lead("L-1", VISITED, DISQUALIFIED)
    with then_refused("lead L-1", "disqualified", "lead_disqualified", "already disqualified"):
        when("lead_disqualified", "L-1", {"reason": "spam"}, given=(lead,))


def test_a_disqualified_lead_may_be_qualified_again() -> None:
    lead = given_lead("L-1", VISITED, DISQUALIFIED)
    events = when("lead_qualified", "L-1", {"by": "ae-1"}, given=(lead,))
    then_recorded(events, ("lead_qualified", "lead:L-1", 3, {"by": "ae-1"}))
    assert EVOLVE(lead, events[0]).status == "qualified"


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [("lead_qualified", {"by": "sdr-2"}), ("lead_disqualified", {"reason": "spam"})],
)
def test_a_converted_lead_is_neither_qualified_nor_disqualified(
    event_type: str, fields: dict[str, str]
) -> None:
    lead = given_lead("L-1", VISITED, QUALIFIED, CONVERTED)
    with then_refused("lead L-1", "converted", event_type, "already converted to deal D-1"):
        when(event_type, "L-1", fields, given=(lead,))


# --- converting (decided with the deal it opens) -------------------------------------------


@pytest.mark.parametrize("past", [(VISITED,), (VISITED, QUALIFIED)], ids=["open", "qualified"])
def test_converting_a_lead_opens_its_deal_and_links_both(
    past: tuple[tuple[str, dict[str, str]], ...],
) -> None:
    lead = given_lead("L-1", *past)
    events = when(
        "lead_converted", "L-1", {"deal_id": "D-7", "amount": "5000", "owner": "ana"}, given=(lead,)
    )
    then_recorded(
        events,
        ("deal_opened", "deal:D-7", 1, {"lead_id": "L-1", "amount": Decimal("5000")}),
        ("lead_converted", "lead:L-1", len(past) + 1, {"deal_id": "D-7"}),
    )
    converted = EVOLVE(lead, events[1])
    assert (converted.status, converted.deal_id) == ("converted", "D-7")


@pytest.mark.parametrize(
    ("event_type", "target", "link"),
    [("deal_opened", "D-2", {"lead_id": "L-1"}), ("lead_converted", "L-1", {"deal_id": "D-2"})],
)
def test_a_converted_lead_opens_a_further_deal(
    event_type: str, target: str, link: dict[str, str]
) -> None:
    """A renewal or an upsell: the deal is opened and the lead records it with another
    `lead_converted`; the lead's first conversion stays D-1, its deals are both."""
    lead = given_lead("L-1", VISITED, QUALIFIED, CONVERTED)
    fields = {**link, "amount": "5", "owner": "ana", "pipeline": "renewals"}
    events = when(event_type, target, fields, given=(lead,))
    then_recorded(
        events,
        ("deal_opened", "deal:D-2", 1, {"lead_id": "L-1", "pipeline": "renewals"}),
        ("lead_converted", "lead:L-1", 4, {"deal_id": "D-2"}),
    )
    assert events[1].prev_hash == lead.head  # the lead's chain goes on
    further = EVOLVE(lead, events[1])
    assert (further.status, further.deal_id, further.deals) == ("converted", "D-1", ("D-1", "D-2"))


def test_a_deal_already_open_is_not_opened_again_for_its_lead() -> None:
    lead = given_lead("L-1", VISITED, QUALIFIED, CONVERTED)
    deal = given_deal("D-1", opened(lead_id="L-1"))
    with then_refused("deal D-1", "prospecting", "deal_opened", "the deal is already open"):
        when(
            "deal_opened", "D-1", {"lead_id": "L-1", "amount": "5", "owner": "ana"},
            given=(lead, deal),
        )  # fmt: skip


def test_a_disqualified_lead_must_be_qualified_again_before_converting() -> None:
    lead = given_lead("L-1", VISITED, DISQUALIFIED)
    with then_refused(
        "lead L-1", "disqualified", "lead_converted to deal D-2", "must be qualified again first"
    ):
        when(
            "lead_converted",
            "L-1",
            {"deal_id": "D-2", "amount": "5", "owner": "ana"},
            given=(lead,),
        )


def test_a_conversion_without_a_deal_id_is_refused() -> None:
    lead = given_lead("L-1", VISITED, QUALIFIED)
    with pytest.raises(InvalidEvent, match=r"^lead_converted: field 'deal_id': missing$"):
        when("lead_converted", "L-1", {"amount": "5", "owner": "ana"}, given=(lead,))


def test_a_conversion_into_a_deal_already_open_is_refused() -> None:
    lead = given_lead("L-2", VISITED, QUALIFIED)
    deal = given_deal("D-1", opened("L-1"), "discovery_completed")
    with then_refused("deal D-1", "discovery", "lead_converted", "the deal is already open"):
        when(
            "lead_converted",
            "L-2",
            {"deal_id": "D-1", "amount": "5", "owner": "ana"},
            given=(lead, deal),
        )


# --- idempotency ---------------------------------------------------------------------------


def test_a_repeated_idempotency_key_records_nothing() -> None:
    lead = given_lead("L-1", ("site_visited", {"channel": "web", "key": "crm-1"}))
    assert when("site_visited", "L-1", {"channel": "web"}, given=(lead,), key="crm-1") == []


def test_a_repeated_key_is_a_no_op_even_where_the_command_would_be_refused() -> None:
    # the webhook retried: the qualification was recorded the first time
    lead = given_lead("L-1", VISITED, ("lead_qualified", {"by": "sdr-2", "key": "hook-5"}))
    assert when("lead_qualified", "L-1", {"by": "sdr-2"}, given=(lead,), key="hook-5") == []


def test_a_repeated_conversion_key_records_nothing_on_either_stream() -> None:
    lead = given_lead(
        "L-1", VISITED, QUALIFIED, ("lead_converted", {"deal_id": "D-1", "key": "c-1"})
    )
    deal = given_deal("D-1", opened("L-1"))
    fields = {"deal_id": "D-1", "amount": "5", "owner": "ana"}
    assert when("lead_converted", "L-1", fields, given=(lead, deal), key="c-1") == []


def test_a_new_key_on_the_same_interaction_is_recorded() -> None:
    lead = given_lead("L-1", ("site_visited", {"channel": "web", "key": "crm-1"}))
    events = when("site_visited", "L-1", {"channel": "web"}, given=(lead,), key="crm-2")
    then_recorded(events, ("site_visited", "lead:L-1", 2, {"idempotency_key": "crm-2"}))
    assert EVOLVE(lead, events[0]).idempotency_keys == {"crm-1", "crm-2"}


# --- evolve: what the status is after each event -------------------------------------------


def test_the_status_follows_the_qualifying_events_in_order() -> None:
    events = history("lead:L-1", VISITED, QUALIFIED, DISQUALIFIED, QUALIFIED, CONVERTED, VISITED)
    statuses = []
    lead: Lead | None = None
    for event in events:
        lead = EVOLVE(lead, event)  # type: ignore[assignment]
        assert lead is not None
        statuses.append((lead.version, lead.status, lead.deal_id, lead.head == event.chain_hash()))
    assert statuses == [
        (1, "open", None, True),
        (2, "qualified", None, True),
        (3, "disqualified", None, True),
        (4, "qualified", None, True),
        (5, "converted", "D-1", True),
        (6, "converted", "D-1", True),
    ]


# --- commands that cannot become events ----------------------------------------------------


def test_an_unknown_interaction_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownEventType) as refused:
        Interaction("call_booked", "L-1", day(1))
    assert refused.value.event_type == "call_booked"
    assert str(refused.value).startswith("unknown event type 'call_booked' (known: ad_viewed, ")


@pytest.mark.parametrize("target", ["", "  ", "L 1", "L\t1", "L\x001", "L" * 201])
def test_a_lead_id_must_be_one_word(target: str) -> None:
    with pytest.raises(
        InvalidEvent, match=r"^field 'lead_id': (String should have|an id must not)"
    ):
        Interaction("site_visited", target, day(1), {"channel": "web"})


@pytest.mark.parametrize(
    ("fields", "occurred_at", "words"),
    [
        ({}, day(1), "site_visited: field 'channel': missing"),
        (
            {"channel": "web", "coupon": "x"},
            day(1),
            "field 'coupon': not a field of this event type",
        ),
        (
            {"channel": "web"},
            NOW.replace(tzinfo=None),
            "field 'occurred_at': Input should have timezone info",
        ),
    ],
    ids=["missing field", "unknown field", "no timezone"],
)
def test_a_malformed_interaction_is_refused_naming_the_field(
    fields: dict[str, str], occurred_at: object, words: str
) -> None:
    with pytest.raises(InvalidEvent, match=words):
        when("site_visited", "L-1", fields, occurred_at=occurred_at)


# --- the funnel definition the lead steps are read from ------------------------------------


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            ("exclusions = []", 'exclusions = ["cold_call"]'),
            "exclusions",
            "unknown event type 'cold_call'",
        ),
        (
            ("exclusions = []", 'exclusions = ["ad_viewed"]'),
            "steps.awareness",
            "'ad_viewed' is also an exclusion",
        ),
        (
            ('events = ["webinar_attended"]', 'events = ["webinar_attended", "site_visited"]'),
            "steps.consideration",
            "event 'site_visited' is also in step 'awareness'",
        ),
    ],
    ids=["unknown exclusion", "step event excluded", "event in two steps"],
)
def test_a_funnel_definition_breaking_a_rule_is_refused_at_load(
    tmp_path: Path, edit: tuple[str, str], key: str, reason: str
) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        load_funnel(edited(tmp_path, "funnel.toml", edit))
    assert (refused.value.file, refused.value.key) == (str(tmp_path / "funnel.toml"), key)
    assert reason in refused.value.reason
