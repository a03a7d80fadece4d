"""CSV import by mapping: the real Olist funnel, counted again here with the csv module; bad
rows named by line and column; re-import adds nothing."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from dealengine import DealEngineError, Engine, InvalidDefinition
from dealengine.ingest.jsonl import IngestReport, ingest_lines
from dealengine.ingest.mapping import ingest_csv, load_mapping, mapped_rows

ROOT = Path(__file__).resolve().parents[1]
OLIST = ROOT / "tests" / "data" / "olist"
LEADS = OLIST / "olist_marketing_qualified_leads_dataset.csv"
DEALS = OLIST / "olist_closed_deals_dataset.csv"
MAPPINGS = ROOT / "projections" / "mappings"


def olist(engine: Engine) -> tuple[int, int]:
    leads = ingest_csv(engine, LEADS, load_mapping(MAPPINGS / "olist-leads.toml"), actor="t")
    deals = ingest_csv(engine, DEALS, load_mapping(MAPPINGS / "olist-deals.toml"), actor="t")
    assert leads.rejected == [] and deals.rejected == []
    return leads.lines, deals.lines


def test_the_olist_funnel_equals_counts_from_the_csv_files(memory_engine: Engine) -> None:
    assert olist(memory_engine) == (8000, 842)
    with LEADS.open(newline="") as f:
        origin = {row["mql_id"]: row["origin"] or "unknown" for row in csv.DictReader(f)}
    with DEALS.open(newline="") as f:
        won = [row["mql_id"] for row in csv.DictReader(f)]
    funnel = memory_engine.funnel()
    steps = {s.name: s.leads for s in funnel.steps}
    assert (steps["awareness"], steps["qualified"], steps["won"]) == (8000, 8000, 842)
    by_channel = {c: {s.name: s.leads for s in b.steps} for c, b in funnel.by_channel.items()}
    assert {c: v["awareness"] for c, v in by_channel.items()} == dict(Counter(origin.values()))
    assert {c: v["won"] for c, v in by_channel.items() if v["won"]} == dict(
        Counter(origin[m] for m in won)
    )
    olist_pipeline = memory_engine.pipeline(pipeline_name="olist")
    assert olist_pipeline.won.deals == 842 and olist_pipeline.currency == "BRL"
    deal = memory_engine.history(f"deal:olist-{won[0]}")[0]
    assert deal.payload()["segment"] == "pet" and deal.payload()["lead_type"] == "online_medium"


def test_re_importing_adds_nothing(memory_engine: Engine) -> None:
    olist(memory_engine)
    position = memory_engine.store.position()
    again = ingest_csv(memory_engine, LEADS, load_mapping(MAPPINGS / "olist-leads.toml"), actor="t")
    assert (again.recorded, again.duplicates) == (0, 8000)  # a row (two events) is one line
    assert memory_engine.store.position() == position


MAPPING = """
[[events]]
type = "site_visited"
lead_id = "x-{id}"
occurred_at = { column = "day", format = "%d-%m-%Y", timezone = "America/Sao_Paulo" }
id = "x-{id}"
fields.channel = { column = "source", map = { web = "organic_search", ads = "paid_search" }, only_mapped = true }
"""


def test_bad_rows_are_named_by_line_and_column(memory_engine: Engine, tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    data = tmp_path / "leads.csv"
    data.write_text(
        "id,day,source\n1,01-02-2018,web\n2,2018-02-01,web\n3,03-02-2018,tv\n,04-02-2018,ads\n5,05-02-2018,ads\n"
    )
    report = ingest_csv(memory_engine, data, load_mapping(mapping), actor="t")
    assert [(r.line, r.reason) for r in report.rejected] == [
        (3, "column 'day': '2018-02-01' does not match the date format '%d-%m-%Y'"),
        (4, "column 'source': unknown value 'tv' (known: web, ads)"),
        (5, "column 'id': empty (needed by 'x-{id}')"),
    ]
    assert report.recorded == 2
    first = memory_engine.history("x-1")[0]
    assert first.payload()["channel"] == "organic_search"
    assert (
        first.occurred_at.isoformat() == "2018-02-01T02:00:00+00:00"
    )  # midnight in Sao Paulo (UTC-2 in summer 2018)
    missing = tmp_path / "no-source.csv"
    missing.write_text("id,day\n7,01-02-2018\n8,01-02-2018\n")
    before = memory_engine.store.position()
    with pytest.raises(DealEngineError, match="the mapping needs columns the file lacks: source"):
        ingest_csv(memory_engine, missing, load_mapping(mapping), actor="t")  # once, not a row each
    assert memory_engine.store.position() == before
    strict = ingest_csv(memory_engine, data, load_mapping(mapping), actor="t", strict=True)
    assert [r.line for r in strict.rejected] == [3]


def test_an_invalid_mapping_names_file_key_and_reason(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING.replace("America/Sao_Paulo", "Mars/Olympus"))
    with pytest.raises(
        InvalidDefinition,
        match=r"m.toml: events.0.occurred_at.Column.timezone: .*unknown timezone .Mars.Olympus.",
    ):
        load_mapping(mapping)


def test_a_row_with_an_undecodable_byte_is_one_rejected_line(
    memory_engine: Engine, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(MAPPING)
    data = tmp_path / "leads.csv"
    data.write_bytes(b"id,day,source\n1,01-02-2018,web\n2,02-02-2018,w\xffb\n3,03-02-2018,ads\n")
    report = ingest_csv(memory_engine, data, load_mapping(mapping), actor="t")
    assert [(r.line, r.reason) for r in report.rejected] == [
        (3, "not valid utf-8: byte 0xff at byte offset 14")
    ]
    assert (report.lines, report.recorded) == (3, 2)


DEALS_MAPPING = """
[[events]]
type = "deal_opened"
deal_id = "{deal}"
occurred_at = "{opened}"
id = "opened-{row}"
fields.amount = "{amount}"
fields.owner = "ana"

