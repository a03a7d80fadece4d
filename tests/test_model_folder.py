"""Your own model (issue 16, item 1): `dealengine init DIR` writes a working copy of the
definitions; `--definitions DIR` or DEALENGINE_DEFINITIONS=DIR makes every command read it;
`info` names the folder and the model's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings, Tenants, load_model
from dealengine.cli import app
from dealengine.domain.definitions import definitions_dir

EUR_PIPELINE = """\
# our own sales process, in euros
[[pipelines]]
name = "eu_sales"
currency = "EUR"
initial_stage = "lead_in"

[[pipelines.stages]]
name = "lead_in"
probability = 0.1

[[pipelines.stages]]
name = "demo_done"
probability = 0.3

[[pipelines.stages]]
name = "offer"
probability = 0.6

[[pipelines.stages]]
name = "signed"
probability = 1.0
closed = "won"

[[pipelines.stages]]
name = "dropped"
probability = 0.0
closed = "lost"

[pipelines.events]
discovery_completed = "demo_done"
proposal_sent = "offer"
deal_won = "signed"
deal_lost = "dropped"
"""
OWN_FUNNEL = """\
[[steps]]
name = "visit"
events = ["site_visited"]

[[steps]]
name = "webinar"
events = ["webinar_attended"]

[[steps]]
name = "deal"
events = ["deal_opened"]

[[steps]]
name = "customer"
events = ["deal_won"]
"""
TRIAL_STARTED = """\
[[interactions]]
name = "trial_started"
on = "lead"
fields = { plan = "text", seats = "integer" }
"""
LINES = [
    {"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z", "channel": "web"},
    {"type": "trial_started", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z", "plan": "pro", "seats": 5},
    {"type": "site_visited", "lead_id": "L-2", "occurred_at": "2026-03-01T10:00:00Z", "channel": "ads"},
    {"type": "site_visited", "lead_id": "L-3", "occurred_at": "2026-03-01T11:00:00Z", "channel": "ads"},
    {"type": "trial_started", "lead_id": "L-3", "occurred_at": "2026-03-02T11:00:00Z", "plan": "team", "seats": 2},
    {"type": "deal_opened", "deal_id": "D-1", "lead_id": "L-1", "occurred_at": "2026-03-03T09:00:00Z", "amount": "1000", "owner": "ana"},
    {"type": "proposal_sent", "deal_id": "D-1", "occurred_at": "2026-03-04T09:00:00Z", "amount": "1200"},
    {"type": "deal_won", "deal_id": "D-1", "occurred_at": "2026-03-05T09:00:00Z"},
    {"type": "deal_opened", "deal_id": "D-2", "lead_id": "L-3", "occurred_at": "2026-03-03T11:00:00Z", "amount": "500", "owner": "bo"},
    {"type": "discovery_completed", "deal_id": "D-2", "occurred_at": "2026-03-04T11:00:00Z"},
]  # fmt: skip


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "store.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("DEALENGINE_DEFINITIONS", raising=False)
    return CliRunner()


def ok(result: object) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def own_model(cli: CliRunner, tmp_path: Path) -> Path:
    """`dealengine init mymodel`, then its pipeline and funnel edited."""
    folder = tmp_path / "mymodel"
    ok(cli.invoke(app, ["init", str(folder)]))
    (folder / "pipeline.toml").write_text(EUR_PIPELINE)
    (folder / "funnel.toml").write_text(OWN_FUNNEL)
    return folder


def test_init_writes_a_copy_of_the_shipped_definitions(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "mymodel"
    shown = ok(cli.invoke(app, ["init", str(folder)]))
    shipped = definitions_dir()
    for name in ("pipeline.toml", "funnel.toml", "interactions.toml"):
        assert (folder / name).read_bytes() == (shipped / name).read_bytes()
        assert (folder / name).read_text().startswith("#")  # commented
        assert str(folder / name) in shown
    for sub in ("scenarios", "mappings"):
        copied = sorted(p.name for p in (folder / sub).iterdir())
        assert copied == sorted(p.name for p in (shipped / sub).iterdir()) and copied
    shipped_interactions = (shipped / "interactions.toml").read_bytes()
    assert (folder / "interactions.toml").read_bytes() == shipped_interactions
    # the copy is a working model: the same rules as the shipped one
    assert load_model(folder).digest == load_model().digest


def test_init_overwrites_nothing(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "mymodel"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = cli.invoke(app, ["init", str(folder)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"init {folder}: exists and is not an empty folder" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_every_command_works_on_an_own_model(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a model folder with own stage names in EUR and an own funnel, when
    DEALENGINE_DEFINITIONS names it, then ingest, funnel, pipeline, history, audit, whatif
    and report all work on that model (figures worked out by hand below)."""
    folder = own_model(cli, tmp_path)
    interactions = folder / "interactions.toml"
    interactions.write_text(
        interactions.read_text().replace("interactions = []", TRIAL_STARTED)
    )  # a step on a declared interaction
    trial_step = OWN_FUNNEL.replace("webinar_attended", "trial_started").replace("webinar", "trial")
    (folder / "funnel.toml").write_text(trial_step)
    monkeypatch.setenv("DEALENGINE_DEFINITIONS", str(folder))
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in LINES))
    ok(cli.invoke(app, ["ingest", str(lines)]))

    funnel = orjson.loads(ok(cli.invoke(app, ["funnel", "--format", "json"])))
    # visit: L-1, L-2, L-3; trial: L-1, L-3; deal: L-1 (D-1), L-3 (D-2); customer: L-1
    assert [(s["name"], s["leads"]) for s in funnel["steps"]] == [
        ("visit", 3), ("trial", 2), ("deal", 2), ("customer", 1),
    ]  # fmt: skip

    pipeline = orjson.loads(ok(cli.invoke(app, ["pipeline", "--format", "json"])))
    assert pipeline["name"] == "eu_sales" and pipeline["currency"] == "EUR"
    stages = {s["name"]: s for s in pipeline["stages"]}
    assert list(stages) == ["lead_in", "demo_done", "offer"]  # the open stages
    # D-2 is open in demo_done at 500, weighted 0.3 * 500 = 150; D-1 was won at 1200
    assert stages["demo_done"]["open_deals"] == 1 and stages["demo_done"]["amount"] == "500.00"
    assert stages["demo_done"]["weighted_amount"] == "150.00"
    assert stages["lead_in"]["open_deals"] == stages["offer"]["open_deals"] == 0
    assert pipeline["won"] == {
        "deals": 1, "amount": "1200.00", "amounts_by_currency": {"EUR": "1200.00"},
        "unconverted": {},
    }  # fmt: skip

    history = orjson.loads(ok(cli.invoke(app, ["history", "D-1", "--format", "json"])))
    assert [e["stage_after"] for e in history] == ["lead_in", "offer", "signed"]
    assert history[0]["currency"] == "EUR" and history[0]["pipeline"] == "eu_sales"

    audit = orjson.loads(ok(cli.invoke(app, ["audit", "D-1", "--format", "json"])))
    assert audit["state"]["stage"] == "signed" and audit["state"]["currency"] == "EUR"
    assert audit["state"]["closed_from"] == "offer"

    scenario = folder / "scenarios" / "probabilities.toml"
    scenario.write_text(
        'question = "higher"\n[pipelines.eu_sales.stages.demo_done]\nprobability = 0.5\n'
    )
    whatif = orjson.loads(ok(cli.invoke(app, ["whatif", str(scenario), "--format", "json"])))
    text = orjson.dumps(whatif).decode()
    assert "demo_done" in text and "eu_sales" in text

    report = tmp_path / "report.html"
    ok(cli.invoke(app, ["report", "--output", str(report)]))
    page = report.read_text()
    assert "eu_sales" in page and "demo_done" in page and "trial" in page

    lead = orjson.loads(ok(cli.invoke(app, ["history", "L-1", "--format", "json"])))
    assert [(e["type"], e.get("seats")) for e in lead][:2] == [
        ("site_visited", None), ("trial_started", 5),
    ]  # fmt: skip

    info = orjson.loads(ok(cli.invoke(app, ["info", "--format", "json"])))
    assert info["definitions"] == str(folder.resolve())
    assert info["pipelines"] == ["eu_sales"]
    assert info["model_digest"] == load_model(folder).digest != load_model().digest
    assert info["last_recorded_model"] == info["model_digest"]


