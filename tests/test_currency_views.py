"""Deals in any currency, in the views: converted at the rate in force (an open deal at the
view's as-of day, a closed one at its close date), rounded half-even per deal, the rest listed
under `unconverted` with one warning line. Every figure is checked against amounts computed
here by hand or by a plain replay of the lines (docs/currencies.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.demo import NOW, generate, write_jsonl
from dealengine.domain.errors import DealEngineError, InvalidEvent
from dealengine.ingest.jsonl import ingest_jsonl

CENT = Decimal("0.01")
STAGE_OF = {"deal_opened": "prospecting", "discovery_completed": "discovery",
            "proposal_sent": "proposal", "negotiation_started": "negotiation",
            "deal_won": "closed_won", "deal_lost": "closed_lost"}  # fmt: skip
OPEN = ("prospecting", "discovery", "proposal", "negotiation")


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def eur_history() -> list[dict[str, Any]]:
    """The demo's 3,000 leads with every third deal in EUR."""
    lines = generate(3000, 7)
    for line in lines:
        if line["type"] == "deal_opened" and int(line["deal_id"][2:]) % 3 == 0:
            line["currency"] = "EUR"
    return lines


def reference(lines: list[dict[str, Any]], eur_rate: Decimal) -> dict[str, Any]:
    """A plain replay of the lines: each deal's stage and latest amount, EUR deals times the
    rate rounded half-even to the cent, summed per stage."""
    stage: dict[str, str] = {}
    closed_from: dict[str, str] = {}
    amount: dict[str, Decimal] = {}
    currency: dict[str, str] = {}
    for line in lines:
        deal = line.get("deal_id") if line["type"] != "lead_converted" else None
        if deal is None or line["type"].startswith(("lead_", "ad_", "site_")):
            continue
        kind = line["type"]
        if kind == "deal_opened":
            currency[deal] = line.get("currency", "USD")
        if "amount" in line:
            amount[deal] = Decimal(line["amount"])
        if kind in ("deal_won", "deal_lost"):
            closed_from[deal] = stage[deal]
        if kind == "deal_reopened":
            stage[deal] = closed_from[deal]
        elif kind == "deal_stage_changed":
            stage[deal] = line["to_stage"]
        elif kind in STAGE_OF:
            stage[deal] = STAGE_OF[kind]
    totals: dict[str, Decimal] = defaultdict(Decimal)
    counts: Counter[str] = Counter()
    originals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for deal, s in stage.items():
        value = amount[deal]
        if currency[deal] == "EUR":
            value = (value * eur_rate).quantize(CENT, ROUND_HALF_EVEN)
        totals[s] += value
        counts[s] += 1
        originals[s][currency[deal]] += amount[deal]
    return {"amount": totals, "count": counts, "originals": originals}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    return CliRunner()


