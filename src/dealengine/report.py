"""`dealengine report`: one self-contained HTML file (Plotly inlined, works offline) with the
funnel (overall, by channel, cohort conversion) and, for each pipeline that has deals, its
section: stages, forecast, win rate, cycle and velocity, owners, stale deals, lost reasons,
time in stage and the waterfall between two dates; each chart with the table behind it.
Amounts carry the pipeline's currency and thousands separators."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dealengine.domain.errors import DealEngineError
from dealengine.domain.values import shifted
from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import (
    ClosedView,
    PipelineBreakdown,
    PipelineChanges,
    PipelineView,
    StageView,
)
from dealengine.render import has_deals

if TYPE_CHECKING:
    from dealengine.engine import Engine

try:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs
except ImportError:  # pragma: no cover - the optional extra is missing
    go = None

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#616e7c;font-size:.85rem}
"""


def pipeline_views(
    engine: Engine, as_of: datetime | None, *, name: str | None = None, every: bool = False
) -> list[PipelineView]:
    """Pipeline `name`; else every pipeline (`every`), or those that have deals (the default
    one when none has)."""
    if name is not None:
        return [engine.pipeline(as_of=as_of, pipeline_name=name)]
    views = [engine.pipeline(as_of=as_of, pipeline_name=n) for n in engine.pipelines.by_name]
    return views if every else [v for v in views if has_deals(v)] or views[:1]


def render_report(
    engine: Engine,
    as_of: datetime | None = None,
    changes: tuple[datetime, datetime] | None = None,
    *,
    pipeline_name: str | None = None,
    all_pipelines: bool = False,
) -> str:
    """The report as one HTML document."""
    if go is None:
        raise DealEngineError("the report needs Plotly: pip install 'dealengine[report]'")
    generated = engine.clock()
    moment = as_of or generated
    funnel = engine.funnel(as_of=as_of)
    pipelines = pipeline_views(engine, as_of, name=pipeline_name, every=all_pipelines)
    start, end = changes or (shifted(moment, timedelta(days=-90)), moment)
    title = "dealengine report" + (f" as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of else "")
    sections = [
        _section("Funnel", "funnel", _funnel_chart(funnel), _funnel_table(funnel)),
        _section(
            "Funnel by channel",
            "funnel-by-channel",
            _channel_chart(funnel),
            _grouped_table(funnel, "channel"),
        ),
        _section(
            "Cohort conversion (from entry to each later step; every lead enters at the first)",
            "cohorts",
            _cohort_chart(funnel),
            _grouped_table(funnel, "cohort"),
        ),
    ]
    for view in pipelines:
        waterfall = engine.pipeline_changes(start, end, pipeline_name=view.name)
        sections.append(_pipeline_section(view, waterfall, single=len(pipelines) == 1))
    as_of_text = f"{as_of:%Y-%m-%d %H:%M:%S} UTC" if as_of else "now (every event)"
    header = (
        f"<p class='note' id='report-times'>generated {generated:%Y-%m-%d %H:%M:%S} UTC; "
        f"as of {as_of_text}: the events that occurred by then</p>"
        f"<p class='note'>{funnel.leads:,} leads; pipelines: "
        + "; ".join(
            f"{html.escape(v.name)}: {sum(s.open_deals for s in v.stages):,} open, "
            f"{v.won.deals:,} won, {v.lost.deals:,} lost"
            for v in pipelines
        )
        + "</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{header}" + "".join(sections) + "</body></html>"
    )


def money(amount: Decimal | None, currency: str) -> str:
    """`1,234,567.00 BRL`."""
    return "-" if amount is None else f"{amount:,.2f} {currency}"


def _pipeline_section(view: PipelineView, w: PipelineChanges, *, single: bool) -> str:
    """Every figure of one pipeline (what `dealengine pipeline --full` prints)."""
    name, cur = view.name, view.currency
    key = "" if single else f"-{name}"  # ids: #chart-pipeline for one pipeline
    cycle = view.cycle
    summary = (
        f"<p class='note' id='pipeline-summary{key}'>win rate {_pct(view.win_rate)} by count, "
        f"{_pct(view.win_rate_by_amount)} by amount; average won deal "
        f"{money(view.average_deal_size, cur)}; cycle (median days) won "
        f"{_days(cycle['won'].median_days)}, lost {_days(cycle['lost'].median_days)}; "
        f"velocity {money(view.velocity_per_day, cur)} a day</p>"
    )
    missing = [*view.missing_rates, *(m for m in w.missing_rates if m not in view.missing_rates)]
    warnings = "".join(
        f"<p class='note' id='missing-rate{key}-{i}'>warning: {html.escape(m.advice())}</p>"
        for i, m in enumerate(missing)
    )
    parts = [
        f"<section id='pipeline-{html.escape(name)}'>",
        f"<h2>Pipeline {html.escape(name)} ({html.escape(cur)})</h2>",
        summary + warnings,
        _chart(f"pipeline{key}", _pipeline_chart(view)),
        _pipeline_table(view, f"pipeline-table{key}"),
        "<h3>Forecast categories</h3>",
        _table(
            f"forecast-table{key}",
            ["category", "deals", "amount", "weighted"],
            [
                (c, f"{f.deals:,}", money(f.amount, cur), money(f.weighted_amount, cur))
                for c, f in view.forecast.items()
            ],
        ),
        "<h3>Owners</h3>",
        _table(
            f"owners-table{key}",
            [
                "owner",
                "open deals",
                "open amount",
                "weighted",
                "won",
                "won amount",
                "lost",
                "win rate",
            ],
            [(o, *_owner_row(b, cur)) for o, b in view.by_owner.items()],
        ),
        "<h3>Stale deals</h3>",
        _table(
            f"stale-table{key}",
            ["deal", "stage", "owner", "amount", "days idle", "limit"],
            [
                (
                    d.deal_id,
                    d.stage,
                    d.owner,
                    money(d.amount, cur),
                    _days(d.days_without_event),
                    _days(d.limit_days),
                )
                for d in view.stale
            ],
        )
        if view.stale
        else "<p class='note'>none</p>",
        "<h3>Lost reasons</h3>",
        _table(f"lost-table{key}", ["reason", "deals"], list(view.lost_reasons.items()))
        if view.lost_reasons
        else "<p class='note'>none</p>",
        "<h3>Time in stage (days, deals that entered and left)</h3>",
        _chart(f"time-in-stage{key}", _time_chart(view)),
        _time_table(view, f"time-table{key}"),
        f"<h3>Pipeline changes {w.start:%Y-%m-%d} to {w.end:%Y-%m-%d} "
        "(won and lost at their closing amounts; docs/pipeline-changes.md)</h3>",
        _chart(f"waterfall{key}", _waterfall_chart(w, cur)),
        _waterfall_table(w, cur, f"waterfall-table{key}"),
        "</section>",
    ]
    return "".join(parts)


def _layout(figure: go.Figure, currency: str | None = None) -> go.Figure:
    figure.update_layout(
        margin={"l": 60, "r": 20, "t": 20, "b": 40},
        height=380,
        template="plotly_white",
        separators=".,",
    )
    if currency:
        figure.update_yaxes(tickformat=",.0f", ticksuffix=f" {currency}")
    return figure


def _chart(name: str, figure: go.Figure) -> str:
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{name}",
            config={"displaylogo": False},
        )
    )


