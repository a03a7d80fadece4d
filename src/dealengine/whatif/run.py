"""The what-if pass: the recorded stream read once, the baseline and every scenario folded
side by side from it, by the engine's own folds (`FunnelProjection`, `PipelineProjection`)
and reports. There is no second implementation of the rules: a scenario changes only what the
folds are given (definitions, events) and which leads and deals a report sees.

The pass is organised in lanes. A lane is one stream of events as some views see it: the
baseline's lane is the recorded stream (up to the as-of), and every scenario that filters,
transforms or adds events has a lane of its own; a scenario that changes only definitions or
selects leads by channel or campaign shares the baseline's lane. Within a lane, folds that would
build the same state (same fold key: the parts of the definition `apply` reads) are folded once,
and a report is computed once per distinct (state, definition, selection, as-of). Each decoded
event is handed to every lane; a lane copies an event before changing it (the decoded `data`
dict is shared by all lanes).

A scenario lane's funnels are overlays on the baseline lane's funnel states when the two share
an as-of (whatif/overlay.py): only the leads the scenario changes are folded again, and the
scenario's funnel counts the baseline's other leads as they are. Event types the scenario never
changes skip its transforms. Over several processes (`over_partitions`), each partition folds
every lane for its leads, and each pipeline report is made in one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dealengine.domain.deal import stage_after
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition, Pipelines
from dealengine.domain.errors import DealEngineError, InvalidDefinition
from dealengine.domain.events import EVENT_TYPES, format_time
from dealengine.projections.funnel import (
    LEAD,
    UNKNOWN,
    FunnelProjection,
    FunnelState,
    FunnelTotals,
    FunnelView,
    Later,
    in_partition,
    later_by,
)
from dealengine.projections.funnel import Keep as LeadKeep
from dealengine.projections.pipeline import (
    DEAL_EVENT_TYPES,
    DealFacts,
    Derived,
    PipelineProjection,
    PipelineView,
)
from dealengine.projections.stream import Fold, FoldPass, StreamEvent, collector_paused
from dealengine.store.recorders import Partition
from dealengine.whatif.hypothetical import hypothetical_events
from dealengine.whatif.overlay import Overlay
from dealengine.whatif.result import ScenarioResult, Views, WhatIf, diff
from dealengine.whatif.scenario import (
    Resolved,
    Scenario,
    Shift,
    load_scenario,
    resolve,
    validated,
)

if TYPE_CHECKING:
    from dealengine.engine import Engine

ScenarioLike = Scenario | Path | str | Mapping[str, Any]
Apply = Callable[[Any, StreamEvent], None]  # a fold's apply(view, event); a lane's feed
Keep = Callable[[str | None], bool]  # whether a lead (None: a deal without one) is selected
# `over_partitions(work)`: work(part, fold_pass) in each partition of the leads (see
# Engine._over_partitions), the results in partition order
OverPartitions = Callable[
    [Callable[[Partition | None, FoldPass], "PartResult"]], list["PartResult"]
]


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


# --- fold keys: what a fold's `apply` reads of its definition -----------------------------------


def funnel_fold_key(d: FunnelDefinition) -> Hashable:
    """Two funnel definitions with the same key fold the same events into the same state,
    but for the leads' sequences, which only the ordered modes keep (`apply` adds them to the
    state it builds otherwise): `FunnelProjection.apply` reads the steps' events, the
    exclusions, the attribution and the touch fields. The mode, the window, the step windows,
    the cohort period and the step names are read only by the reports (tests/test_whatif.py
    checks this on generated histories)."""
    return (
        tuple(tuple(s.events) for s in d.steps),
        tuple(sorted(d.exclusions)),
        d.attribution,
        tuple(dict.fromkeys(("channel", *d.breakdowns))),
    )


def pipeline_fold_key(d: PipelineDefinition, default: bool) -> Hashable:
    """Likewise for a pipeline: `PipelineProjection.apply` reads its name, initial stage, which
    stages are closed and the stage events; probabilities, forecast categories and stale limits
    are read only by `report()`."""
    return (
        d.name,
        default,
        d.initial_stage,
        tuple((s.name, s.closed) for s in d.stages),
        tuple(sorted(d.events.items())),
    )


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
        key = funnel_fold_key(fold.definition)
        held = self.funnels.get(key)
        if held is None or (fold.keep_sequence and not held[0].keep_sequence):
            # a fold that keeps the sequences (ordered modes) serves the reached mode too
            self.funnels[key] = (fold, fold.initial())
        return key

    def pipeline(self, fold: PipelineProjection) -> Hashable:
        key = pipeline_fold_key(fold.definition, fold.default)
        if key not in self.pipelines:
            self.pipelines[key] = (fold, fold.initial())
        return key

    def fresh(
        self, pipelines: Collection[Hashable]
    ) -> list[tuple[FunnelProjection | PipelineProjection, Any]]:
        """New states for every fold (a pass starts from nothing); the folds to feed: the
        funnels, and the pipelines of fold keys `pipelines`."""
        self.funnels = {k: (f, f.initial()) for k, (f, _) in self.funnels.items()}
        self.pipelines = {k: (f, f.initial()) for k, (f, _) in self.pipelines.items()}
        chosen = [held for key, held in self.pipelines.items() if key in pipelines]
        return [*self.funnels.values(), *chosen]

    def folds(self, pipelines: Collection[Hashable]) -> list[Fold[Any]]:
        """What the pass feeds each recorded event to: this lane's folds (the pipelines of
        fold keys `pipelines`) when it takes every event, else one fold that checks the as-of
        first; either way into fresh states."""
        self.fresh(pipelines)
        held: list[Held] = []
        for key, (funnel, view) in self.funnels.items():
            apply: Apply = funnel.apply
            if key in self.overlaid:
                self.overlaid[key] = ([], set())  # filled by the scenario lanes' `folds()`
                apply = _watched(apply, *self.overlaid[key])
            held.append(Held(funnel, view, apply))
        held += [
            Held(pipeline, view) for key, (pipeline, view) in self.pipelines.items()
            if key in pipelines
        ]  # fmt: skip
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


def _watched(apply: Apply, overlays: list[Overlay], changed: set[str]) -> Apply:
    """A base funnel's `apply` that also hands a lead's recorded event to the overlays that
    changed the lead (`changed`: every lead any of them changed)."""

    def apply_and_pass(view: FunnelState, event: StreamEvent) -> None:
        apply(view, event)
        if event.stream[0] != "d" and event.stream[5:] in changed:
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

    With a `base` (the plain lane of the same as-of), the lane's funnels are overlays on the
    base's funnel states (whatif/overlay.py): only the leads the scenario changes are folded
    again. Its pipelines are its own.
    """

    plan: Resolved | None = None
    hypothetical: list[StreamEvent] = field(default_factory=list)
    now: str = ""
    base: Lane | None = None
    overlays: dict[Hashable, Overlay | None] = field(default_factory=dict)
    _feed: Callable[[StreamEvent, bool], None] | None = None
    _flush: Callable[[], None] | None = None

    def funnel(self, fold: FunnelProjection) -> Hashable:
        if self.base is None:
            return super().funnel(fold)
        key = self.base.funnel(fold)
        self.overlays[key] = None  # made by `folds()`, on the base's fresh state
        self.base.overlaid[key] = ([], set())
        return key

    def folds(self, pipelines: Collection[Hashable]) -> list[Fold[Any]]:
        """The lane's feeders; call it after the base lane's `folds()`."""
        assert self.plan is not None
        held = self.fresh(pipelines)
        untouched = _untouched(self.plan)
        if self.base is not None:
            for key in self.overlays:
                overlays, changed = self.base.overlaid[key]
                overlay = Overlay(*self.base.funnels[key], untouched, changed)
                self.overlays[key] = overlay
                overlays.append(overlay)
        overlays = [o for o in self.overlays.values() if o is not None]
        types: set[str] = {"deal_opened"}  # a deal's pipeline, owner and lead
        by_type: dict[str, list[tuple[Apply, Any]]] = {}
        for fold, state in held:
            for name in fold.event_types:
                by_type.setdefault(name, []).append((fold.apply, state))
        types.update(by_type)
        recorded_as_is = set(by_type)  # the overlays get the leads' events from the base
        for overlay in overlays:
            types.update(overlay.types)
            recorded_as_is.update(overlay.types & DEAL_EVENT_TYPES)
        if self.plan.scenario.transform.lost_after_days:
            types.update(DEAL_EVENT_TYPES)  # the stage every deal is in

        def sink(recorded: StreamEvent | None, produced: list[StreamEvent]) -> None:
            for event in produced:
                for apply, view in by_type.get(event.type, ()):
                    apply(view, event)
            for overlay in overlays:
                overlay.route(recorded, produced)

        self._feed, self._flush = _scenario_feed(self.plan, sink, self.bound, self.now)
        feed, bound, sames = self._feed, self.bound, [o.same for o in overlays]

        def as_recorded(_: object, event: StreamEvent) -> None:
            """An event of a type the scenario never changes (a lead's, with an overlay, comes
            from the base instead)."""
            if bound is None or event.data["occurred_at"] <= bound:
                for apply, view in by_type.get(event.type, ()):
                    apply(view, event)
                for same in sames:
                    same(event)

        def transform(_: object, event: StreamEvent) -> None:
            feed(event, True)

        folds: list[tuple[Apply, set[str]]] = [
            (transform, types - untouched),
            (as_recorded, recorded_as_is & untouched),
        ]
        part = overlays[0].fold.partition if overlays else None
        if part is not None and not held:  # only overlays here: only this partition's deals
            links = overlays[0].base.lead_of_deal
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
            if part is None or event.stream[0] == "d" or in_partition(event.stream, part):
                self._feed(event, False)
        self._flush()


