"""The dashboard's exploring features in real headless Chromium against a real stack (NATS, chDB): the search
histogram and drag-to-zoom, the attribute side panel and chips (filter in/out), the entry detail's attribute
buttons and surrounding entries, dates in the time column, and the live tail's history and reorder window.

Uses the stack, browser and page fixtures of test_dashboard_browser (one stack and browser per module).
Screenshots go to test-artifacts/ for a human to look at."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from . import test_dashboard_browser as dash
from .query_helpers import post_json
from .test_dashboard_browser import (
    LIVE_DEADLINE_MS,
    Shipper,
    StackThread,
    messages,
    new_service,
    open_view,
    shoot,
    stored,
)

# The other module's fixtures (one stack and one browser for this module too).
browser, page, shipper, stack = dash.browser, dash.page, dash.shipper, dash.stack

pytestmark = pytest.mark.timeout(120)


def url_params(tab: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(tab.url).query)


def ship_routes(ship: Shipper) -> None:
    """12 entries: route /a 6x, /b 4x, /c 2x; status 200 except every /b (500)."""
    for i in range(12):
        route = "/a" if i < 6 else "/b" if i < 10 else "/c"
        ship.logger.info(
            "request %02d done", i, extra={"route": route, "status": 500 if route == "/b" else 200}
        )
    ship.deliver()


def test_search_histogram_drag_narrows_the_time_range(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """The search shows a volume histogram of its range; dragging across it (or arrows + Enter) makes that
    range the custom time range (URL and form), as a new history entry."""
    from playwright.sync_api import expect

    service = new_service("histo")
    ship = shipper(service)
    ship_routes(ship)
    stored(stack, service, 12)
    open_view(page, stack, view="search", service=service)
    bars = page.locator("#search-histogram svg.histogram g.bucket")
    expect(bars.first).to_be_attached()
    assert bars.count() >= 30  # the last hour in 1-minute buckets (auto interval)
    totals = page.eval_on_selector_all(
        "#search-histogram g.bucket", "gs => gs.map(g => Number(g.dataset.total))"
    )
    assert sum(totals) == 12
    box = page.locator("#search-histogram svg").bounding_box()
    shoot(page, "search-histogram")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    params = url_params(page)
    start = dt.datetime.fromisoformat(params["from"][0].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(params["to"][0].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=10) <= end - start <= dt.timedelta(minutes=25)
    assert start.second == 0 and end.second == 0  # whole buckets
    expect(page.locator("#f-range")).to_have_value("custom")
    expect(page.locator("#f-custom")).to_be_visible()
    page.go_back()
    page.wait_for_function("() => !new URLSearchParams(location.search).has('from')")

    # The keyboard does the same: focus, → picks the newest bucket, Shift+← twice widens to 3, Enter zooms.
    page.wait_for_function(
        "() => !document.querySelector('#search-histogram').classList.contains('loading')"
        " && document.querySelectorAll('#search-histogram g.bucket').length >= 30"
    )
    interval = int(page.get_attribute("#search-histogram", "data-interval-seconds"))
    page.locator("#search-histogram svg").focus()
    for key in ("ArrowRight", "Shift+ArrowLeft", "Shift+ArrowLeft", "Enter"):
        page.keyboard.press(key)
    page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    params = url_params(page)
    start = dt.datetime.fromisoformat(params["from"][0].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(params["to"][0].replace("Z", "+00:00"))
    assert end - start == dt.timedelta(seconds=3 * interval)
    assert end > dt.datetime.now(dt.timezone.utc)  # the newest bucket ends after now


def test_overview_chart_drag_zooms_too(page: Any, stack: StackThread) -> None:
    """The Overview's chart zooms the same way: the dragged buckets become the custom range."""
    open_view(page, stack, view="overview", service=new_service("ovzoom"))
    page.locator("#chart svg.histogram.brushable").wait_for()
    box = page.locator("#chart svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).has('from')")
    assert url_params(page)["view"] == ["overview"]