def test_a_history_with_a_third_of_its_deals_in_eur_converts_at_the_rate_set(
    cli: CliRunner, tmp_path: Path
) -> None:
    lines = eur_history()
    eur = {x["deal_id"] for x in lines if x.get("currency") == "EUR"}
    deals = {x["deal_id"] for x in lines if x["type"] == "deal_opened"}
    assert len(deals) / 4 < len(eur) < len(deals) / 2  # about a third of the deals
    assert sum(1 for x in lines if x.get("deal_id") in eur and "amount" in x) > 200
    jsonl = tmp_path / "eur.jsonl"
    write_jsonl(jsonl, lines)
    ingested = cli.invoke(app, ["ingest", str(jsonl)])
    assert ingested.exit_code == 0, ingested.output
    assert ", 0 rejected" in ingested.stderr

    before = cli.invoke(app, ["pipeline", "--full", "--as-of", "2026-11-20", "--format", "json"])
    warnings = [x for x in before.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "EUR->USD" in warnings[0]
    assert "dealengine rates set EUR USD RATE --from 2026-" in warnings[0]

    rated = cli.invoke(app, ["rates", "set", "EUR", "USD", "1.25", "--from", "2000-01-01"])
    assert rated.exit_code == 0, rated.output
    want = reference(lines, Decimal("1.25"))
    for args in (["--full", "--as-of", "2026-11-20"], []):  # folded; the live view
        result = cli.invoke(app, ["pipeline", *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        assert "warning" not in result.stderr
        view = orjson.loads(result.stdout)
        for s in view["stages"]:
            assert Decimal(s["amount"]) == want["amount"][s["name"]], s["name"]
            assert s["open_deals"] == want["count"][s["name"]]
            assert s["unconverted"] == {}
            assert {c: Decimal(v) for c, v in s["amounts_by_currency"].items()} == dict(
                want["originals"][s["name"]]
            )
        won, lost = want["count"]["closed_won"], want["count"]["closed_lost"]
        assert Decimal(view["won"]["amount"]) == want["amount"]["closed_won"]
        assert Decimal(view["lost"]["amount"]) == want["amount"]["closed_lost"]
        assert (view["won"]["deals"], view["lost"]["deals"]) == (won, lost)
        assert view["win_rate"] == pytest.approx(won / (won + lost))
        assert view["missing_rates"] == []


def two_rates(engine: Engine) -> None:
    engine.set_rate("EUR", "USD", "1.10", "2025-01-01", actor="cfo", source="ecb")
    engine.set_rate("EUR", "USD", "1.20", "2025-07-01", actor="cfo", source="ecb")


def open_deal(engine: Engine, deal: str, at: str, amount: str, currency: str = "EUR") -> None:
    engine.record("site_visited", f"L-{deal}", at, channel="web")
    engine.record("lead_qualified", f"L-{deal}", at, by="sdr")
    engine.record("deal_opened", deal, at, lead_id=f"L-{deal}", amount=amount,
                  currency=currency, owner="ana")  # fmt: skip


def test_an_open_deal_follows_the_as_of_rate_and_a_closed_one_keeps_its_close_date_rate(
    memory_engine: Engine,
) -> None:
    two_rates(memory_engine)
    open_deal(memory_engine, "D-open", "2025-02-01T10:00:00Z", "1000")
    open_deal(memory_engine, "D-won", "2025-02-01T10:00:00Z", "1000")
    memory_engine.record("deal_won", "D-won", "2025-03-15T10:00:00Z", amount="1000")
    open_deal(memory_engine, "D-usd", "2025-02-01T10:00:00Z", "50", currency="USD")

    spring = memory_engine.pipeline(as_of=d("2025-05-31T23:59:59"))
    autumn = memory_engine.pipeline(as_of=d("2025-08-31T23:59:59"))
    now, lag = memory_engine.live_pipeline()
    assert lag.behind == 0  # the rates' events count as read by the materialised views
    assert spring.stages[0].amount == Decimal("1150.00")  # 1000 x 1.10 + 50
    assert autumn.stages[0].amount == now.stages[0].amount == Decimal("1250.00")  # x 1.20
    assert spring.won.amount == autumn.won.amount == now.won.amount == Decimal("1100.00")
    assert autumn.stages[0].weighted_amount == Decimal("125.000")  # 10% of 1250
    assert autumn.stages[0].amounts_by_currency == {"EUR": Decimal("1000"), "USD": Decimal("50")}
    assert autumn.won.amounts_by_currency == {"EUR": Decimal("1000")}
    assert autumn.average_deal_size == Decimal("1100.00")
    forecast = autumn.forecast["pipeline"]
    assert (forecast.deals, forecast.amount) == (2, Decimal("1250.00"))
    times = {t.deal_id: t for t in memory_engine.stage_times(as_of=d("2025-08-31T23:59:59"))}
    assert (times["D-open"].currency, times["D-open"].amount) == ("EUR", Decimal("1000"))
    assert times["D-open"].converted_amount == Decimal("1200.00")
    assert times["D-won"].converted_amount == Decimal("1100.00")


def test_a_deal_with_no_rate_counts_in_its_stage_unconverted_with_one_warning(
    cli: CliRunner, tmp_path: Path
) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        open_deal(engine, "D-1", "2025-02-01T10:00:00Z", "700.50", currency="GBP")
        open_deal(engine, "D-2", "2025-02-01T10:00:00Z", "99.50", currency="GBP")
        open_deal(engine, "D-3", "2025-02-01T10:00:00Z", "1000", currency="USD")
        view = engine.pipeline(as_of=d("2025-08-31T23:59:59"))
    first = view.stages[0]
    assert (first.open_deals, first.amount) == (3, Decimal("1000"))
    assert first.unconverted == {"GBP": Decimal("800.00")}
    assert first.amounts_by_currency == {"GBP": Decimal("800.00"), "USD": Decimal("1000")}
    assert [(m.from_currency, m.to_currency, str(m.on), m.deals) for m in view.missing_rates] == [
        ("GBP", "USD", "2025-08-31", 2)
    ]
    result = cli.invoke(app, ["pipeline", "--as-of", "2025-08-31"])
    warnings = [x for x in result.stderr.splitlines() if "warning" in x]
    assert warnings == [
        "warning: no exchange rate GBP->USD in force on 2025-08-31: 2 deal(s) left "
        "unconverted; add it with: dealengine rates set GBP USD RATE --from 2025-08-31"
    ]
    assert "800.00 GBP" in result.stdout  # the table's `unconverted` column
    as_json = orjson.loads(cli.invoke(app, ["pipeline", "--as-of", "2025-08-31",
                                            "--format", "json"]).stdout)  # fmt: skip
    assert as_json["stages"][0]["unconverted"] == {"GBP": "800.00"}


def test_a_voided_rate_no_longer_converts_and_the_right_one_is_set_after_it(
    cli: CliRunner,
) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        two_rates(engine)
        open_deal(engine, "D-1", "2025-02-01T10:00:00Z", "1000")
    typo = cli.invoke(app, ["rates", "set", "EUR", "USD", "12.0", "--from", "2025-08-01"])
    event_id = typo.stderr.split("(id ")[1].split(")")[0]
    wrong = cli.invoke(app, ["pipeline", "--as-of", "2025-08-31", "--format", "json"])
    assert orjson.loads(wrong.stdout)["stages"][0]["amount"] == "12000.00"
    voided = cli.invoke(app, ["rates", "void", "EUR", "USD", event_id, "--reason", "typo"])
    assert voided.exit_code == 0 and "exchange_rate_voided" in voided.stderr
    back = cli.invoke(app, ["pipeline", "--as-of", "2025-08-31", "--format", "json"])
    assert orjson.loads(back.stdout)["stages"][0]["amount"] == "1200.00"  # 1.20 again
    listed = orjson.loads(cli.invoke(app, ["rates", "list", "--format", "json"]).stdout)
    assert [(r["rate"], r["effective_from"]) for r in listed] == [
        ("1.10", "2025-01-01"),
        ("1.20", "2025-07-01"),
    ]
    right = cli.invoke(app, ["rates", "set", "EUR", "USD", "1.30", "--from", "2025-08-01"])
    assert right.exit_code == 0
    fixed = cli.invoke(app, ["pipeline", "--as-of", "2025-08-31", "--format", "json"])
    assert orjson.loads(fixed.stdout)["stages"][0]["amount"] == "1300.00"
    in_force = cli.invoke(app, ["rates", "list", "--as-of", "2025-07-15", "--format", "json"])
    assert [r["rate"] for r in orjson.loads(in_force.stdout)] == ["1.20"]
    assert cli.invoke(app, ["verify"]).exit_code == 0  # the rates' streams chain like any


def test_the_waterfall_converts_both_ends_and_shows_the_rate_effect(
    memory_engine: Engine,
) -> None:
    two_rates(memory_engine)  # 1.10, then 1.20 from July
    open_deal(memory_engine, "D-open", "2025-05-01T10:00:00Z", "1000")
    open_deal(memory_engine, "D-won", "2025-05-01T10:00:00Z", "500")
    memory_engine.record("deal_won", "D-won", "2025-08-10T10:00:00Z", amount="600")
    w = memory_engine.pipeline_changes(d("2025-06-01T00:00:00"), d("2025-08-31T23:59:59"))
    assert w.open_at_start.amount == Decimal("1650.00")  # (1000 + 500) x 1.10
    assert w.open_at_end.amount == Decimal("1200.00")  # 1000 x 1.20
    # D-open: 1100 -> 1200 by the rate alone; D-won: 550 -> 600 at its close date's rate
    assert (w.rate_effect.deals, w.rate_effect.amount) == (2, Decimal("150.00"))
    assert w.amount_up.amount == Decimal("120.00")  # 600 -> 720: its own change, at 1.20
    assert w.won.amount == Decimal("720.00")
    total = (w.open_at_start.amount + w.new.amount + w.reopened.amount + w.amount_up.amount
             - w.amount_down.amount + w.rate_effect.amount - w.won.amount - w.lost.amount)  # fmt: skip
    assert total == w.open_at_end.amount


def test_the_waterfall_shows_the_rate_effect_line_in_its_table(cli: CliRunner) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        two_rates(engine)
        open_deal(engine, "D-1", "2025-05-01T10:00:00Z", "1000")
    result = cli.invoke(app, ["pipeline", "--changes", "2025-06-01", "2025-08-31"])
    row = next(x for x in result.stdout.splitlines() if "rate effect" in x)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == ["rate effect", "1", "+100.00"]


def test_rates_import_is_idempotent_and_refuses_a_bad_file_whole(
    cli: CliRunner, tmp_path: Path
) -> None:
    good = tmp_path / "rates.csv"
    good.write_text(
        "from,to,rate,effective_from\nEUR,USD,1.10,2025-01-01\nGBP,USD,1.27,2025-01-01\n"
    )
    first = cli.invoke(app, ["rates", "import", str(good)])
    assert first.exit_code == 0 and first.stderr.count("recorded rates:") == 2
    again = cli.invoke(app, ["rates", "import", str(good)])
    assert again.exit_code == 0 and "recorded nothing" in again.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to,rate,effective_from\nCHF,USD,1.1,2025-01-01\nEUR,XYZ,1,2025-01-01\n")
    refused = cli.invoke(app, ["rates", "import", str(bad)])
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: {bad}:3: field 'to': not an ISO 4217 currency code (three capitals, e.g. EUR) "
        "(got 'XYZ')"
    )
    listed = orjson.loads(cli.invoke(app, ["rates", "list", "--format", "json"]).stdout)
    assert [(r["from"], r["to"], r["source"]) for r in listed] == [
        ("EUR", "USD", "rates.csv"),
        ("GBP", "USD", "rates.csv"),
    ]  # CHF not stored: the file is all or nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("EUR", "EUR", "1", "2025-01-01"), "a rate converts between two currencies"),
        (("EUR", "USD", "0", "2025-01-01"), "field 'rate'"),
        (("EUR", "USD", "-1.2", "2025-01-01"), "field 'rate'"),
        (("EUR", "USD", "x", "2025-01-01"), "field 'rate': Input should be a valid decimal"),
        (("EUR", "USD", "1.1", "2025-13-01"), "field 'effective_from': Input should be a valid"),
        (("EUR", "USD", "1.12345678901", "2025-01-01"), "field 'rate': .* 10 decimal places"),
        (("EUR", "USDX", "1.1", "2025-01-01"), "field 'to': not an ISO 4217 currency code"),
    ],
)
def test_a_bad_rate_is_refused_naming_the_field(
    memory_engine: Engine, args: tuple[str, str, str, str], message: str
) -> None:
    with pytest.raises(InvalidEvent, match=message):
        memory_engine.set_rate(*args)
    assert memory_engine.rates() == []


