"""Tenants on the command line: `tenants create|list|drop`, `--tenant` / DEALENGINE_TENANT on
every command, and workers (`project --follow`, `subscribers run`) serving every tenant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dealengine import Engine, Settings
from dealengine.cli import app
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.tenants import Tenants
from tests.test_webhooks_crash import SECRET, Receiver
from tests.test_workers import holders, wait_for

ROOT = Path(__file__).resolve().parents[1]
VISIT = (
    '{"type": "site_visited", "lead_id": "L-1", "occurred_at": "2026-03-01T09:00:00Z", '
    '"channel": "x"}\n'
)
DEMO = '{"type": "demo_requested", "lead_id": "L-1", "occurred_at": "2026-03-02T09:00:00Z"}\n'


@pytest.fixture(params=["sqlite", "postgres"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """A CLI on a fresh store (a SQLite file, or a fresh PostgreSQL schema); any tenant left
    is dropped afterwards."""
    monkeypatch.delenv("DEALENGINE_TENANT", raising=False)
    if request.param == "sqlite":
        monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "cli.db"))
        monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DEALENGINE_DATABASE_URL", request.getfixturevalue("pg_schema_url"))
    yield CliRunner()
    with Tenants() as tenants:
        for name in tenants.names():
            tenants.drop(name)


def ok(result: object) -> str:
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def one_line_error(result: object, *parts: str) -> None:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = str(result.stderr).strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_create_list_and_drop(cli: CliRunner) -> None:
    assert ok(cli.invoke(app, ["tenants", "list"])) == "no tenants\n"
    ok(cli.invoke(app, ["tenants", "create", "acme"]))
    ok(cli.invoke(app, ["tenants", "create", "beta"]))
    assert ok(cli.invoke(app, ["tenants", "list"])) == "acme\nbeta\n"
    assert json.loads(ok(cli.invoke(app, ["tenants", "list", "--format", "json"]))) == [
        "acme", "beta",
    ]  # fmt: skip
    one_line_error(cli.invoke(app, ["tenants", "create", "acme"]), "tenant 'acme' exists")
    one_line_error(cli.invoke(app, ["tenants", "create", "Acme"]), "tenant name 'Acme'")
    refused = cli.invoke(app, ["tenants", "drop", "acme"], input="n\n")
    assert refused.exit_code == 1 and "drop tenant acme and all its events" in refused.stdout
    assert "tenant acme not dropped" in refused.stderr
    assert ok(cli.invoke(app, ["tenants", "list"])) == "acme\nbeta\n"
    ok(cli.invoke(app, ["tenants", "drop", "acme"], input="y\n"))
    ok(cli.invoke(app, ["tenants", "drop", "beta", "--yes"]))
    assert ok(cli.invoke(app, ["tenants", "list"])) == "no tenants\n"
    one_line_error(cli.invoke(app, ["tenants", "drop", "acme", "--yes"]), "no tenant 'acme'")
    one_line_error(
        cli.invoke(app, ["tenants", "drop", "default", "--yes"]),
        "'default' is the store without a tenant",
    )


def test_tenant_option_and_variable_choose_the_store(cli: CliRunner, tmp_path: Path) -> None:
    visit, both = tmp_path / "visit.jsonl", tmp_path / "both.jsonl"
    visit.write_text(VISIT)
    both.write_text(VISIT + DEMO)
    ok(cli.invoke(app, ["tenants", "create", "acme"]))
    ok(cli.invoke(app, ["tenants", "create", "beta"]))
    ok(cli.invoke(app, ["--tenant", "acme", "ingest", str(both)]))
    ok(cli.invoke(app, ["ingest", str(visit), "--tenant", "beta"]))

    def steps(*args: str, env: dict[str, str] | None = None) -> list[int]:
        shown = ok(cli.invoke(app, ["funnel", "--format", "json", *args], env=env))
        return [s["leads"] for s in json.loads(shown)["steps"]]

    # by hand: acme's L-1 reached intent (its demo); beta's L-1 only awareness
    assert steps("--tenant", "acme") == [1, 1, 1, 1, 0, 0, 0]
    assert steps(env={"DEALENGINE_TENANT": "beta"}) == [1, 0, 0, 0, 0, 0, 0]
    assert steps() == [0] * 7  # the store without a tenant
    assert steps("--full", "--tenant", "acme") == [1, 1, 1, 1, 0, 0, 0]
    history = json.loads(
        ok(cli.invoke(app, ["history", "L-1", "--format", "json", "--tenant", "beta"]))
    )
    assert [e["type"] for e in history] == ["site_visited"]
    info = json.loads(ok(cli.invoke(app, ["info", "--format", "json", "--tenant", "acme"])))
    assert info["tenant"] == "acme" and info["events"] == 2
    assert "tenant" not in json.loads(ok(cli.invoke(app, ["info", "--format", "json"])))
    scenario = ROOT / "projections" / "scenarios" / "demo-counts-as-qualified.toml"
    whatif = json.loads(
        ok(cli.invoke(app, ["whatif", str(scenario), "--format", "json", "--tenant", "acme"]))
    )
    assert [s["leads"] for s in whatif["baseline"]["funnel"]["steps"]] == [1, 1, 1, 1, 0, 0, 0]
    verified = json.loads(ok(cli.invoke(app, ["verify", "--format", "json", "--tenant", "beta"])))
    assert (verified["events"], verified["streams"]) == (1, 1)
    key = ok(
        cli.invoke(app, ["keys", "create", "--name", "app", "--scope", "read", "--tenant", "acme"])
    )
    assert key.strip().endswith(".acme")
    listed = json.loads(
        ok(cli.invoke(app, ["keys", "list", "--format", "json", "--tenant", "acme"]))
    )
    assert [k["name"] for k in listed] == ["app"]
    assert json.loads(ok(cli.invoke(app, ["keys", "list", "--format", "json"]))) == []
    one_line_error(cli.invoke(app, ["funnel", "--tenant", "nope"]), "no tenant 'nope'")
    one_line_error(cli.invoke(app, ["funnel", "--tenant", "No/pe"]), "tenant name 'No/pe'")


def test_a_tenants_definitions_folder_is_its_own(tmp_path: Path) -> None:
    """Given acme's own funnel.toml (its first step only ad views), acme's funnel follows it
    and the store without a tenant keeps the shipped one."""
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    shipped = (ROOT / "projections" / "funnel.toml").read_text()
    own = tmp_path / "s-tenants" / "acme" / "definitions"
    own.mkdir(parents=True)
    (own / "funnel.toml").write_text(
        shipped.replace('events = ["ad_viewed", "site_visited"]', 'events = ["ad_viewed"]')
    )
    with Tenants(settings) as tenants:
        tenants.create("acme")
        for name in ("acme", None):
            tenants.engine(name).record("site_visited", "L-1", "2026-03-01T09:00:00Z", channel="x")
        assert tenants.engine("acme").funnel().steps[0].leads == 0  # a visit is not awareness
        assert tenants.engine(None).funnel().steps[0].leads == 1
        assert tenants.engine("acme").tenant_definitions == own


def worker_env(**more: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **more)
    env.pop("DEALENGINE_TENANT", None)
    return env


def test_one_projection_worker_serves_three_tenants(pg_schema_url: str) -> None:
    """Given three tenants with different histories (and a fourth created while the worker
    runs), one `project --follow` keeps each tenant's views equal to a full fold of that
    tenant's stream, holding one owner lock per tenant and view."""
    base = pg_schema_url.rpartition("schema=")[2]
    settings = Settings(database_url=pg_schema_url)
    lines = generate(120, 5)
    sizes = {"acme": 100, "beta": 250, "gamma": 400}
    with Tenants(settings) as tenants:
        try:
            for name, size in sizes.items():
                tenants.create(name)
                batch = [interaction_from(line, "t", "t") for line in lines[:size]]
                tenants.engine(name).execute_batch(batch)
            worker = subprocess.Popen(
                [sys.executable, "-m", "dealengine.cli", "project", "--follow"],
                env=worker_env(DEALENGINE_DATABASE_URL=pg_schema_url),
            )
            try:
                tenants.create("delta")
                tenants.engine("delta").execute_batch(
                    [interaction_from(line, "t", "t") for line in lines[:30]]
                )
                for name in [*sizes, "delta"]:
                    schema = f"{base}__{name}"
                    for projection in ("funnel", "pipeline"):
                        assert len(wait_for(lambda s=schema, p=projection: holders(s, p))) == 1
                    engine = tenants.engine(name)
                    wait_for(lambda e=engine: e.live_funnel(catch_up=False)[1].behind == 0)
                    wait_for(lambda e=engine: e.live_pipeline(catch_up=False)[1].behind == 0)
                    funnel, pipeline = engine.views()
                    live_funnel, _ = engine.live_funnel(catch_up=False)
                    live_pipeline, _ = engine.live_pipeline(catch_up=False)
                    assert [s.leads for s in live_funnel.steps] == [s.leads for s in funnel.steps]
                    assert [(s.open_deals, s.amount) for s in live_pipeline.stages] == [
                        (s.open_deals, s.amount) for s in pipeline.stages
                    ]
                    assert live_pipeline.won.amount == pipeline.won.amount
                counts = {n: tenants.engine(n).views()[0].steps[0].leads for n in sizes}
                assert counts["acme"] < counts["beta"] < counts["gamma"]  # three histories
                tenants.drop("delta")  # while the worker follows it: the others go on
                acme = tenants.engine("acme")
                acme.execute_batch([interaction_from(line, "t", "t") for line in lines[100:150]])
                wait_for(lambda: acme.live_funnel(catch_up=False)[1].behind == 0)
                assert worker.poll() is None
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=30) == 0
                assert holders(f"{base}__acme", "funnel") == []
            finally:
                if worker.poll() is None:
                    worker.kill()
        finally:
            for name in tenants.names():
                tenants.drop(name)


