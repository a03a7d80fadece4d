"""The HTML report in a real browser (headless Chromium): no console errors, every chart drawn
with marks, the funnel's numbers on the page equal to the view's; a screenshot is kept. And
the README's real-data block, run as written: its report shows the Olist pipeline."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dealengine import Engine
from dealengine.cli import app
from dealengine.demo import generate
from dealengine.domain.lines import interaction_from
from dealengine.report import render_report

CHROMIUM = os.environ.get("DEALENGINE_CHROMIUM", "/usr/bin/chromium")
CHARTS = ["funnel", "funnel-by-channel", "pipeline", "time-in-stage", "cohorts", "waterfall"]


def need_browser() -> None:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return
    message = f"no Chromium at {CHROMIUM}: apt-get install chromium (or set DEALENGINE_CHROMIUM)"
    if os.environ.get("DEALENGINE_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@contextmanager
def chromium_page(errors: list[str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
        browser.close()


def marks(page: Any, chart: str) -> int:
    return int(page.eval_on_selector(
        f"#chart-{chart}",
        "el => el.querySelectorAll('.trace path, .trace rect, .point path, image').length",
    ))  # fmt: skip


def test_the_readme_real_data_report_shows_the_olist_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the README's "Try it on real data" block run as written (Olist: 8,000 leads, 842
    won deals in the `olist` pipeline, in BRL), then its report has the olist pipeline's
    section, drawn, with the 842 won deals and their amount in BRL with separators."""
    need_browser()
    block = re.search(r"## Try it on real data.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(),
                      re.S)  # fmt: skip
    assert block is not None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEALENGINE_DB", str(tmp_path / "olist.db"))
    monkeypatch.delenv("DEALENGINE_DATABASE_URL", raising=False)
    for data in ("tests", "projections"):
        (tmp_path / data).symlink_to(ROOT / data)
    cli = CliRunner()
    for command in re.split(r"&&|\n", block.group(1)):
        words = shlex.split(command)
        if words:
            assert words[0] == "dealengine", command
            done = cli.invoke(app, words[1:])
            assert done.exit_code == 0, (command, done.output)
    page_file = tmp_path / "report.html"
    assert page_file.exists()

    errors: list[str] = []
    with chromium_page(errors) as page:
        page.goto(page_file.as_uri())
        page.wait_for_selector("#chart-pipeline .main-svg", timeout=30_000)
        assert marks(page, "pipeline") > 0
        title = page.text_content("#pipeline-olist h2")
        won = page.eval_on_selector_all(
            "#pipeline-table tbody tr",
            "rows => rows.filter(r => r.cells[0].textContent == 'won')"
            ".map(r => [r.cells[2].textContent, r.cells[3].textContent])",
        )
        times = page.text_content("#report-times")
        page.screenshot(path=str(tmp_path / "olist.png"), full_page=False)
    assert errors == []
    assert title == "Pipeline olist (BRL)"
    assert won == [["842", "61,784,006.00 BRL"]]
    assert times is not None and "generated" in times and "as of 2018-12-31 23:59:59 UTC" in times


def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    need_browser()
    as_of = datetime(2026, 11, 1, tzinfo=UTC)
    with Engine.in_memory() as engine:
        outcomes = engine.execute_batch([interaction_from(x, "t", "t") for x in generate(600, 21)])
        assert not [o for o in outcomes if isinstance(o, Exception)]
        funnel = engine.funnel(as_of=as_of)
        page_file = tmp_path / "report.html"
        page_file.write_text(render_report(engine, as_of), encoding="utf-8")

    errors: list[str] = []
    with chromium_page(errors) as page:
        page.goto(page_file.as_uri())
        page.wait_for_selector("#chart-waterfall .main-svg", timeout=30_000)
        for chart in CHARTS:
            assert marks(page, chart) > 0, f"chart {chart} drew nothing"
        heatmap_steps = page.evaluate("document.getElementById('chart-cohorts').data[0].x")
        money_cells = page.eval_on_selector_all(
            "#pipeline-table tbody td:nth-child(4)", "cells => cells.map(c => c.textContent)"
        )
        cells = page.eval_on_selector_all(
            "#funnel-table tbody tr", "rows => rows.map(r => r.cells[1].textContent)"
        )
        drawn = page.eval_on_selector_all(  # the first line of each bar's label: its value
            "#chart-funnel .trace text",
            "t => t.map(x => (x.querySelector('tspan') || x).textContent)",
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert errors == []
    assert heatmap_steps == [s.name for s in funnel.steps[1:]]  # not the 100% first step
    assert money_cells and all(re.fullmatch(r"[\d,]+\.\d\d USD", c) for c in money_cells)
    assert any("," in c for c in money_cells)  # thousands separators
    assert cells == [str(s.leads) for s in funnel.steps]
    assert [d for d in drawn if d.strip()] == [str(s.leads) for s in funnel.steps]
    assert (tmp_path / "report.png").stat().st_size > 10_000
