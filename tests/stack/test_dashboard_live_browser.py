"""The live tail's history in real headless Chromium against a real stack (NATS, chDB): it is the newest
stored entries for the live filters (level, service, text, attribute conditions) and never the Search view's
time range, which the Live view does not show; rows from another day than today carry their date.

Uses the stack, browser and page fixtures of test_dashboard_browser (one stack and browser per module).
Screenshots go to test-artifacts/ for a human to look at."""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from typing import Any

import pytest

from . import test_dashboard_browser as dash
from .query_helpers import post_json
from .test_dashboard_browser import StackThread, messages, new_service, open_view, shoot, stored

# The other module's fixtures (one stack and one browser for this module too).
browser, page, stack = dash.browser, dash.page, dash.stack

pytestmark = pytest.mark.timeout(120)

#: Stored entries per test: more than the tail's history (HISTORY_ROWS = 100 in live.js).
SEEDED = 130
HISTORY_ROWS = 100
#: Spacing of the seeded entries: 130 of them span ~40 h, so the newest 100 cover more than a day.
STEP = dt.timedelta(minutes=18, seconds=30)
TIME_ONLY = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")


def seed_over_two_days(stack: StackThread, service: str) -> list[dt.datetime]:
    """Stores `line 000`..`line 129` of `service`, oldest first, the newest a minute ago, ~40 h in all (posted
    with their timestamps, as any client may); returns their times."""
    newest = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=1)
    times = [newest - (SEEDED - 1 - i) * STEP for i in range(SEEDED)]
    body = "\n".join(
        json.dumps(
            {
                "level": "info",
                "message": f"line {i:03d}",
                "service": service,
                "timestamp": ts.isoformat().replace("+00:00", "Z"),
            }
        )
        for i, ts in enumerate(times)
    )
    assert post_json(f"{stack.base}/logs", body.encode()) == 202
    stored(stack, service, SEEDED)
    return times


def assert_newest_history_with_dates(tab: Any, times: list[dt.datetime]) -> None:
    """The live table holds the newest HISTORY_ROWS seeded lines, oldest first; a row of today (the browser's
    local day) shows its time, any other row its local date and time."""
    from playwright.sync_api import expect

    rows = tab.locator("#live-rows tr.entry")
    expect(rows).to_have_count(HISTORY_ROWS)
    first = SEEDED - HISTORY_ROWS
    assert messages(tab, "#live-rows") == [f"line {i:03d}" for i in range(first, SEEDED)]
    zone = zoneinfo.ZoneInfo(tab.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    today = dt.datetime.now(zone).date()
    cells = tab.eval_on_selector_all("#live-rows tr.entry td.time", "cells => cells.map(c => c.textContent)")
    dated = 0
    for ts, cell in zip(times[first:], cells, strict=True):
        local = ts.astimezone(zone)
        clock = f"{local:%H:%M:%S}.000"
        if local.date() == today:
            assert TIME_ONLY.match(cell) and cell == clock, (ts, cell)
        else:
            assert cell == f"{local:%Y-%m-%d} {clock}", (ts, cell)
            dated += 1
    assert dated > 0  # the newest 100 span ~31 h: some are from another day whatever the local time


def test_live_opened_by_url_shows_the_newest_entries_whatever_their_age(
    page: Any, stack: StackThread
) -> None:
    """`/?view=live&service=X` on entries spanning ~40 h shows the newest 100 (not the last hour's few), with
    the date on rows from another day."""
    service = new_service("live-age")
    times = seed_over_two_days(stack, service)
    open_view(page, stack, view="live", service=service)
    assert_newest_history_with_dates(page, times)
    # The picture shows where yesterday's dated rows meet today's (if today has any yet).
    page.eval_on_selector_all(
        "#live-rows td.time",
        "cells => (cells.find(c => !c.textContent.includes('-')) || cells[0])"
        ".scrollIntoView({block: 'center'})",
    )
    shoot(page, "live-history-dates")


def test_live_after_a_custom_search_range_ignores_that_range(page: Any, stack: StackThread) -> None:
    """A search over a 2 h window from yesterday, then the Live tab: the tail opens with the newest entries,
    not that window's."""
    from playwright.sync_api import expect

    service = new_service("live-range")
    times = seed_over_two_days(stack, service)
    start, end = times[10], times[17]  # seven steps (~2 h 10 min), about 37 h ago
    iso = {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")}
    open_view(page, stack, view="search", service=service, **iso)
    expect(page.locator("#search-rows tr.entry")).to_have_count(7)  # from inclusive, to exclusive
    page.locator("#tab-live").click()
    page.locator("#live-status[data-state=live]").wait_for()
    assert_newest_history_with_dates(page, times)


def test_live_runs_under_a_search_range_the_search_refuses(page: Any, stack: StackThread) -> None:
    """A URL whose (hidden) custom range ends before it starts still opens the live tail with its history;
    the Search view is where that range is shown and refused."""
    from playwright.sync_api import expect

    service = new_service("live-bad-range")
    times = seed_over_two_days(stack, service)
    later, earlier = (ts.isoformat().replace("+00:00", "Z") for ts in (times[17], times[10]))
    open_view(page, stack, view="live", service=service, **{"from": later, "to": earlier})
    assert_newest_history_with_dates(page, times)
    expect(page.locator("#f-error")).to_have_text("")
    page.locator("#tab-search").click()
    expect(page.locator("#f-error")).to_have_text("to: must be later than from")


def test_live_entries_show_at_once_while_a_slow_history_loads_and_history_goes_in_time_order(
    page: Any, stack: StackThread
) -> None:
    """The history request is held (as one waiting behind the storage's inserts): a live entry shows
    meanwhile, and the history, when it comes, goes before it in time order, without duplicates. (Before,
    live entries waited for the history, and stored entries newer than some live ones went after them.)"""
    import time

    from playwright.sync_api import expect

    service = new_service("slowhistory")
    seed_over_two_days(stack, service)
    held: list[Any] = []
    page.route(re.compile(r".*/api/logs\?.*"), lambda route: held.append(route))  # answered later
    open_view(page, stack, view="live", service=service)
    expect(page.locator("#live-status[data-state=live]")).to_be_visible()
    time.sleep(0.3)  # the socket's subscription is registered on open
    live = json.dumps({"level": "info", "message": "line live", "service": service})
    assert post_json(f"{stack.base}/logs", live.encode()) == 202
    expect(page.locator("#live-rows tr.entry", has_text="line live")).to_be_visible()
    assert held and messages(page, "#live-rows") == ["line live"]  # the history is still held
    for route in held:
        route.continue_()
    # The history is the newest HISTORY_ROWS stored when the request went out: "line live" among them once
    # it is stored (then shown once, as the live row), else the newest 100 seeded lines.
    expect(page.locator("#live-rows tr.entry").nth(HISTORY_ROWS - 1)).to_be_visible(timeout=15_000)
    shown = messages(page, "#live-rows")
    assert len(shown) in (HISTORY_ROWS, HISTORY_ROWS + 1) and shown[-1] == "line live"
    assert shown[:-1] == [f"line {i:03d}" for i in range(SEEDED - len(shown) + 1, SEEDED)]
    page.unroute(re.compile(r".*/api/logs\?.*"))
