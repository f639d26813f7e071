"""The /ui page in a real headless browser (Debian's chromium driven by Playwright).

The API server (with the page mounted by ``create_app``) serves a copy of the shared
drifting run; the test loads the page, checks there are no console errors, that the
run's events are listed, that the kind and time filters work, that an event's details
open, and that the token unlocks a rollback that really happens. Screenshots are saved
under the test's tmp dir (``ui-*.png``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.config import ApiConfig, DriftloopConfig
from runtime.daemon import Daemon
from runtime.service.server import ApiServer
from runtime.store import events as ev
from runtime.store.events import Event

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "ui-test-token"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
]


@pytest.fixture
def served(
    burst: tuple[DriftloopConfig, list[Event]], tmp_path: Path
) -> Iterator[tuple[str, Daemon, list[Event]]]:
    cfg, events = burst
    state = tmp_path / "state"
    shutil.copytree(cfg.state_dir, state, ignore=shutil.ignore_patterns("lock"))
    api = ApiConfig(host="127.0.0.1", port=0, token_env=None)
    copy = cfg.model_copy(update={"state_dir": state, "api": api})
    daemon = Daemon(copy)
    server = ApiServer(daemon, api, TOKEN)
    server.start()
    try:
        yield server.url, daemon, events
    finally:
        server.stop()
        daemon.db.dispose()


def test_the_page_in_a_browser(served: tuple[str, Daemon, list[Event]], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, daemon, events = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console",
            lambda m: (
                problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
            ),
        )
        page.on("pageerror", lambda err: problems.append(f"pageerror: {err}"))
        page.goto(f"{url}/ui")
        expect(page.locator("h1")).to_have_text("driftloop review")
        page.screenshot(path=str(shots / "ui-1-page.png"), full_page=True)

        # the run's events are listed; progress events are hidden until asked for
        shown = [e for e in events if e.kind != ev.RETRAIN_PROGRESS]
        for e in shown:
            expect(page.locator(f"#ev-{e.id}")).to_be_visible()
        expect(page.locator("#count")).to_have_text(f"{len(shown)} of {len(events)} events shown")
        story = page.locator("ol.story")
        expect(story).to_contain_text("v2 promoted: it ")
        expect(story).to_contain_text("v3 refused: ")
        live = page.locator("#realized")  # the served predictions' realized accuracy
        expect(live.locator('svg.chart[aria-label^="realized accuracy"]')).to_be_visible()
        expect(live.locator('svg.chart[aria-label^="estimated accuracy"]')).to_be_visible()
        expect(live).to_contain_text("v2 promoted")
        expect(live.locator('li[data-version="v2"]')).to_contain_text("labelled rows it served")

        # the kind filter: only gate decisions
        page.click("#reset")
        for box in page.locator("#kinds input").all():
            if box.get_attribute("value") not in (ev.GATE_PASSED, ev.GATE_FAILED):
                box.uncheck()
        gates = [e for e in events if e.kind in (ev.GATE_PASSED, ev.GATE_FAILED)]
        expect(page.locator("details.ev:visible")).to_have_count(len(gates))
        assert "kind=gate.failed" in page.url  # the filtered view is linkable

        # an event's details open: the refused candidate's gate checks
        refused = next(e for e in gates if e.kind == ev.GATE_FAILED)
        item = page.locator(f"#ev-{refused.id}")
        item.locator("> summary").click()
        expect(item.locator(".body table")).to_be_visible()
        expect(item.locator(".body")).to_contain_text("FAIL")
        item.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "ui-2-gate-filter-and-details.png"), full_page=True)

        # a link in the story opens the event it names
        page.click("#reset")
        page.locator("ol.story a.evl").first.click()
        first_id = page.locator("ol.story a.evl").first.get_attribute("href")
        assert first_id is not None
        expect(page.locator(f"{first_id}")).to_have_attribute("open", "")

        # the time filter, from the query string: nothing after the year 2100
        page.goto(f"{url}/ui?since=2100-01-01T00:00")
        expect(page.locator("#count")).to_have_text(f"0 of {len(events)} events shown")

        # read-only until a valid token is given; then a rollback really happens
        page.goto(f"{url}/ui#models")
        rollback = page.locator('button[data-verb="rollback"][data-version="v1"]')
        expect(rollback).to_be_hidden()
        page.fill("#token", "wrong")
        page.click("#auth button")
        expect(page.locator("#auth .msg")).to_contain_text("not valid")
        expect(rollback).to_be_hidden()
        page.fill("#token", TOKEN)
        page.click("#auth button")
        expect(rollback).to_be_visible()
        page.locator("#models").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "ui-3-unlocked.png"))
        page.once("dialog", lambda d: d.accept("browser test"))
        rollback.click()
        page.wait_for_url(f"{url}/ui#models", timeout=10_000)
        page.wait_for_load_state("load")
        expect(page.locator("header")).to_contain_text("champion v1", timeout=10_000)
        expect(page.locator("ol.story")).to_contain_text("Rolled back v2 → v1")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "ui-4-after-rollback.png"), full_page=True)
        browser.close()
    assert daemon.registry.champion() == "v1"
    # the one console error allowed: the browser logs the 403 of the wrong token's check
    refused = "Failed to load resource: the server responded with a status of 403"
    assert [m for m in problems if refused not in m] == []
    assert sum(refused in m for m in problems) <= 1
    assert len(list(shots.glob("ui-*.png"))) == 4
