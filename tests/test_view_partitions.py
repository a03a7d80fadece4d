"""Views split into partitions (issue 21, item 2): each partition has its own rows and position,
the view's numbers are the sum of its partitions'; on PostgreSQL each partition has one owner
among the `project --follow` workers, who share them out and take over a killed worker's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.projections.funnel import in_partition

from .test_views import reference_funnel, reference_pipeline
from .test_workers import holders, wait_for

PARTITIONS = 6


def ingest(engine: Engine, lines: list[dict[str, Any]]) -> None:
    outcomes = engine.execute_batch([interaction_from(line, "t", "t") for line in lines])
    assert not [o for o in outcomes if isinstance(o, Exception)]


def assert_views_equal_the_reference(engine: Engine, lines: list[dict[str, Any]]) -> None:
    """The live views against plain code over the lines (tests/test_views.py's reference)."""
    funnel, lag = engine.live_funnel(catch_up=False)
    overall, by_channel = reference_funnel(lines)
    assert lag.behind == 0
    assert [s.leads for s in funnel.steps] == overall
    assert {c: [s.leads for s in b.steps] for c, b in funnel.by_channel.items()} == by_channel
    pipeline, _ = engine.live_pipeline(catch_up=False)
    expected = reference_pipeline(lines)
    cent = Decimal("0.01")
    got = [
        (s.name, s.open_deals, str(s.amount.quantize(cent)), str(s.weighted_amount.quantize(cent)))
        for s in pipeline.stages
    ]
    assert got == expected["stages"]
    assert (pipeline.won.deals, str(pipeline.won.amount.quantize(cent))) == expected["won"]
    assert (pipeline.lost.deals, str(pipeline.lost.amount.quantize(cent))) == expected["lost"]


def test_a_split_view_is_the_sum_of_its_partitions(settings: Settings) -> None:
    """Given a history recorded in three parts, each followed by a query, when the views are
    split into 6 partitions, then each partition counts its own leads only (the reference over
    them), and the views equal the reference, on SQLite and PostgreSQL."""
    lines = generate(400, 5)
    split = settings.model_copy(update={"view_partitions": PARTITIONS})
    with Engine(split) as engine:
        for part in (lines[:300], lines[300:700], lines[700:]):
            ingest(engine, part)
            engine.live_funnel(), engine.live_pipeline()
        assert_views_equal_the_reference(engine, lines)
        tables = engine.live.tables
        assert tables is not None
        generation, _ = tables.active("funnel") or ("", "")
        lead_of = {line["deal_id"]: line["lead_id"] for line in lines if "lead_id" in line
                   and line["type"] == "deal_opened"}  # fmt: skip
        for i in range(PARTITIONS):
            mine = [line for line in lines
                    if in_partition("lead:" + line.get("lead_id", lead_of.get(
                        line.get("deal_id", ""), "")), (i, PARTITIONS))]  # fmt: skip
            overall, _ = reference_funnel(mine)
            keys = [f"step\x1f{k}" for k in range(len(overall))]
            stored = tables.counter_rows(f"{generation}/{i}", keys)
            assert [stored.get(k, (0, None, None))[0] for k in keys] == overall
            assert overall[0]  # every partition has leads


def test_a_correction_rebuilds_a_split_view_once(settings: Settings) -> None:
    """Given a split view, when a newsletter signup is voided, then the next query rebuilds
    the view (the caller has partition 0) and it equals the reference without that line."""
    lines = generate(200, 4)
    split = settings.model_copy(update={"view_partitions": 3})
    with Engine(split) as engine:
        ingest(engine, lines)
        engine.live_funnel(), engine.live_pipeline()
        voided = next(line for line in lines if line["type"] == "newsletter_signed_up")
        lead = voided["lead_id"]
        [signup] = [e for e in engine.history(lead) if e.event_type == "newsletter_signed_up"]
        engine.void(lead, f"v{signup.originator_version}", reason="test")
        before = engine.live.tables.active("funnel") if engine.live.tables else None
        engine.live_funnel(), engine.live_pipeline()
        assert engine.live.tables is not None
        assert engine.live.tables.active("funnel") != before  # a new generation
        assert_views_equal_the_reference(engine, [x for x in lines if x is not voided])


def test_a_changed_number_of_partitions_is_refused_until_rebuilt(settings: Settings) -> None:
    lines = generate(60, 2)
    with Engine(settings) as engine:
        ingest(engine, lines)
        engine.live_funnel()
    with Engine(settings.model_copy(update={"view_partitions": 3})) as engine:
        with pytest.raises(Exception, match="run `dealengine rebuild funnel`"):
            engine.live_funnel()
        engine.view("funnel").rebuild()
        assert engine.live_funnel()[0].leads == reference_funnel(lines)[0][0]


def owners(schema: str) -> Counter[int]:
    """How many partitions (of both views) each worker's connection holds."""
    held: Counter[int] = Counter()
    for view in ("funnel", "pipeline"):
        for i in range(PARTITIONS):
            held.update(holders(schema, f"{view}/{i}"))
    return held


def test_three_workers_share_the_partitions_and_take_over_a_killed_ones(
    pg_schema_url: str,
) -> None:
    """Given three `project --follow` workers on views of 6 partitions, each owns 2 of each
    view's; when one is SIGKILLed, the other two take its partitions over (3 each) and the
    views, built and kept up by the workers alone, equal the reference."""
    schema = pg_schema_url.rpartition("schema=")[2]
    settings = Settings(database_url=pg_schema_url, view_partitions=PARTITIONS)
    lines = generate(300, 9)
    first, second, third = lines[:500], lines[500:800], lines[800:]
    with Engine(settings) as engine:
        ingest(engine, first)
    env = {**os.environ, "DEALENGINE_DATABASE_URL": pg_schema_url,
           "DEALENGINE_VIEW_PARTITIONS": str(PARTITIONS), "DEALENGINE_VIEW_BATCH": "200"}  # fmt: skip
    worker = [sys.executable, "-m", "dealengine.cli", "project", "--follow"]
    workers = [subprocess.Popen(worker, env=env) for _ in range(3)]
    try:
        shared = wait_for(lambda: (o := owners(schema)) and sorted(o.values()) == [4, 4, 4] and o)
        with Engine(settings) as engine:
            wait_for(lambda: engine.live_funnel(catch_up=False)[1].behind == 0, timeout=60)
            ingest(engine, second)
            wait_for(lambda: engine.live_funnel(catch_up=False)[1].behind == 0, timeout=60)
            assert_views_equal_the_reference(engine, first + second)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        taken = wait_for(lambda: (o := owners(schema)) and sorted(o.values()) == [6, 6] and o)
        assert set(taken) < set(shared), "the two survivors hold every partition"
        with Engine(settings) as engine:
            ingest(engine, third)
            wait_for(lambda: engine.live_pipeline(catch_up=False)[1].behind == 0, timeout=60)
            wait_for(lambda: engine.live_funnel(catch_up=False)[1].behind == 0, timeout=60)
            assert_views_equal_the_reference(engine, lines)
        for w in workers[1:]:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(timeout=15) for w in workers[1:]] == [0, 0]
        assert sum(owners(schema).values()) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
