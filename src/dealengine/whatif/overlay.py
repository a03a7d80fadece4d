"""A scenario's funnel and pipeline states as their difference from the baseline's.

Most scenarios that change the stream change few leads: amounts scaled change none (the funnel
does not read amounts), deals lost after N days change the leads of those deals, a hypothetical
deal changes one. Folding every lead again for each of them would cost a rebuild per scenario.
An `Overlay` folds only the leads the scenario changes: until a scenario's event differs from
the recorded one in what the funnel reads of it (its type, time, lead and touch fields), the
lead's state is the baseline's; at the first difference the lead's baseline state is copied
(before the baseline folds that event: the pass feeds scenario lanes first) and from then on
the lead's scenario events are folded into the copy by the same `FunnelProjection.apply`. The
scenario's funnel is then the baseline's leads but the changed ones, plus the copies.

A `DealOverlay` does the same for the pipeline, deal by deal: deals lost after N days or a
hypothetical deal change a few deals of the baseline's pipeline, not all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from dealengine.domain.streams import DEAL_MARK, ID_START, id_of, lead_stream
from dealengine.projections.funnel import FunnelProjection, FunnelState, in_partition
from dealengine.projections.pipeline import DealFacts, PipelineProjection
from dealengine.projections.stream import StreamEvent


class Overlay:
    def __init__(
        self,
        fold: FunnelProjection,
        base: FunnelState,
        untouched: frozenset[str],
        changed_by_any: set[str],
    ) -> None:
        """`fold` builds `base` (the baseline's state of the same fold key) in the same pass;
        the scenario leaves events of the `untouched` types as recorded; `changed_by_any` is
        shared by the overlays on `base`: every lead one of them changed."""
        self.fold, self.base, self.untouched = fold, base, untouched
        self.state = fold.initial()  # the changed leads only
        self.changed: set[str] = set()
        self.changed_by_any = changed_by_any
        # lead -> its deals as recorded, from the first copy on (built then from the base)
        self.deals_of: dict[str, list[str]] | None = None
        self.types = fold.event_types

    def rest(self, lead: str) -> bool:
        """Whether a lead of the baseline's state counts as it is (the scenario left it alone)."""
        return lead not in self.changed

    def route(self, recorded: StreamEvent | None, produced: Sequence[StreamEvent]) -> None:
        """The scenario's events `produced` in place of `recorded` (None: they are its own, like
        a hypothetical event or a loss): fold them into the changed leads' states, and copy a
        lead's baseline state first when they change it."""
        types = self.types
        if (
            recorded is not None
            and len(produced) == 1
            and self.fold.folds_alike(recorded, produced[0])
        ):
            self.same(produced[0])
            return
        leads = [self._recorded_lead(recorded)] if recorded is not None else []
        leads += [self._lead(e) for e in produced if e.type in types]
        for lead in leads:
            if lead is not None and lead not in self.changed:
                self._copy(lead)
        if recorded is not None and recorded.type == "deal_opened":
            self._opened(recorded)
        for event in produced:
            if event.type in types:
                self.fold.apply(self.state, event)

    def recorded(self, event: StreamEvent) -> None:
        """A lead's recorded event, as the base folds it: folded here too when the lead is
        changed and the scenario leaves its type alone (else `route` has it)."""
        if event.type in self.untouched and event.stream[ID_START:] in self.changed:
            self.fold.apply(self.state, event)

    def same(self, event: StreamEvent) -> None:
        """A recorded event the scenario leaves as it is (of a type the fold reads): folded
        only when its lead is changed."""
        if event.type not in self.types:
            return
        if event.stream[0] == DEAL_MARK:
            if event.type == "deal_opened":
                self._opened(event)
            lead = self._lead(event)
        else:
            lead = event.stream[ID_START:]
        if lead in self.changed:
            self.fold.apply(self.state, event)

    def _opened_lead(self, event: StreamEvent) -> str | None:
        """The lead a `deal_opened` links its deal to (in this fold's partition of leads)."""
        lead: str | None = event.data.get("lead_id")
        part = self.fold.partition
        if not lead or (part is not None and not in_partition(lead_stream(lead), part)):
            return None
        return lead

    def _opened(self, recorded: StreamEvent) -> None:
        if self.deals_of is None:  # no copy yet: the base's links are the recorded ones
            return
        lead = self._opened_lead(recorded)
        if lead is not None:
            self.deals_of.setdefault(lead, []).append(recorded.stream)

    def _recorded_lead(self, event: StreamEvent) -> str | None:
        """The lead a recorded event counts for in the baseline."""
        if event.type not in self.types:
            return None
        if event.stream[0] != DEAL_MARK:
            return id_of(event.stream)
        if event.type == "deal_opened":
            return self._opened_lead(event)
        return self.base.lead_of_deal.get(event.stream)

    def _lead(self, event: StreamEvent) -> str | None:
        """The lead an event counts for in the scenario: a deal's link is the copy's, else the
        baseline's (when the lead is changed and the copy has no link, the scenario did not
        open the deal: the fold finds no link and leaves the event out)."""
        stream = event.stream
        if stream[0] != DEAL_MARK:
            return id_of(stream)
        if event.type == "deal_opened":
            return self._opened_lead(event)
        lead = self.state.lead_of_deal.get(stream)
        return lead if lead is not None else self.base.lead_of_deal.get(stream)

    def _copy(self, lead: str) -> None:
        """The lead's baseline state so far, as the start of its scenario state."""
        base, mine = self.base, self.state
        if self.deals_of is None:  # nothing differed before: the base's links are the recorded
            self.deals_of = {}  # ones so far (the base folds this event after the overlays)
            for deal, linked in base.lead_of_deal.items():
                self.deals_of.setdefault(linked, []).append(deal)
        self.changed.add(lead)
        self.changed_by_any.add(lead)
        base.copy_lead(lead, into=mine)
        for deal in self.deals_of.get(lead, ()):
            mine.lead_of_deal[deal] = lead


class DealOverlay:
    """A scenario's pipeline state as its difference from the baseline's, as `Overlay` is for
    the funnel: a deal is the baseline's until the scenario's version of one of its events
    differs from the recorded one (or the scenario adds one); then the deal's baseline facts so
    far are copied and its scenario events folded into the copy. A scenario that scales amounts
    changes every deal: its pipeline is folded whole instead (see `ScenarioLane`)."""

    def __init__(self, fold: PipelineProjection, base: dict[str, DealFacts]) -> None:
        """`fold` builds `base` (the baseline's state of the same fold key) in the same pass."""
        self.fold, self.base = fold, base
        self.state: dict[str, DealFacts] = {}  # the changed deals the scenario has
        self.changed: set[str] = set()
        self.types = fold.event_types

    def same(self, event: StreamEvent) -> None:
        """A recorded event the scenario leaves as it is: folded only when its deal is changed."""
        if event.stream in self.changed:
            self.fold.apply(self.state, event)

    def route(self, recorded: StreamEvent | None, produced: Sequence[StreamEvent]) -> None:
        """The scenario's events `produced` in place of `recorded` (None: its own)."""
        if recorded is not None and len(produced) == 1:
            event = produced[0]
            if event is recorded or (
                event.type == recorded.type
                and event.stream == recorded.stream
                and event.data == recorded.data
            ):
                self.same(event)
                return
        for event in (recorded, *produced) if recorded is not None else produced:
            if event.stream[0] == DEAL_MARK and event.stream not in self.changed:
                self._copy(event.stream)
        for event in produced:
            if event.type in self.types:
                self.fold.apply(self.state, event)

    def _copy(self, deal: str) -> None:
        self.changed.add(deal)
        facts = self.base.get(deal)
        if facts is not None:
            self.state[deal] = facts.copy()

    def merged(self) -> dict[str, DealFacts]:
        """The scenario's deals: the baseline's it left alone, and the changed ones it has."""
        changed, mine = self.changed, self.state
        deals = {deal: facts for deal, facts in self.base.items() if deal not in changed}
        deals.update(mine)
        return deals