def _deals_of_leads_in(part: Partition, links: Mapping[str, str], apply: Apply) -> Apply:
    """`apply` for the leads' events and the events of their deals only (`links`: the base's
    deal -> lead links, of the leads in partition `part`)."""

    def apply_if_mine(view: object, event: StreamEvent) -> None:
        if event.stream[0] != "d":
            apply(view, event)
        elif event.type == "deal_opened":
            lead = event.data.get("lead_id")
            if lead and in_partition(LEAD + lead, part):
                apply(view, event)
        elif event.stream in links:
            apply(view, event)

    return apply_if_mine


Sink = Callable[[StreamEvent | None, list[StreamEvent]], None]
"""sink(recorded, produced): the scenario's events in place of a recorded one (None: added)."""


def _scenario_feed(
    plan: Resolved, sink: Sink, bound: str | None, now: str
) -> tuple[Callable[[StreamEvent, bool], None], Callable[[], None]]:
    """feed(event, recorded) and flush(): the scenario's transforms, handing `sink` what they
    make of each event, as of `bound`."""
    f, t = plan.scenario.filter, plan.scenario.transform
    pipelines = plan.pipelines
    start = format_time(f.start) if f.start else None
    end = format_time(f.end) if f.end else None
    keep_deal = _deal_rule(plan)
    dropped: set[str] = set()
    pipeline_of: dict[str, str] = {}
    drop = frozenset(t.drop)
    scale = t.scale_amounts
    shifts = _shift_rules(plan, pipeline_of)
    lost = LostAfter(pipelines, t.lost_after_days) if t.lost_after_days else None
    default_pipeline = pipelines.default.name

    def transformed(event: StreamEvent) -> list[StreamEvent]:
        stream, data = event.stream, event.data
        if stream[0] == "d":
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
                data = {**data, "occurred_at": format_time(datetime.fromisoformat(at) + delta)}
                break
        if data is not event.data:
            event = StreamEvent(event.position, stream, event.type, data)
        if lost is not None and stream[0] == "d":
            return lost.step(event)
        return [event]

    def within(events: list[StreamEvent]) -> list[StreamEvent]:
        if bound is None:
            return events
        return [e for e in events if e.data["occurred_at"] <= bound]

    def feed(event: StreamEvent, recorded: bool) -> None:
        seen = recorded and (bound is None or event.data["occurred_at"] <= bound)
        sink(event if seen else None, within(transformed(event)))

    def flush() -> None:
        if lost is not None:
            sink(None, within(lost.flush(bound or now)))

    return feed, flush