[[events]]
type = "deal_won"
deal_id = "{deal}"
occurred_at = "{won}"
id = "won-{row}"
fields.amount = "{won_amount}"
"""

DEAL_ROWS = """row,deal,opened,won,amount,won_amount
1,D-1,2026-03-01T10:00:00Z,2026-03-05T10:00:00Z,100,100
2,D-2,2026-03-01T10:00:00Z,2026-03-05T10:00:00Z,200,lots
3,D-2,2026-03-02T10:00:00Z,2026-03-06T10:00:00Z,300,300
"""


@pytest.mark.parametrize("batch_lines", [2000, 1])
def test_a_row_is_stored_whole_or_not_at_all(
    engine: Engine, tmp_path: Path, batch_lines: int
) -> None:
    """Given a row opening and winning D-2 whose win has a bad amount, when the file is
    ingested, then neither of its events is stored, and the next row opens D-2 afresh."""
    mapping = tmp_path / "m.toml"
    mapping.write_text(DEALS_MAPPING)
    data = tmp_path / "deals.csv"
    data.write_text(DEAL_ROWS)
    report = IngestReport(file=str(data))
    rows = mapped_rows(data, load_mapping(mapping), None)
    ingest_lines(engine, rows, report, data.name, "t", batch_lines)
    assert [(r.line, r.reason.split(" (got")[0]) for r in report.rejected] == [
        (3, "deal_won: field 'amount': Input should be a valid decimal")
    ]
    assert (report.lines, report.recorded, report.events) == (3, 2, 4)
    history = engine.history("deal:D-2")
    assert [(e.event_type, e.idempotency_key) for e in history] == [
        ("deal_opened", "opened-3"),
        ("deal_won", "won-3"),
    ]
    assert (engine.deal("D-2").stage, engine.deal("D-2").amount) == ("closed_won", 300)


def test_strict_stores_nothing_of_a_row_refused_whole(
    memory_engine: Engine, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(DEALS_MAPPING)
    data = tmp_path / "deals.csv"
    data.write_text(DEAL_ROWS)
    report = ingest_csv(memory_engine, data, load_mapping(mapping), actor="t", strict=True)
    assert [r.line for r in report.rejected] == [3]
    assert memory_engine.store.position() == 0