def test_attribute_panel_filters_in_and_out_with_chips(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """The side panel lists the common keys with their top values and counts; clicking a value filters in,
    right-clicking filters out; both show as chips that remove the condition again."""
    from playwright.sync_api import expect

    service = new_service("attrs")
    ship = shipper(service)
    ship_routes(ship)
    stored(stack, service, 12)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_view(page, stack, view="search", service=service)
    route = page.locator("#attr-list section.attr-key[data-key=route]")
    expect(route).to_be_visible()
    values = route.locator("li.attr-value").evaluate_all(
        "items => items.map(i => [i.dataset.value, i.querySelector('.attr-count').textContent])"
    )
    assert values == [["/a", "6"], ["/b", "4"], ["/c", "2"]]
    shoot(page, "search-attributes")

    route.locator("li[data-value='/b'] button.attr-in").click()
    expect(page.locator("#search-info")).to_contain_text("entries 1\N{EN DASH}4 (oldest match)")
    assert url_params(page)["attr.route"] == ["/b"]
    chip = page.locator("#f-attrs .attr-chip")
    expect(chip).to_have_text(re.compile(r"route = /b"))
    assert sorted(messages(page, "#search-rows")) == [f"request {i:02d} done" for i in range(6, 10)]
    # The live tail follows the same conditions (its socket reopens with them).
    deadline = time.monotonic() + 5
    while not any("attr.route=%2Fb" in url for url in sockets) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert "attr.route=%2Fb" in sockets[-1]

    chip.locator("button.chip-remove").click()
    expect(page.locator("#f-attrs .attr-chip")).to_have_count(0)
    expect(page.locator("#search-info")).to_contain_text("entries 1\N{EN DASH}12")

    page.locator("#attr-list section.attr-key[data-key=route] li[data-value='/a'] button.attr-in").click(
        button="right"
    )
    expect(page.locator("#search-info")).to_contain_text("entries 1\N{EN DASH}6 (oldest match)")
    assert url_params(page)["attr.route!"] == ["/a"]
    expect(page.locator("#f-attrs .attr-chip.negated")).to_have_text(re.compile(r"route != /a"))
    assert all(int(m.split()[1]) >= 6 for m in messages(page, "#search-rows"))
    # The ≠ button and keyboard: focus it, press Enter.
    page.locator("#attr-list section.attr-key[data-key=route] li[data-value='/c'] button.attr-out").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#search-info")).to_contain_text("entries 1\N{EN DASH}4 (oldest match)")
    expect(page.locator("#f-attrs .attr-chip")).to_have_count(2)
    shoot(page, "search-attr-chips")


def test_entry_detail_filters_and_shows_surrounding_entries(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """From the entry detail an attribute filters in; "Show surrounding entries" lists the entries just
    before and after it from the same service, the entry itself highlighted."""
    from playwright.sync_api import expect

    service = new_service("context")
    ship = shipper(service)
    ship_routes(ship)
    stored(stack, service, 12)
    open_view(page, stack, view="search", service=service)
    page.locator("#search-rows tr.entry", has_text="request 05 done").click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    detail.locator("#detail-context").click()
    current = detail.locator(".context-table tr.current")
    expect(current).to_have_text(re.compile("request 05 done"))
    listed = messages(page, "#detail .context-table")
    assert listed == [f"request {i:02d} done" for i in range(12)]  # 5 before, 6 after: all of them
    shoot(page, "detail-context")

    row = detail.locator("table.attributes tr", has_text="route")
    row.locator("button.attr-in").click()
    expect(page.locator("#f-attrs .attr-chip")).to_have_text(re.compile(r"route = /a"))
    expect(page.locator("#search-info")).to_contain_text("entries 1\N{EN DASH}6 (oldest match)")


def test_time_column_shows_dates_only_for_ranges_over_a_day(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Last hour: times only; last 7 days: the local date too."""
    from playwright.sync_api import expect

    service = new_service("dates")
    ship = shipper(service)
    ship.logger.info("dated line")
    ship.deliver()
    stored(stack, service, 1)
    open_view(page, stack, view="search", service=service)
    cell = page.locator("#search-rows tr.entry td.time").first
    expect(cell).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    open_view(page, stack, view="search", service=service, range="7d")
    expect(cell).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$"))
    shoot(page, "search-dates")


def test_live_tail_opens_with_recent_entries_and_keeps_timestamp_order(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Entries stored before the page opened are shown at once; entries arriving out of timestamp order
    within the reorder window are placed in order."""
    from playwright.sync_api import expect

    service = new_service("history")
    ship = shipper(service)
    for i in range(3):
        ship.logger.info("before open %d", i)
    ship.deliver()
    stored(stack, service, 3)
    open_view(page, stack, view="live", service=service)
    expect(page.locator("#live-rows tr.entry")).to_have_count(3)
    assert messages(page, "#live-rows") == [f"before open {i}" for i in range(3)]

    now = dt.datetime.now(dt.timezone.utc)
    stamps = [
        (now - dt.timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z") for ms in (100, 300, 200)
    ]
    late = "\n".join(
        json.dumps({"level": "info", "message": f"late {i}", "service": service, "timestamp": ts})
        for i, ts in enumerate(stamps)
    )
    assert post_json(f"{stack.base}/logs", late.encode()) == 202
    expect(page.locator("#live-rows tr.entry")).to_have_count(6, timeout=LIVE_DEADLINE_MS)
    assert messages(page, "#live-rows")[3:] == ["late 1", "late 2", "late 0"]
    ship.logger.info("after")
    ship.deliver()
    expect(page.locator("#live-rows tr.entry").last).to_have_text(re.compile("after"))
    assert messages(page, "#live-rows").count("before open 0") == 1

    # Across requests too: an older entry right after a newer one goes before it...
    def post_at(message: str, ms_ago: int) -> None:
        ts = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(milliseconds=ms_ago)).isoformat()
        entry = {
            "level": "info",
            "message": message,
            "service": service,
            "timestamp": ts.replace("+00:00", "Z"),
        }
        assert post_json(f"{stack.base}/logs", json.dumps(entry).encode()) == 202

    post_at("newer", 0)
    post_at("older", 400)
    expect(page.locator("#live-rows tr.entry")).to_have_count(9, timeout=LIVE_DEADLINE_MS)
    shown = messages(page, "#live-rows")
    assert shown.index("older") < shown.index("newer")
    stamps_shown = page.eval_on_selector_all("#live-rows tr.entry", "rows => rows.map(r => r.dataset.ts)")
    assert stamps_shown == sorted(stamps_shown)
    # ...but rows that have been on screen longer than the window never move: a late one goes last.
    page.wait_for_timeout(1200)  # REORDER_WINDOW_MS (1 s) and a margin
    post_at("very late", 5000)
    expect(page.locator("#live-rows tr.entry").last).to_have_text(re.compile("very late"))
    shoot(page, "live-history")