def _untouched(plan: Resolved) -> frozenset[str]:
    """The event types whose events the scenario's filters and transforms leave as recorded."""
    f, t = plan.scenario.filter, plan.scenario.transform
    if f.start or f.end:
        return frozenset()
    changed = set(t.drop)
    if _deal_rule(plan) is not None or t.lost_after_days:
        changed |= DEAL_EVENT_TYPES
    if t.scale_amounts is not None:
        changed |= {name for name, cls in EVENT_TYPES.items() if "amount" in cls.model_fields}
    for shift in t.shift:
        changed |= DEAL_EVENT_TYPES if shift.stage is not None else set(_shifted(plan, shift))
    return frozenset(EVENT_TYPES) - changed


def _deal_rule(plan: Resolved) -> Callable[[str | None, str], bool] | None:
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
            defn = by_name.get(pipeline_of.get(stream, "")) if stream[0] == "d" else None
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


# --- selecting leads by their attributed touch (channels, campaigns) ---------------------------


def _selection_key(plan: Resolved | None) -> str:
    if plan is None or not plan.selects_leads:
        return ""
    f = plan.scenario.filter
    rules = [f.only.channels, f.only.campaigns, f.except_.channels, f.except_.campaigns]
    return orjson.dumps(rules).decode()


Touches = dict[str, dict[str, tuple[str, str]]]  # field -> lead -> (time, value)


