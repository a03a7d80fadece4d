"""Rich tables for the views: what `dealengine funnel` and `pipeline` show to people.

Everything shown comes from data (stream ids, channels, owners, reasons, file names), so the
consoles print text as it is: no markup (`[bold]`), no emoji codes (`:100:`), no highlighting.
Styles are given as Rich objects (Text, a row's or a column's style), never in the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from dealengine.projections.funnel import FunnelBreakdown, FunnelView
from dealengine.projections.pipeline import (
    ClosedView,
    DealStageTimes,
    PipelineBreakdown,
    PipelineChanges,
    PipelineView,
    StageView,
    money,
)

if TYPE_CHECKING:
    from dealengine.audit.report import AuditReport
    from dealengine.domain.definitions import PipelineDefinition


def plain_console(*, stderr: bool = False, **options: Any) -> Console:
    """A console that prints every string as it is (see the module doc)."""
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **options)


def has_deals(view: PipelineView) -> bool:
    """Whether the pipeline holds any deal, open or closed."""
    return bool(view.won.deals or view.lost.deals or any(s.open_deals for s in view.stages))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def days(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(title: str, *columns: str) -> Table:
    return Table(*columns, title=title, title_justify="left")


def show_funnel(out: Console, view: FunnelView) -> None:
    window = f", {view.conversion_window_days:g}-day window" if view.conversion_window_days else ""
    as_of = f", as of {view.as_of:%Y-%m-%d %H:%M}" if view.as_of else ""
    excluded = f", {view.excluded_leads} excluded" if view.excluded_leads else ""
    table = _table(
        f"funnel ({view.mode}{window}{as_of}): {view.leads} leads{excluded}",
        "step", "leads", "from previous", "from first", "drop-off",
    )  # fmt: skip
    for s in view.steps:
        table.add_row(s.name, str(s.leads), pct(s.conversion_from_previous),
                      pct(s.conversion_from_first), str(s.drop_off))  # fmt: skip
    out.print(table)
    out.print(_grouped("leads by channel", view.steps, view.by_channel))
    for field, groups in view.breakdowns.items():
        out.print(_grouped(f"leads by {field}", view.steps, groups))
    out.print(_grouped("cohorts by entry period", view.steps, view.cohorts))
    if not view.time_to_convert:
        return
    times = _table("time to convert (days)", "from", "to", "leads", "median", "mean", "p90")
    for t in view.time_to_convert:
        times.add_row(t.from_step, t.to_step, str(t.leads), days(t.median_days),
                      days(t.mean_days), days(t.p90_days))  # fmt: skip
    out.print(times)


def _grouped(title: str, steps: Iterable[object], groups: dict[str, FunnelBreakdown]) -> Table:
    table = _table(title, "", *(s.name for s in steps), "overall")  # type: ignore[attr-defined]
    for group, breakdown in groups.items():
        overall = breakdown.steps[-1].conversion_from_first if breakdown.steps else None
        table.add_row(group, *(str(s.leads) for s in breakdown.steps), pct(overall))
    return table


def show_pipeline(out: Console, view: PipelineView) -> None:
    as_of = f" as of {view.as_of:%Y-%m-%d %H:%M}" if view.as_of else ""
    # deals in other currencies: their original amounts, and those with no rate, per stage
    mixed = any(set(s.amounts_by_currency) - {view.currency} for s in _all_stages(view))
    extra = ("by currency", "unconverted") if mixed else ()
    table = _table(
        f"pipeline {view.name}{as_of}",
        "stage", "probability", "open deals", f"amount ({view.currency})", "weighted",
        "median days in stage", "mean age (days)", *extra,
    )  # fmt: skip
    for s in view.stages:
        table.add_row(s.name, f"{s.probability:.0%}", str(s.open_deals), money(s.amount),
                      money(s.weighted_amount), days(s.median_days_in_stage),
                      days(s.mean_age_days), *_by_currency(s, mixed))  # fmt: skip
    for name, c, style in (("won", view.won, "green"), ("lost", view.lost, "red")):
        table.add_row(name, "", str(c.deals), money(c.amount), "", "", "",
                      *_by_currency(c, mixed), style=style)  # fmt: skip
    out.print(table)
    size = money(view.average_deal_size) if view.average_deal_size is not None else "-"
    velocity = money(view.velocity_per_day) if view.velocity_per_day is not None else "-"
    out.print(
        f"win rate {pct(view.win_rate)} by count, {pct(view.win_rate_by_amount)} by amount; "
        f"average won deal {size}; cycle (days) won {days(view.cycle['won'].median_days)}, "
        f"lost {days(view.cycle['lost'].median_days)} (median); velocity {velocity} a day"
    )
    forecast = _table("forecast", "category", "deals", "amount", "weighted")
    for category, f in view.forecast.items():
        forecast.add_row(category, str(f.deals), money(f.amount), money(f.weighted_amount))
    out.print(forecast)
    months = _table("open deals by expected close month", "month", "deals", "amount", "weighted")
    for month, f in view.forecast_by_close_month.items():
        months.add_row(month, str(f.deals), money(f.amount), money(f.weighted_amount))
    out.print(months)
    if view.stale:
        stale = _table("stale deals", "deal", "stage", "owner", "amount", "days idle", "limit")
        for deal in view.stale:
            stale.add_row(deal.deal_id, deal.stage, deal.owner, money(deal.amount),
                          days(deal.days_without_event), days(deal.limit_days))  # fmt: skip
        out.print(stale)
    if view.lost_reasons:
        out.print("lost reasons: " + ", ".join(f"{r} {n}" for r, n in view.lost_reasons.items()))
    owners = _table("by owner", "owner", "open deals", "open amount", "weighted", "won", "lost",
                    "win rate")  # fmt: skip
    for owner, b in view.by_owner.items():
        owners.add_row(owner, *_owner_row(b))
    out.print(owners)


def _all_stages(view: PipelineView) -> list[StageView | ClosedView]:
    return [*view.stages, view.won, view.lost]


def _by_currency(s: StageView | ClosedView, mixed: bool) -> tuple[str, ...]:
    """A stage's original amounts and its unconverted ones, per currency (when mixed)."""
    if not mixed:
        return ()

    def each(by: dict[str, Decimal]) -> str:
        return ", ".join(f"{money(v)} {c}" for c, v in by.items()) or "-"

    return each(s.amounts_by_currency), each(s.unconverted)


