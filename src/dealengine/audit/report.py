"""The audit report of one deal: timeline, stage durations, amount changes, who did what,
corrections and integrity, as JSON, CSV or one self-contained HTML file (inline CSS only).

Also the timeline rows that `dealengine history --format json|csv` prints.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from datetime import datetime, tzinfo
from decimal import Decimal
from html import escape
from typing import Any, Protocol

import orjson
from pydantic import BaseModel

from dealengine.audit.states import canonical_json, state_fields
from dealengine.audit.verify import Checker, Finding, Row, check_chain
from dealengine.domain.deal import Deal
from dealengine.domain.decider import Evolvers
from dealengine.domain.definitions import Pipelines
from dealengine.domain.errors import DealEngineError
from dealengine.domain.events import ENVELOPE_FIELDS, EventVoided, format_time
from dealengine.domain.lead import Lead
from dealengine.domain.replay import TimelineEntry
from dealengine.domain.streams import DEAL_PREFIX, deal_stream, lead_stream
from dealengine.settings import Settings
from dealengine.store.application import Store


class DealRecords(Protocol):
    """What an audit report reads (the Engine is one): the store, the definitions and audit
    key in force, the clock, the evolver, and a deal's or lead's timeline and state."""

    store: Store
    settings: Settings
    pipelines: Pipelines
    clock: Callable[[], datetime]
    evolve: Evolvers

    def lead(self, lead_id: str) -> Lead: ...

    def timeline(self, id: str) -> list[TimelineEntry]: ...


HISTORY_COLUMNS = (
    "version",
    "id",
    "occurred_at",
    "recorded_at",
    "actor",
    "source",
    "type",
    "fields",
    "stage_after",
    "amount_after",
    "currency_after",
    "status_after",
    "voided_by",
    "hash",
)


def history_json(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    """One object per event: its type, envelope and fields (as stored), the state after it,
    the version of the event_voided that voids it (or null) and its hash."""
    rows = []
    for entry in entries:
        ev = entry.event
        rows.append(
            {
                "type": ev.event_type,
                **ev.model_dump(mode="json"),
                **state_fields(entry.after),
                "voided_by": entry.voided_by,
                "hash": ev.chain_hash(),
            }
        )
    return rows


def fields_text(entry: TimelineEntry) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.event.payload().items() if v is not None)


def history_csv(entries: list[TimelineEntry]) -> str:
    """The timeline as CSV (HISTORY_COLUMNS; `fields` as k=v pairs)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        ev = entry.event
        writer.writerow(
            {
                "version": ev.originator_version,
                "id": str(ev.id),
                "occurred_at": format_time(ev.occurred_at),
                "recorded_at": format_time(ev.recorded_at),
                "actor": ev.actor,
                "source": ev.source,
                "type": ev.event_type,
                "fields": fields_text(entry),
                **state_fields(entry.after),
                "voided_by": entry.voided_by or "",
                "hash": ev.chain_hash(),
            }
        )
    return out.getvalue()


# --- the report ------------------------------------------------------------------------------


class StageStay(BaseModel):
    stage: str
    entered_at: datetime
    left_at: datetime | None  # None: still there
    days: float | None  # None for a closed stage the deal is still in


class AmountChange(BaseModel):
    version: int
    occurred_at: datetime
    actor: str
    type: str
    before: Decimal
    after: Decimal


class ActorActivity(BaseModel):
    actor: str
    events: int
    types: dict[str, int]


class Correction(BaseModel):
    version: int
    recorded_at: datetime
    actor: str
    reason: str
    voided_version: int
    voided_type: str


class Integrity(BaseModel):
    intact: bool
    streams: list[str]
    events: int
    findings: list[str]
    note: str = (
        "the hash chains of the deal's stream and its lead's; a deleted last event or stream "
        "shows only against a seal: run `dealengine verify --seal SEAL`"
    )