def _selection_rules(plan: Resolved) -> list[tuple[str, set[str] | None, set[str]]]:
    """(touch field, only these values or None, not these values) per filtered field."""
    f = plan.scenario.filter
    return [
        (name, set(only) if only is not None else None, set(out or ()))
        for name, only, out in (
            ("channel", f.only.channels, f.except_.channels),
            ("campaign", f.only.campaigns, f.except_.campaigns),
        )
        if only is not None or out
    ]


def _rejectable(plan: Resolved, touches: Touches) -> set[str] | None:
    """The leads `_keep_rule` may leave out (it keeps every other): those whose touch has a
    value the filter excludes; None (any lead) when it keeps only some values or excludes
    `unknown` (leads without a touch)."""
    found: set[str] = set()
    for name, only, out in _selection_rules(plan):
        if only is not None or UNKNOWN in out:
            return None
        found.update(lead for lead, (_, value) in touches[name].items() if value in out)
    return found


def _keep_rule(plan: Resolved, touches: Touches) -> Keep:
    """Whether a lead is selected: its attributed channel / campaign (the touch the funnel's
    attribution gives, `unknown` when none, and for a deal without a lead) passes the filter."""
    rules = _selection_rules(plan)
    decided: dict[str | None, bool] = {}

    def keep(lead: str | None) -> bool:
        kept = decided.get(lead)
        if kept is None:
            kept = True
            for name, only, out in rules:
                touch = touches[name].get(lead) if lead is not None else None
                value = touch[1] if touch else UNKNOWN
                if (only is not None and value not in only) or value in out:
                    kept = False
                    break
            decided[lead] = kept
        return kept

    return keep


# --- the run -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """The views one column of the result needs: a lane, its folds, what the reports see."""

    name: str
    plan: Resolved | None  # None: the baseline
    lane: Lane
    funnel: FunnelProjection
    pipeline: PipelineProjection
    as_of: datetime | None
    funnel_key: Hashable = None
    pipeline_key: Hashable = None


def plan_of(engine: Engine, item: ScenarioLike, n: int, as_of: datetime | None) -> Resolved:
    """Load (a path), validate (a mapping) and resolve one scenario against the engine."""
    if isinstance(item, Scenario | Mapping):
        source = "<scenario>"
        scenario = item if isinstance(item, Scenario) else validated(Scenario, dict(item), source)
        name = scenario.name or f"scenario-{n}"
        scenario = scenario.model_copy(update={"name": name})
        source, folder = f"<{name}>", Path.cwd()
    else:
        path = Path(item)
        scenario, source, folder = load_scenario(path), str(path), path.parent
    return resolve(scenario, source, folder, engine.funnel_definition, engine.pipelines, as_of)