def test_rates_are_stored_and_read_back_on_every_store(engine: Engine) -> None:
    two_rates(engine)
    assert engine.set_rate("EUR", "USD", "1.2", "2025-07-01").duplicate  # 1.20 == 1.2
    assert [(str(r.rate), r.actor, r.source) for r in engine.rates()] == [
        ("1.10", "cfo", "ecb"),
        ("1.20", "cfo", "ecb"),
    ]
    event_id = engine.rates()[1].id
    engine.void_rate("EUR", "USD", event_id, reason="typo")
    assert [str(r.rate) for r in engine.rates()] == ["1.10"]
    assert not engine.set_rate("EUR", "USD", "1.20", "2025-07-01").duplicate  # set again
    assert [str(r.rate) for r in engine.rates()] == ["1.10", "1.20"]
    with pytest.raises(DealEngineError, match="no rate with id"):
        engine.void_rate("EUR", "USD", "0" * 32, reason="typo")
    report = engine.verify()
    assert (report.findings, report.streams, report.events) == ([], 1, 4)  # rates:EUR-USD


def test_a_scenario_overrides_a_pairs_rates_and_keeps_the_others(memory_engine: Engine) -> None:
    two_rates(memory_engine)  # EUR->USD 1.10, then 1.20 from July
    open_deal(memory_engine, "D-eur", "2025-05-01T10:00:00Z", "1000")
    open_deal(memory_engine, "D-gbp", "2025-05-01T10:00:00Z", "100", currency="GBP")
    scenario = {
        "name": "weak-euro",
        "rates": [{"from": "EUR", "to": "USD", "rate": "1.05"},
                  {"from": "GBP", "to": "USD", "rate": "1.25", "effective_from": "2025-06-01"}],
    }  # fmt: skip
    plain = {"name": "nothing-but-gbp", "rates": [{"from": "GBP", "to": "USD", "rate": "1.30"}]}
    result = memory_engine.what_ifs([scenario, plain], as_of=d("2025-08-31T23:59:59"))
    base = result.baseline.pipeline.stages[0]
    assert (base.amount, base.unconverted) == (Decimal("1200.00"), {"GBP": Decimal("100")})
    weak = result["weak-euro"].pipeline.stages[0]
    assert (weak.amount, weak.unconverted) == (Decimal("1175.00"), {})  # 1050 + 125
    other = result["nothing-but-gbp"].pipeline.stages[0]
    assert other.amount == Decimal("1330.00")  # the recorded 1.20 for EUR, 1.30 for GBP
    assert memory_engine.pipeline(as_of=d("2025-08-31T23:59:59")).stages[0].amount == Decimal(
        "1200.00"
    )  # nothing recorded


