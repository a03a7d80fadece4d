"""Definitions in projections/: validated at load with file, key and reason; shipped in the wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from dealengine import InvalidDefinition, Settings
from dealengine.domain.definitions import definitions_dir, load_funnel, load_pipeline
from dealengine.store.application import postgres_env, store_env

ROOT = Path(__file__).resolve().parents[1]


def test_the_defaults_load_from_the_one_projections_folder() -> None:
    assert definitions_dir().resolve() == (ROOT / "projections").resolve()
    pipeline = load_pipeline()
    assert pipeline.open_stages == ["prospecting", "discovery", "proposal", "negotiation"]
    assert (pipeline.won_stage, pipeline.lost_stage) == ("closed_won", "closed_lost")
    assert load_funnel().names[0] == "awareness"


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (
            lambda t: t.replace("probability = 0.50", "probability = 1.5"),
            "pipelines.0.stages.2.probability",
            "less than or equal",
        ),
        (
            lambda t: t.replace('proposal_sent = "proposal"', 'proposal_sent = "limbo"'),
            "pipelines.0.events.proposal_sent",
            "unknown stage 'limbo'",
        ),
        (
            lambda t: t.replace('initial_stage = "prospecting"', 'initial_stage = "closed_won"'),
            "pipelines.0.initial_stage",
            "not an open",
        ),
        (
            lambda t: t.replace('backward = "with_reason"', 'backward = "sometimes"'),
            "pipelines.0.moves.backward",
            "Input should",
        ),
        (lambda t: t + "\nsurprise = 1\n", "pipelines.2.events.surprise", "valid string"),
        (
            lambda t: t.replace("[[pipelines.stages]]", "[[pipelines.stages", 1),
            "-",
            "not valid TOML",
        ),
    ],
)
def test_a_bad_pipeline_names_file_key_and_reason(
    tmp_path: Path, edit, key: str, reason: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "pipeline.toml"
    path.write_text(edit((ROOT / "projections" / "pipeline.toml").read_text()))
    with pytest.raises(InvalidDefinition) as bad:
        load_pipeline(path)
    assert (bad.value.file, bad.value.key) == (str(path), key)
    assert reason in bad.value.reason
    assert str(bad.value).startswith(f"{path}: {key}: ")


def test_a_funnel_step_with_an_unknown_event_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "funnel.toml"
    path.write_text(
        (ROOT / "projections" / "funnel.toml")
        .read_text()
        .replace('"demo_requested"', '"demo_booked"')
    )
    with pytest.raises(InvalidDefinition, match="unknown event type 'demo_booked'"):
        load_funnel(path)


def test_the_wheel_ships_the_definitions_from_the_projections_folder(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    wheel = Path(
        next(iter(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    )
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = z.read("dealengine/_projections/pipeline.toml")
    assert {"dealengine/_projections/funnel.toml", "dealengine/engine.py"} <= names
    assert shipped == (ROOT / "projections" / "pipeline.toml").read_bytes()
    assert not any(n.startswith("projections/") for n in names)


def test_database_url_maps_onto_eventsourcing_settings() -> None:
    env = postgres_env("postgresql://sales:s%40cret@db.example:6543/crm?schema=deals")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "db.example",
        "6543",
        "crm",
    )
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_SCHEMA"]) == (
        "sales",
        "s@cret",
        "deals",
    )


def test_sqlite_is_the_default_and_dealengine_db_chooses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEALENGINE_DB", raising=False)
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    assert Settings().db.endswith("dealengine.db")
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "my.db"))
    env = store_env(Settings())
    assert (env["PERSISTENCE_MODULE"], env["SQLITE_DBNAME"]) == (
        "eventsourcing.sqlite",
        str(tmp_path / "my.db"),
    )
    monkeypatch.setenv("DEALENGINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert store_env(Settings())["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
