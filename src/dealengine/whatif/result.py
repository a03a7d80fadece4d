"""What a what-if run returns: the baseline views, each scenario's views, and their difference.

`WhatIf.model_dump(mode="json")` is the CLI's JSON:
{"baseline": {"funnel", "pipeline"}, "scenarios": {name: {"funnel", "pipeline", "diff", ...}}}.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel

from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import Money, PipelineView


class Views(BaseModel):
    funnel: FunnelView
    pipeline: PipelineView


C = TypeVar("C", "CountChange", "AmountChange", "RateChange")


class CountChange(BaseModel):
    """A count in the baseline and the scenario (None: not in that view), the scenario minus
    the baseline, and that change relative to the baseline (None when the baseline is 0)."""

    baseline: int | None
    scenario: int | None
    change: int | None
    relative: float | None


class AmountChange(Money):
    baseline: Decimal | None
    scenario: Decimal | None
    change: Decimal | None
    relative: float | None


class RateChange(BaseModel):
    baseline: float | None
    scenario: float | None
    change: float | None
    relative: float | None


class StepChange(BaseModel):
    step: str
    leads: CountChange


class StageChange(BaseModel):
    """An open stage of the pipeline (or `open`: all of them, `won`, `lost`)."""

    stage: str
    deals: CountChange
    amount: AmountChange
    weighted_amount: AmountChange


class Diff(BaseModel):
    leads: CountChange
    excluded_leads: CountChange
    steps: list[StepChange]  # the baseline's steps, then any only the scenario has
    stages: list[StageChange]
    win_rate: RateChange


class RuleBreaks(BaseModel):
    """Leads and deals whose history, as the scenario leaves it, the stage rules would refuse
    (whatif/lawful.py): counted all the same, from the events kept."""

    leads: int  # the first event kept qualifies, disqualifies or converts the lead
    deals: int  # the deal's deal_opened is left out


class ScenarioResult(Views):
    name: str
    question: str
    source: str
    as_of: datetime | None
    diff: Diff
    rule_breaks: RuleBreaks | None = None  # None: the scenario leaves no recorded event out


class WhatIf(BaseModel):
    baseline: Views
    scenarios: dict[str, ScenarioResult]

    def __getitem__(self, name: str) -> ScenarioResult:
        return self.scenarios[name]


def count_change(baseline: int | None, scenario: int | None) -> CountChange:
    return _change(CountChange, baseline, scenario)


def amount_change(baseline: Decimal | None, scenario: Decimal | None) -> AmountChange:
    return _change(AmountChange, baseline, scenario)


def rate_change(baseline: float | None, scenario: float | None) -> RateChange:
    return _change(RateChange, baseline, scenario)


def _change(model: type[C], baseline: Any, scenario: Any) -> C:
    """Baseline, scenario, their difference and the difference relative to the baseline
    (None where a side is missing, or relative to a zero baseline)."""
    if baseline is None or scenario is None:
        return model(baseline=baseline, scenario=scenario, change=None, relative=None)
    change = scenario - baseline
    relative = float(change / baseline) if baseline else None
    return model(baseline=baseline, scenario=scenario, change=change, relative=relative)


Row = tuple[int, Decimal, Decimal | None]  # deals, amount, weighted amount


def _stage_rows(view: PipelineView) -> dict[str, Row]:
    rows: dict[str, Row] = {
        s.name: (s.open_deals, s.amount, s.weighted_amount) for s in view.stages
    }
    rows["open"] = (
        sum(s.open_deals for s in view.stages),
        sum((s.amount for s in view.stages), Decimal(0)),
        sum((s.weighted_amount for s in view.stages), Decimal(0)),
    )
    rows["won"] = (view.won.deals, view.won.amount, None)
    rows["lost"] = (view.lost.deals, view.lost.amount, None)
    return rows


def _names(first: list[str], second: list[str]) -> list[str]:
    return first + [n for n in second if n not in first]


def diff(baseline: Views, scenario: Views) -> Diff:
    """Each funnel step and pipeline stage: baseline, scenario, change, relative change."""
    bf, sf = baseline.funnel, scenario.funnel
    b_steps = {s.name: s.leads for s in bf.steps}
    s_steps = {s.name: s.leads for s in sf.steps}
    b_rows, s_rows = _stage_rows(baseline.pipeline), _stage_rows(scenario.pipeline)
    stages = []
    for name in _names(list(b_rows), list(s_rows)):
        b, s = b_rows.get(name), s_rows.get(name)
        stages.append(
            StageChange(
                stage=name,
                deals=count_change(b[0] if b else None, s[0] if s else None),
                amount=amount_change(b[1] if b else None, s[1] if s else None),
                weighted_amount=amount_change(b[2] if b else None, s[2] if s else None),
            )
        )
    return Diff(
        leads=count_change(bf.leads, sf.leads),
        excluded_leads=count_change(bf.excluded_leads, sf.excluded_leads),
        steps=[
            StepChange(step=n, leads=count_change(b_steps.get(n), s_steps.get(n)))
            for n in _names(list(b_steps), list(s_steps))
        ],
        stages=stages,
        win_rate=rate_change(baseline.pipeline.win_rate, scenario.pipeline.win_rate),
    )