def test_one_subscriptions_worker_delivers_every_tenants_webhooks(tmp_path: Path) -> None:
    """Given acme and beta with webhooks of their own (their definitions folders), one
    `subscribers run` delivers acme's deal stages to acme's receiver, beta's to beta's."""
    settings = Settings(db=str(tmp_path / "s.db"), database_url=None)
    with Receiver() as to_acme, Receiver() as to_beta, Tenants(settings) as tenants:
        for receiver in (to_acme, to_beta):
            receiver.random.random = lambda: 1.0  # type: ignore[method-assign]  # never fails
        for name, receiver in (("acme", to_acme), ("beta", to_beta)):
            own = tmp_path / "s-tenants" / name / "definitions"
            own.mkdir(parents=True)
            (own / "webhooks.toml").write_text(
                f'[[webhooks]]\nname = "crm"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
                'events = ["deal.stage_entered"]\n'
            )
            tenants.create(name)
        acme, beta = tenants.engine("acme"), tenants.engine("beta")
        acme.record("deal_opened", "D-1", "2026-03-03T10:00:00Z", amount="10", owner="ana")
        acme.record("proposal_sent", "D-1", "2026-03-04T10:00:00Z")
        beta.record("deal_opened", "D-1", "2026-03-05T10:00:00Z", amount="20", owner="bo")
        worker = subprocess.Popen(
            [sys.executable, "-m", "dealengine.cli", "subscribers", "run"],
            env=worker_env(DEALENGINE_DB=str(tmp_path / "s.db")),
        )
        try:
            deadline = time.monotonic() + 30
            while len(to_acme.first) < 2 or len(to_beta.first) < 1:
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(1)  # nothing more arrives
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
        assert [b["stage"] for b in to_acme.first.values()] == ["prospecting", "proposal"]
        assert [b["stage"] for b in to_beta.first.values()] == ["prospecting"]
        with Engine(settings) as default:
            assert default.subscriptions.status() == []  # the default store has no webhook


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