def _owner_row(b: PipelineBreakdown) -> list[str]:
    return [
        str(sum(s.open_deals for s in b.stages)),
        money(sum((s.amount for s in b.stages), Decimal(0))),
        money(sum((s.weighted_amount for s in b.stages), Decimal(0))),
        f"{b.won.deals} ({money(b.won.amount)})",
        str(b.lost.deals),
        pct(b.win_rate),
    ]


def show_changes(out: Console, w: PipelineChanges) -> None:
    table = _table(
        f"pipeline changes {w.start:%Y-%m-%d %H:%M} -> {w.end:%Y-%m-%d %H:%M}",
        "", "deals", "amount",
    )  # fmt: skip
    rows = [
        ("open at start", w.open_at_start, ""), ("new", w.new, "+"), ("reopened", w.reopened, "+"),
        ("amount up", w.amount_up, "+"), ("amount down", w.amount_down, "-"),
        ("won", w.won, "-"), ("lost", w.lost, "-"), ("open at end", w.open_at_end, "="),
    ]  # fmt: skip
    if w.rate_effect.deals:  # deals in other currencies whose rate changed in the window
        rows.insert(5, ("rate effect", w.rate_effect, "+" if w.rate_effect.amount >= 0 else ""))
    for label, m, sign in rows:
        table.add_row(label, str(m.deals), f"{sign}{money(m.amount)}")
    if w.unconverted:
        left = ", ".join(f"{money(v)} {c}" for c, v in w.unconverted.items())
        table.add_row("unconverted (no rate)", "", left)
    table.add_row("advanced (count only)", str(w.advanced.deals), money(w.advanced.amount))
    table.add_row("moved back (count only)", str(w.moved_back.deals), money(w.moved_back.amount))
    out.print(table)


