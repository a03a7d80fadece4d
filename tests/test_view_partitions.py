"""Views split into partitions (issue 21, item 2): each partition has its own rows and position,
the view's numbers are the sum of its partitions'; on PostgreSQL each partition has one owner
among the `project --follow` workers, who share them out and take over a killed worker's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from dealengine import Engine, Settings
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.projections.funnel import in_partition

from .test_views import reference_funnel, reference_pipeline

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
    split into 6 partitions, then each partition holds its own leads and deals only, and the
    views equal the reference, on SQLite and PostgreSQL."""
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
        for i in range(PARTITIONS):
            stored = tables.entities(f"{generation}/{i}", [f"L:{line['lead_id']}" for line in lines
                                                           if "lead_id" in line])  # fmt: skip
            assert stored and all(
                in_partition("lead:" + key[2:], (i, PARTITIONS)) for key in stored
            )


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


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