def run_what_if(
    engine: Engine,
    scenarios: Sequence[ScenarioLike],
    over_partitions: OverPartitions,
    *,
    as_of: datetime | None = None,
    pipeline_name: str | None = None,
    overlays: bool = True,
) -> WhatIf:
    """The baseline and every scenario, from one read of the store (see the module doc).
    `overlays=False`: a scenario's own lane folds every lead again, not only those it changes
    (the tests compare both).

    `over_partitions` runs the pass in each partition of the leads (one per process on a
    large store, else one: everything): its `fold_pass(folds, None)` is the engine's own pass
    over that partition's events (the events the views see, corrections honoured), given every
    lane's folds at once. The funnel reports sum the partitions' totals; the pipelines are
    folded whole in this process."""
    plans = [plan_of(engine, item, n, as_of) for n, item in enumerate(scenarios, start=1)]
    seen: dict[str, str] = {}
    for plan in plans:
        if plan.name in seen:
            raise DealEngineError(
                f"two scenarios are named {plan.name!r} ({seen[plan.name]}, {plan.source}): "
                "set `name` in one of them"
            )
        seen[plan.name] = plan.source
    view = pipeline_name or engine.pipelines.default.name
    if view not in engine.pipelines.by_name:
        known = ", ".join(engine.pipelines.by_name)
        raise DealEngineError(f"unknown pipeline {view!r} (known: {known})")
    now = engine.clock()
    hypothetical = {plan.name: hypothetical_events(engine, plan) for plan in plans}

    plain: dict[str | None, Lane] = {}
    lanes: list[Lane] = []

    def plain_lane(moment: datetime | None) -> Lane:
        bound = format_time(moment) if moment is not None else None
        if bound not in plain:
            plain[bound] = Lane(bound)
            lanes.append(plain[bound])
        return plain[bound]

    baseline = engine.pipelines[view]
    jobs = [
        Job(
            "",
            None,
            plain_lane(as_of),
            FunnelProjection(engine.funnel_definition),
            PipelineProjection(baseline, default=baseline is engine.pipelines.default),
            as_of,
        )
    ]
    for plan in plans:
        definition = plan.pipelines.by_name.get(view)
        if definition is None:
            raise InvalidDefinition(plan.source, "pipelines", f"no pipeline {view!r} to compare")
        if plan.changes_stream:
            bound = format_time(plan.as_of) if plan.as_of else None
            lane: Lane = ScenarioLane(
                bound,
                plan=plan,
                hypothetical=hypothetical[plan.name],
                now=format_time(now),
                # the baseline's funnel states, overlaid, unless leads are selected by touch
                base=plain.get(bound) if overlays and not plan.selects_leads else None,
            )
            lanes.append(lane)
        else:
            lane = plain_lane(plan.as_of)
        default = definition.name == plan.pipelines.default.name
        jobs.append(
            Job(
                plan.name,
                plan,
                lane,
                FunnelProjection(plan.funnel),
                PipelineProjection(definition, default=default),
                plan.as_of,
            )
        )
    for job in jobs:
        job.funnel_key = job.lane.funnel(job.funnel)
        job.pipeline_key = job.lane.pipeline(job.pipeline)

    parts = over_partitions(lambda part, fold_pass: _fold_part(lanes, jobs, part, fold_pass, now))
    decisions: dict[Hashable, dict[str, bool]] = {}
    reports: dict[Hashable, FunnelView | PipelineView] = {}
    for part in parts:
        for key, decided in part.deals.items():
            decisions.setdefault(key, {}).update(decided)
        reports.update(part.pipelines)
    derived: dict[Hashable, list[Derived]] = {}
    views = []
    with collector_paused():
        for job in jobs:
            funnel_key = _funnel_report_key(job)
            if funnel_key not in reports:
                totals = [t for part in parts for t in part.funnels[funnel_key]]
                reports[funnel_key] = job.funnel.assemble(totals, job.as_of)
            pipeline_key = _pipeline_report_key(job)
            if pipeline_key not in reports:  # on selected leads: folded in partition 0 (here)
                assert job.plan is not None
                state = job.lane.pipelines[job.pipeline_key][1]
                decided = decisions[_funnel_state_key(job)]
                leadless = _keep_rule(job.plan, {})(None)
                state = {d: f for d, f in state.items() if decided.get(d, leadless)}
                reports[pipeline_key] = _pipeline_report(job, state, now, derived)
            funnel, pipeline = reports[funnel_key], reports[pipeline_key]
            assert isinstance(funnel, FunnelView) and isinstance(pipeline, PipelineView)
            views.append(Views(funnel=funnel, pipeline=pipeline))
    base = views[0]
    results = {}
    for job, scenario_views in zip(jobs[1:], views[1:], strict=True):
        assert job.plan is not None
        results[job.name] = ScenarioResult(
            name=job.name,
            question=job.plan.scenario.question,
            source=job.plan.source,
            as_of=job.as_of,
            funnel=scenario_views.funnel,
            pipeline=scenario_views.pipeline,
            diff=diff(base, scenario_views),
        )
    return WhatIf(baseline=base, scenarios=results)


