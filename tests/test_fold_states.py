"""A fold's state is copied (what-if overlays) field by field, from the state's own
declaration: a field added to a state is carried, or these fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from dealengine.domain.definitions import FunnelDefinition, load_funnel
from dealengine.projections.funnel import FunnelProjection, FunnelState, kept
from dealengine.projections.pipeline import DealFacts, Stay

LEAD = "L-1"


def a_lead(state: FunnelState) -> FunnelState:
    """Every field of `state` holds something of LEAD (and of another lead and a deal)."""
    state.earliest.update({LEAD: ["2026-01-01T10:00:00Z", None, "2026-01-03T10:00:00Z"]})
    state.sequence[LEAD] = [("2026-01-01T10:00:00Z", 0), ("2026-01-02T10:00:00Z", 0)]
    state.excluded[LEAD] = ["2026-01-04T10:00:00Z"]
    state.touches = {"channel": {LEAD: ("2026-01-01T10:00:00Z", "social")}, "campaign": {}}
    state.lead_of_deal["deal:D-1"] = LEAD
    for f in fields(state):
        held = getattr(state, f.name)
        if f.metadata["per"] == "lead":
            held["L-2"] = held[LEAD].copy()
    for f in fields(state):
        assert getattr(state, f.name), f"a_lead() sets nothing in {f.name}"
    return state


def of_lead(state: FunnelState, lead: str) -> dict[str, Any]:
    """What `state` holds of `lead`, field by field (a deal's link is the deal's)."""
    held: dict[str, Any] = {}
    for f in fields(state):
        value = getattr(state, f.name)
        if f.metadata["per"] == "lead":
            held[f.name] = value.get(lead)
        elif f.metadata["per"] == "touch":
            held[f.name] = {name: by_lead.get(lead) for name, by_lead in value.items()}
        else:
            assert f.metadata["per"] == "deal", f.name
    return held


def test_a_lead_s_state_is_copied_whole() -> None:
    fold = FunnelProjection(load_funnel())
    state = a_lead(fold.initial())
    copy = fold.initial()
    state.copy_lead(LEAD, into=copy)
    assert of_lead(copy, LEAD) == of_lead(state, LEAD)
    assert of_lead(copy, "L-2") == of_lead(fold.initial(), "L-2")  # that lead only
    assert not copy.lead_of_deal  # the deals' links are the deals'
    for f in fields(state):  # what the fold changes in place is the copy's own
        if f.metadata["per"] == "lead":
            getattr(copy, f.name)[LEAD].append("later")
    assert of_lead(state, LEAD) == of_lead(a_lead(fold.initial()), LEAD)


def test_a_field_added_to_the_funnel_state_is_carried_and_keyed() -> None:
    @dataclass(slots=True)
    class Scored(FunnelState):
        score: dict[str, list[int]] = field(default_factory=dict, metadata=kept("lead"))

    state = Scored()
    state.score[LEAD] = [3]
    copy = Scored()
    state.copy_lead(LEAD, into=copy)
    assert copy.score == {LEAD: [3]} and copy.score[LEAD] is not state.score[LEAD]

    class ScoredDefinition(FunnelDefinition):
        score_event: str = "demo_requested"

    class ScoredFunnel(FunnelProjection):
        FOLDED: ClassVar[dict[str, Any]] = {**FunnelProjection.FOLDED, "score_event": True}

    plain = ScoredDefinition(**load_funnel().model_dump())
    other = plain.model_copy(update={"score_event": "webinar_attended"})
    assert ScoredFunnel(plain).fold_key != ScoredFunnel(other).fold_key
    assert FunnelProjection(plain).fold_key == FunnelProjection(other).fold_key


def a_deal() -> DealFacts:
    """Every field of a deal's facts set, none to its default."""
    facts = DealFacts(
        "won", "1200.50", "ana", "2026-01-01T10:00:00Z", "2026-02-01T10:00:00Z", "2026-03-01",
        [Stay("prospecting", "2026-01-01T10:00:00Z", "2026-02-01T10:00:00Z"),
         Stay("won", "2026-02-01T10:00:00Z")],
        "2026-02-01T10:00:00Z", "budget", "EUR",
    )  # fmt: skip
    for f in fields(facts):
        assert getattr(facts, f.name) not in (None, []), f"a_deal() leaves {f.name} unset"
    return facts


def test_a_deal_s_facts_are_copied_whole() -> None:
    facts = a_deal()
    copy = facts.copy()
    assert copy == facts
    copy.stays[-1].left = "2026-03-01T10:00:00Z"  # what the fold changes in place
    copy.stays.append(Stay("lost", "2026-03-01T10:00:00Z"))
    assert facts == a_deal()


def test_a_field_added_to_a_deal_s_facts_is_carried() -> None:
    @dataclass(slots=True)
    class Scored(DealFacts):
        scores: list[Stay] = field(default_factory=list, metadata={"of": Stay})

    facts = Scored(**{f.name: getattr(a_deal(), f.name) for f in fields(DealFacts)})
    facts.scores.append(Stay("proposal", "2026-01-05T10:00:00Z"))
    copy = facts.copy()
    assert copy == facts and copy.scores[0] is not facts.scores[0]