def test_a_scenario_rate_between_one_currency_is_refused_naming_its_key(
    memory_engine: Engine,
) -> None:
    bad = {"name": "x", "rates": [{"from": "EUR", "to": "EUR", "rate": "1"}]}
    with pytest.raises(
        DealEngineError, match=r"rates\.0: .*a rate converts between two currencies, got EUR"
    ):
        memory_engine.what_if(bad)


def test_each_deal_is_rounded_before_the_stage_sums_them(memory_engine: Engine) -> None:
    memory_engine.set_rate("EUR", "USD", "0.125", "2025-01-01")
    open_deal(memory_engine, "D-1", "2025-05-01T10:00:00Z", "1")
    open_deal(memory_engine, "D-2", "2025-05-01T10:00:00Z", "1")
    stage = memory_engine.pipeline().stages[0]
    assert stage.amount == Decimal("0.24")  # 0.125 -> 0.12 twice, not round(0.25)


def test_history_shows_the_deals_own_amount_and_currency(cli: CliRunner) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        open_deal(engine, "D-1", "2025-05-01T10:00:00Z", "1000")
        engine.record("proposal_sent", "D-1", "2025-05-02T10:00:00Z", amount="1200.50")
    rows = orjson.loads(cli.invoke(app, ["history", "D-1", "--format", "json"]).stdout)
    assert [(r["amount_after"], r["currency_after"]) for r in rows] == [
        ("1000", "EUR"),
        ("1200.50", "EUR"),
    ]
    assert rows[0]["currency"] == "EUR"


