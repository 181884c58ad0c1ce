"""The reports in a real headless browser (Debian's chromium, driven by Playwright): each page renders
offline with no console or page error, every figure loads, every chart is drawn. A full-page screenshot
of each is kept in the test artefacts ($DEEPSCOPE_TEST_ARTEFACTS, else <repo>/test-artefacts/), not in
git."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deepscope.reports import write_comparison, write_report, write_run_report, write_study_report

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]


def _artefacts() -> Path:
    folder = Path(os.environ.get("DEEPSCOPE_TEST_ARTEFACTS") or ROOT / "test-artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A chromium context with a fresh profile; skipped (with the reason) when chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install 'deepscope[dev]')")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=ARGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def _render(context, html: Path, shot: str) -> dict:
    """Open ``html`` from file://, check the page, save a full-page screenshot; returns what was measured."""
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error"
            else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    measured = page.evaluate("""() => ({
        title: document.title,
        images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
        svgs: [...document.querySelectorAll('svg')].map(s => {
            const box = s.getBoundingClientRect();
            return {label: s.getAttribute('aria-label'), width: box.width, height: box.height,
                    marks: s.querySelectorAll('polyline, circle').length};
        }),
        sections: [...document.querySelectorAll('section')].map(s => s.id),
    })""")
    page.screenshot(path=str(_artefacts() / shot), full_page=True)
    page.close()
    assert errors == [], errors
    # nothing but the page itself and its data: URIs was asked for: the report is self-contained
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    broken = [i["alt"] for i in measured["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == [], f"figures that did not load: {broken}"
    flat = [s["label"] for s in measured["svgs"] if not (s["width"] > 100 and s["height"] > 50 and s["marks"])]
    assert flat == [], f"charts not drawn: {flat}"
    return measured


def test_run_report_renders(browser, trained_run):
    measured = _render(browser, write_run_report(trained_run), "run-report.png")
    figures = list((trained_run / "figures").rglob("*.png"))
    assert len(measured["images"]) == len(figures) >= 4
    assert len(measured["svgs"]) >= 4
    assert measured["sections"] == ["summary", "metrics", "curves", "figures", "model", "data", "config",
                                    "environment", "timing"]


def test_comparison_renders(browser, trained_run, other_run, tmp_path):
    measured = _render(browser, write_comparison([trained_run, other_run], tmp_path / "comparison.html"),
                       "comparison.png")
    assert measured["sections"] == ["runs", "config", "metrics", "curves"] and len(measured["svgs"]) == 6


def test_study_report_renders(browser, study_folder):
    measured = _render(browser, write_study_report(study_folder), "study-report.png")
    assert len(measured["images"]) == 3 and "stage-coarse" in measured["sections"]


def test_phased_report_renders(browser, phased_root):
    for run in ("views", "head"):
        write_run_report(phased_root / run)
    measured = _render(browser, write_report(phased_root), "phased-report.png")
    assert measured["sections"] == ["phases", "curves"] and measured["svgs"]


def test_a_report_opens_from_anywhere(browser, trained_run, tmp_path):
    """Copied away from its run folder (mailed, archived), the page still has everything."""
    copy = tmp_path / "elsewhere" / "report.html"
    copy.parent.mkdir()
    shutil.copy(write_run_report(trained_run), copy)
    measured = _render(browser, copy, "run-report-copied.png")
    assert all(i["width"] > 0 for i in measured["images"]) and measured["images"]