def _section(title: str, name: str, figure: go.Figure, table: str) -> str:
    chart = _chart(name, _layout(figure))
    return f"<section id='{name}'><h2>{html.escape(title)}</h2>{chart}{table}</section>"


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _funnel_chart(view: FunnelView) -> go.Figure:
    return go.Figure(
        go.Funnel(
            y=[s.name for s in view.steps],
            x=[s.leads for s in view.steps],
            textinfo="value+percent initial",
        )
    )


def _funnel_table(view: FunnelView) -> str:
    rows = [
        (
            s.name,
            s.leads,
            _pct(s.conversion_from_previous),
            _pct(s.conversion_from_first),
            s.drop_off,
        )
        for s in view.steps
    ]
    return _table(
        "funnel-table", ["step", "leads", "from previous", "from first", "drop-off"], rows
    )


def _channel_chart(view: FunnelView) -> go.Figure:
    figure = go.Figure()
    for channel, breakdown in view.by_channel.items():
        figure.add_trace(
            go.Funnel(
                name=channel,
                y=[s.name for s in breakdown.steps],
                x=[s.leads for s in breakdown.steps],
            )
        )
    return figure


def _grouped_table(view: FunnelView, kind: str) -> str:
    groups = view.by_channel if kind == "channel" else view.cohorts
    rows = [
        (g, *(s.leads for s in b.steps), _pct(b.steps[-1].conversion_from_first))
        for g, b in groups.items()
    ]
    headers = [kind, *(s.name for s in view.steps), "overall"]
    return _table(f"{kind}-table", headers, rows)


def _cohort_chart(view: FunnelView) -> go.Figure:
    """Conversion from entry to each step after the first: the first is 100% for every
    cohort and would take the colour scale's top for itself."""
    cohorts = list(view.cohorts)
    later = [s.name for s in view.steps[1:]]
    z = [[s.conversion_from_first or 0 for s in view.cohorts[c].steps[1:]] for c in cohorts]
    top = max((v for row in z for v in row), default=0) or 1
    return go.Figure(
        go.Heatmap(
            z=z, x=later, y=cohorts, colorscale="Blues", zmin=0, zmax=top,
            colorbar={"tickformat": ".0%"}, hovertemplate="%{y} %{x}: %{z:.1%}<extra></extra>",
        )
    )  # fmt: skip