@dataclass(slots=True)
class PartResult:
    """What one partition of the leads gives the what-if: per funnel report, the totals of its
    pieces; per selected lead state, whether each of its leads' deals is kept."""

    funnels: dict[Hashable, list[FunnelTotals]]
    deals: dict[Hashable, dict[str, bool]]
    pipelines: dict[Hashable, PipelineView]  # the reports of the pipeline states folded here


def _pipelines_here(jobs: list[Job], part: Partition | None) -> list[Job]:
    """The jobs whose pipeline report partition `part` makes (the first job of each distinct
    report), dealt out from the last partition (partition 0, this process, makes the funnel
    reports after the others); none that selects leads: the parent reports on those once the
    selections of every partition have met."""
    first = {_pipeline_report_key(job): job for job in reversed(jobs)}
    reports = [job for job in first.values() if not _selection_key(job.plan)][::-1]
    # the dearest lanes first (the partition that folds a lane's pipeline feeds it all the
    # deals, the others only those of their leads): those whose transforms change deals' events
    reports.sort(key=lambda job: -_deal_work(job.lane))
    if part is None:
        return reports
    i, n = part
    return [job for k, job in enumerate(reports) if n - 1 - k % n == i]


def _deal_work(lane: Lane) -> int:
    """How much a lane does per deal event: 2 when its transforms change deals' events, 1 when
    it has its own stream, else 0."""
    if not isinstance(lane, ScenarioLane) or lane.plan is None:
        return 0
    return 1 if _untouched(lane.plan) >= DEAL_EVENT_TYPES else 2


def _pipeline_report(
    job: Job, state: PipelineState, now: datetime, derived: dict[Hashable, list[Derived]]
) -> PipelineView:
    """The job's pipeline report on `state`; the deals' derived facts shared by the reports of
    one state (`derived`)."""
    moment = job.as_of or now
    selection = _selection_key(job.plan)
    key = (id(job.lane), job.pipeline_key, selection, job.funnel_key if selection else None, moment)
    if key not in derived:
        derived[key] = job.pipeline.derive(state, moment)
    return job.pipeline.report(state, job.as_of, now, derived[key])


