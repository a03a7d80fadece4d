"""Whether a scenario's history is one the stage rules would accept.

A `from`/`to` window or a `drop` transform can leave a lead whose first kept event is not a
touch (a qualification, disqualification or conversion of a lead that was never created),
or a deal whose `deal_opened` is left out. The folds count such leads and deals all the same,
from the events kept; the what-if says how many there are (`RuleBreaks`).
"""

from __future__ import annotations

from typing import Any

from dealengine.domain.events import format_time
from dealengine.domain.streams import DEAL_MARK
from dealengine.projections.funnel import in_partition
from dealengine.projections.stream import StreamEvent
from dealengine.store.recorders import Partition
from dealengine.whatif.lanes import deal_rule
from dealengine.whatif.scenario import Resolved

NEEDS_A_LEAD = frozenset({"lead_qualified", "lead_disqualified", "lead_converted"})


def may_break_rules(plan: Resolved | None) -> bool:
    """Whether the scenario leaves recorded events out by date or type."""
    if plan is None:
        return False
    f, t = plan.scenario.filter, plan.scenario.transform
    return f.start is not None or f.end is not None or bool(t.drop)


class FirstKept:
    """A fold over the recorded stream: each lead's and deal's first event the scenario keeps
    (in recorded order), counting the leads and deals whose first is one the rules refuse.
    Leads of partition `part` only; deals only where `deals` (partition 0)."""

    event_types: frozenset[str] | None = None  # every event

    def __init__(self, plan: Resolved, part: Partition | None, deals: bool) -> None:
        f, t = plan.scenario.filter, plan.scenario.transform
        self.name, self.part, self.deals_here = plan.name, part, deals
        self.start = format_time(f.start) if f.start else None
        self.end = format_time(f.end) if f.end else None
        self.bound = format_time(plan.as_of) if plan.as_of else None
        self.drop = frozenset(t.drop)
        self.keep_deal = deal_rule(plan)
        self.default_pipeline = plan.pipelines.default.name
        self.seen: set[str] = set()
        self.leads = self.deals = 0

    def initial(self) -> FirstKept:
        return self

    def apply(self, _: Any, event: StreamEvent) -> None:
        stream = event.stream
        if stream in self.seen:
            return
        is_deal = stream[0] == DEAL_MARK
        if is_deal and not self.deals_here:
            return
        if not is_deal and self.part is not None and not in_partition(stream, self.part):
            return
        data = event.data
        if is_deal and event.type == "deal_opened" and self.keep_deal is not None:
            pipeline = data.get("pipeline") or self.default_pipeline
            if not self.keep_deal(data.get("owner"), pipeline):
                self.seen.add(stream)  # the whole deal is left out
                return
        at = data["occurred_at"]
        if (self.start is not None and at < self.start) or (self.end is not None and at > self.end):
            return
        if (self.bound is not None and at > self.bound) or event.type in self.drop:
            return
        self.seen.add(stream)
        if is_deal and event.type != "deal_opened":
            self.deals += 1
        elif not is_deal and event.type in NEEDS_A_LEAD:
            self.leads += 1