def _pipeline_chart(view: PipelineView) -> go.Figure:
    names = [s.name for s in view.stages]
    figure = go.Figure(
        [
            go.Bar(name="amount", x=names, y=[float(s.amount) for s in view.stages]),
            go.Bar(name="weighted", x=names, y=[float(s.weighted_amount) for s in view.stages]),
            go.Bar(name="won", x=["won"], y=[float(view.won.amount)]),
            go.Bar(name="lost", x=["lost"], y=[float(view.lost.amount)]),
        ]
    )
    return _layout(figure, view.currency)


def _pipeline_table(view: PipelineView, table_id: str) -> str:
    cur = view.currency
    rows: list[tuple[object, ...]] = [
        (s.name, f"{s.probability:.0%}", f"{s.open_deals:,}", money(s.amount, cur),
         money(s.weighted_amount, cur))
        for s in view.stages
    ]  # fmt: skip
    rows += [
        ("won", "", f"{view.won.deals:,}", money(view.won.amount, cur), ""),
        ("lost", "", f"{view.lost.deals:,}", money(view.lost.amount, cur), ""),
    ]
    header = ["stage", "probability", "deals", "amount", "weighted"]
    stages: list[StageView | ClosedView] = [*view.stages, view.won, view.lost]
    if any(set(s.amounts_by_currency) - {cur} for s in stages):  # deals in other currencies
        header += ["by currency (original)", "unconverted (no rate)"]
        rows = [(*row, _by_currency(s.amounts_by_currency), _by_currency(s.unconverted))
                for row, s in zip(rows, stages, strict=True)]  # fmt: skip
    return _table(table_id, header, rows)


def _by_currency(amounts: dict[str, Decimal]) -> str:
    return ", ".join(money(v, c) for c, v in amounts.items()) or "-"


def _owner_row(b: PipelineBreakdown, cur: str) -> list[str]:
    return [
        f"{sum(s.open_deals for s in b.stages):,}",
        money(sum((s.amount for s in b.stages), Decimal(0)), cur),
        money(sum((s.weighted_amount for s in b.stages), Decimal(0)), cur),
        f"{b.won.deals:,}",
        money(b.won.amount, cur),
        f"{b.lost.deals:,}",
        _pct(b.win_rate),
    ]


def _time_chart(view: PipelineView) -> go.Figure:
    names = [s.name for s in view.stages]
    return _layout(
        go.Figure(
            [
                go.Bar(
                    name="median", x=names, y=[s.median_days_in_stage or 0 for s in view.stages]
                ),
                go.Bar(name="mean", x=names, y=[s.mean_days_in_stage or 0 for s in view.stages]),
            ]
        )
    )


def _time_table(view: PipelineView, table_id: str) -> str:
    rows = [
        (s.name, _days(s.median_days_in_stage), _days(s.mean_days_in_stage), _days(s.mean_age_days))
        for s in view.stages
    ]
    return _table(table_id, ["stage", "median days", "mean days", "mean age of open"], rows)


def _waterfall_moves(w: PipelineChanges) -> list[tuple[str, Any, str, int]]:
    """(label, movement, plotly measure, sign)."""
    return [
        ("open at start", w.open_at_start, "absolute", 1),
        ("new", w.new, "relative", 1),
        ("reopened", w.reopened, "relative", 1),
        ("amount up", w.amount_up, "relative", 1),
        ("amount down", w.amount_down, "relative", -1),
        *([("rate effect", w.rate_effect, "relative", 1)] if w.rate_effect.deals else []),
        ("won", w.won, "relative", -1),
        ("lost", w.lost, "relative", -1),
        ("open at end", w.open_at_end, "total", 1),
    ]


def _waterfall_chart(w: PipelineChanges, currency: str) -> go.Figure:
    moves = _waterfall_moves(w)
    figure = go.Figure(
        go.Waterfall(
            x=[m[0] for m in moves],
            y=[float(m[1].amount) * m[3] for m in moves],
            measure=[m[2] for m in moves],
        )
    )
    return _layout(figure, currency)


def _waterfall_table(w: PipelineChanges, currency: str, table_id: str) -> str:
    rows = [(label, f"{m.deals:,}", money(m.amount, currency)) for label, m, _, _ in
            _waterfall_moves(w)]  # fmt: skip
    if w.unconverted:
        rows.append(("unconverted (no rate)", "", _by_currency(w.unconverted)))
    return _table(table_id, ["", "deals", "amount"], rows)