def _fold_part(
    lanes: list[Lane],
    jobs: list[Job],
    part: Partition | None,
    fold_pass: FoldPass,
    now: datetime,
) -> PartResult:
    """Fold every lane over the events of partition `part` (None: all of them), sum what its
    leads give each distinct funnel report, and report on the pipeline states homed here."""
    for lane in lanes:
        for fold, _ in lane.funnels.values():
            fold.partition = part
    reporting = _pipelines_here(jobs, part)
    here = {(id(job.lane), job.pipeline_key) for job in reporting}
    if part is None or part[0] == 0:  # the states of selected leads, reported on by the parent
        here |= {(id(job.lane), job.pipeline_key) for job in jobs if _selection_key(job.plan)}
    with collector_paused():
        # a scenario lane's folds are made after its base's (an overlay reads the base's fresh
        # states) and fed each event before them (it copies a lead's state before the event)
        scenario_last = sorted(lanes, key=lambda lane: isinstance(lane, ScenarioLane))
        made = {
            id(lane): lane.folds({key for at, key in here if at == id(lane)})
            for lane in scenario_last
        }
        fold_pass([f for lane in reversed(scenario_last) for f in made[id(lane)]], None)
        for lane in lanes:
            lane.finish(part)
        result = PartResult({}, {}, {})
        # the pieces of every report summed by state and definition, each with the leads it
        # selects (or all), in one pass over the state's leads
        Group = tuple[int, str]  # a state (its id) and a definition
        groups: dict[Group, tuple[FunnelProjection, FunnelState, dict[Hashable, Any]]] = {}
        wanted: dict[Hashable, list[tuple[Group, Hashable]]] = {}
        for job in jobs:
            funnel_key = _funnel_report_key(job)
            if funnel_key in wanted:
                continue
            if job.plan is not None and _selection_key(job.plan):
                state = job.lane.funnels[job.funnel_key][1]
                keep = _keep_rule(job.plan, state.touches)
                decided = {d: keep(k) for d, k in state.lead_of_deal.items()}
                result.deals[_funnel_state_key(job)] = decided
                rejectable = _rejectable(job.plan, state.touches)
                pieces: list[Piece] = [(state, _selection_key(job.plan), keep, rejectable)]
            else:
                pieces = job.lane.pieces(job.funnel_key)
            definition = job.funnel.definition.model_dump_json()
            wanted[funnel_key] = []
            for state, chosen, rule, unsure in pieces:
                group = (id(state), definition)
                keeps = groups.setdefault(group, (job.funnel, state, {}))[2]
                keeps.setdefault(chosen, (rule, unsure))
                wanted[funnel_key].append((group, chosen))
        summed: dict[tuple[Hashable, Hashable], FunnelTotals] = {}
        for at, (funnel, state, keeps) in groups.items():
            rules = [rule for rule, _ in keeps.values()]
            # the leads outside which every rule keeps all, when each rule says which
            asked: set[str] | None = set()
            for leads in {id(u): u for rule, u in keeps.values() if rule is not None}.values():
                asked = None if leads is None or asked is None else asked | leads
            every = funnel.summarise_each(state, rules, unsure=asked)
            for chosen, totals in zip(keeps, every, strict=True):
                summed[at, chosen] = totals
        result.funnels = {key: [summed[piece] for piece in wanted[key]] for key in wanted}
        derived: dict[Hashable, list[Derived]] = {}
        for job in reporting:
            deals = job.lane.pipelines[job.pipeline_key][1]
            result.pipelines[_pipeline_report_key(job)] = _pipeline_report(job, deals, now, derived)
        return result


def _funnel_state_key(job: Job) -> Hashable:
    """The funnel state a job's reports select leads from."""
    return (id(job.lane), job.funnel_key, _selection_key(job.plan))


def _funnel_report_key(job: Job, selection: bool = True) -> Hashable:
    """What a funnel report depends on: the state, the leads selected, the definition, the
    as-of (`selection=False`: all but the selection)."""
    at = format_time(job.as_of) if job.as_of else None
    definition = job.funnel.definition.model_dump_json()
    chosen = _selection_key(job.plan) if selection else None
    return ("funnel", id(job.lane), job.funnel_key, chosen, definition, at)


def _pipeline_report_key(job: Job) -> Hashable:
    selection = _selection_key(job.plan)
    at = format_time(job.as_of) if job.as_of else None
    return (
        "pipeline", id(job.lane), job.pipeline_key, job.pipeline.definition.model_dump_json(),
        selection, job.funnel_key if selection else None, at,
    )  # fmt: skip