class RulesInForce(BaseModel):
    """The model (its digest: `Engine.recorded_model` gives its content) the deal's events
    from_version..to_version were decided under; None: written before models were recorded."""

    from_version: int
    to_version: int
    model: str | None


class AuditReport(BaseModel):
    deal_id: str
    generated_at: datetime
    state: dict[str, Any]  # the deal now, as canonical JSON
    timeline: list[dict[str, Any]]
    stage_durations: list[StageStay]
    amount_changes: list[AmountChange]
    actors: list[ActorActivity]
    corrections: list[Correction]
    integrity: Integrity
    rules_in_force: list[RulesInForce] = []


def build_report(engine: DealRecords, deal_id: str) -> AuditReport:
    """The audit report of deal `deal_id` (or `deal:ID`) as the store holds it now."""
    deal_id = deal_id.removeprefix(DEAL_PREFIX)
    stream = deal_stream(deal_id)
    if not engine.store.exists(stream) and engine.store.exists(lead_stream(deal_id)):
        deals = engine.lead(deal_id).deals
        its = f"its deal is {deals[0]}" if len(deals) == 1 else f"its deals are {', '.join(deals)}"
        raise DealEngineError(
            f"{deal_id} is a lead; audit reports a deal: "
            + (f"{its} (audit {deals[0]})" if deals else "it has no deal yet")
            + f"; for the lead's events: history {deal_id}"
        )
    entries = engine.timeline(stream)
    deal = entries[-1].after
    assert isinstance(deal, Deal)
    now = engine.clock()
    events = [e.event for e in entries]
    voided = {e.event.id for e in entries if e.voided_by is not None}
    kept = [e for e in entries if not isinstance(e.event, EventVoided) and e.event.id not in voided]
    defn = engine.pipelines[deal.pipeline]
    streams = [stream] + ([lead_stream(deal.lead_id)] if deal.lead_id else [])
    return AuditReport(
        deal_id=deal_id,
        generated_at=now,
        state=_state_json(deal),
        timeline=history_json(entries),
        stage_durations=_stays(engine, kept, now, defn.is_closed),
        amount_changes=_amounts(engine, kept),
        actors=[
            ActorActivity(
                actor=actor,
                events=sum(types.values()),
                types=dict(sorted(types.items())),
            )
            for actor, types in sorted(_activity(events).items())
        ],
        corrections=[
            Correction(
                version=ev.originator_version,
                recorded_at=ev.recorded_at,
                actor=ev.actor,
                reason=ev.reason,
                voided_version=target.originator_version,
                voided_type=target.event_type,
            )
            for ev in events
            if isinstance(ev, EventVoided)
            for target in events
            if target.id == ev.voided_event_id
        ],
        integrity=_integrity(engine, streams),
        rules_in_force=_rules_in_force(engine.store.models_in_force(stream)),
    )


def _rules_in_force(models: list[str | None]) -> list[RulesInForce]:
    """The runs of versions decided under one model."""
    runs: list[RulesInForce] = []
    for version, model in enumerate(models, 1):
        if runs and runs[-1].model == model:
            runs[-1].to_version = version
        else:
            runs.append(RulesInForce(from_version=version, to_version=version, model=model))
    return runs


def _state_json(deal: Deal) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(canonical_json(deal))
    return data


def _activity(events: list[Any]) -> dict[str, Counter[str]]:
    by_actor: dict[str, Counter[str]] = {}
    for ev in events:
        by_actor.setdefault(ev.actor, Counter())[ev.event_type] += 1
    return by_actor


