"""Rich tables for `dealengine whatif`: each funnel step and pipeline stage, the baseline and,
per scenario, its value, the change and the relative change."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dealengine.projections.pipeline import money
from dealengine.whatif.result import (
    AmountChange,
    CountChange,
    RateChange,
    ScenarioResult,
    WhatIf,
)

Change = CountChange | AmountChange | RateChange
PER_TABLE = 3  # scenarios side by side in one table (three columns each)


def _value(value: int | Decimal | float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "amount":
        return money(Decimal(value))
    if kind == "rate":
        return f"{value:.1%}"
    return str(value)


def _signed(value: int | Decimal | float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value * 100:+.1f} pt"
    text = _value(value, kind)
    return text if text.startswith("-") or value == 0 else "+" + text


def _relative(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _style(change: Change) -> str:
    c = change.change
    return "" if not c else ("green" if c > 0 else "red")


def _table(title: str, result: WhatIf) -> Table:
    table = Table("", "baseline", title=title, title_justify="left")
    table.columns[0].no_wrap = True
    table.columns[1].justify = "right"
    for name in result.scenarios:
        table.add_column(name, justify="right")
        table.add_column("change", justify="right")
        table.add_column("%", justify="right")
    return table


def _row(
    table: Table,
    label: str,
    result: WhatIf,
    pick: Callable[[ScenarioResult], Change | None],
    kind: str,
) -> None:
    changes = [pick(s) for s in result.scenarios.values()]
    baseline = next((c.baseline for c in changes if c is not None), None)
    cells: list[str | Text] = [label, _value(baseline, kind)]
    for c in changes:
        if c is None:
            cells += ["-", "-", "-"]
            continue
        cells += [
            _value(c.scenario, kind),
            Text(_signed(c.change, kind), style=_style(c)),
            _relative(c.relative),
        ]
    table.add_row(*cells)


def _names(lists: list[list[str]]) -> list[str]:
    return list(dict.fromkeys(name for names in lists for name in names))


def _step(name: str) -> Callable[[ScenarioResult], Change | None]:
    def pick(s: ScenarioResult) -> Change | None:
        return next((c.leads for c in s.diff.steps if c.step == name), None)

    return pick


def _stage(name: str, metric: str) -> Callable[[ScenarioResult], Change | None]:
    def pick(s: ScenarioResult) -> Change | None:
        stage = next((c for c in s.diff.stages if c.stage == name), None)
        change: Change | None = getattr(stage, metric) if stage is not None else None
        return change

    return pick


def show_what_if(out: Console, result: WhatIf) -> None:
    """The scenarios' questions, then the funnel and the pipeline side by side (three
    scenarios to a table)."""
    for s in result.scenarios.values():
        as_of = f", as of {s.as_of:%Y-%m-%d %H:%M}" if s.as_of else ""
        question = f": {s.question}" if s.question else ""
        out.print(Text.assemble((s.name, "bold"), f" ({s.source}{as_of}){question}"))
        broken = s.rule_breaks
        if broken is not None and (broken.leads or broken.deals):
            out.print(
                f"  {s.name}: {broken.leads} leads and {broken.deals} deals have a history the "
                "stage rules would refuse (a lead whose first kept event qualifies, "
                "disqualifies or converts it; a deal whose deal_opened is left out): "
                "counted all the same, from the events kept"
            )
    if not result.scenarios:
        out.print("no scenario given: nothing to compare")
        return
    names = list(result.scenarios)
    for i in range(0, len(names), PER_TABLE):
        chunk = {n: result.scenarios[n] for n in names[i : i + PER_TABLE]}
        _show_tables(out, WhatIf(baseline=result.baseline, scenarios=chunk))


def _show_tables(out: Console, result: WhatIf) -> None:
    base = result.baseline
    scenarios = list(result.scenarios.values())
    as_of = f" as of {base.funnel.as_of:%Y-%m-%d %H:%M}" if base.funnel.as_of else ""
    funnel = _table(f"funnel: leads per step (baseline: {base.funnel.mode}{as_of})", result)
    for name in _names([[c.step for c in s.diff.steps] for s in scenarios]):
        _row(funnel, name, result, _step(name), "count")
    _row(funnel, "excluded", result, lambda s: s.diff.excluded_leads, "count")
    out.print(funnel)
    title = f"pipeline {base.pipeline.name} ({base.pipeline.currency}{as_of})"
    pipeline = _table(title, result)
    for name in _names([[c.stage for c in s.diff.stages] for s in scenarios]):
        closed = name in ("won", "lost")
        for metric in ("deals", "amount") if closed else ("deals", "amount", "weighted_amount"):
            kind = "count" if metric == "deals" else "amount"
            _row(pipeline, f"{name} {metric.replace('_amount', '')}", result,
                 _stage(name, metric), kind)  # fmt: skip
    _row(pipeline, "win rate", result, lambda s: s.diff.win_rate, "rate")
    out.print(pipeline)


def what_if_json(result: WhatIf) -> dict[str, Any]:
    return result.model_dump(mode="json")
