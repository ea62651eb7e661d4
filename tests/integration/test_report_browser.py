"""The HTML report as a user sees it: opened in a real headless Chromium.

By default the report is rendered from a SYNTHETIC run (tests/unit/synthetic_runs.py; a test
fixture, shown as such by the report's banner). Point the test at real runs with
``BENCH_REPORT_RUN_DIR=reports/runs/<run_id>`` (several directories separated by ``:``).

Uses Debian's ``chromium`` (``infra/setup-browser.sh``) driven by Playwright for Python with
``executable_path``; Playwright's own browser download is never used. Skips, saying why, when
either is missing. The screenshot goes to ``reports/screenshots/report.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.report.html import render_report
from tests.tooling import missing_tool
from tests.unit.synthetic_runs import Spec, make_run

CHROMIUM = Path(os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "reports" / "screenshots" / "report.png"


def _run_dirs(tmp_path: Path) -> list[Path]:
    given = os.environ.get("BENCH_REPORT_RUN_DIR")
    if given:
        dirs = [Path(p) for p in given.split(os.pathsep) if p]
        missing = [d for d in dirs if not (d / "run.json").is_file()]
        if missing:
            pytest.fail(f"BENCH_REPORT_RUN_DIR: not run directories: {missing}")
        return dirs
    return [make_run(tmp_path / "runs", Spec(kill_points=(("direct", "supervised"),)))]


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    try:
        from playwright import sync_api
    except ImportError:
        missing_tool("playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} not found: run infra/setup-browser.sh (apt-get install chromium)")
    report = render_report(_run_dirs(tmp_path), tmp_path / "report.html")

    console_errors: list[str] = []
    page_errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def on_console(m: Any) -> None:
                if m.type == "error":
                    console_errors.append(m.text)

            page.on("console", on_console)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")

            charts = page.locator("figure.chart svg")
            count = charts.count()
            assert count >= 4, f"expected the report's charts, found {count}"
            for i in range(count):
                svg = charts.nth(i)
                svg.scroll_into_view_if_needed()
                box = svg.bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100, (
                    f"chart {i} ({page.locator('figure.chart').nth(i).get_attribute('data-chart')})"
                    f" renders at {box}"
                )
                # A real drawing, not an empty frame: lines and text inside the SVG.
                assert svg.locator("path").count() > 10
            assert page.locator("#overall").inner_text().strip()
            assert page.locator("tr[data-dimension]").count() == 4
            assert page.locator("script").count() == 0
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert console_errors == [] and page_errors == []
    # Self-contained: the page loaded nothing but itself.
    assert requests == [report.as_uri()], requests
    assert SCREENSHOT.stat().st_size > 10_000
    if os.environ.get("BENCH_REPORT_KEEP"):
        shutil.copy(report, SCREENSHOT.with_suffix(".html"))
