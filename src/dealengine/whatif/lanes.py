"""The what-if's lanes: one stream of events as some views see it, and the folds it feeds.

The baseline's lane is the recorded stream (up to the as-of); a scenario that filters, transforms
or adds events has a lane of its own (`ScenarioLane`), and one that changes only definitions or
selects leads shares the baseline's. Within a lane, folds that would build the same state (same
fold key: the parts of the definition `apply` reads) are folded once. Each decoded event is
handed to every lane; a lane copies an event before changing it (the decoded `data` dict is
shared by all lanes).

A scenario lane's funnels and pipelines are overlays on the baseline lane's states when the two
share an as-of (whatif/overlay.py): only the leads and deals the scenario changes are folded
again (a scenario that scales amounts folds its pipeline whole). Event types a scenario never
changes skip its transforms. The transforms (filters, `drop`, `scale_amounts`,
`shift`, `lost_after_days`) are here too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from dealengine.domain.deal import stage_after
from dealengine.domain.definitions import PipelineDefinition, Pipelines
from dealengine.domain.events import EVENT_TYPES, format_time
from dealengine.domain.streams import DEAL_MARK, ID_START, lead_stream
from dealengine.domain.values import shifted
from dealengine.projections.funnel import (
    FunnelProjection,
    FunnelState,
    Later,
    in_partition,
    later_by,
)
from dealengine.projections.funnel import Keep as LeadKeep
from dealengine.projections.pipeline import DEAL_EVENT_TYPES, DealFacts, PipelineProjection
from dealengine.projections.stream import Fold, StreamEvent
from dealengine.store.recorders import Partition
from dealengine.whatif.overlay import DealOverlay, Overlay
from dealengine.whatif.scenario import Resolved, Shift

Apply = Callable[[Any, StreamEvent], None]  # a fold's apply(view, event); a lane's feed


class Feeder:
    """A fold of no state of its own: hands each event (of `event_types`, or every event) to
    `apply` (a lane's feed)."""

    def __init__(self, apply: Apply, event_types: frozenset[str] | None = None) -> None:
        self.apply = apply
        if event_types is not None:
            self.event_types = event_types

    def initial(self) -> None:
        return None


class Held:
    """A fold whose state is made before the pass, so that an overlay can read it during the
    pass (`fold_rows` takes `initial()`)."""

    def __init__(
        self, fold: FunnelProjection | PipelineProjection, state: Any, apply: Apply | None = None
    ) -> None:
        self.apply, self.event_types, self.state = apply or fold.apply, fold.event_types, state

    def initial(self) -> Any:
        return self.state


PipelineState = dict[str, DealFacts]
# a state and which of its leads count: a key, a rule (None: all), and None or the leads outside
# which the rule keeps every lead (it is asked about those only)
Piece = tuple[FunnelState, Hashable, LeadKeep | None, set[str] | None]


# --- lanes ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class Lane:
    """One stream of events and the distinct folds it feeds."""

    bound: str | None  # the as-of: events that occurred after it are not folded
    funnels: dict[Hashable, tuple[FunnelProjection, FunnelState]] = field(default_factory=dict)
    pipelines: dict[Hashable, tuple[PipelineProjection, PipelineState]] = field(
        default_factory=dict
    )
    # funnel fold key -> the scenario lanes' overlays on that state, and the leads they changed
    overlaid: dict[Hashable, tuple[list[Overlay], set[str]]] = field(default_factory=dict)

    def funnel(self, fold: FunnelProjection) -> Hashable:
        key = fold.fold_key
        held = self.funnels.get(key)
        if held is None or (fold.keep_sequence and not held[0].keep_sequence):
            # a fold that keeps the sequences (ordered modes) serves the reached mode too
            self.funnels[key] = (fold, fold.initial())
        return key

    def pipeline(self, fold: PipelineProjection) -> Hashable:
        key = fold.fold_key
        if key not in self.pipelines:
            self.pipelines[key] = (fold, fold.initial())
        return key

    def fresh(
        self, pipelines: Collection[Hashable]
    ) -> list[tuple[PipelineProjection, PipelineState]]:
        """New states for every fold (a pass starts from nothing); the pipelines to feed: those
        of fold keys `pipelines`."""
        self.funnels = {k: (f, f.initial()) for k, (f, _) in self.funnels.items()}
        self.pipelines = {k: (f, f.initial()) for k, (f, _) in self.pipelines.items()}
        return [held for key, held in self.pipelines.items() if key in pipelines]

    def folds(self, pipelines: Collection[Hashable]) -> list[Fold[Any]]:
        """What the pass feeds each recorded event to: this lane's folds (the pipelines of
        fold keys `pipelines`) when it takes every event, else one fold that checks the as-of
        first; either way into fresh states."""
        chosen = self.fresh(pipelines)
        held: list[Held] = []
        for key, (funnel, view) in self.funnels.items():
            apply: Apply = funnel.apply
            if key in self.overlaid:
                self.overlaid[key] = ([], set())  # filled by the scenario lanes' `folds()`
                apply = _watched(apply, *self.overlaid[key])
            held.append(Held(funnel, view, apply))
        held += [Held(pipeline, view) for pipeline, view in chosen]
        if self.bound is None:
            return list(held)
        pairs, bound = [(fold.apply, fold.state) for fold in held], self.bound

        def feed(_: object, event: StreamEvent) -> None:
            if event.data["occurred_at"] <= bound:
                for apply, view in pairs:
                    apply(view, event)

        return [Feeder(feed)]

    def pieces(self, key: Hashable) -> list[Piece]:
        """What the funnel of fold key `key` counts: here, every lead of its state."""
        return [(self.funnels[key][1], "", None, None)]

    def finish(self, part: Partition | None = None) -> None:
        """Called after the last recorded event (of the leads in `part`)."""

    def release(self) -> None:
        """Let go of the states, once reported on: freeing a large pass's states takes a
        while, better spent while the other partitions finish than after."""
        self.fresh(())
        self.overlaid = {k: ([], set()) for k in self.overlaid}


def _watched(apply: Apply, overlays: list[Overlay], changed: set[str]) -> Apply:
    """A base funnel's `apply` that also hands a lead's recorded event to the overlays that
    changed the lead (`changed`: every lead any of them changed)."""

    def apply_and_pass(view: FunnelState, event: StreamEvent) -> None:
        apply(view, event)
        if event.stream[0] != DEAL_MARK and event.stream[ID_START:] in changed:
            for overlay in overlays:
                overlay.recorded(event)

    return apply_and_pass


@dataclass(eq=False)
class ScenarioLane(Lane):
    """A scenario's own stream: filtered, transformed, with its hypothetical events.

    Per event, in this order: the deal filter (owners, pipelines: a deal's `deal_opened`
    decides for all its events), the date range (`from`, `to`: of the recorded occurred_at),
    `drop`, `scale_amounts`, `shift`, `lost_after_days`, then the as-of. The hypothetical
    events follow the recorded ones through the same steps; then deals still open past their
    limit at the as-of (or now) are lost.

    With a `base` (the plain lane of the same as-of), the lane's funnels and pipelines are
    overlays on the base's states (whatif/overlay.py): only the leads and deals the scenario
    changes are folded again. Its pipelines are its own when it scales amounts.
    """

    plan: Resolved | None = None
    hypothetical: list[StreamEvent] = field(default_factory=list)
    now: str = ""
    base: Lane | None = None
    overlays: dict[Hashable, Overlay | None] = field(default_factory=dict)
    deal_overlays: dict[Hashable, DealOverlay | None] = field(default_factory=dict)
    _feed: Apply | None = None  # _feed(None: a recorded event, event); _feed(True, event) adds
    _flush: Callable[[], None] | None = None

    def funnel(self, fold: FunnelProjection) -> Hashable:
        if self.base is None:
            return super().funnel(fold)
        key = self.base.funnel(fold)
        self.overlays[key] = None  # made by `folds()`, on the base's fresh state
        self.base.overlaid[key] = ([], set())
        return key

    def pipeline(self, fold: PipelineProjection) -> Hashable:
        """With a base, the pipeline is an overlay on the base's state of the same fold key
        (the base folds it too), unless the scenario scales amounts: that changes every deal."""
        key = super().pipeline(fold)
        if (
            self.base is not None
            and self.plan
            and self.plan.scenario.transform.scale_amounts is None
        ):
            self.base.pipeline(fold)
            self.deal_overlays[key] = None  # made by `folds()`, where the pipeline is reported
        return key

    def folds(self, pipelines: Collection[Hashable]) -> list[Fold[Any]]:
        """The lane's feeders; call it after the base lane's `folds()`."""
        assert self.plan is not None
        self.fresh(pipelines)
        held: list[tuple[FunnelProjection | PipelineProjection, Any]] = [
            *self.funnels.values(),  # none with a base: its funnels are overlays
            *[
                p
                for k, p in self.pipelines.items()
                if k in pipelines and k not in self.deal_overlays
            ],
        ]
        untouched = untouched_types(self.plan)
        if self.base is not None:
            for key in self.overlays:
                on_base, changed = self.base.overlaid[key]
                overlay = Overlay(*self.base.funnels[key], untouched, changed)
                self.overlays[key] = overlay
                on_base.append(overlay)
            for key in self.deal_overlays:  # the base's states are fresh: its `folds()` came first
                deals = DealOverlay(self.pipelines[key][0], self.base.pipelines[key][1])
                self.deal_overlays[key] = deals if key in pipelines else None
        overlays: list[Overlay | DealOverlay] = [o for o in self.overlays.values() if o is not None]
        overlays += [o for o in self.deal_overlays.values() if o is not None]
        types: set[str] = {"deal_opened"}  # a deal's pipeline, owner and lead
        by_type: dict[str, list[tuple[Apply, Any]]] = {}
        for fold, state in held:
            for name in fold.event_types:
                by_type.setdefault(name, []).append((fold.apply, state))
        types.update(by_type)
        recorded_as_is = set(by_type)  # the overlays get the leads' events from the base
        for read in [o.types for o in overlays]:
            types.update(read)
            recorded_as_is.update(read & DEAL_EVENT_TYPES)
        if self.plan.scenario.transform.lost_after_days:
            types.update(DEAL_EVENT_TYPES)  # the stage every deal is in

        sames = [o.same for o in overlays]

        def sink(recorded: StreamEvent | None, produced: list[StreamEvent]) -> None:
            for event in produced:
                for apply, view in by_type.get(event.type, ()):
                    apply(view, event)
            if len(produced) == 1 and produced[0] is recorded:  # left as it was
                for same in sames:
                    same(recorded)
            else:
                for overlay in overlays:
                    overlay.route(recorded, produced)

        self._feed, self._flush = _scenario_feed(self.plan, sink, self.bound, self.now)
        feed, bound = self._feed, self.bound

        def as_recorded(_: object, event: StreamEvent) -> None:
            """An event of a type the scenario never changes (a lead's, with an overlay, comes
            from the base instead)."""
            if bound is None or event.data["occurred_at"] <= bound:
                for apply, view in by_type.get(event.type, ()):  # sink(event, [event]), inlined
                    apply(view, event)
                for same in sames:
                    same(event)

        funnels = [o for o in overlays if isinstance(o, Overlay)]
        folds: list[tuple[Apply, set[str]]] = [
            (feed, types - untouched),
            (as_recorded, recorded_as_is & untouched),
        ]
        part = funnels[0].fold.partition if funnels else None
        if part is not None and len(funnels) == len(overlays) and not held:
            # only funnel overlays here: only the deals of this partition's leads
            links = funnels[0].base.lead_of_deal
            folds = [(_deals_of_leads_in(part, links, apply), t) for apply, t in folds]
        return [Feeder(apply, frozenset(t)) for apply, t in folds]

    def pieces(self, key: Hashable) -> list[Piece]:
        """With an overlay: the base's leads the scenario left alone, and the changed ones."""
        overlay = self.overlays.get(key)
        if overlay is None:
            return super().pieces(key)
        base = (overlay.base, ("rest", id(self)), overlay.rest, overlay.changed_by_any)
        return [base, (overlay.state, "", None, None)]

    def finish(self, part: Partition | None = None) -> None:
        assert self._feed is not None and self._flush is not None
        for event in self.hypothetical:  # a lead's events go to its partition only
            if part is None or event.stream[0] == DEAL_MARK or in_partition(event.stream, part):
                self._feed(True, event)
        self._flush()
        for key, overlay in self.deal_overlays.items():
            if overlay is not None:
                self.pipelines[key] = (self.pipelines[key][0], overlay.merged())

    def release(self) -> None:
        super().release()
        self.overlays = dict.fromkeys(self.overlays)
        self.deal_overlays = dict.fromkeys(self.deal_overlays)
        self._feed = self._flush = None


def _deals_of_leads_in(part: Partition, links: Mapping[str, str], apply: Apply) -> Apply:
    """`apply` for the leads' events and the events of their deals only (`links`: the base's
    deal -> lead links, of the leads in partition `part`)."""

    def apply_if_mine(view: object, event: StreamEvent) -> None:
        if event.stream[0] != DEAL_MARK:
            apply(view, event)
        elif event.type == "deal_opened":
            lead = event.data.get("lead_id")
            if lead and in_partition(lead_stream(lead), part):
                apply(view, event)
        elif event.stream in links:
            apply(view, event)

    return apply_if_mine


Sink = Callable[[StreamEvent | None, list[StreamEvent]], None]
"""sink(recorded, produced): the scenario's events in place of a recorded one (None: added)."""


def _scenario_feed(
    plan: Resolved, sink: Sink, bound: str | None, now: str
) -> tuple[Apply, Callable[[], None]]:
    """feed(added, event) and flush(): the scenario's transforms, handing `sink` what they
    make of each event, as of `bound`."""
    f, t = plan.scenario.filter, plan.scenario.transform
    pipelines = plan.pipelines
    start = format_time(f.start) if f.start else None
    end = format_time(f.end) if f.end else None
    keep_deal = deal_rule(plan)
    dropped: set[str] = set()
    pipeline_of: dict[str, str] = {}
    drop = frozenset(t.drop)
    scale = t.scale_amounts
    shifts = _shift_rules(plan, pipeline_of)
    lost = LostAfter(pipelines, t.lost_after_days) if t.lost_after_days else None
    default_pipeline = pipelines.default.name

    def transformed(event: StreamEvent) -> list[StreamEvent]:
        stream, data = event.stream, event.data
        if stream[0] == DEAL_MARK:
            if event.type == "deal_opened":
                name = data.get("pipeline") or default_pipeline
                pipeline_of[stream] = name
                if keep_deal is not None and not keep_deal(data.get("owner"), name):
                    dropped.add(stream)
            if stream in dropped:
                return []
        at = data["occurred_at"]
        if (start is not None and at < start) or (end is not None and at > end):
            return []
        if event.type in drop:
            return []
        if scale is not None and data.get("amount") is not None:
            data = {**data, "amount": str(Decimal(data["amount"]) * scale)}
        for matches, delta in shifts:
            if matches(event.type, stream, data):
                moved = shifted(datetime.fromisoformat(at), delta)
                data = {**data, "occurred_at": format_time(moved)}
                break
        if data is not event.data:
            event = StreamEvent(event.position, stream, event.type, data)
        if lost is not None and stream[0] == DEAL_MARK:
            return lost.step(event)
        return [event]

    def within(events: list[StreamEvent]) -> list[StreamEvent]:
        if bound is None:
            return events
        return [e for e in events if e.data["occurred_at"] <= bound]

    def feed(added: object, event: StreamEvent) -> None:
        """A recorded event (`added` None, as a fold's `apply` is called: the pass hands it
        over directly) or an added one (`added` true)."""
        if bound is None:
            sink(None if added else event, transformed(event))
        else:
            seen = not added and event.data["occurred_at"] <= bound
            sink(event if seen else None, within(transformed(event)))

    def flush() -> None:
        if lost is not None:
            sink(None, within(lost.flush(bound or now)))

    return feed, flush


def untouched_types(plan: Resolved) -> frozenset[str]:
    """The event types whose events the scenario's filters and transforms leave as recorded."""
    f, t = plan.scenario.filter, plan.scenario.transform
    if f.start or f.end:
        return frozenset()
    changed = set(t.drop)
    if deal_rule(plan) is not None or t.lost_after_days:
        changed |= DEAL_EVENT_TYPES
    if t.scale_amounts is not None:
        changed |= {name for name, cls in EVENT_TYPES.items() if "amount" in cls.model_fields}
    for shift in t.shift:
        changed |= DEAL_EVENT_TYPES if shift.stage is not None else set(_shifted(plan, shift))
    return frozenset(EVENT_TYPES) - changed


def deal_rule(plan: Resolved) -> Callable[[str | None, str], bool] | None:
    """Whether a deal (its owner, its pipeline) is kept; None when every deal is."""
    f = plan.scenario.filter
    only_owners, only_pipelines = f.only.owners, f.only.pipelines
    out_owners, out_pipelines = set(f.except_.owners or ()), set(f.except_.pipelines or ())
    if only_owners is None and only_pipelines is None and not out_owners and not out_pipelines:
        return None

    def keep(owner: str | None, pipeline: str) -> bool:
        return (
            (only_owners is None or owner in only_owners)
            and (only_pipelines is None or pipeline in only_pipelines)
            and owner not in out_owners
            and pipeline not in out_pipelines
        )

    return keep


Match = Callable[[str, str, dict[str, Any]], bool]


def _shift_rules(plan: Resolved, pipeline_of: dict[str, str]) -> list[tuple[Match, timedelta]]:
    """(matches(type, stream, data), by how much) for each `[[transform.shift]]`."""
    rules: list[tuple[Match, timedelta]] = []
    by_name = plan.pipelines.by_name
    for shift in plan.scenario.transform.shift:
        delta = timedelta(days=shift.days)
        if shift.stage is None:
            rules.append((_of_types(frozenset(_shifted(plan, shift))), delta))
            continue

        def enters(type_: str, stream: str, data: dict[str, Any], stage: str = shift.stage) -> bool:
            """Whether the event moves its deal into `stage` (under the deal's pipeline)."""
            defn = by_name.get(pipeline_of.get(stream, "")) if stream[0] == DEAL_MARK else None
            if defn is None:
                return False
            if type_ == "deal_opened":
                return defn.initial_stage == stage
            return data.get("to_stage") == stage or defn.events.get(type_) == stage

        rules.append((enters, delta))
    return rules


def _shifted(plan: Resolved, shift: Shift) -> list[str]:
    """The event types a shift by funnel step or by event type moves."""
    if shift.step is not None:
        return next(s.events for s in plan.funnel.steps if s.name == shift.step)
    return shift.events or []


def _of_types(types: frozenset[str]) -> Match:
    def matches(type_: str, stream: str, data: dict[str, Any]) -> bool:
        return type_ in types

    return matches


@dataclass(slots=True)
class Tracked:
    pipeline: PipelineDefinition
    stage: str
    days: float | None  # the limit in the current stage
    deadline: str | None  # when the deal, still there, counts as lost
    lost: bool = False


class LostAfter:
    """`lost_after_days`: a deal in an open stage longer than its limit is lost at that moment
    (a `deal_lost` event then), and its later events are left out. The stage a deal is in
    follows the stage rule the aggregate and the pipeline fold share (`stage_after`)."""

    def __init__(self, pipelines: Pipelines, limits: float | dict[str, float]) -> None:
        self.pipelines = pipelines
        self.limits = limits
        self.deals: dict[str, Tracked] = {}
        self.later: dict[float, Later] = {}  # per limit: a time that many days later

    def _limit(
        self, defn: PipelineDefinition, stage: str, at: str
    ) -> tuple[float | None, str | None]:
        if defn.is_closed(stage):
            return None, None
        days = self.limits.get(stage) if isinstance(self.limits, dict) else self.limits
        if days is None:
            return None, None
        later = self.later.get(days) or self.later.setdefault(days, later_by(days))
        return days, later(at)

    def step(self, event: StreamEvent) -> list[StreamEvent]:
        """The events to fold for this one: itself, none, or the loss that came first."""
        data = event.data
        at = data["occurred_at"]
        if event.type == "deal_opened":
            defn = self.pipelines.by_name.get(data.get("pipeline") or self.pipelines.default.name)
            if defn is not None:
                days, deadline = self._limit(defn, defn.initial_stage, at)
                self.deals[event.stream] = Tracked(defn, defn.initial_stage, days, deadline)
            return [event]
        deal = self.deals.get(event.stream)
        if deal is None:
            return [event]
        if deal.lost:
            return []
        if deal.deadline is not None and at > deal.deadline:
            deal.lost = True
            return [self._loss(event.stream, deal, event.position)]
        stage = stage_after(deal.pipeline, deal.stage, event.type, data.get("to_stage"))
        if stage != deal.stage:
            deal.stage = stage
            deal.days, deal.deadline = self._limit(deal.pipeline, stage, at)
        return [event]

    def flush(self, bound: str) -> list[StreamEvent]:
        """The losses of deals still open past their limit at `bound`."""
        losses = []
        for stream, deal in self.deals.items():
            if not deal.lost and deal.deadline is not None and deal.deadline <= bound:
                deal.lost = True
                losses.append(self._loss(stream, deal, 0))
        return losses

    @staticmethod
    def _loss(stream: str, deal: Tracked, position: int) -> StreamEvent:
        assert deal.deadline is not None and deal.days is not None
        reason = f"what-if: over {deal.days:g} days in {deal.stage}"
        data = {"id": f"whatif-lost:{stream}", "occurred_at": deal.deadline, "reason": reason}
        return StreamEvent(position, stream, "deal_lost", data)
