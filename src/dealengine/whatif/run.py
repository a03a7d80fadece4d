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
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dealengine.domain.deal import stage_after
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition, Pipelines
from dealengine.domain.errors import DealEngineError, InvalidDefinition
from dealengine.domain.events import format_time
from dealengine.projections.funnel import (
    UNKNOWN,
    FunnelProjection,
    FunnelState,
    FunnelTotals,
    FunnelView,
    in_partition,
)
from dealengine.projections.pipeline import DealFacts, Derived, PipelineProjection, PipelineView
from dealengine.projections.stream import Fold, FoldPass, StreamEvent, collector_paused
from dealengine.store.recorders import Partition
from dealengine.whatif.hypothetical import hypothetical_events
from dealengine.whatif.result import ScenarioResult, Views, WhatIf, diff
from dealengine.whatif.scenario import Resolved, Scenario, load_scenario, resolve, validated

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
    """A fold of no state of its own: hands each event to `apply` (a lane's feed)."""

    def __init__(self, apply: Apply) -> None:
        self.apply = apply

    def initial(self) -> None:
        return None


PipelineState = dict[str, DealFacts]


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

    def pairs(self) -> list[tuple[Apply, Any]]:
        folds: list[tuple[Any, Any]] = [*self.funnels.values(), *self.pipelines.values()]
        return [(fold.apply, view) for fold, view in folds]

    def folds(self) -> list[Fold[Any]]:
        """What the pass feeds each recorded event to: this lane's folds themselves when it
        takes every event, else one fold that checks the as-of first."""
        if self.bound is None:
            funnels: list[Fold[Any]] = [fold for fold, _ in self.funnels.values()]
            return funnels + [fold for fold, _ in self.pipelines.values()]
        pairs, bound = self.pairs(), self.bound

        def feed(_: object, event: StreamEvent) -> None:
            if event.data["occurred_at"] <= bound:
                for apply, view in pairs:
                    apply(view, event)

        return [Feeder(feed)]

    def views(self, folded: Sequence[Any]) -> None:
        """Take the states the pass built for `folds()`, when they were the folds themselves."""
        if self.bound is not None:
            return
        states = iter(folded)
        for key, (funnel, _) in list(self.funnels.items()):
            self.funnels[key] = (funnel, next(states))
        for key, (pipeline, _) in list(self.pipelines.items()):
            self.pipelines[key] = (pipeline, next(states))

    def finish(self, part: Partition | None = None) -> None:
        """Called after the last recorded event (of the leads in `part`)."""


@dataclass(eq=False)
class ScenarioLane(Lane):
    """A scenario's own stream: filtered, transformed, with its hypothetical events.

    Per event, in this order: the deal filter (owners, pipelines: a deal's `deal_opened`
    decides for all its events), the date range (`from`, `to`: of the recorded occurred_at),
    `drop`, `scale_amounts`, `shift`, `lost_after_days`, then the as-of. The hypothetical
    events follow the recorded ones through the same steps; then deals still open past their
    limit at the as-of (or now) are lost.
    """

    plan: Resolved | None = None
    hypothetical: list[StreamEvent] = field(default_factory=list)
    now: str = ""
    _feed: Apply | None = None
    _flush: Callable[[], None] | None = None

    def folds(self) -> list[Fold[Any]]:
        assert self.plan is not None
        self._feed, self._flush = _scenario_feed(self.plan, self.pairs(), self.bound, self.now)
        return [Feeder(self._feed)]

    def views(self, folded: Sequence[Any]) -> None:
        """The states are this lane's own (fed by `finish`'s and the feeder's calls)."""

    def finish(self, part: Partition | None = None) -> None:
        assert self._feed is not None and self._flush is not None
        for event in self.hypothetical:  # a lead's events go to its partition only
            if part is None or event.stream[0] == "d" or in_partition(event.stream, part):
                self._feed(None, event)
        self._flush()


def _scenario_feed(
    plan: Resolved, pairs: list[tuple[Apply, Any]], bound: str | None, now: str
) -> tuple[Apply, Callable[[], None]]:
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

    def fold(event: StreamEvent) -> None:
        if bound is None or event.data["occurred_at"] <= bound:
            for apply, view in pairs:
                apply(view, event)

    def feed(_: object, event: StreamEvent) -> None:
        stream, data = event.stream, event.data
        if stream[0] == "d":
            if event.type == "deal_opened":
                name = data.get("pipeline") or default_pipeline
                pipeline_of[stream] = name
                if keep_deal is not None and not keep_deal(data.get("owner"), name):
                    dropped.add(stream)
            if stream in dropped:
                return
        at = data["occurred_at"]
        if (start is not None and at < start) or (end is not None and at > end):
            return
        if event.type in drop:
            return
        if scale is not None and data.get("amount") is not None:
            data = {**data, "amount": str(Decimal(data["amount"]) * scale)}
        for matches, delta in shifts:
            if matches(event.type, stream, data):
                data = {**data, "occurred_at": format_time(datetime.fromisoformat(at) + delta)}
                break
        if data is not event.data:
            event = StreamEvent(event.position, stream, event.type, data)
        if lost is not None and stream[0] == "d":
            for e in lost.step(event):
                fold(e)
        elif bound is None or data["occurred_at"] <= bound:
            for apply, view in pairs:
                apply(view, event)

    def flush() -> None:
        if lost is not None:
            for e in lost.flush(bound or now):
                fold(e)

    return feed, flush


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
    steps = {s.name: s for s in plan.funnel.steps}
    for shift in plan.scenario.transform.shift:
        delta = timedelta(days=shift.days)
        if shift.stage is None:
            chosen = steps[shift.step].events if shift.step is not None else shift.events or []
            rules.append((_of_types(frozenset(chosen)), delta))
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

    def _limit(
        self, defn: PipelineDefinition, stage: str, at: str
    ) -> tuple[float | None, str | None]:
        if defn.is_closed(stage):
            return None, None
        days = self.limits.get(stage) if isinstance(self.limits, dict) else self.limits
        if days is None:
            return None, None
        return days, format_time(datetime.fromisoformat(at) + timedelta(days=days))

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