def _stays(
    engine: DealRecords, kept: list[TimelineEntry], now: datetime, is_closed: Any
) -> list[StageStay]:
    """Stays in each stage, from the corrected events (stage changes dated by occurred_at)."""
    stays: list[StageStay] = []
    state = None
    for entry in kept:
        state = engine.evolve(state, entry.event)
        assert isinstance(state, Deal)
        at = entry.event.occurred_at
        if stays and stays[-1].stage == state.stage:
            continue
        if stays:
            last = stays[-1]
            last.left_at = at
            last.days = _days(last.entered_at, at)
        stays.append(StageStay(stage=state.stage, entered_at=at, left_at=None, days=None))
    if stays and not is_closed(stays[-1].stage):
        stays[-1].days = _days(stays[-1].entered_at, now)
    return stays


def _days(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() / 86400, 2)


def _amounts(engine: DealRecords, kept: list[TimelineEntry]) -> list[AmountChange]:
    changes: list[AmountChange] = []
    state = None
    for entry in kept:
        before = state.amount if isinstance(state, Deal) else None
        state = engine.evolve(state, entry.event)
        assert isinstance(state, Deal)
        if before is not None and state.amount != before:
            ev = entry.event
            changes.append(
                AmountChange(
                    version=ev.originator_version,
                    occurred_at=ev.occurred_at,
                    actor=ev.actor,
                    type=ev.event_type,
                    before=before,
                    after=state.amount,
                )
            )
    return changes


def _integrity(engine: DealRecords, streams: list[str]) -> Integrity:
    findings: list[Finding] = []
    count = 0
    for stored in _grouped(engine, streams):
        stream, rows = stored
        count += len(rows)
        findings.extend(check_chain(stream, rows, Checker(engine.settings.audit_key_bytes())))
    return Integrity(
        intact=not findings, streams=streams, events=count, findings=[str(f) for f in findings]
    )


def _grouped(engine: DealRecords, streams: list[str]) -> list[tuple[str, list[Row]]]:
    rows: dict[str, list[Row]] = {s: [] for s in streams}
    for stored in engine.store.recorder.select_streams(streams):
        state = stored.state if isinstance(stored.state, bytes) else str(stored.state).encode()
        rows[str(stored.originator_id)].append(
            Row(stored.originator_version, stored.topic, state, 0)
        )
    return [(s, r) for s, r in rows.items() if r]


# --- rendering -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "section",
    "version",
    "occurred_at",
    "recorded_at",
    "actor",
    "type",
    "stage",
    "amount",
    "detail",
)


