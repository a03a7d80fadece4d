"""The baselines the engine is compared with, computing the same funnel and pipeline numbers.

(a) the practical limit: a plain SQLite table read with sqlite3, orjson, a minimal fold;
(b) DuckDB, in SQL, straight from the JSONL file;
(c) eventsourcing's default read path: notification pages, one validated pydantic event each;
(d) eventsourcing's own batched save of pre-built events (the reference for batched ingest).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import duckdb
import orjson

from dealengine import Engine
from dealengine.domain.definitions import FunnelDefinition, PipelineDefinition
from dealengine.domain.events import DomainEvent
from dealengine.projections.funnel import FunnelProjection, FunnelView
from dealengine.projections.pipeline import PipelineProjection, PipelineView
from dealengine.projections.stream import StreamEvent, fold_all
from harness import Summary

UNKNOWN = "unknown"  # the channel of a lead with no touch


def _summarise(
    furthest: dict[str, int],
    channel_of: dict[str, str],
    deals: dict[str, tuple[str, Decimal]],
    steps: int,
    pipeline: PipelineDefinition,
) -> Summary:
    reached: dict[str, list[int]] = {"*": [0] * steps}
    for lead, step in furthest.items():
        for counts in (
            reached["*"],
            reached.setdefault(channel_of.get(lead, UNKNOWN), [0] * steps),
        ):
            for k in range(step + 1):
                counts[k] += 1
    stages: dict[str, tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for stage, amount in deals.values():
        n, total = stages[stage]
        stages[stage] = (n + 1, total + amount)
    won, lost = stages[pipeline.won_stage][0], stages[pipeline.lost_stage][0]
    return Summary(
        reached,
        {s: v for s, v in stages.items() if v[0]},
        won / (won + lost) if won + lost else None,
    )


# --- (a) ----------------------------------------------------------------------------------------


def plain_views(db: Path, funnel: FunnelDefinition, pipeline: PipelineDefinition) -> Summary:
    """Furthest step per lead and its first-touch channel; stage, amount, owner per deal."""
    step_of, enters, initial = funnel.step_of_event, pipeline.events, pipeline.initial_stage
    furthest: dict[str, int] = {}
    touch: dict[str, tuple[str, str]] = {}
    lead_of: dict[str, str] = {}
    deals: dict[str, list[str]] = {}
    connection = sqlite3.connect(db)
    for stream, type_, blob in connection.execute(
        "SELECT stream, type, data FROM events ORDER BY id"
    ):
        data = orjson.loads(blob)
        if stream[0] == "d":
            if type_ == "deal_opened":
                deals[stream] = [initial, data["amount"], data["owner"]]
                if data.get("lead_id"):
                    lead_of[stream] = data["lead_id"]
            else:
                deal = deals[stream]
                deal[0] = data.get("to_stage") or enters.get(type_, deal[0])
                deal[1] = data.get("amount", deal[1])
            if (lead := lead_of.get(stream)) is None:
                continue
        else:
            lead = stream[5:]
        step = step_of.get(type_)
        if step is not None and step > furthest.get(lead, -1):
            furthest[lead] = step
        if (channel := data.get("channel")) is not None:
            seen = touch.get(lead)
            if seen is None or data["occurred_at"] < seen[0]:
                touch[lead] = (data["occurred_at"], channel)
    connection.close()
    channel_of = {lead: channel for lead, (_, channel) in touch.items()}
    by_deal = {d: (stage, Decimal(amount)) for d, (stage, amount, _) in deals.items()}
    return _summarise(furthest, channel_of, by_deal, len(funnel.steps), pipeline)


# --- (b) ----------------------------------------------------------------------------------------

COLUMNS = {
    "type": "VARCHAR",
    "lead_id": "VARCHAR",
    "deal_id": "VARCHAR",
    "occurred_at": "VARCHAR",  # fixed-width UTC: string order is time order
    "channel": "VARCHAR",
    "amount": "DECIMAL(18,2)",
    "to_stage": "VARCHAR",
}
FUNNEL_SQL = """
WITH lead_of AS (SELECT deal_id, lead_id FROM lines WHERE type = 'deal_opened'),
furthest AS (
    SELECT coalesce(l.lead_id, o.lead_id) AS lead, max(s.step) AS step
    FROM lines l JOIN steps s USING (type)
    LEFT JOIN lead_of o ON l.lead_id IS NULL AND o.deal_id = l.deal_id
    WHERE coalesce(l.lead_id, o.lead_id) IS NOT NULL GROUP BY ALL),