def test_the_global_option_and_the_variable_select_the_folder(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = own_model(cli, tmp_path)
    for args in (["--definitions", str(folder), "info"], ["info", "--definitions", str(folder)]):
        info = orjson.loads(ok(cli.invoke(app, [*args, "--format", "json"])))
        assert info["definitions"] == str(folder.resolve()) and info["pipelines"] == ["eu_sales"]
    monkeypatch.setenv("DEALENGINE_DEFINITIONS", str(folder))
    info = orjson.loads(ok(cli.invoke(app, ["info", "--format", "json"])))
    assert info["definitions"] == str(folder.resolve())
    monkeypatch.delenv("DEALENGINE_DEFINITIONS")
    info = orjson.loads(ok(cli.invoke(app, ["info", "--format", "json"])))
    assert info["definitions"] == str(definitions_dir().resolve())
    assert info["pipelines"] == ["new_business", "renewals", "olist"]


def test_a_missing_folder_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["--definitions", str(tmp_path / "nope"), "funnel"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"definitions folder {tmp_path / 'nope'}: not a folder" in result.stderr


def test_a_bad_definition_in_the_folder_names_file_and_key(cli: CliRunner, tmp_path: Path) -> None:
    folder = own_model(cli, tmp_path)
    (folder / "pipeline.toml").write_text(
        EUR_PIPELINE.replace('currency = "EUR"', 'currency = "euro"')
    )
    result = cli.invoke(app, ["--definitions", str(folder), "pipeline"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"{folder.resolve() / 'pipeline.toml'}: pipelines.0.currency" in result.stderr


def test_the_digest_is_of_the_rules_not_the_bytes(cli: CliRunner, tmp_path: Path) -> None:
    """A comment or another key order is the same model; a changed probability is another.
    The digest is SHA-256 over the canonical JSON of the validated definitions."""
    folder = own_model(cli, tmp_path)
    model = load_model(folder)
    funnel = folder / "funnel.toml"
    funnel.write_text(
        "# a comment\n"
        + OWN_FUNNEL.replace(
            'name = "visit"\nevents', 'events = ["site_visited"]\nname = "visit"\n#'
        )
    )
    assert load_model(folder).digest == model.digest
    expected = {
        "interactions": {},  # none declared (the folder has no interactions.toml)
        "funnel": {"attribution": "first_touch", "breakdowns": ["campaign"], "cohort": "month",
                   "conversion_window_days": 90.0, "exclusions": [], "mode": "reached",
                   "steps": [{"events": [e], "name": n, "within_days": None} for n, e in (
                       ("visit", "site_visited"), ("webinar", "webinar_attended"),
                       ("deal", "deal_opened"), ("customer", "deal_won"))]},
        "pipelines": {"pipelines": [{
            "name": "eu_sales", "currency": "EUR", "initial_stage": "lead_in",
            "stages": [{"name": n, "probability": p, "closed": c, "forecast": None,
                        "stale_after_days": None} for n, p, c in (
                ("lead_in", 0.1, None), ("demo_done", 0.3, None), ("offer", 0.6, None),
                ("signed", 1.0, "won"), ("dropped", 0.0, "lost"))],
            "events": {"discovery_completed": "demo_done", "proposal_sent": "offer",
                       "deal_won": "signed", "deal_lost": "dropped"},
            "moves": {"skip": True, "backward": "with_reason"},
        }]},
    }  # fmt: skip
    canonical = orjson.dumps(expected, option=orjson.OPT_SORT_KEYS)
    assert model.digest == "sha256:" + hashlib.sha256(canonical).hexdigest()
    (folder / "pipeline.toml").write_text(
        EUR_PIPELINE.replace("probability = 0.3", "probability = 0.35")
    )
    assert load_model(folder).digest != model.digest


def test_the_api_takes_the_folder(cli: CliRunner, tmp_path: Path) -> None:
    folder = own_model(cli, tmp_path)
    with Engine(Settings(db=":memory:", database_url=None), definitions=folder) as engine:
        assert engine.model.folder == folder.resolve()
        assert list(engine.pipelines.by_name) == ["eu_sales"]
        assert engine.funnel_definition.names == ["visit", "webinar", "deal", "customer"]
        engine.record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="web")
        engine.record(
            "deal_opened", "D-1", "2026-03-02T09:00:00Z", lead_id="L-1", amount="10", owner="a"
        )
        assert engine.deal("D-1").currency == "EUR" and engine.deal("D-1").stage == "lead_in"
    loaded = load_model(folder)
    with Engine.in_memory(pipeline=loaded.pipelines, funnel=loaded.funnel) as engine:
        assert engine.model.digest == loaded.digest and engine.model.folder is None


def test_the_folder_s_webhooks_toml_is_the_one_read(cli: CliRunner, tmp_path: Path) -> None:
    folder = own_model(cli, tmp_path)
    (folder / "webhooks.toml").write_text(
        '[[webhooks]]\nurl = "https://crm.example/hook"\nsecret = "a-secret-of-24-characters"\nevents = ["deal_won"]\n'
    )
    with Engine(Settings(db=":memory:", database_url=None), definitions=folder) as engine:
        assert [w.url for w in engine.subscriptions.webhooks] == ["https://crm.example/hook"]
    with Engine.in_memory() as engine:  # the shipped folder has none
        assert engine.subscriptions.webhooks == []


def test_a_tenant_s_own_files_replace_the_model_folder_s(cli: CliRunner, tmp_path: Path) -> None:
    """Given the model folder (EUR pipeline, own funnel) and tenant acme with a funnel.toml of
    its own, acme reads its own funnel and the folder's pipeline; the store without a tenant
    reads the folder's both."""

    folder = own_model(cli, tmp_path)
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None, definitions=folder)
    own = tmp_path / "s-tenants" / "acme" / "definitions"
    own.mkdir(parents=True)
    (own / "funnel.toml").write_text('[[steps]]\nname = "seen"\nevents = ["site_visited"]\n')
    with Tenants(settings) as tenants:
        tenants.create("acme")
        acme, plain = tenants.engine("acme"), tenants.engine(None)
        assert acme.funnel_definition.names == ["seen"]
        assert list(acme.pipelines.by_name) == ["eu_sales"]
        assert plain.funnel_definition.names == ["visit", "webinar", "deal", "customer"]
        assert acme.model.digest not in (plain.model.digest, load_model(folder).digest)
        assert plain.model.digest == load_model(folder).digest