def _keep_rule(plan: Resolved, touches: dict[str, dict[str, tuple[str, str]]]) -> Keep:
    """Whether a lead is selected: its attributed channel / campaign (the touch the funnel's
    attribution gives, `unknown` when none, and for a deal without a lead) passes the filter."""
    f = plan.scenario.filter
    rules = [
        (name, set(only) if only is not None else None, set(out or ()))
        for name, only, out in (
            ("channel", f.only.channels, f.except_.channels),
            ("campaign", f.only.campaigns, f.except_.campaigns),
        )
        if only is not None or out
    ]
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
) -> WhatIf:
    """The baseline and every scenario, from one read of the store (see the module doc).

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
            lane: Lane = ScenarioLane(
                format_time(plan.as_of) if plan.as_of else None,
                plan=plan,
                hypothetical=hypothetical[plan.name],
                now=format_time(now),
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

    parts = over_partitions(lambda part, fold_pass: _fold_part(lanes, jobs, part, fold_pass))
    decisions: dict[Hashable, dict[str, bool]] = {}
    for part in parts:
        for key, decided in part.deals.items():
            decisions.setdefault(key, {}).update(decided)
    reports: dict[Hashable, FunnelView | PipelineView] = {}
    derived: dict[Hashable, list[Derived]] = {}
    views = []
    with collector_paused():
        for job in jobs:
            funnel_key = _funnel_report_key(job)
            if funnel_key not in reports:
                totals = [part.funnels[funnel_key] for part in parts]
                reports[funnel_key] = job.funnel.assemble(totals, job.as_of)
            pipeline_key = _pipeline_report_key(job)
            if pipeline_key not in reports:
                state = job.lane.pipelines[job.pipeline_key][1]  # folded beside partition 0
                selection = _selection_key(job.plan)
                if job.plan is not None and selection:
                    decided = decisions[_funnel_state_key(job)]
                    leadless = _keep_rule(job.plan, {})(None)
                    state = {d: f for d, f in state.items() if decided.get(d, leadless)}
                moment = job.as_of or now
                derived_key = (id(job.lane), job.pipeline_key, selection, job.funnel_key, moment)
                if derived_key not in derived:  # shared by the reports of one state
                    derived[derived_key] = job.pipeline.derive(state, moment)
                reports[pipeline_key] = job.pipeline.report(
                    state, job.as_of, now, derived[derived_key]
                )
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
    """What one partition of the leads gives the what-if: per funnel report, its totals; per
    selected lead state, whether each of its leads' deals is kept."""

    funnels: dict[Hashable, FunnelTotals]
    deals: dict[Hashable, dict[str, bool]]


def _fold_part(
    lanes: list[Lane], jobs: list[Job], part: Partition | None, fold_pass: FoldPass
) -> PartResult:
    """Fold every lane over the events of partition `part` (None: all of them) and sum what
    its leads give each distinct funnel report."""
    for lane in lanes:
        for fold, _ in lane.funnels.values():
            fold.partition = part
    with collector_paused():
        folds = [lane.folds() for lane in lanes]
        folded = fold_pass([f for lane_folds in folds for f in lane_folds], None)
        for lane, lane_folds in zip(lanes, folds, strict=True):
            lane.views(folded[: len(lane_folds)])
            folded = folded[len(lane_folds) :]
        for lane in lanes:
            lane.finish(part)
        result = PartResult({}, {})
        # the reports of one state and definition, each with its selection of leads (or none),
        # summed in one pass over the leads
        groups: dict[Hashable, tuple[Job, dict[Hashable, Keep | None]]] = {}
        for job in jobs:
            funnel_key = _funnel_report_key(job)
            _, keeps = groups.setdefault(_funnel_report_key(job, selection=False), (job, {}))
            if funnel_key in keeps:
                continue
            keep = None
            if job.plan is not None and _selection_key(job.plan):
                state = job.lane.funnels[job.funnel_key][1]
                keep = _keep_rule(job.plan, state.touches)
                decided = {d: keep(k) for d, k in state.lead_of_deal.items()}
                result.deals[_funnel_state_key(job)] = decided
            keeps[funnel_key] = keep
        for first, keeps in groups.values():
            state = first.lane.funnels[first.funnel_key][1]
            every = first.funnel.summarise_each(state, list(keeps.values()))
            result.funnels.update(zip(keeps, every, strict=True))
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