def test_a_usd_deal_in_the_olist_pipeline_reports_in_brl(memory_engine: Engine) -> None:
    memory_engine.set_rate("BRL", "USD", "0.2", "2018-01-01")  # its inverse: 100 USD = 500 BRL
    open_deal(memory_engine, "D-1", "2018-05-01T10:00:00Z", "100", currency="USD")
    memory_engine.record("deal_opened", "D-2", "2018-05-01T10:00:00Z", amount="300",
                         owner="ana", pipeline="olist")  # fmt: skip
    memory_engine.record("deal_opened", "D-3", "2018-05-01T10:00:00Z", amount="100",
                         currency="USD", owner="ana", pipeline="olist")  # fmt: skip
    olist = memory_engine.pipeline(pipeline_name="olist")
    assert olist.currency == "BRL"
    first = olist.stages[0]
    assert (first.open_deals, first.amount) == (2, Decimal("800.00"))  # 300 + 100 / 0.2
    assert first.amounts_by_currency == {"BRL": Decimal("300"), "USD": Decimal("100")}


def test_what_a_host_touches_of_currencies_is_exported(memory_engine: Engine) -> None:
    import dealengine

    memory_engine.set_rate("EUR", "USD", "1.1", "2025-01-01")
    assert isinstance(memory_engine.rates()[0], dealengine.KnownRate)
    assert dealengine.ExchangeRates(memory_engine.rates()).rates == memory_engine.rates()
    assert dealengine.MissingRate and dealengine.RateOverride


