"""The what-if pass: the recorded stream read once, the baseline and every scenario folded
side by side from it, by the engine's own folds (`FunnelProjection`, `PipelineProjection`)
and reports. There is no second implementation of the rules: a scenario changes only what the
folds are given (definitions, events) and which leads and deals a report sees.

Each view is folded in a lane (whatif/lanes.py), and a report is computed once per distinct
(state, definition, selection, as-of). Over several processes (`over_partitions`), each
partition folds every lane for its leads and sums what they give each funnel report; each
pipeline report is made in one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from dealengine.domain.errors import DealEngineError, InvalidDefinition
from dealengine.domain.events import format_time
from dealengine.domain.rates import ExchangeRates, KnownRate
from dealengine.projections.funnel import (
    UNKNOWN,
    FunnelProjection,
    FunnelState,
    FunnelTotals,
    FunnelView,
)
from dealengine.projections.pipeline import Derived, PipelineProjection, PipelineView
from dealengine.projections.stream import FoldPass, collector_paused
from dealengine.store.recorders import Partition
from dealengine.whatif.hypothetical import ACTOR, RecordedHistory, hypothetical_events
from dealengine.whatif.lanes import Lane, Piece, PipelineState, ScenarioLane
from dealengine.whatif.lawful import FirstKept, may_break_rules
from dealengine.whatif.result import RuleBreaks, ScenarioResult, Views, WhatIf, diff
from dealengine.whatif.scenario import (
    Resolved,
    Scenario,
    load_scenario,
    resolve,
    validated,
)

ScenarioLike = Scenario | Path | str | Mapping[str, Any]
Keep = Callable[[str | None], bool]  # whether a lead (None: a deal without one) is selected
# `over_partitions(work)`: work(part, fold_pass) in each partition of the leads (see
# StreamPasses.over_partitions), the results in partition order
OverPartitions = Callable[
    [Callable[[Partition | None, FoldPass], "PartResult"]], list["PartResult"]
]


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

    @property
    def deals(self) -> PipelineState:
        """The pipeline state the job's pipeline report reads (in this partition)."""
        return self.lane.pipelines[self.pipeline_key][1]


def plan_of(
    engine: RecordedHistory, item: ScenarioLike, n: int, as_of: datetime | None
) -> Resolved:
    """Load (a path), validate (a mapping) and resolve one scenario against the engine."""
    context = engine.interactions.context
    if isinstance(item, Scenario | Mapping):
        source = "<scenario>"
        scenario = (
            item
            if isinstance(item, Scenario)
            else validated(Scenario, dict(item), source, "", context)
        )
        name = scenario.name or f"scenario-{n}"
        scenario = scenario.model_copy(update={"name": name})
        source, folder = f"<{name}>", Path.cwd()
    else:
        path = Path(item)
        scenario, source, folder = load_scenario(path, context), str(path), path.parent
    return resolve(
        scenario, source, folder, engine.funnel_definition, engine.pipelines, as_of, context
    )


