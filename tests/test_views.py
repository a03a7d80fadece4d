"""Funnel and pipeline views, checked by hand on a small history and against a plain reference
computation (written here, from the ingest lines themselves) on a generated one."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dealengine import Engine
from dealengine.demo import generate, write_jsonl
from dealengine.ingest.jsonl import ingest_jsonl
from dealengine.store.application import Store


def record(engine: Engine, lines: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    for event_type, target, day, fields in lines:
        engine.record(event_type, target, f"2026-05-{day}T12:00:00Z", **fields)


SMALL = [
    ("ad_viewed", "L-1", "01", {"channel": "paid_search"}),
    ("newsletter_signed_up", "L-1", "02", {}),
    ("demo_requested", "L-1", "03", {}),
    ("lead_qualified", "L-1", "04", {"by": "sdr"}),
    ("deal_opened", "D-1", "05", {"lead_id": "L-1", "amount": "1000", "owner": "ana"}),
    ("deal_won", "D-1", "06", {"amount": "1200"}),
    ("site_visited", "L-2", "01", {"channel": "organic_search"}),
    ("demo_requested", "L-2", "02", {}),  # skips interest and consideration: they count as passed
    ("ad_viewed", "L-3", "01", {"channel": "paid_search"}),
    ("site_visited", "L-4", "01", {"channel": "referral"}),
    ("lead_qualified", "L-4", "02", {"by": "sdr"}),
    ("deal_opened", "D-4", "03", {"lead_id": "L-4", "amount": "500", "owner": "bruno"}),
    ("proposal_sent", "D-4", "04", {"amount": "800"}),
    ("site_visited", "L-5", "01", {"channel": "email"}),
    ("ad_viewed", "L-5", "09", {"channel": "display"}),  # later touch: first touch stays email
    ("lead_qualified", "L-5", "02", {"by": "sdr"}),
    ("deal_opened", "D-5", "03", {"lead_id": "L-5", "amount": "300", "owner": "ana"}),
    ("deal_lost", "D-5", "04", {"reason": "timing"}),
]


def test_funnel_by_hand(memory_engine: Engine) -> None:
    record(memory_engine, SMALL)
    funnel = memory_engine.funnel()
    assert [(s.name, s.leads) for s in funnel.steps] == [
        ("awareness", 5),
        ("interest", 4),
        ("consideration", 4),
        ("intent", 4),
        ("qualified", 3),
        ("opportunity", 3),
        ("won", 1),
    ]
    interest, qualified, won = funnel.steps[1], funnel.steps[4], funnel.steps[6]
    assert (interest.conversion_from_previous, interest.drop_off) == (0.8, 1)
    assert qualified.conversion_from_previous == 0.75
    assert won.conversion_from_previous == pytest.approx(1 / 3)
    assert won.conversion_from_first == pytest.approx(1 / 5)
    assert {c: [s.leads for s in b.steps] for c, b in funnel.by_channel.items()} == {
        "paid_search": [2, 1, 1, 1, 1, 1, 1],
        "organic_search": [1, 1, 1, 1, 0, 0, 0],
        "referral": [1, 1, 1, 1, 1, 1, 0],
        "email": [1, 1, 1, 1, 1, 1, 0],
    }
    assert funnel.by_channel["organic_search"].steps[4].conversion_from_previous == 0.0


def test_pipeline_by_hand(memory_engine: Engine) -> None:
    record(memory_engine, SMALL)
    pipeline = memory_engine.pipeline().model_dump(mode="json")
    keys = ("name", "probability", "open_deals", "amount", "weighted_amount")
    assert [{k: s[k] for k in keys} for s in pipeline["stages"]] == [
        {
            "name": "prospecting",
            "probability": 0.1,
            "open_deals": 0,
            "amount": "0.00",
            "weighted_amount": "0.00",
        },
        {
            "name": "discovery",
            "probability": 0.2,
            "open_deals": 0,
            "amount": "0.00",
            "weighted_amount": "0.00",
        },
        {
            "name": "proposal",
            "probability": 0.5,
            "open_deals": 1,
            "amount": "800.00",
            "weighted_amount": "400.00",
        },
        {
            "name": "negotiation",
            "probability": 0.8,
            "open_deals": 0,
            "amount": "0.00",
            "weighted_amount": "0.00",
        },
    ]
    assert pipeline["won"] == {
        "deals": 1,
        "amount": "1200.00",
        "amounts_by_currency": {"USD": "1200.00"},
        "unconverted": {},
    }
    assert pipeline["lost"] == {
        "deals": 1,
        "amount": "300.00",
        "amounts_by_currency": {"USD": "300.00"},
        "unconverted": {},
    }
    assert pipeline["stages"][2]["amounts_by_currency"] == {"USD": "800.00"}
    assert pipeline["win_rate"] == 0.5
    assert pipeline["by_owner"]["ana"]["win_rate"] == 0.5
    assert pipeline["by_owner"]["bruno"]["win_rate"] is None
    assert pipeline["by_owner"]["bruno"]["stages"][2]["amount"] == "800.00"


def test_an_empty_store_has_empty_views(memory_engine: Engine) -> None:
    funnel, pipeline = memory_engine.views()
    assert [s.leads for s in funnel.steps] == [0] * 7
    assert funnel.steps[1].conversion_from_previous is None
    assert (pipeline.won.deals, pipeline.win_rate, pipeline.by_owner) == (0, None, {})


# --- the reference: plain code over the ingest lines, sharing nothing with the engine -------------

STEPS = [
    {"ad_viewed", "site_visited"},
    {"newsletter_signed_up", "content_downloaded"},
    {"webinar_attended"},
    {"demo_requested"},
    {"lead_qualified"},
    {"deal_opened"},
    {"deal_won"},
]
ENTERS = {
    "discovery_completed": "discovery",
    "proposal_sent": "proposal",
    "negotiation_started": "negotiation",
    "deal_won": "closed_won",
    "deal_lost": "closed_lost",
}
PROBABILITY = {"prospecting": "0.1", "discovery": "0.2", "proposal": "0.5", "negotiation": "0.8"}


def reference_funnel(lines: list[dict[str, Any]]) -> tuple[list[int], dict[str, list[int]]]:
    furthest: dict[str, int] = {}
    first_touch: dict[str, tuple[datetime, str]] = {}
    lead_of_deal: dict[str, str] = {}
    for line in lines:
        kind = line["type"]
        if kind == "deal_opened":
            lead_of_deal[line["deal_id"]] = line["lead_id"]
        lead = line["lead_id"] if "lead_id" in line else lead_of_deal[line["deal_id"]]
        for k, events in enumerate(STEPS):
            if kind in events:
                furthest[lead] = max(furthest.get(lead, -1), k)
        if "channel" in line:
            at = datetime.fromisoformat(line["occurred_at"])
            if lead not in first_touch or at < first_touch[lead][0]:
                first_touch[lead] = (at, line["channel"])
    overall = [sum(1 for f in furthest.values() if f >= k) for k in range(len(STEPS))]
    by_channel: dict[str, list[int]] = defaultdict(lambda: [0] * len(STEPS))
    for lead, f in furthest.items():
        for k in range(f + 1):
            by_channel[first_touch[lead][1]][k] += 1
    return overall, dict(by_channel)


def reference_pipeline(lines: list[dict[str, Any]]) -> dict[str, Any]:
    deals: dict[str, dict[str, Any]] = {}
    for line in lines:
        kind = line["type"]
        if "deal_id" not in line or kind == "lead_converted":
            continue
        if kind == "deal_opened":
            deals[line["deal_id"]] = {"stage": "prospecting", "amount": Decimal(line["amount"])}
            continue
        deal = deals[line["deal_id"]]
        if kind in ENTERS:
            if ENTERS[kind].startswith("closed"):
                deal["closed_from"] = deal["stage"]
            deal["stage"] = ENTERS[kind]
        elif kind == "deal_stage_changed":
            deal["stage"] = line["to_stage"]
        elif kind == "deal_reopened":
            deal["stage"] = deal["closed_from"]
        if "amount" in line:
            deal["amount"] = Decimal(line["amount"])
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for deal in deals.values():
        totals[deal["stage"]][0] += 1
        totals[deal["stage"]][1] += deal["amount"]
    cent = Decimal("0.01")
    stages = [
        (
            s,
            totals[s][0],
            str(totals[s][1].quantize(cent)),
            str((totals[s][1] * Decimal(p)).quantize(cent)),
        )
        for s, p in PROBABILITY.items()
    ]
    won, lost = totals["closed_won"], totals["closed_lost"]
    return {
        "stages": stages,
        "won": (won[0], str(won[1].quantize(cent))),
        "lost": (lost[0], str(lost[1].quantize(cent))),
        "win_rate": won[0] / (won[0] + lost[0]) if won[0] + lost[0] else None,
    }


def test_views_of_a_generated_history_equal_the_reference(engine: Engine, tmp_path: Path) -> None:
    lines = generate(leads=1500, seed=11)
    path = tmp_path / "history.jsonl"
    write_jsonl(path, lines)
    report = ingest_jsonl(engine, path, actor="test")
    assert report.rejected == [] and report.recorded == len(lines)

    funnel, pipeline = engine.views()
    overall, by_channel = reference_funnel(lines)
    assert [s.leads for s in funnel.steps] == overall
    assert {c: [s.leads for s in b.steps] for c, b in funnel.by_channel.items()} == by_channel
    assert [s.conversion_from_previous for s in funnel.steps[1:]] == [
        pytest.approx(b / a) for a, b in itertools.pairwise(overall)
    ]

    expected = reference_pipeline(lines)
    got = pipeline.model_dump(mode="json")
    assert [
        (s["name"], s["open_deals"], s["amount"], s["weighted_amount"]) for s in got["stages"]
    ] == expected["stages"]
    assert (got["won"]["deals"], got["won"]["amount"]) == expected["won"]
    assert (got["lost"]["deals"], got["lost"]["amount"]) == expected["lost"]
    assert got["win_rate"] == pytest.approx(expected["win_rate"])
    assert sum(s["open_deals"] for s in got["stages"]) > 0 and expected["won"][0] > 0


def test_pipeline_full_reads_the_deals_streams_only_and_equals_the_reference(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipeline --full` (and the deals' stays) read the deals' streams only: every deal's
    events and no lead's, with the numbers of the reference over every line."""
    lines = generate(leads=400, seed=4)
    path = tmp_path / "history.jsonl"
    write_jsonl(path, lines)
    assert ingest_jsonl(engine, path, actor="test").rejected == []
    read: list[str] = []
    real = Store.stream

    def recorded(self: Store, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for row in real(self, *args, **kwargs):
            read.append(row[1])
            yield row

    monkeypatch.setattr(Store, "stream", recorded)
    got = engine.pipeline().model_dump(mode="json")
    deals = {f"deal:{x['deal_id']}" for x in lines if x["type"] == "deal_opened"}
    lead_converted = sum(x["type"] == "lead_converted" for x in lines)
    deal_lines = sum("deal_id" in x for x in lines) - lead_converted
    assert set(read) == deals and len(read) == deal_lines
    expected = reference_pipeline(lines)
    assert [
        (s["name"], s["open_deals"], s["amount"], s["weighted_amount"]) for s in got["stages"]
    ] == expected["stages"]
    assert (got["won"]["deals"], got["won"]["amount"]) == expected["won"]
    assert (got["lost"]["deals"], got["lost"]["amount"]) == expected["lost"]
    read.clear()
    engine.stage_times()
    assert set(read) == deals


def test_pipeline_ties_are_in_name_order_whatever_order_the_deals_opened_in() -> None:
    """Stale deals idle as long, lost reasons as frequent: listed by deal id and by reason, so
    the report is the same for the same deals in any order (a what-if's overlay merges its
    changed deals into the baseline's)."""
    deals = [
        ("D-3", {"reason": "price"}),
        ("D-1", {"reason": "timing"}),
        ("D-2", None),
        ("D-4", None),
    ]
    reports = []
    for order in (deals, deals[::-1]):
        with Engine.in_memory(clock=lambda: datetime(2026, 12, 1, tzinfo=UTC)) as engine:
            for deal, lost in order:
                engine.record("deal_opened", deal, "2026-05-01T12:00:00Z", amount="100", owner="o")
                if lost is not None:
                    engine.record("deal_lost", deal, "2026-05-02T12:00:00Z", **lost)
            reports.append(engine.pipeline().model_dump(mode="json"))
    first, second = reports
    assert first == second
    assert [s["deal_id"] for s in first["stale"]] == ["D-2", "D-4"]  # equally idle
    assert list(first["lost_reasons"]) == ["price", "timing"]  # once each
