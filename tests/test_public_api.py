"""The package as a host sees it: every public name importable from `dealengine`, a light import
that configures nothing, the host's structlog configuration used and left alone, settings read
only by Settings, and types a host's mypy --strict can check (py.typed, shipped in the wheel)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hatchling.builders.wheel import WheelBuilder

import dealengine
from dealengine import DealEngineError, Engine, Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(dealengine.__file__).resolve().parent  # the tree under test (src/dealengine)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter that imports this tree's dealengine."""
    environ = {"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin", **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120
    )


def test_every_name_in_all_resolves_and_every_error_type_is_exported() -> None:
    assert dealengine.__all__ == sorted(set(dealengine.__all__))
    for name in dealengine.__all__:
        assert getattr(dealengine, name) is not None, name
    for module in pkgutil.walk_packages([str(PACKAGE)], "dealengine."):
        importlib.import_module(module.name)
    errors, todo = set(), [DealEngineError]
    while todo:
        cls = todo.pop()
        errors.add(cls)
        todo.extend(cls.__subclasses__())
    ours = {e.__name__ for e in errors if e.__module__.startswith("dealengine.")}
    assert ours - set(dealengine.__all__) == set()
    for name in ("Engine", "Settings", "FunnelView", "PipelineView", "WhatIf", "Scenario", "Lead",
                 "Deal", "Interaction", "Recorded", "load_funnel", "load_pipelines",
                 "FunnelDefinition", "PipelineDefinition", "StoreError", "ConcurrencyConflict",
                 "Interactions", "load_interactions", "LeadEvent", "DealEvent"):  # fmt: skip
        assert name in dealengine.__all__, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        dealengine.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_importing_dealengine_is_light_and_configures_nothing() -> None:
    result = run_python(
        "import sys, structlog, dealengine\n"
        "assert not structlog.is_configured(), 'structlog configured on import'\n"
        "heavy = {'dealengine.engine', 'eventsourcing', 'psycopg', 'pydantic'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "from dealengine import Engine\n"
        "assert not structlog.is_configured()\n"
    )
    assert result.returncode == 0, result.stderr


USE_AN_ENGINE = """
from dealengine import Engine
with Engine.in_memory() as engine:
    engine.record("site_visited", "L-1", "2026-03-01T10:00:00Z", channel="web")
    engine.live_funnel()  # logs view.batch and view.switched at info
"""


def test_a_host_structlog_configuration_is_used_and_left_alone() -> None:
    host = (
        "import structlog\n"
        "seen = []\n"
        "def keep(logger, method, event):\n"
        "    seen.append(event['event'])\n"
        "    raise structlog.DropEvent\n"
        "processors = [keep]\n"
        "structlog.configure(processors=processors)\n"
        "import dealengine\n" + USE_AN_ENGINE + "\n"
        "assert structlog.get_config()['processors'] == [keep], structlog.get_config()\n"
        "assert 'view.batch' in seen, seen\n"
    )
    result = run_python(host)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_without_a_configuration_the_library_prints_only_warnings() -> None:
    result = run_python(
        "import structlog\n" + USE_AN_ENGINE + "\nassert not structlog.is_configured()\n"
        "from dealengine.logs import get_logger\n"
        "get_logger('dealengine.test').warning('shown', because='a warning')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "shown" in result.stderr and "view." not in result.stderr


def test_settings_are_read_from_the_environment_by_settings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"os\.environ|getenv\(", line)
    ]
    assert readers == []
    monkeypatch.setenv("DEALENGINE_VIEW_BATCH", "150")
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    assert settings.view_batch == 150
    with Engine(settings) as engine:
        assert engine.view("funnel").batch == 150


def test_eventsourcing_keys_in_the_environment_do_not_reach_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("DEALENGINE_CREATE_TABLE", "n")
    monkeypatch.setenv("CIPHER_TOPIC", "eventsourcing.cipher:AESCipher")
    settings = Settings(db=str(tmp_path / "store.db"), database_url=None)
    with Engine(settings) as engine:
        engine.record("site_visited", "L-1", "2026-03-01T10:00:00Z", channel="web")
    with Engine(settings) as again:  # the same SQLite file, not an in-memory POPO store
        assert again.lead("L-1").version == 1


def test_the_wheel_ships_py_typed(tmp_path: Path) -> None:
    wheel = next(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dealengine/py.typed" in names
    assert "dealengine/__init__.py" in names


HOST = """
from dealengine import Engine, Settings, StoreError


def stage_of(engine: Engine, deal_id: str) -> str:
    try:
        return engine.deal(deal_id).stage
    except StoreError as e:
        return e.operation


def open_engine(path: str) -> Engine:
    return Engine(Settings(db=path, database_url=None))
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict on a host module that finds dealengine as an installed package (not as
    source), so it reads dealengine's types only if the package has a py.typed marker."""
    (tmp_path / "host.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy"),
         "host.py"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_a_host_type_checks_with_mypy_strict(tmp_path: Path) -> None:
    """About 5-10 s: mypy reads dealengine and its dependencies."""
    assert (PACKAGE / "py.typed").is_file()
    checked = mypy(tmp_path, HOST)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = mypy(tmp_path, HOST.replace("-> str:\n    try", "-> int:\n    try"))
    assert wrong.returncode == 1
    assert 'Incompatible return value type (got "str", expected "int")' in wrong.stdout