@collector_paused()
def run_what_if(
    engine: RecordedHistory,
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
    lane's folds at once. The funnel reports sum the partitions' totals; each pipeline report
    is made in one partition (`_pipelines_here`), those of selected leads in partition 0 (this
    process), after the pass, once the selections of every partition have met.

    The cyclic collector is paused for the whole run: the states die (by reference counting)
    when it returns, before the collector resumes (see `Engine.views`)."""
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
    recorded = ExchangeRates(engine.rates())
    interactions = engine.interactions
    jobs = [
        Job(
            "",
            None,
            plain_lane(as_of),
            FunnelProjection(engine.funnel_definition, None, interactions),
            PipelineProjection(
                baseline,
                default=baseline is engine.pipelines.default,
                interactions=interactions,
                rates=recorded,
                defined=engine.pipelines.by_name,
            ),
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
                FunnelProjection(plan.funnel, None, interactions),
                PipelineProjection(
                    definition,
                    default=default,
                    interactions=interactions,
                    rates=_rates(plan, recorded),
                    defined=plan.pipelines.by_name,
                ),
                plan.as_of,
            )
        )
    for job in jobs:
        job.funnel_key = job.lane.funnel(job.funnel)
        job.pipeline_key = job.lane.pipeline(job.pipeline)

    parts = over_partitions(lambda part, fold_pass: _fold_part(lanes, jobs, part, fold_pass, now))
    reports: dict[Hashable, FunnelView | PipelineView] = {}
    selections: dict[Hashable, dict[str, bool]] = {}
    for part in parts:
        reports.update(part.pipelines)
        for key, decided in part.selections.items():
            selections.setdefault(key, {}).update(decided)
    views = []
    for job in jobs:
        funnel_key, pipeline_key = _funnel_report_key(job), _pipeline_report_key(job)
        if funnel_key not in reports:
            totals = [t for part in parts for t in part.funnels[funnel_key]]
            reports[funnel_key] = job.funnel.assemble(totals, job.as_of)
        if pipeline_key not in reports:  # on selected leads: folded in partition 0 (here)
            assert job.plan is not None
            selected = (selections[_funnel_state_key(job)], _keep_rule(job.plan, {})(None))
            deals = parts[0].selected_deals[pipeline_key]
            reports[pipeline_key] = _pipeline_report(job, deals, now, parts[0].derived, selected)
        funnel, pipeline = reports[funnel_key], reports[pipeline_key]
        assert isinstance(funnel, FunnelView) and isinstance(pipeline, PipelineView)
        views.append(Views(funnel=funnel, pipeline=pipeline))
    base = views[0]
    results = {}
    for job, scenario_views in zip(jobs[1:], views[1:], strict=True):
        assert job.plan is not None
        breaks = [part.rule_breaks[job.name] for part in parts if job.name in part.rule_breaks]
        results[job.name] = ScenarioResult(
            rule_breaks=RuleBreaks(leads=sum(b[0] for b in breaks), deals=sum(b[1] for b in breaks))
            if breaks
            else None,
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
    pieces; the pipeline reports it made; per selection of leads, whether each of its leads'
    deals is kept. In partition 0 (this process), the pipeline states the reports on selected
    leads read after the pass, and the deals' facts derived so far (shared with those)."""

    funnels: dict[Hashable, list[FunnelTotals]]
    pipelines: dict[Hashable, PipelineView]
    selections: dict[Hashable, dict[str, bool]]
    selected_deals: dict[Hashable, PipelineState]
    derived: dict[Hashable, list[Derived]]
    rule_breaks: dict[str, tuple[int, int]] = field(default_factory=dict)  # leads, deals


def _pipelines_here(jobs: list[Job], part: Partition | None) -> list[Job]:
    """The jobs whose pipeline report partition `part` makes: the first job of each distinct
    report; none that selects leads (partition 0 reports on those after the pass). A partition
    folds the pipeline states its reports read over every deal; the others feed a lane only
    their own leads' deals. So that no state is folded whole twice, the reports that read a
    state in common (an overlay's and the baseline's, two definitions' on one state) are made
    in one partition: these groups are dealt round the partitions in turn, the one a report
    on selected leads reads first (in partition 0)."""
    first: dict[Hashable, Job] = {}
    for job in jobs:
        first.setdefault(_pipeline_report_key(job), job)
    groups: list[tuple[set[tuple[int, Hashable]], list[Job]]] = []
    for job in first.values():
        states, members = set(_states_read(job)), [job]
        for group in [g for g in groups if g[0] & states]:
            groups = [g for g in groups if g is not group]
            states, members = states | group[0], group[1] + members
        groups.append((states, members))
    groups.sort(key=lambda g: not any(_selection_key(job.plan) for job in g[1]))  # stable
    dealt = groups if part is None else groups[part[0] :: part[1]]
    return [job for _, members in dealt for job in members if not _selection_key(job.plan)]


def _states_read(job: Job) -> list[tuple[int, Hashable]]:
    """The pipeline states (lane, fold key) a job's report reads: its lane's, and for an
    overlay the baseline's too."""
    lane, key = job.lane, job.pipeline_key
    if isinstance(lane, ScenarioLane) and key in lane.deal_overlays:
        assert lane.base is not None
        return [(id(lane), key), (id(lane.base), key)]
    return [(id(lane), key)]


def _pipeline_report(
    job: Job,
    state: PipelineState,
    now: datetime,
    derived: dict[Hashable, list[Derived]],
    selected: tuple[Mapping[str, bool], bool] | None = None,
) -> PipelineView:
    """The job's pipeline report on `state` (with `selected`, its deals kept: whether each is,
    and whether one not in it is); the deals' derived facts shared by the reports of one
    state (`derived`)."""
    deals = _derived(job, state, now, derived)
    if selected is not None:
        kept, other = selected
        state = {deal: facts for deal, facts in state.items() if kept.get(deal, other)}
        deals = [x for x in deals if kept.get(x.stream, other)]
    return job.pipeline.report(state, job.as_of, now, deals)


def _derived(
    job: Job, state: PipelineState, now: datetime, derived: dict[Hashable, list[Derived]]
) -> list[Derived]:
    """The facts the job's pipeline report derives from every deal of `state` (remembered in
    `derived`: they depend on the state and the moment only)."""
    key, moment = _derived_key(job, now), job.as_of or now
    if key in derived:
        return derived[key]
    lane = job.lane
    overlay = lane.deal_overlays.get(job.pipeline_key) if isinstance(lane, ScenarioLane) else None
    if overlay is None:
        derived[key] = job.pipeline.derive(state, moment)
        return derived[key]
    # an overlay: the baseline's deals' facts (of the same fold key: they read the same closed
    # stages) but the changed deals', and those of its own
    assert isinstance(lane, ScenarioLane) and lane.base is not None
    base = (id(lane.base), job.pipeline_key, moment)
    if base not in derived:
        derived[base] = job.pipeline.derive(overlay.base, moment)
    changed = overlay.changed
    derived[key] = [x for x in derived[base] if x.stream not in changed]
    derived[key] += job.pipeline.derive(overlay.state, moment)
    return derived[key]


def _derived_key(job: Job, now: datetime) -> Hashable:
    return (id(job.lane), job.pipeline_key, job.as_of or now, _conversion_key(job))


def _conversion_key(job: Job) -> Hashable:
    """What converting a deal reads beside its facts: the pipeline's currency and the rates."""
    return job.pipeline.definition.currency, tuple(job.pipeline.rates.rates)


def _rates(plan: Resolved, known: ExchangeRates) -> ExchangeRates:
    """The rates a scenario converts with: the recorded ones, its `rates` replacing their
    pairs'."""
    if not plan.scenario.rates:
        return known
    return known.overridden(
        KnownRate(*(r.from_currency, r.to_currency, r.rate, r.effective_from),
                  f"{plan.name}-{i}", "", ACTOR, plan.source)
        for i, r in enumerate(plan.scenario.rates)
    )  # fmt: skip


def _fold_part(
    lanes: list[Lane],
    jobs: list[Job],
    part: Partition | None,
    fold_pass: FoldPass,
    now: datetime,
) -> PartResult:
    """Fold every lane over the events of partition `part` (None: all of them), sum what its
    leads give each distinct funnel report, and report on the pipeline states homed here.
    Each partition says which of its leads' deals each selection of leads keeps; partition 0
    keeps the pipeline states the reports on selected leads read (made after the pass)."""
    for lane in lanes:
        for fold, _ in lane.funnels.values():
            fold.partition = part
    reporting = _pipelines_here(jobs, part)
    here = {state for job in reporting for state in _states_read(job)}
    home = part is None or part[0] == 0  # partition 0, in this process
    selecting = [job for job in jobs if _selection_key(job.plan)]
    if home:
        here |= {(id(job.lane), job.pipeline_key) for job in selecting}
    # a scenario lane's folds are made after its base's (an overlay reads the base's fresh
    # states) and fed each event before them (it copies a lead's state before the event)
    scenario_last = sorted(lanes, key=lambda lane: isinstance(lane, ScenarioLane))
    made = {
        id(lane): lane.folds({key for at, key in here if at == id(lane)}) for lane in scenario_last
    }
    checks = [
        FirstKept(job.plan, part, home) for job in jobs if job.plan and may_break_rules(job.plan)
    ]
    fold_pass([*(f for lane in reversed(scenario_last) for f in made[id(lane)]), *checks], None)
    for lane in lanes:
        lane.finish(part)
    result = PartResult({}, {}, {}, {}, {}, {c.name: (c.leads, c.deals) for c in checks})
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
            kept = {deal: keep(lead) for deal, lead in state.lead_of_deal.items()}
            result.selections[_funnel_state_key(job)] = kept
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
    derived = result.derived if home else {}
    for job in reporting:
        result.pipelines[_pipeline_report_key(job)] = _pipeline_report(job, job.deals, now, derived)
    del groups, summed, made, derived
    if home:  # free the states in this process while the others finish (a child exits
        for job in selecting:  # without freeing them), but those reported on after the pass
            result.selected_deals[_pipeline_report_key(job)] = job.deals
        for lane in lanes:
            lane.release()
    return result


def _funnel_state_key(job: Job) -> Hashable:
    """The funnel state a job's reports select leads from."""
    return (id(job.lane), job.funnel_key, _selection_key(job.plan))


def _funnel_report_key(job: Job) -> Hashable:
    """What a funnel report depends on: the state, the leads selected, the definition, the
    as-of."""
    at = format_time(job.as_of) if job.as_of else None
    definition = job.funnel.definition.model_dump_json()
    return ("funnel", id(job.lane), job.funnel_key, _selection_key(job.plan), definition, at)


def _pipeline_report_key(job: Job) -> Hashable:
    selection = _selection_key(job.plan)
    at = format_time(job.as_of) if job.as_of else None
    return (
        "pipeline", id(job.lane), job.pipeline_key, job.pipeline.definition.model_dump_json(),
        selection, job.funnel_key if selection else None, at, _conversion_key(job),
    )  # fmt: skip
