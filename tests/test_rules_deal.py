"""The deal's stage rules, given / when / then, with no database (tests/rulebook.py).

The default pipeline (projections/pipeline.toml, `new_business`): prospecting, discovery,
proposal, negotiation, then closed_won or closed_lost. Forward moves and skipping are
allowed; a backward move needs deal_stage_changed with a reason; nothing leaves a closed
stage except deal_reopened, which returns the deal to the stage it closed from. A deal
belongs to the pipeline its deal_opened names, and keeps its own currency.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from dealengine.domain.definitions import Pipelines, load_pipelines
from dealengine.domain.errors import (
    IllegalTransition,
    InvalidDefinition,
    InvalidEvent,
    UnknownAggregate,
)
from tests.rulebook import (
    EVOLVE,
    Line,
    after,
    day,
    given_deal,
    given_lead,
    opened,
    then_recorded,
    then_refused,
    variant,
    when,
)

OPEN_STAGES = "prospecting, discovery, proposal, negotiation"
QUALIFIED_LEAD = (("site_visited", {"channel": "web"}), ("lead_qualified", {"by": "sdr-2"}))


@pytest.fixture(scope="module")
def no_skipping(tmp_path_factory: pytest.TempPathFactory) -> Pipelines:
    return variant(tmp_path_factory.mktemp("p"), ("skip = true", "skip = false"))


@pytest.fixture(scope="module")
def never_backward(tmp_path_factory: pytest.TempPathFactory) -> Pipelines:
    edit = ('backward = "with_reason"', 'backward = "never"')
    return variant(tmp_path_factory.mktemp("p"), edit)


# --- opening a deal ------------------------------------------------------------------------


def test_opening_a_deal_for_a_lead_converts_the_lead() -> None:
    lead = given_lead("L-1", *QUALIFIED_LEAD)
    events = when(
        "deal_opened", "D-1", {"lead_id": "L-1", "amount": "12000", "owner": "ana"}, given=(lead,)
    )
    then_recorded(
        events,
        (
            "deal_opened",
            "deal:D-1",
            1,
            {
                "lead_id": "L-1",
                "amount": Decimal("12000"),
                "currency": "USD",  # the pipeline's, when not given
                "pipeline": "new_business",  # the default pipeline, when not named
                "owner": "ana",
            },
        ),
        ("lead_converted", "lead:L-1", 3, {"deal_id": "D-1", "prev_hash": lead.head}),
    )
    deal = EVOLVE(None, events[0])
    assert (deal.stage, deal.pipeline, deal.lead_id) == ("prospecting", "new_business", "L-1")


def test_a_deal_may_be_opened_without_a_lead() -> None:
    events = when("deal_opened", "D-1", {"amount": "500", "owner": "ana"})
    then_recorded(events, ("deal_opened", "deal:D-1", 1, {"lead_id": None}))


def test_opening_a_deal_for_an_unknown_lead_is_refused() -> None:
    with pytest.raises(UnknownAggregate, match=r"^unknown lead L-404$"):
        when("deal_opened", "D-1", {"lead_id": "L-404", "amount": "500", "owner": "ana"})


def test_a_deal_is_not_opened_twice() -> None:
    deal = given_deal("D-1", opened(None))
    with then_refused("deal D-1", "prospecting", "deal_opened", "the deal is already open"):
        when("deal_opened", "D-1", {"amount": "500", "owner": "bo"}, given=(deal,))


def test_a_repeated_opening_key_records_nothing() -> None:
    deal = given_deal("D-1", opened(None, key="crm-77"))
    assert (
        when("deal_opened", "D-1", {"amount": "5", "owner": "bo"}, given=(deal,), key="crm-77")
        == []
    )


def test_a_deal_in_the_renewals_pipeline_starts_at_renewal_due() -> None:
    events = when("deal_opened", "D-1", {"amount": "900", "owner": "ana", "pipeline": "renewals"})
    then_recorded(
        events, ("deal_opened", "deal:D-1", 1, {"pipeline": "renewals", "currency": "USD"})
    )
    assert (EVOLVE(None, events[0]).stage, EVOLVE(None, events[0]).pipeline) == (
        "renewal_due",
        "renewals",
    )


def test_a_deal_in_an_unknown_pipeline_is_refused() -> None:
    with pytest.raises(
        InvalidEvent,
        match=r"^deal_opened: field 'pipeline': unknown pipeline 'upsell' \(new_business, renewals, olist\)$",
    ):
        when("deal_opened", "D-1", {"amount": "900", "owner": "ana", "pipeline": "upsell"})


@pytest.mark.parametrize(("pipeline", "currency"), [("new_business", "EUR"), ("olist", "JPY")])
def test_a_deal_keeps_its_own_currency_whatever_its_pipelines(pipeline: str, currency: str) -> None:
    fields = {"amount": "900", "owner": "ana", "pipeline": pipeline, "currency": currency}
    events = when("deal_opened", "D-1", fields)
    then_recorded(events, ("deal_opened", "deal:D-1", 1, {"currency": currency}))


@pytest.mark.parametrize("currency", ["EUX", "eur", "EURO", "XAU", ""])
def test_a_deal_in_no_iso_4217_currency_is_refused_naming_the_field(currency: str) -> None:
    fields = {"amount": "900", "owner": "ana", "currency": currency}
    with pytest.raises(InvalidEvent, match="field 'currency': not an ISO 4217 currency code"):
        when("deal_opened", "D-1", fields)


def test_a_deal_takes_its_pipelines_currency_when_none_is_given() -> None:
    events = when("deal_opened", "D-1", {"amount": "900", "owner": "ana", "pipeline": "olist"})
    then_recorded(events, ("deal_opened", "deal:D-1", 1, {"currency": "BRL"}))


def test_a_deal_opened_before_pipelines_existed_belongs_to_the_default() -> None:
    deal = given_deal("D-1", opened(None))  # a stored deal_opened with no pipeline field
    assert (deal.pipeline, deal.stage) == ("new_business", "prospecting")


# --- a deal's pipeline is the one its deal_opened names ------------------------------------


def test_a_renewal_moves_by_the_renewals_stages() -> None:
    deal = given_deal("D-1", opened(None, pipeline="renewals"))
    events = when("negotiation_started", "D-1", given=(deal,))
    assert after(deal, events).stage == "in_negotiation"


def test_an_event_with_no_stage_in_the_deals_pipeline_leaves_the_stage() -> None:
    deal = given_deal("D-1", opened(None, pipeline="renewals"))
    events = when("discovery_completed", "D-1", given=(deal,))  # renewals has no discovery
    then_recorded(events, ("discovery_completed", "deal:D-1", 2, {}))
    assert after(deal, events).stage == "renewal_due"


def test_a_renewal_is_won_into_renewed() -> None:
    deal = given_deal("D-1", opened(None, pipeline="renewals"), "negotiation_started")
    won = after(deal, when("deal_won", "D-1", given=(deal,)))
    assert (won.stage, won.closed_from) == ("renewed", "in_negotiation")


# --- moving forward ------------------------------------------------------------------------


def test_an_unknown_deal_is_refused() -> None:
    with pytest.raises(UnknownAggregate, match=r"^unknown deal D-404$"):
        when("proposal_sent", "D-404", {"amount": "5"})


def test_a_forward_move_may_skip_stages() -> None:
    deal = given_deal("D-1", opened())
    events = when("negotiation_started", "D-1", given=(deal,))
    then_recorded(events, ("negotiation_started", "deal:D-1", 2, {"prev_hash": deal.head}))
    assert after(deal, events).stage == "negotiation"


def test_a_proposal_sent_without_an_amount_keeps_the_deals_amount() -> None:
    deal = given_deal("D-1", opened())
    events = when("proposal_sent", "D-1", given=(deal,))
    then_recorded(events, ("proposal_sent", "deal:D-1", 2, {"amount": Decimal("10000")}))


def test_a_proposal_sent_with_an_amount_sets_the_deals_amount() -> None:
    deal = given_deal("D-1", opened())
    events = when("proposal_sent", "D-1", {"amount": "8500"}, given=(deal,))
    assert (after(deal, events).stage, after(deal, events).amount) == ("proposal", Decimal("8500"))


def test_a_second_proposal_stays_in_proposal() -> None:
    deal = given_deal("D-1", opened(), ("proposal_sent", {"amount": Decimal("9000")}))
    events = when("proposal_sent", "D-1", {"amount": "8000"}, given=(deal,))
    assert (after(deal, events).stage, after(deal, events).amount) == ("proposal", Decimal("8000"))


def test_the_amount_may_change_in_any_open_stage_without_moving() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started")
    events = when(
        "deal_amount_changed", "D-1", {"amount": "7000", "reason": "discount"}, given=(deal,)
    )
    moved = after(deal, events)
    assert (moved.stage, moved.amount) == ("negotiation", Decimal("7000"))


# --- moving backward -----------------------------------------------------------------------


def test_a_backward_stage_event_is_refused() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started")
    with then_refused(
        "deal D-1",
        "negotiation",
        "discovery_completed",
        "a backward move to 'discovery' needs deal_stage_changed with a reason",
    ):
        when("discovery_completed", "D-1", given=(deal,))


def test_a_backward_move_with_a_reason_is_recorded() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started")
    fields = {"to_stage": "discovery", "reason": "new buyer"}
    events = when("deal_stage_changed", "D-1", fields, given=(deal,))
    then_recorded(events, ("deal_stage_changed", "deal:D-1", 3, fields))
    assert after(deal, events).stage == "discovery"


def test_a_stage_change_without_a_reason_is_refused() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started")
    with pytest.raises(InvalidEvent, match=r"^deal_stage_changed: field 'reason': missing$"):
        when("deal_stage_changed", "D-1", {"to_stage": "discovery"}, given=(deal,))


@pytest.mark.parametrize("to_stage", ["closed_won", "closed_lost", "limbo"])
def test_a_stage_change_goes_to_an_open_stage_only(to_stage: str) -> None:
    deal = given_deal("D-1", opened())
    with then_refused(
        "deal D-1",
        "prospecting",
        f"deal_stage_changed to {to_stage!r}",
        f"to_stage must be an open stage ({OPEN_STAGES}); close a deal with deal_won or deal_lost",
    ):
        when("deal_stage_changed", "D-1", {"to_stage": to_stage, "reason": "x"}, given=(deal,))


def test_a_stage_change_to_the_current_stage_is_refused() -> None:
    deal = given_deal("D-1", opened(), ("proposal_sent", {"amount": Decimal("1")}))
    with then_refused(
        "deal D-1",
        "proposal",
        "deal_stage_changed to 'proposal'",
        "the deal is already in that stage",
    ):
        when("deal_stage_changed", "D-1", {"to_stage": "proposal", "reason": "x"}, given=(deal,))


# --- pipelines with stricter moves ---------------------------------------------------------


def test_a_pipeline_without_skipping_refuses_a_skip(no_skipping: Pipelines) -> None:
    deal = given_deal("D-1", opened(), pipelines=no_skipping)
    with then_refused(
        "deal D-1",
        "prospecting",
        "proposal_sent",
        "skips discovery; this pipeline does not allow skipping stages",
    ):
        when("proposal_sent", "D-1", given=(deal,), pipelines=no_skipping)


def test_a_pipeline_without_skipping_refuses_a_skipping_stage_change(
    no_skipping: Pipelines,
) -> None:
    deal = given_deal("D-1", opened(), pipelines=no_skipping)
    with then_refused(
        "deal D-1",
        "prospecting",
        "deal_stage_changed to 'negotiation'",
        "skips discovery, proposal; this pipeline does not allow skipping stages",
    ):
        fields = {"to_stage": "negotiation", "reason": "x"}
        when("deal_stage_changed", "D-1", fields, given=(deal,), pipelines=no_skipping)


@pytest.mark.parametrize(
    ("event_type", "stage"),
    [
        ("discovery_completed", "discovery"),
        ("deal_lost", "closed_lost"),
        ("deal_won", "closed_won"),
    ],
)
def test_a_pipeline_without_skipping_allows_the_next_stage_and_closing(
    no_skipping: Pipelines, event_type: str, stage: str
) -> None:
    deal = given_deal("D-1", opened(), pipelines=no_skipping)
    fields = {"reason": "no budget"} if event_type == "deal_lost" else {}
    events = when(event_type, "D-1", fields, given=(deal,), pipelines=no_skipping)
    assert after(deal, events, no_skipping).stage == stage


def test_a_pipeline_that_never_goes_back_refuses_a_backward_stage_change(
    never_backward: Pipelines,
) -> None:
    deal = given_deal("D-1", opened(), "negotiation_started", pipelines=never_backward)
    with then_refused(
        "deal D-1",
        "negotiation",
        "deal_stage_changed to 'proposal'",
        "backward moves are not allowed by this pipeline",
    ):
        fields = {"to_stage": "proposal", "reason": "x"}
        when("deal_stage_changed", "D-1", fields, given=(deal,), pipelines=never_backward)


def test_a_pipeline_that_never_goes_back_still_allows_a_forward_stage_change(
    never_backward: Pipelines,
) -> None:
    deal = given_deal("D-1", opened(), pipelines=never_backward)
    fields = {"to_stage": "proposal", "reason": "ready"}
    events = when("deal_stage_changed", "D-1", fields, given=(deal,), pipelines=never_backward)
    assert after(deal, events, never_backward).stage == "proposal"


# --- closing and reopening -----------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prospecting", "discovery", "proposal", "negotiation"])
def test_a_deal_may_be_won_or_lost_from_any_open_stage(stage: str) -> None:
    deal = given_deal("D-1", opened(), *REACH[stage])
    won = after(deal, when("deal_won", "D-1", given=(deal,)))
    lost = after(deal, when("deal_lost", "D-1", {"reason": "timing"}, given=(deal,)))
    assert (won.stage, won.closed_from, won.amount) == ("closed_won", deal.stage, deal.amount)
    assert (lost.stage, lost.closed_from) == ("closed_lost", deal.stage)


def test_a_deal_won_at_another_amount_takes_that_amount() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started")
    events = when("deal_won", "D-1", {"amount": "9500"}, given=(deal,))
    then_recorded(events, ("deal_won", "deal:D-1", 3, {"amount": Decimal("9500")}))


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [("deal_won", {}), ("deal_lost", {"reason": "timing"}), ("proposal_sent", {})],
)
def test_nothing_happens_to_a_deal_before_it_was_opened(
    event_type: str, fields: dict[str, str]
) -> None:
    """Given a deal opened on 1 April, when it is won (lost, sent a proposal) dated 31 March,
    then that is refused, naming both times."""
    deal = given_deal("D-1", opened())
    day_before = day(1) - timedelta(days=1)
    with then_refused("deal D-1", "prospecting", event_type, "before the deal was opened"):
        when(event_type, "D-1", fields, given=(deal,), occurred_at=day_before)
    try:
        when(event_type, "D-1", fields, given=(deal,), occurred_at=day_before)
    except IllegalTransition as refused:
        assert "2026-03-31T10:00:00" in refused.reason and "2026-04-01T10:00:00" in refused.reason
    same_time = when(event_type, "D-1", fields, given=(deal,), occurred_at=day(1))
    assert [e.event_type for e in same_time] == [event_type]  # at the opening time: allowed


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("proposal_sent", {}),
        ("deal_amount_changed", {"amount": "1", "reason": "typo"}),
        ("deal_stage_changed", {"to_stage": "proposal", "reason": "x"}),
        ("deal_lost", {"reason": "changed mind"}),
        ("deal_won", {}),
    ],
)
def test_nothing_but_a_reopening_leaves_a_closed_deal(
    event_type: str, fields: dict[str, str]
) -> None:
    deal = given_deal("D-1", opened(), *REACH["closed_won"])
    attempted = f"{event_type} to 'proposal'" if "to_stage" in fields else event_type
    with then_refused(
        "deal D-1", "closed_won", attempted, "the deal is closed; only deal_reopened can move it"
    ):
        when(event_type, "D-1", fields, given=(deal,))


def test_a_reopened_deal_returns_to_the_stage_it_closed_from() -> None:
    deal = given_deal(
        "D-1",
        opened(),
        ("proposal_sent", {"amount": Decimal("10000")}),
        ("deal_lost", {"reason": "timing"}),
    )
    events = when("deal_reopened", "D-1", {"reason": "budget approved"}, given=(deal,))
    then_recorded(events, ("deal_reopened", "deal:D-1", 4, {"to_stage": "proposal"}))
    assert after(deal, events).stage == "proposal"


def test_a_deal_reopened_twice_returns_to_where_it_last_closed_from() -> None:
    deal = given_deal(
        "D-1",
        opened(),
        ("deal_lost", {"reason": "timing"}),  # closed from prospecting
        ("deal_reopened", {"reason": "back", "to_stage": "prospecting"}),
        "negotiation_started",
        ("deal_won", {"amount": Decimal("10000")}),  # closed from negotiation
    )
    events = when("deal_reopened", "D-1", {"reason": "invoice bounced"}, given=(deal,))
    assert after(deal, events).stage == "negotiation"


def test_a_deal_may_be_reopened_into_another_open_stage() -> None:
    deal = given_deal("D-1", opened(), "negotiation_started", ("deal_lost", {"reason": "timing"}))
    fields = {"reason": "restart", "to_stage": "discovery"}
    events = when("deal_reopened", "D-1", fields, given=(deal,))
    assert after(deal, events).stage == "discovery"


@pytest.mark.parametrize("to_stage", ["closed_won", "limbo"])
def test_a_deal_is_reopened_into_an_open_stage_only(to_stage: str) -> None:
    deal = given_deal("D-1", opened(), ("deal_lost", {"reason": "timing"}))
    with then_refused(
        "deal D-1",
        "closed_lost",
        f"deal_reopened to {to_stage!r}",
        f"{to_stage!r} is not an open stage ({OPEN_STAGES})",
    ):
        when("deal_reopened", "D-1", {"reason": "x", "to_stage": to_stage}, given=(deal,))


def test_an_open_deal_is_not_reopened() -> None:
    deal = given_deal("D-1", opened(), "discovery_completed")
    with then_refused(
        "deal D-1", "discovery", "deal_reopened", "only a closed deal can be reopened"
    ):
        when("deal_reopened", "D-1", {"reason": "x"}, given=(deal,))


# --- idempotency ---------------------------------------------------------------------------


def test_a_repeated_key_on_a_closed_deal_records_nothing() -> None:
    # the webhook that won the deal is delivered again
    deal = given_deal("D-1", opened(), ("deal_won", {"amount": Decimal("10000"), "key": "hook-9"}))
    assert when("deal_won", "D-1", given=(deal,), key="hook-9") == []


# --- the table: every move between the default pipeline's stages ---------------------------

# By hand, from README.md's "Rules and definitions": a cell is the stage after the move, or
# "-" where it is refused. Closed deals were won from proposal, lost from discovery.
MOVES = """
from          | discovery_completed | proposal_sent | negotiation_started | deal_won   | deal_lost   | to prospecting | to discovery | to proposal | to negotiation | deal_reopened
prospecting   | discovery           | proposal      | negotiation         | closed_won | closed_lost | -              | discovery    | proposal    | negotiation    | -
discovery     | discovery           | proposal      | negotiation         | closed_won | closed_lost | prospecting    | -            | proposal    | negotiation    | -
proposal      | -                   | proposal      | negotiation         | closed_won | closed_lost | prospecting    | discovery    | -           | negotiation    | -
negotiation   | -                   | -             | negotiation         | closed_won | closed_lost | prospecting    | discovery    | proposal    | -              | -
closed_won    | -                   | -             | -                   | -          | -           | -              | -            | -           | -              | proposal
closed_lost   | -                   | -             | -                   | -          | -           | -              | -            | -           | -              | discovery
"""
REACH: dict[str, tuple[Line, ...]] = {
    "prospecting": (),
    "discovery": ("discovery_completed",),
    "proposal": (("proposal_sent", {"amount": Decimal("10000")}),),
    "negotiation": ("negotiation_started",),
    "closed_won": (
        ("proposal_sent", {"amount": Decimal("10000")}),
        ("deal_won", {"amount": Decimal("10000")}),
    ),
    "closed_lost": ("discovery_completed", ("deal_lost", {"reason": "timing"})),
}


def _table() -> list[tuple[str, str, str]]:
    header, *rows = [line.split("|") for line in MOVES.strip().splitlines()]
    moves = [m.strip() for m in header[1:]]
    return [
        (cells[0].strip(), move, cell.strip())
        for cells in rows
        for move, cell in zip(moves, cells[1:], strict=True)
    ]


def _command(move: str) -> tuple[str, dict[str, str]]:
    if move.startswith("to "):
        return "deal_stage_changed", {"to_stage": move[3:], "reason": "re-qualified"}
    reasons = {"deal_lost": {"reason": "timing"}, "deal_reopened": {"reason": "budget back"}}
    return move, reasons.get(move, {})


@pytest.mark.parametrize(("stage", "move", "expected"), _table())
def test_every_move_of_the_default_pipeline(stage: str, move: str, expected: str) -> None:
    deal = given_deal("D-1", opened(), *REACH[stage])
    assert deal.stage == stage
    event_type, fields = _command(move)
    if expected == "-":
        with pytest.raises(IllegalTransition) as refused:
            when(event_type, "D-1", fields, given=(deal,))
        assert (refused.value.aggregate, refused.value.current) == ("deal D-1", stage)
        assert refused.value.attempted.startswith(event_type)
    else:
        assert after(deal, when(event_type, "D-1", fields, given=(deal,))).stage == expected


# --- the pipeline definitions the rules read ------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            ('name = "discovery"', 'name = "prospecting"'),
            "pipelines.0.stages",
            "stage names repeat",
        ),
        (
            ('closed = "lost"', 'closed = "won"'),
            "pipelines.0.stages",
            "exactly one stage must be closed = 'won'",
        ),
        (
            ('discovery_completed = "discovery"', 'deal_amount_changed = "discovery"'),
            "pipelines.0.events.deal_amount_changed",
            "not a stage event",
        ),
        (
            ('deal_won = "closed_won"', 'deal_won = "negotiation"'),
            "pipelines.0.events.deal_won",
            "must name the stage closed as won",
        ),
        (
            ('deal_lost = "closed_lost"', 'deal_lost = "closed_won"'),
            "pipelines.0.events.deal_lost",
            "must name the stage closed as lost",
        ),
        (
            ('name = "renewals"', 'name = "new_business"'),
            "pipelines",
            "pipeline names repeat",
        ),
    ],
    ids=[
        "stage twice",
        "two won stages",
        "not a stage event",
        "won elsewhere",
        "lost elsewhere",
        "pipeline twice",
    ],
)
def test_a_pipeline_definition_breaking_a_rule_is_refused_at_load(
    tmp_path: Path, edit: tuple[str, str], key: str, reason: str
) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        variant(tmp_path, edit)
    assert (refused.value.file, refused.value.key) == (str(tmp_path / "pipeline.toml"), key)
    assert reason in refused.value.reason


def test_a_pipeline_definition_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        load_pipelines(tmp_path / "missing.toml")
    assert (refused.value.file, refused.value.key) == (str(tmp_path / "missing.toml"), "-")
    assert refused.value.reason.startswith("cannot read: ")
