"""What one lead or one deal adds to a view's counters, and the view read back from counters.

A materialised view keeps the sum of every lead's or deal's counters. When a batch of events
changes some of them, the view subtracts their old counters and adds their new ones (their
states folded from the store's streams: views/materialised.py); a query reads only the
counters (a few hundred rows however long the history). The counters hold what sums: counts
and amounts. Medians and ages need the stream
(`dealengine funnel --full`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal

from dealengine.domain.definitions import FORECAST_CATEGORIES
from dealengine.projections.funnel import (
    EXCLUDED,
    Combination,
    FunnelBreakdown,
    FunnelProjection,
    FunnelState,
    FunnelView,
)
from dealengine.projections.pipeline import (
    ClosedView,
    CycleView,
    DealFacts,
    ForecastView,
    PipelineBreakdown,
    PipelineProjection,
    PipelineView,
    StageView,
)

Key = tuple[str, ...]
Amounts = tuple[int, Decimal, Decimal]  # deals, amount, weighted amount
ZERO = Decimal(0)


def count_combinations(
    fold: FunnelProjection,
    view: FunnelState,
    leads: Iterable[str] | None,
    sign: int,
    into: dict[Combination, int],
) -> None:
    """Add `sign` times the combination each of `leads` adds to the funnel
    (`FunnelProjection.counted`) into `into`; None: every lead of `view`. A lead that never
    entered adds none."""
    earliest = view.earliest
    entered = (
        earliest.items()
        if leads is None
        else ((lead, earliest[lead]) for lead in leads if lead in earliest)
    )
    for _, key, _ in fold.counted(view, entered):
        into[key] = into.get(key, 0) + sign


def add_combinations(
    fold: FunnelProjection, combinations: Mapping[Combination, int], into: dict[Key, int]
) -> None:
    """Add the counters of `combinations` (how many leads each, signed) into `into`: one per
    step each lead counts at, per group."""
    for key, n in combinations.items():
        if not n:
            continue
        if key == EXCLUDED:
            into["excluded",] = into.get(("excluded",), 0) + n
            continue
        furthest, entry, *values = key
        groups = list(zip(fold.fields, values, strict=True))
        for k in range(furthest + 1):
            step = str(k)
            keys: list[Key] = [("step", step), ("cohort", entry, step)]
            keys += [("group", name, value, step) for name, value in groups]
            for counter in keys:
                into[counter] = into.get(counter, 0) + n


def funnel_from_counters(fold: FunnelProjection, counters: Mapping[Key, int]) -> FunnelView:
    """The funnel view from summed counters (what sums; no times to convert)."""
    n = fold.steps
    overall = [counters.get(("step", str(k)), 0) for k in range(n)]
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * n))
    cohorts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    for key, count in counters.items():
        if key[0] == "group":
            groups[key[1]][key[2]][int(key[3])] += count
        elif key[0] == "cohort":
            cohorts[key[1]][int(key[2])] += count

    def breakdown(by: Mapping[str, list[int]]) -> dict[str, FunnelBreakdown]:
        return {g: FunnelBreakdown(steps=fold.step_views(by[g])) for g in sorted(by) if by[g][0]}

    d = fold.definition
    return FunnelView(
        mode=d.mode,
        conversion_window_days=None if d.mode == "reached" else d.conversion_window_days,
        as_of=None,
        leads=overall[0] if n else 0,
        excluded_leads=counters.get(("excluded",), 0),
        steps=fold.step_views(overall),
        by_channel=breakdown(groups["channel"]),
        breakdowns={f: breakdown(groups[f]) for f in fold.fields if f != "channel"},
        cohorts=breakdown(cohorts),
        time_to_convert=[],
    )


def pipeline_counters(fold: PipelineProjection, deal: DealFacts) -> dict[Key, Amounts]:
    """The counters a deal adds to its pipeline: by stage, owner, forecast, close month. A deal
    in another currency adds only its count under `foreign`: its amount in the pipeline's
    currency depends on the rate in force when the view is read, so no counter can hold it."""
    d = fold.definition
    if deal.currency is not None:
        return {("foreign", deal.currency): (1, ZERO, ZERO)}
    amount = Decimal(deal.amount)
    one: Amounts = (1, amount, amount * Decimal(str(d.probability[deal.stage])))
    counters: dict[Key, Amounts] = {
        ("stage", deal.stage): one,
        ("owner", deal.owner, deal.stage): one,
        ("forecast", d.forecast_category(deal.stage)): one,
    }
    if not d.is_closed(deal.stage):
        counters["close_month", (deal.expected_close_on or "none")[:7]] = one
    elif deal.stage == d.lost_stage:
        counters["lost_reason", deal.lost_reason or "unknown"] = one
    return counters


def pipeline_from_counters(
    fold: PipelineProjection, counters: Mapping[Key, Amounts]
) -> PipelineView | None:
    """The pipeline view from summed counters (what sums; no days in stage, cycle or ages);
    None when it holds deals in other currencies (they are converted from the stream)."""
    if any(key[0] == "foreign" and value[0] for key, value in counters.items()):
        return None
    d = fold.definition
    none: Amounts = (0, ZERO, ZERO)
    owners: dict[str, dict[str, Amounts]] = defaultdict(dict)
    months: dict[str, Amounts] = {}
    reasons: dict[str, int] = {}
    for key, value in counters.items():
        if key[0] == "owner" and value[0]:
            owners[key[1]][key[2]] = value
        elif key[0] == "close_month" and value[0]:
            months[key[1]] = value
        elif key[0] == "lost_reason" and value[0]:
            reasons[key[1]] = value[0]

    def _in_home(value: Amounts) -> dict[str, Decimal]:
        return {d.currency: value[1]} if value[0] else {}  # every deal is in it

    def summary(by_stage: Mapping[str, Amounts]) -> PipelineBreakdown:
        won, lost = by_stage.get(d.won_stage, none), by_stage.get(d.lost_stage, none)
        stages = [by_stage.get(s, none) for s in d.open_stages]
        return PipelineBreakdown(
            stages=[
                StageView(
                    name=s,
                    probability=d.probability[s],
                    open_deals=v[0],
                    amount=v[1],
                    weighted_amount=v[2],
                    amounts_by_currency=_in_home(v),
                )
                for s, v in zip(d.open_stages, stages, strict=True)
            ],
            won=ClosedView(deals=won[0], amount=won[1], amounts_by_currency=_in_home(won)),
            lost=ClosedView(deals=lost[0], amount=lost[1], amounts_by_currency=_in_home(lost)),
            win_rate=won[0] / (won[0] + lost[0]) if won[0] + lost[0] else None,
        )

    overall = summary({key[1]: v for key, v in counters.items() if key[0] == "stage"})
    won_amount, lost_amount = overall.won.amount, overall.lost.amount
    return PipelineView(
        name=d.name,
        currency=d.currency,
        as_of=None,
        **dict(overall),
        win_rate_by_amount=(
            float(won_amount / (won_amount + lost_amount)) if won_amount + lost_amount else None
        ),
        average_deal_size=won_amount / overall.won.deals if overall.won.deals else None,
        cycle={
            k: CycleView(deals=v.deals, median_days=None, mean_days=None)
            for k, v in (("won", overall.won), ("lost", overall.lost))
        },
        velocity_per_day=None,
        lost_reasons=dict(sorted(reasons.items(), key=lambda r: (-r[1], r[0]))),
        forecast={c: _forecast(counters.get(("forecast", c), none)) for c in FORECAST_CATEGORIES},
        forecast_by_close_month={m: _forecast(months[m]) for m in sorted(months)},
        stale=[],
        by_owner={o: summary(owners[o]) for o in sorted(owners)},
    )


def _forecast(value: Amounts) -> ForecastView:
    return ForecastView(deals=value[0], amount=value[1], weighted_amount=value[2])


def add_amounts(total: dict[Key, Amounts], items: Iterable[tuple[Key, Amounts]], sign: int) -> None:
    for key, (n, amount, weighted) in items:
        old = total.get(key, (0, ZERO, ZERO))
        total[key] = (old[0] + sign * n, old[1] + sign * amount, old[2] + sign * weighted)