def show_stage_times(
    out: Console, deals: list[DealStageTimes], defn: PipelineDefinition | None = None
) -> None:
    """Each deal's stays; closed stages named as the pipeline table names them (won, lost)."""
    names = {defn.won_stage: "won", defn.lost_stage: "lost"} if defn else {}
    table = _table("time in stage (days: latest / cumulative)", "deal", "now in", "amount",
                   "stages")  # fmt: skip
    for d in deals:
        stays = ", ".join(
            f"{names.get(s.stage, s.stage)} {s.latest_days:.1f}/{s.cumulative_days:.1f}"
            + (f" x{s.entries}" if s.entries > 1 else "")
            for s in d.by_stage
        )
        amount = money(d.amount)
        if d.currency != (defn.currency if defn else d.currency):  # converted, or no rate
            shown = money(d.converted_amount) if d.converted_amount is not None else "no rate"
            amount = f"{amount} {d.currency} ({shown})"
        table.add_row(d.deal_id, names.get(d.stage, d.stage), amount, stays)
    out.print(table)


def show_audit(out: Console, report: AuditReport) -> None:
    """The audit report as tables (`dealengine audit ID` on a terminal)."""
    s, i = report.state, report.integrity
    out.print(
        f"audit of deal {report.deal_id}: {s['stage']}, {s['amount']} {s['currency']}, "
        f"owner {s['owner']}, pipeline {s['pipeline']}, lead {s.get('lead_id') or '-'}, "
        f"{s['version']} events"
    )
    status = "intact" if i.intact else f"BROKEN ({len(i.findings)} findings)"
    out.print(f"integrity: {status}: {i.events} events in {', '.join(i.streams)}")
    for finding in i.findings:
        out.print(f"  {finding}")
    for rules in report.rules_in_force:
        model = rules.model or "not recorded (written before models were)"
        out.print(f"rules in force for v{rules.from_version}-v{rules.to_version}: {model}")
    timeline = _table("timeline", "v", "occurred at", "actor", "type", "fields", "stage", "amount")
    for row in report.timeline:
        fields = ", ".join(f"{k}={v}" for k, v in _event_fields(row).items())
        kind = row["type"] + (f" (voided by v{row['voided_by']})" if row["voided_by"] else "")
        timeline.add_row(str(row["originator_version"]), str(row["occurred_at"])[:19],
                         row["actor"], kind, fields, str(row.get("stage_after", "")),
                         str(row.get("amount_after", "")))  # fmt: skip
    out.print(timeline)
    stays = _table("stage durations", "stage", "entered", "left", "days")
    for st in report.stage_durations:
        left = f"{st.left_at:%Y-%m-%d %H:%M}" if st.left_at else "(still there)"
        stays.add_row(st.stage, f"{st.entered_at:%Y-%m-%d %H:%M}", left, days(st.days))
    out.print(stays)
    for c in report.corrections:
        out.print(f"correction v{c.version} by {c.actor}: voids v{c.voided_version} "
                  f"({c.voided_type}): {c.reason}")  # fmt: skip


def _event_fields(row: dict[str, Any]) -> dict[str, Any]:
    """An audit timeline row's own fields: no envelope, state after, hash or void mark."""
    from dealengine.domain.events import ENVELOPE_FIELDS

    skip = {*ENVELOPE_FIELDS, "type", "hash", "voided_by"}
    return {k: v for k, v in row.items()
            if k not in skip and not k.endswith("_after") and v is not None}  # fmt: skip