touch AS (
    SELECT lead_id AS lead, arg_min(channel, occurred_at) AS channel
    FROM lines WHERE channel IS NOT NULL AND lead_id IS NOT NULL GROUP BY ALL)
SELECT coalesce(t.channel, 'unknown'), k.k, count(*)
FROM furthest f LEFT JOIN touch t USING (lead) JOIN range(0, 64) k(k) ON k.k <= f.step
GROUP BY ALL
"""
PIPELINE_SQL = """
WITH staged AS (
    SELECT l.deal_id, l.occurred_at, l.type, l.amount,
        CASE WHEN type = 'deal_opened' THEN $initial ELSE coalesce(l.to_stage, e.stage) END AS stage
    FROM lines l LEFT JOIN enters e USING (type) WHERE l.deal_id IS NOT NULL),
resolved AS (  -- a reopened deal returns to the open stage it closed from
    SELECT *, CASE WHEN type = 'deal_reopened' AND stage IS NULL THEN last_value(
        CASE WHEN type <> 'deal_reopened' AND list_contains($open, stage) THEN stage END
        IGNORE NULLS) OVER (PARTITION BY deal_id ORDER BY occurred_at
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) ELSE stage END AS at_stage
    FROM staged),
deals AS (
    SELECT deal_id, arg_max(at_stage, occurred_at) FILTER (at_stage IS NOT NULL) AS stage,
        arg_max(amount, occurred_at) FILTER (amount IS NOT NULL) AS amount
    FROM resolved GROUP BY ALL)
SELECT stage, count(*), sum(amount) FROM deals GROUP BY ALL
"""


def duckdb_views(jsonl: Path, funnel: FunnelDefinition, pipeline: PipelineDefinition) -> Summary:
    """The same numbers in SQL, straight from the JSONL file."""
    with duckdb.connect() as db:
        db.execute(
            "CREATE TABLE lines AS SELECT * FROM read_ndjson(?, columns = ?)", [str(jsonl), COLUMNS]
        )
        db.execute(
            "CREATE TABLE steps AS SELECT unnest(?) AS type, unnest(?) AS step",
            [list(funnel.step_of_event), list(funnel.step_of_event.values())],
        )
        db.execute(
            "CREATE TABLE enters AS SELECT unnest(?) AS type, unnest(?) AS stage",
            [list(pipeline.events), list(pipeline.events.values())],
        )
        reached: dict[str, list[int]] = defaultdict(lambda: [0] * len(funnel.steps))
        for channel, k, n in db.execute(FUNNEL_SQL).fetchall():
            reached[channel][k] = n
        params = {"initial": pipeline.initial_stage, "open": pipeline.open_stages}
        stages = {s: (n, total) for s, n, total in db.execute(PIPELINE_SQL, params).fetchall()}
    reached["*"] = [sum(c[k] for c in list(reached.values())) for k in range(len(funnel.steps))]
    won, lost = stages.get(pipeline.won_stage, (0,))[0], stages.get(pipeline.lost_stage, (0,))[0]
    return Summary(dict(reached), stages, won / (won + lost) if won + lost else None)


# --- (c) and (d) --------------------------------------------------------------------------------


def notifications(engine: Engine, page: int = 500) -> Iterator[tuple[int, DomainEvent]]:
    """Every event as eventsourcing reads it by default: notification pages, mapped one by one."""
    app, start = engine.store.app, 0
    while notes := app.recorder.select_notifications(start, limit=page, inclusive_of_start=False):
        for n in notes:
            yield n.id, cast(DomainEvent, app.mapper.to_domain_event(n))
        start = notes[-1].id


def es_default_views(engine: Engine) -> tuple[FunnelView, PipelineView]:
    """(c): the engine's folds, fed through eventsourcing's default read path."""
    stream = (
        StreamEvent(position, ev.originator_id, ev.event_type, ev.model_dump(mode="json"))
        for position, ev in notifications(engine)
    )
    funnel = FunnelProjection(engine.funnel_definition)
    pipeline = PipelineProjection(engine.pipeline_definition)
    funnel_view, pipeline_view = fold_all(stream, [funnel, pipeline])
    return funnel.report(funnel_view), pipeline.report(pipeline_view)


def es_save(engine: Engine, events: Sequence[Any], batch: int = 2000) -> int:
    """(d): pre-built events saved by eventsourcing itself, `batch` per save, no checks."""
    for i in range(0, len(events), batch):
        engine.store.app.save(*events[i : i + batch])
    return engine.store.position()