def test_the_html_report_shows_the_converted_and_original_amounts_and_the_warning(
    cli: CliRunner, tmp_path: Path
) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        two_rates(engine)
        open_deal(engine, "D-eur", "2025-05-01T10:00:00Z", "1000")
        open_deal(engine, "D-gbp", "2025-05-01T10:00:00Z", "100", currency="GBP")
    out = tmp_path / "r.html"
    made = cli.invoke(app, ["report", "-o", str(out), "--as-of", "2025-08-31",
                            "--changes", "2025-06-01", "2025-08-31"])  # fmt: skip
    assert made.exit_code == 0, made.output
    page = out.read_text()
    table = page.split("id='pipeline-table'>")[1].split("</table>")[0]
    assert "<th>by currency (original)</th><th>unconverted (no rate)</th>" in table
    assert "<td>1,200.00 USD</td>" in table  # 1000 EUR at 1.20; the GBP deal not summed
    assert "<td>1,000.00 EUR, 100.00 GBP</td><td>100.00 GBP</td>" in table
    assert "warning: no exchange rate GBP-&gt;USD in force on 2025-08-31" in page
    waterfall = page.split("id='waterfall-table'>")[1].split("</table>")[0]
    assert "<td>rate effect</td><td>1</td><td>100.00 USD</td>" in waterfall
    assert "<td>unconverted (no rate)</td><td></td><td>100.00 GBP</td>" in waterfall


def test_a_pass_split_over_processes_converts_as_one_process(tmp_path: Path) -> None:
    lines = eur_history()[:4000]
    jsonl = tmp_path / "eur.jsonl"
    write_jsonl(jsonl, lines)
    store = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Engine(store, clock=lambda: NOW) as engine:
        assert not ingest_jsonl(engine, jsonl, actor="t").rejected
        engine.set_rate("EUR", "USD", "1.25", "2000-01-01")
    scenario = {"name": "weak", "rates": [{"from": "EUR", "to": "USD", "rate": "1.05"}]}
    found = []
    for processes in (1, 3):
        split = store.model_copy(update={"rebuild_processes": processes})
        with Engine(split, clock=lambda: NOW) as engine:
            assert engine.passes.split(engine.store.position()) == processes
            _, pipeline = engine.views()
            weak = engine.what_if(scenario)["weak"].pipeline
            found.append((pipeline.model_dump(), weak.model_dump()))
    assert found[0] == found[1]
    want = reference(lines, Decimal("1.25"))
    assert [s["amount"] for s in found[1][0]["stages"]] == [want["amount"][s] for s in OPEN]
    assert (
        found[1][1]["stages"][0]["amount"]
        == reference(lines, Decimal("1.05"))["amount"]["prospecting"]
    )


def test_the_deals_list_shows_each_deals_own_and_converted_amount_and_warns_once(
    cli: CliRunner,
) -> None:
    with Engine(Settings(), clock=lambda: d("2025-09-01T00:00:00")) as engine:
        two_rates(engine)
        open_deal(engine, "D-eur", "2025-05-01T10:00:00Z", "1000")
        open_deal(engine, "D-gbp", "2025-05-01T10:00:00Z", "100", currency="GBP")
        engine.record("deal_won", "D-gbp", "2025-06-10T10:00:00Z", amount="100")
    result = cli.invoke(app, ["pipeline", "--deals", "--as-of", "2025-08-31", "--format", "json"])
    deals = {x["deal_id"]: x for x in orjson.loads(result.stdout)}
    assert (deals["D-eur"]["amount"], deals["D-eur"]["currency"]) == ("1000.00", "EUR")
    assert deals["D-eur"]["converted_amount"] == "1200.00"
    assert deals["D-gbp"]["converted_amount"] is None
    assert [x for x in result.stderr.splitlines() if x.startswith("warning")] == [
        "warning: no exchange rate GBP->USD in force on 2025-06-10: 1 deal(s) left "
        "unconverted; add it with: dealengine rates set GBP USD RATE --from 2025-06-10"
    ]  # a won deal needs the rate of its close date
    table = cli.invoke(app, ["pipeline", "--deals", "--as-of", "2025-08-31"]).stdout
    assert "1000.00 EUR (1200.00)" in table and "100.00 GBP (no rate)" in table


@pytest.mark.parametrize("command", [[], ["set"], ["import"], ["list"], ["void"]])
def test_the_rates_commands_help_without_type_noise(cli: CliRunner, command: list[str]) -> None:
    short = cli.invoke(app, ["rates", *command, "-h"])
    assert short.exit_code == 0, short.output
    assert short.stdout == cli.invoke(app, ["rates", *command, "--help"]).stdout
    for noise in ("<bool>", "<str>", "<path>", "list[", "<float>", "str,str", "{"):
        assert noise not in short.stdout, (noise, short.stdout)