def report_csv(report: AuditReport) -> str:
    """One table: a `section` column (timeline, stage, amount, actor, correction, integrity)
    and the columns each section fills."""
    out = io.StringIO()
    w = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in report.timeline:
        fields = {k: v for k, v in row.items() if k not in (*ENVELOPE_FIELDS, "type", "hash")}
        detail = ", ".join(
            f"{k}={v}"
            for k, v in fields.items()
            if v is not None and not k.endswith("_after") and k != "voided_by"
        )
        if row["voided_by"]:
            detail = f"{detail}; voided by v{row['voided_by']}".lstrip("; ")
        w.writerow(
            {
                "section": "timeline",
                "version": row["originator_version"],
                "occurred_at": row["occurred_at"],
                "recorded_at": row["recorded_at"],
                "actor": row["actor"],
                "type": row["type"],
                "stage": row.get("stage_after", ""),
                "amount": row.get("amount_after", ""),
                "detail": detail,
            }
        )
    for s in report.stage_durations:
        w.writerow(
            {
                "section": "stage",
                "occurred_at": format_time(s.entered_at),
                "stage": s.stage,
                "detail": "" if s.days is None else f"{s.days} days",
            }
        )
    for a in report.amount_changes:
        w.writerow(
            {
                "section": "amount",
                "version": a.version,
                "occurred_at": format_time(a.occurred_at),
                "actor": a.actor,
                "type": a.type,
                "amount": str(a.after),
                "detail": f"from {a.before}",
            }
        )
    for p in report.actors:
        detail = ", ".join(f"{t}={n}" for t, n in p.types.items())
        w.writerow({"section": "actor", "actor": p.actor, "detail": f"{p.events} events: {detail}"})
    for c in report.corrections:
        w.writerow(
            {
                "section": "correction",
                "version": c.version,
                "recorded_at": format_time(c.recorded_at),
                "actor": c.actor,
                "type": "event_voided",
                "detail": f"voids v{c.voided_version} ({c.voided_type}): {c.reason}",
            }
        )
    status = "intact" if report.integrity.intact else "BROKEN"
    w.writerow({"section": "integrity", "detail": f"{status}: {report.integrity.events} events"})
    for f in report.integrity.findings:
        w.writerow({"section": "integrity", "detail": f})
    return out.getvalue()


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:72rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #d9dde6;padding-bottom:.3rem}
.meta{color:#5a6275}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eceff4;vertical-align:top}
th{background:#f5f7fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.voided td{color:#9aa1b1;text-decoration:line-through}tr.void td{background:#fff8e6}
.ok{color:#17803d;font-weight:600}.bad{color:#b42318;font-weight:600}
code{font-size:12px;color:#5a6275}
ol.timeline{list-style:none;margin:1rem 0 1rem .6rem;padding:0 0 0 1.4rem;
border-left:3px solid #c9d2e3}
ol.timeline li{position:relative;margin:0 0 1.1rem}
ol.timeline li::before{content:"";position:absolute;left:-1.95rem;top:.3rem;width:.75rem;
height:.75rem;border-radius:50%;background:#3b6fd8;border:2px solid #fff}
ol.timeline li.voided{color:#9aa1b1}ol.timeline li.voided b{text-decoration:line-through}
ol.timeline li.void::before{background:#d99a06}.when{color:#5a6275;font-size:13px}
table.fields{width:auto;margin:.3rem 0 0;font-size:13px}
table.fields th{background:none;color:#5a6275;font-weight:500;border:none;padding:.1rem .6rem 0 0}
table.fields td{border:none;padding:.1rem 0 0}
"""


def report_html(report: AuditReport, zone: tzinfo | None = None) -> str:
    """The report as one HTML document: inline CSS, no scripts, no external resources. Times
    are shown to the second in `zone` (default: this machine's) with the zone's name; the
    exact UTC time is each one's `datetime` attribute."""
    s = report.state
    e = escape

    def when(moment: datetime) -> Html:
        return _when(moment, zone)

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Audit of deal {e(report.deal_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>Audit of deal {e(report.deal_id)}</h1>",
        f"<p class='meta'>generated {when(report.generated_at)} · stage "
        f"<b>{e(str(s['stage']))}</b> · amount {e(str(s['amount']))} {e(str(s['currency']))}"
        f" · owner {e(str(s['owner']))} · pipeline {e(str(s['pipeline']))} · lead "
        f"{e(str(s.get('lead_id') or '-'))} · {s['version']} events</p>",
    ]
    i = report.integrity
    status = "<span class='ok'>intact</span>" if i.intact else "<span class='bad'>BROKEN</span>"
    parts.append(f"<h2>Integrity</h2><p>{status}: {i.events} events in {e(', '.join(i.streams))}")
    parts.append(f" ({e(i.note)}).</p>")
    if i.findings:
        parts.append("<ul>" + "".join(f"<li>{e(f)}</li>" for f in i.findings) + "</ul>")
    parts.append("<h2>Rules in force</h2>")
    parts.append(
        _table(
            ["versions", "model"],
            [
                [f"v{r.from_version}-v{r.to_version}", r.model or "not recorded"]
                for r in report.rules_in_force
            ],
        )
    )
    parts.append("<h2>Timeline</h2>")
    parts.append(_timeline(report.timeline, zone))
    parts.append("<h2>Stage durations</h2>")
    parts.append(
        _table(
            ["stage", "entered", "left", "days"],
            [
                [
                    st.stage,
                    when(st.entered_at),
                    when(st.left_at) if st.left_at else "(still there)",
                    "" if st.days is None else f"{st.days:g}",
                ]
                for st in report.stage_durations
            ],
            numeric={3},
        )
    )
    parts.append("<h2>Amount changes</h2>")
    parts.append(
        _table(
            ["v", "occurred", "actor", "by", "from", "to"],
            [
                [
                    str(a.version),
                    when(a.occurred_at),
                    a.actor,
                    a.type,
                    str(a.before),
                    str(a.after),
                ]
                for a in report.amount_changes
            ],
            numeric={0, 4, 5},
        )
        if report.amount_changes
        else "<p>none</p>"
    )
    parts.append("<h2>Who did what</h2>")
    parts.append(
        _table(
            ["actor", "events", "types"],
            [
                [p.actor, str(p.events), ", ".join(f"{t}: {n}" for t, n in p.types.items())]
                for p in report.actors
            ],
            numeric={1},
        )
    )
    parts.append("<h2>Corrections</h2>")
    parts.append(
        _table(
            ["v", "recorded", "actor", "voids", "reason"],
            [
                [
                    str(c.version),
                    when(c.recorded_at),
                    c.actor,
                    f"v{c.voided_version} ({c.voided_type})",
                    c.reason,
                ]
                for c in report.corrections
            ],
            numeric={0},
        )
        if report.corrections
        else "<p>none</p>"
    )
    parts.append(f"<p class='meta'>state: <code>{e(str(s.get('head')))}</code> (head hash)</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


class Html(str):
    """Markup made here, put in a table as it is (every other cell is escaped)."""


def _when(moment: datetime | str, zone: tzinfo | None) -> Html:
    """`2026-03-03 10:00:00 CET`, in a <time> holding the exact UTC time."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = moment.astimezone(zone)
    return Html(
        f"<time datetime='{format_time(moment)}'>"
        f"{local:%Y-%m-%d %H:%M:%S} {escape(local.tzname() or '')}</time>"
    )


def _timeline(rows: list[dict[str, Any]], zone: tzinfo | None) -> str:
    """The events top to bottom on a line: when, what, who, the stage after it, and its
    fields as a small table."""
    items = []
    for row in rows:
        fields = {
            k: v
            for k, v in row.items()
            if k not in (*ENVELOPE_FIELDS, "type", "hash", "voided_by")
            and not k.endswith("_after")
            and v is not None
        }
        css = "void" if row["type"] == "event_voided" else "voided" if row["voided_by"] else ""
        note = f" (voided by v{row['voided_by']})" if row["voided_by"] else ""
        shown = ("stage_after", "amount_after", "currency_after")
        after = " ".join(str(row[k]) for k in shown if row.get(k))
        table = (
            "<table class='fields'>"
            + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                      for k, v in fields.items())
            + "</table>"
            if fields
            else ""
        )  # fmt: skip
        items.append(
            f"<li class='{css}'><div class='when'>v{row['originator_version']} · "
            f"{_when(row['occurred_at'], zone)}</div>"
            f"<div><b>{escape(row['type'] + note)}</b> by {escape(row['actor'])} "
            f"({escape(row['source'])}), recorded {_when(row['recorded_at'], zone)}"
            + (f" → <b>{escape(after)}</b>" if after else "")
            + f"</div>{table}</li>"
        )
    return f"<ol class='timeline'>{''.join(items)}</ol>"


def _cell(value: str) -> str:
    return value if isinstance(value, Html) else escape(value)


def _table(
    header: list[str],
    rows: list[list[str]],
    classes: list[str] | None = None,
    numeric: set[int] | None = None,
) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for n, row in enumerate(rows):
        css = f" class='{classes[n]}'" if classes and classes[n] else ""
        cells = "".join(
            f"<td{' class=n' if k in numeric else ''}>{_cell(v)}</td>" for k, v in enumerate(row)
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


__all__ = [
    "AuditReport",
    "build_report",
    "history_csv",
    "history_json",
    "report_csv",
    "report_html",
]
