"""`dealengine report`: one self-contained HTML file (Plotly inlined, works offline) with the
funnel (overall and by channel), the pipeline by stage, time in stage, cohort conversion, the
pipeline waterfall between two dates, and the table behind each chart."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta

from dealengine.engine import Engine
from dealengine.projections.funnel import FunnelView
from dealengine.projections.pipeline import PipelineChanges, PipelineView, money

try:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs
except ImportError:  # pragma: no cover - the optional extra is missing
    go = None

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.note{color:#616e7c;font-size:.85rem}
"""


def render_report(
    engine: Engine, as_of: datetime | None = None, changes: tuple[datetime, datetime] | None = None
) -> str:
    """The report as one HTML document."""
    if go is None:
        from dealengine.domain.errors import DealEngineError

        raise DealEngineError("the report needs Plotly: pip install 'dealengine[report]'")
    moment = as_of or engine.clock()
    funnel, pipeline = engine.views(as_of=as_of)
    start, end = changes or (moment - timedelta(days=90), moment)
    waterfall = engine.pipeline_changes(start, end)
    title = f"dealengine report{f' as of {as_of:%Y-%m-%d %H:%M} UTC' if as_of else ''}"
    sections = [
        _section("Funnel", "funnel", _funnel_chart(funnel), _funnel_table(funnel)),
        _section(
            "Funnel by channel",
            "funnel-by-channel",
            _channel_chart(funnel),
            _grouped_table(funnel, "channel"),
        ),
        _section(
            f"Pipeline {pipeline.name} by stage ({pipeline.currency})",
            "pipeline",
            _pipeline_chart(pipeline),
            _pipeline_table(pipeline),
        ),
        _section(
            "Time in stage (days, deals that entered and left)",
            "time-in-stage",
            _time_chart(pipeline),
            _time_table(pipeline),
        ),
        _section(
            "Cohort conversion (from entry to each step)",
            "cohorts",
            _cohort_chart(funnel),
            _grouped_table(funnel, "cohort"),
        ),
        _section(
            f"Pipeline changes {start:%Y-%m-%d} to {end:%Y-%m-%d}",
            "waterfall",
            _waterfall_chart(waterfall),
            _waterfall_table(waterfall),
        ),
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='note'>{funnel.leads} leads; "
        f"{sum(s.open_deals for s in pipeline.stages)} open deals</p>"
        + "".join(sections)
        + "</body></html>"
    )


def _section(title: str, name: str, figure: go.Figure, table: str) -> str:
    figure.update_layout(
        margin={"l": 40, "r": 20, "t": 20, "b": 40}, height=380, template="plotly_white"
    )
    chart = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{name}",
        config={"displaylogo": False},
    )
    return f"<section id='{name}'><h2>{html.escape(title)}</h2>{chart}{table}</section>"


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


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


def _pipeline_chart(view: PipelineView) -> go.Figure:
    names = [s.name for s in view.stages]
    return go.Figure(
        [
            go.Bar(name="amount", x=names, y=[float(s.amount) for s in view.stages]),
            go.Bar(name="weighted", x=names, y=[float(s.weighted_amount) for s in view.stages]),
        ]
    )


def _pipeline_table(view: PipelineView) -> str:
    rows = [
        (s.name, f"{s.probability:.0%}", s.open_deals, money(s.amount), money(s.weighted_amount))
        for s in view.stages
    ]
    rows += [
        ("won", "", view.won.deals, money(view.won.amount), ""),
        ("lost", "", view.lost.deals, money(view.lost.amount), ""),
    ]
    return _table("pipeline-table", ["stage", "probability", "deals", "amount", "weighted"], rows)


def _time_chart(view: PipelineView) -> go.Figure:
    names = [s.name for s in view.stages]
    return go.Figure(
        [
            go.Bar(name="median", x=names, y=[s.median_days_in_stage or 0 for s in view.stages]),
            go.Bar(name="mean", x=names, y=[s.mean_days_in_stage or 0 for s in view.stages]),
        ]
    )


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _time_table(view: PipelineView) -> str:
    rows = [
        (s.name, _days(s.median_days_in_stage), _days(s.mean_days_in_stage), _days(s.mean_age_days))
        for s in view.stages
    ]
    return _table("time-table", ["stage", "median days", "mean days", "mean age of open"], rows)


def _cohort_chart(view: FunnelView) -> go.Figure:
    cohorts = list(view.cohorts)
    z = [[s.conversion_from_first or 0 for s in view.cohorts[c].steps] for c in cohorts]
    return go.Figure(
        go.Heatmap(
            z=z, x=[s.name for s in view.steps], y=cohorts, colorscale="Blues", zmin=0, zmax=1
        )
    )


def _waterfall_chart(w: PipelineChanges) -> go.Figure:
    labels, values, measures = _waterfall_rows(w)
    return go.Figure(go.Waterfall(x=labels, y=values, measure=measures))


def _waterfall_rows(w: PipelineChanges) -> tuple[list[str], list[float], list[str]]:
    steps = [
        ("open at start", w.open_at_start.amount, "absolute"),
        ("new", w.new.amount, "relative"),
        ("reopened", w.reopened.amount, "relative"),
        ("amount up", w.amount_up.amount, "relative"),
        ("amount down", -w.amount_down.amount, "relative"),
        ("won", -w.won.amount, "relative"),
        ("lost", -w.lost.amount, "relative"),
        ("open at end", w.open_at_end.amount, "total"),
    ]
    return [s[0] for s in steps], [float(s[1]) for s in steps], [s[2] for s in steps]


def _waterfall_table(w: PipelineChanges) -> str:
    moves = [
        ("open at start", w.open_at_start),
        ("new", w.new),
        ("reopened", w.reopened),
        ("amount up", w.amount_up),
        ("amount down", w.amount_down),
        ("won", w.won),
        ("lost", w.lost),
        ("open at end", w.open_at_end),
    ]
    rows = [(name, m.deals, money(m.amount)) for name, m in moves]
    return _table("waterfall-table", ["", "deals", "amount"], rows)
