"""The HTML report in a real browser (headless Chromium): no console errors, every chart drawn
with marks, the funnel's numbers on the page equal to the view's; a screenshot is kept."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dealengine import Engine
from dealengine.demo import generate
from dealengine.ingest.jsonl import interaction_from
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


def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    need_browser()
    from playwright.sync_api import sync_playwright

    as_of = datetime(2026, 11, 1, tzinfo=UTC)
    with Engine.in_memory() as engine:
        outcomes = engine.execute_batch([interaction_from(x, "t", "t") for x in generate(600, 21)])
        assert not [o for o in outcomes if isinstance(o, Exception)]
        funnel = engine.funnel(as_of=as_of)
        page_file = tmp_path / "report.html"
        page_file.write_text(render_report(engine, as_of), encoding="utf-8")

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        page.wait_for_selector("#chart-waterfall .main-svg", timeout=30_000)
        for chart in CHARTS:
            marks = page.eval_on_selector(
                f"#chart-{chart}",
                "el => el.querySelectorAll('.trace path, .trace rect, .point path, image').length",
            )
            assert marks > 0, f"chart {chart} drew nothing"
        cells = page.eval_on_selector_all(
            "#funnel-table tbody tr", "rows => rows.map(r => r.cells[1].textContent)"
        )
        drawn = page.eval_on_selector_all(  # the first line of each bar's label: its value
            "#chart-funnel .trace text",
            "t => t.map(x => (x.querySelector('tspan') || x).textContent)",
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        browser.close()
    assert errors == []
    assert cells == [str(s.leads) for s in funnel.steps]
    assert [d for d in drawn if d.strip()] == [str(s.leads) for s in funnel.steps]
    assert (tmp_path / "report.png").stat().st_size > 10_000
