"""The web dashboard in real headless Chromium against a real stack (NATS, chDB): live tail, search with
cursor paging, entry detail, overview, shareable URLs, and log data that tries to be markup staying text.

Chromium is Debian's `/usr/bin/chromium` driven by Playwright (never `playwright install`). One stack and one
browser serve the whole module; each test ships its own service's logs through the SDK so tests do not see
each other's entries. Screenshots of each main view go to `test-artifacts/` for a human to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from oglogstream.stack.config import StackConfig

from ..conftest import IN_CI, require
from .query_helpers import get_json, post_json, running

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: An entry accepted by ingestion must be in the live tail within this (the feature's promise).
LIVE_DEADLINE_MS = 1000
#: Bound on waits for things that involve storage (processor flush) or page loads.
WAIT_MS = 10_000
DASH = "\N{EN DASH}"  # the search info line says "entries 1\N{EN DASH}50"
PROBES = ("<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=1">')


class StackThread:
    """The stack (ingest+process+query on real NATS and chDB) on its own event loop in a thread, so the tests
    can drive the browser with Playwright's synchronous API from the main thread."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.base = ""
        self.app: Any = None
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-stack", daemon=True)

    def __enter__(self) -> StackThread:
        self._thread.start()
        if not self.ready.wait(60):
            raise AssertionError("stack did not start within 60 s")
        if self.error is not None:
            raise AssertionError(f"stack failed to start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "stack did not shut down within 60 s"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with running(self.config) as (base, app):
                self.base, self.app = base, app
                self.ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run coroutine function `fn` on the stack's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)


@contextlib.contextmanager
def stack_thread(root: Path, **settings: Any) -> Iterator[StackThread]:
    """All three roles in one app on a free port, on a fresh nats-server (`root`/nats) and chDB
    (`root`/clickhouse), running in a StackThread; `settings` are StackConfig options set away from their
    defaults. The test fails (CI) or skips when nats or chdb is missing."""
    require("nats")
    require("chdb")
    from oglogstream.stack.broker.natsd import NatsServer

    nats = NatsServer(root / "nats").start()
    try:
        config = StackConfig(nats_url=nats.url, clickhouse_dsn=f"chdb://{root / 'clickhouse'}", **settings)
        with StackThread(config) as running_stack:
            yield running_stack
    finally:
        nats.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackThread]:
    """All three roles in one app on a free port, with a short processor flush so search sees logs quickly."""
    with stack_thread(tmp_path_factory.mktemp("dashboard-stack"), flush_timeout=0.1) as running_stack:
        yield running_stack


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium with a fresh profile (skipped locally without it; a failure in CI)."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"CI=true and {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    require("playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 820},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new tab; the test fails if the page threw, opened a dialog, or the CSP blocked something."""
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    tab.set_default_timeout(WAIT_MS)
    try:
        yield tab
        assert problems == []
    finally:
        tab.close()


def new_service(label: str) -> str:
    return f"dash-{label}-{uuid.uuid4().hex[:8]}"


class Shipper:
    """Logs through the SDK (`OgLogHandler`) as one service; `deliver()` waits until all were accepted."""

    def __init__(self, base: str, service: str) -> None:
        import oglogstream

        self.handler = oglogstream.OgLogHandler(base, service, flush_interval=0.05)
        self.logger = logging.getLogger(f"dashboard-test.{service}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    def deliver(self) -> None:
        assert self.handler.flush(timeout=10), self.handler.stats()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close(timeout=10)


@pytest.fixture
def shipper(stack: StackThread) -> Iterator[Callable[[str], Shipper]]:
    made: list[Shipper] = []

    def make(service: str) -> Shipper:
        made.append(Shipper(stack.base, service))
        return made[-1]

    yield make
    for item in made:
        item.close()


def stored(stack: StackThread, service: str, n: int, **params: str) -> list[dict[str, Any]]:
    """Wait until GET /api/logs has `n` entries of `service` (matching params); return them, newest first."""
    query = urllib.parse.urlencode({"service": service, "limit": 1000, **params})
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        status, body, _ = get_json(f"{stack.base}/api/logs?{query}")
        assert status == 200, body
        if len(body) >= n or time.monotonic() > deadline:
            assert len(body) == n, f"expected {n} stored entries of {service}, got {len(body)}"
            return list(body)
        time.sleep(0.05)


def open_view(page: Any, stack: StackThread, **params: str) -> None:
    page.goto(f"{stack.base}/?{urllib.parse.urlencode(params)}")
    view = params.get("view", "live")
    if view == "live":
        page.locator("#live-status[data-state=live]").wait_for()
    elif view == "search":  # results are in once the info line names the page
        page.wait_for_function("() => document.querySelector('#search-info').textContent.startsWith('page')")
    else:
        page.wait_for_function(
            "() => document.querySelector('#overview-info').textContent.startsWith('updated')"
        )


def messages(page: Any, tbody: str) -> list[str]:
    """The message column of a table (without the badge texts)."""
    return page.eval_on_selector_all(
        f"{tbody} tr.entry td.msg", "cells => cells.map(c => c.firstChild ? c.firstChild.textContent : '')"
    )


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"))


def test_live_tail_shows_accepted_entries_within_a_second(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Entries shipped with the SDK appear in the live tail within a second of being accepted, coloured by
    level; pausing holds new entries back (counted) and resuming shows them."""
    from playwright.sync_api import expect

    service = new_service("live")
    ship = shipper(service)
    open_view(page, stack, view="live", service=service)
    for level, text in (
        (logging.DEBUG, "cache warmed in 12ms"),
        (logging.INFO, "GET /api/orders 200 in 31ms"),
        (logging.WARNING, "slow query took 1.2s"),
        (logging.ERROR, "payment gateway timeout"),
        (logging.CRITICAL, "database unreachable"),
    ):
        ship.logger.log(level, text, extra={"request_id": "r-1"})
    ship.deliver()
    accepted = time.monotonic()
    expect(page.locator("#live-rows tr.entry", has_text="database unreachable")).to_be_visible(
        timeout=LIVE_DEADLINE_MS
    )
    assert time.monotonic() - accepted < LIVE_DEADLINE_MS / 1000 + 0.2
    assert messages(page, "#live-rows")[-5:] == [
        "cache warmed in 12ms",
        "GET /api/orders 200 in 31ms",
        "slow query took 1.2s",
        "payment gateway timeout",
        "database unreachable",
    ]
    colours = page.eval_on_selector_all(
        "#live-rows tr.entry .lvl", "spans => spans.map(s => getComputedStyle(s).color)"
    )[-5:]
    assert len(set(colours)) == 5, colours  # every level has its own colour
    levels = page.eval_on_selector_all("#live-rows tr.entry", "rows => rows.map(r => r.className)")[-5:]
    assert [re.search(r"level-(\w+)", c).group(1) for c in levels] == [
        "debug",
        "info",
        "warn",
        "error",
        "fatal",
    ]

    page.click("#live-pause")
    ship.logger.info("logged while paused")
    ship.deliver()
    expect(page.locator("#live-pending")).to_have_text("1 new while paused", timeout=LIVE_DEADLINE_MS)
    assert "logged while paused" not in messages(page, "#live-rows")
    shoot(page, "live")
    page.click("#live-pause")
    expect(page.locator("#live-rows tr.entry", has_text="logged while paused")).to_be_visible()
    expect(page.locator("#live-pending")).to_have_text("")


def test_live_filters_are_applied_by_the_server(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Changing level, text or service filters reconnects the WebSocket with them in its query string, and
    only matching entries arrive."""
    from playwright.sync_api import expect

    service = new_service("filters")
    ship = shipper(service)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_view(page, stack, view="live", service=service)

    page.click("#f-levels label.level-error")
    expect(page.locator("#live-status[data-state=live]")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#live-status').dataset.state === 'live'")
    assert "level=error" in sockets[-1] and f"service={service}" in sockets[-1]
    time.sleep(0.2)  # the new socket's subscription is registered on open
    ship.logger.info("info line filtered out")
    ship.logger.error("error line kept")
    ship.deliver()
    expect(page.locator("#live-rows tr.entry", has_text="error line kept")).to_be_visible(
        timeout=LIVE_DEADLINE_MS
    )
    # Same stream, same order: had the info line been sent, it would be in the table already.
    assert "info line filtered out" not in messages(page, "#live-rows")

    page.fill("#f-q", "needle")
    page.press("#f-q", "Enter")
    page.wait_for_function("() => document.querySelector('#live-status').dataset.state === 'live'")
    assert "q=needle" in sockets[-1]
    time.sleep(0.2)
    ship.logger.error("haystack only")
    ship.logger.error("found the NEEDLE here")
    ship.deliver()
    expect(page.locator("#live-rows tr.entry", has_text="found the NEEDLE here")).to_be_visible(
        timeout=LIVE_DEADLINE_MS
    )
    assert "haystack only" not in messages(page, "#live-rows")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query) == {
        "view": ["live"],
        "level": ["error"],
        "service": [service],
        "q": ["needle"],
    }

    other = new_service("other")
    page.fill("#f-service", other)
    page.press("#f-service", "Enter")
    page.wait_for_function(
        "s => document.querySelector('#live-status').dataset.state === 'live' && s", arg=other
    )
    assert f"service={other}" in sockets[-1]

    # A filter only the server can judge: the refused upgrade is explained, and not retried in a loop.
    page.fill("#f-q", " ".join(f"w{i}" for i in range(40)))
    page.press("#f-q", "Enter")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "error")
    expect(page.locator("#live-status")).to_have_text("rejected: q: at most 32 distinct words")
    attempts = len(sockets)
    time.sleep(1.0)
    assert len(sockets) == attempts


def test_live_tail_shows_server_drops_and_reconnects(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """A `dropped` notice from the server (this tab fell behind) is shown with its count; when the server
    closes the socket the page reconnects by itself and keeps tailing."""
    from oglogstream.stack.query.live import LIVE, QUEUE_SIZE
    from playwright.sync_api import expect

    service = new_service("drops")
    open_view(page, stack, view="live", service=service)
    hub = stack.app[LIVE]
    hub.queue_size = 3  # a burst larger than the client's queue: the server drops the rest for this client
    try:
        burst = "\n".join(
            json.dumps({"level": "info", "message": f"burst {i}", "service": service}) for i in range(50)
        )
        assert post_json(f"{stack.base}/logs", burst.encode()) == 202
        expect(page.locator("#live-dropped")).to_be_visible()
    finally:
        hub.queue_size = QUEUE_SIZE
    expect(page.locator("#live-dropped")).to_contain_text("47 entries dropped by the server")
    expect(page.locator("#live-rows tr.notice-row", has_text="47 entries dropped")).to_be_visible()
    # Entries are appended once per animation frame, the notice at once: wait for the frame.
    expect(page.locator("#live-rows tr.entry")).to_have_count(3)
    assert messages(page, "#live-rows") == ["burst 0", "burst 1", "burst 2"]

    async def close_all() -> None:
        for client in list(hub.clients):
            await client.ws.close(code=1011, message=b"test restart")

    stack.call(close_all)
    expect(page.locator("#live-rows tr.notice-row", has_text="disconnected (code 1011")).to_be_visible()
    expect(page.locator("#live-rows tr.notice-row", has_text="reconnected")).to_be_visible(timeout=5000)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    ship = shipper(service)
    ship.logger.warning("after the reconnect")
    ship.deliver()
    expect(page.locator("#live-rows tr.entry", has_text="after the reconnect")).to_be_visible(
        timeout=LIVE_DEADLINE_MS
    )
    shoot(page, "live-notices")


def test_live_tail_keeps_a_bounded_number_of_rows_and_follows(page: Any, stack: StackThread) -> None:
    """The table keeps only the newest MAX_ROWS (2000) rows while following the bottom; scrolling up stops
    following so the reader's place is kept."""
    from playwright.sync_api import expect

    service = new_service("bounded")
    open_view(page, stack, view="live", service=service)
    total = 2300
    for start in range(0, total, 500):  # batches well inside the server's per-client queue (1000)
        burst = "\n".join(
            json.dumps({"level": "info", "message": f"line {i:04d}", "service": service})
            for i in range(start, min(total, start + 500))
        )
        assert post_json(f"{stack.base}/logs", burst.encode()) == 202
        expect(page.locator("#live-count")).to_contain_text(f"{min(total, start + 500)} received")
    expect(page.locator("#live-rows tr.entry").last).to_have_text(re.compile("line 2299"))
    shown = messages(page, "#live-rows")
    assert len(shown) == 2000
    assert shown[0] == "line 0300" and shown[-1] == "line 2299"
    at_bottom = "s => Math.abs(s.scrollHeight - s.scrollTop - s.clientHeight) < 2"
    assert page.eval_on_selector("#live-scroller", at_bottom)
    expect(page.locator("#live-follow")).to_be_checked()

    page.mouse.move(600, 400)
    page.mouse.wheel(0, -600)
    expect(page.locator("#live-follow")).not_to_be_checked()
    assert not page.eval_on_selector("#live-scroller", at_bottom)
    page.check("#live-follow")
    assert page.eval_on_selector("#live-scroller", at_bottom)


def ship_pages(ship: Shipper, n: int) -> None:
    for i in range(n):
        if i % 25 == 24:
            ship.logger.error("payment failure code %d bravo", i)
        else:
            ship.logger.info("page entry %03d alpha", i)
    ship.deliver()


def test_search_filters_and_pages_stably_with_the_cursor(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Search pages newest first through the API cursor; entries arriving meanwhile do not shift older pages;
    level and text filters narrow the results."""
    from playwright.sync_api import expect

    service = new_service("search")
    ship = shipper(service)
    ship_pages(ship, 125)
    expected = [entry["message"] for entry in stored(stack, service, 125)]
    open_view(page, stack, view="search", service=service, limit="50")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}50")
    assert messages(page, "#search-rows") == expected[:50]
    expect(page.locator("#search-newer")).to_be_disabled()

    for i in range(10):
        ship.logger.info("arrived while paging %d", i)
    ship.deliver()
    stored(stack, service, 135)

    page.click("#search-older")
    expect(page.locator("#search-info")).to_contain_text(f"page 2 · entries 51{DASH}100")
    assert messages(page, "#search-rows") == expected[50:100]
    page.click("#search-older")
    expect(page.locator("#search-info")).to_contain_text(f"page 3 · entries 101{DASH}125 (oldest match)")
    assert messages(page, "#search-rows") == expected[100:125]
    expect(page.locator("#search-older")).to_be_disabled()
    page.click("#search-newer")
    expect(page.locator("#search-info")).to_contain_text(f"page 2 · entries 51{DASH}100")
    assert messages(page, "#search-rows") == expected[50:100]
    page.click("#search-newest")
    expect(page.locator("#search-info")).to_contain_text(f"page 1 · entries 1{DASH}50")
    assert messages(page, "#search-rows")[:10] == [f"arrived while paging {i}" for i in range(9, -1, -1)]

    page.click("#f-levels label.level-error")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}5 (oldest match)")
    assert messages(page, "#search-rows") == [
        f"payment failure code {i} bravo" for i in (124, 99, 74, 49, 24)
    ]
    page.click("#f-levels label.level-error")
    page.fill("#f-q", "ALPHA 007")
    page.press("#f-q", "Enter")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}1 (oldest match)")
    assert messages(page, "#search-rows") == ["page entry 007 alpha"]
    page.fill("#f-q", "--")
    page.press("#f-q", "Enter")
    expect(page.locator("#f-error")).to_have_text("q: must contain at least one word (letters or digits)")


def test_entry_detail_shows_attributes_and_traceback(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Opening an entry shows every field, its attributes and the exception traceback."""
    from playwright.sync_api import expect

    service = new_service("detail")
    ship = shipper(service)
    ship_pages(ship, 30)
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        ship.logger.exception("order total failed", extra={"order_id": 42, "customer": "acme", "retry": True})
    ship.deliver()
    stored(stack, service, 31)
    open_view(page, stack, view="search", service=service)
    row = page.locator("#search-rows tr.entry", has_text="order total failed")
    expect(row.locator(".badge.exc")).to_have_text("traceback")
    row.click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    attributes = page.eval_on_selector_all(
        "#detail table.attributes tr",
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])",
    )
    assert ["order_id", "42"] in attributes and ["customer", "acme"] in attributes
    assert ["retry", "true"] in attributes
    exception = detail.locator("pre.exception")
    expect(exception).to_contain_text("Traceback (most recent call last)")
    expect(exception).to_contain_text("ZeroDivisionError: division by zero")
    expect(detail.locator("pre.message")).to_have_text("order total failed")
    expect(detail.locator("dl.fields")).to_contain_text(service)
    shoot(page, "search-detail")
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def test_markup_in_log_data_is_shown_as_text_and_never_runs(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """`<script>` and `<img onerror>` in messages, attributes, exceptions and service names render literally
    in the live tail, search, detail and overview, and no script runs."""
    from playwright.sync_api import expect

    service = new_service("xss")
    evil_service = f'<img src=x onerror="window.__xss=1">{uuid.uuid4().hex[:6]}'
    ship = shipper(service)
    evil = shipper(evil_service)
    open_view(page, stack, view="live", service=service)
    for probe in PROBES:
        ship.logger.error(probe, extra={"probe": probe, probe: "as a key"})
    try:
        raise ValueError(PROBES[1])
    except ValueError:
        ship.logger.exception("exception %s", PROBES[0])
    ship.deliver()
    evil.logger.warning("from a service named like markup")
    evil.deliver()

    expect(page.locator("#live-rows td.msg", has_text="exception")).to_be_visible(timeout=LIVE_DEADLINE_MS)
    assert messages(page, "#live-rows") == [*PROBES, f"exception {PROBES[0]}"]
    page.locator("#live-rows tr.entry", has_text=PROBES[1]).first.click()
    assert [PROBES[1], "as a key"] in page.eval_on_selector_all(
        "#detail table.attributes tr",
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])",
    )

    stored(stack, service, 3)
    open_view(page, stack, view="search", service=service)
    assert set(messages(page, "#search-rows")) == {*PROBES, f"exception {PROBES[0]}"}
    page.locator("#search-rows tr.entry", has_text="exception").click()
    expect(page.locator("#detail pre.exception")).to_contain_text(f"ValueError: {PROBES[1]}")

    stored(stack, evil_service, 1)
    open_view(page, stack, view="overview", range="15m")
    expect(page.locator(".service-row .name", has_text=evil_service)).to_be_visible()
    page.locator(".service-row .name", has_text=evil_service).click()
    expect(page.locator("#f-service")).to_have_value(evil_service)

    assert page.evaluate("() => window.__xss") is None
    # Nothing but the page's own elements: no <img> or extra <script> was created from data.
    assert page.eval_on_selector_all("body img, body script", "nodes => nodes.length") == 0
    assert page.eval_on_selector_all("head script", "nodes => nodes.map(n => n.src)") == [
        f"{stack.base}/assets/app.js"
    ]


def ship_levels(ship: Shipper, counts: Sequence[tuple[int, int]]) -> None:
    for level, n in counts:
        for i in range(n):
            ship.logger.log(level, "overview line %d", i)
    ship.deliver()


def test_overview_shows_totals_and_a_stacked_histogram(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """The overview shows totals by level and by service and draws the histogram as stacked SVG bars."""
    from playwright.sync_api import expect

    service = new_service("overview")
    ship = shipper(service)
    ship_levels(ship, [(logging.INFO, 6), (logging.WARNING, 3), (logging.ERROR, 2)])
    stored(stack, service, 11)
    open_view(page, stack, view="overview", service=service, range="15m")
    expect(page.locator(".card.total .value")).to_have_text("11")
    cards = page.eval_on_selector_all(
        ".card[data-level]", "cards => Object.fromEntries(cards.map(c => [c.dataset.level, c.dataset.count]))"
    )
    assert cards == {"debug": "0", "info": "6", "warn": "3", "error": "2", "fatal": "0"}
    expect(page.locator(f'.service-row[data-service="{service}"] .count')).to_have_text("11")
    expect(page.locator("#chart svg.histogram")).to_be_visible()
    segments = page.eval_on_selector_all(
        "#chart g.bucket rect.seg", "rects => rects.map(r => [r.dataset.level, Number(r.dataset.count)])"
    )
    totals: dict[str, int] = {}
    for level, count in segments:
        totals[level] = totals.get(level, 0) + count
    assert totals == {"info": 6, "warn": 3, "error": 2}
    assert page.locator("#chart g.bucket").count() >= 15  # 15 min at the automatic 15 s interval: 60 buckets
    # Stacked: within a bucket, each level's segment sits on top of the previous one.
    stacks = page.eval_on_selector_all(
        "#chart g.bucket",
        """groups => groups.map(g => [...g.querySelectorAll('rect.seg')]
               .map(r => [Number(r.getAttribute('y')), Number(r.getAttribute('height'))]))
               .filter(s => s.length > 1)""",
    )
    for segments_of_bucket in stacks:
        for (y_upper, h_upper), (y_lower, _) in zip(segments_of_bucket[1:], segments_of_bucket, strict=False):
            assert abs(y_upper + h_upper - y_lower) < 0.6
    shoot(page, "overview")
    page.emulate_media(color_scheme="dark")
    shoot(page, "overview-dark")
    page.emulate_media(color_scheme="light")

    # Without the service filter, the service list includes this service among the others.
    page.fill("#f-service", "")
    page.press("#f-service", "Enter")
    expect(page).to_have_url(re.compile(r"view=overview&range=15m$"))
    expect(page.locator(f'.service-row[data-service="{service}"]')).to_be_visible()


def test_shareable_url_restores_the_view_and_filters(
    page: Any, browser: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """Filters set in the UI are written to the URL; opening that URL in another tab restores the view,
    the filter inputs and the results."""
    from playwright.sync_api import expect

    service = new_service("share")
    ship = shipper(service)
    ship_pages(ship, 50)
    stored(stack, service, 50)
    open_view(page, stack, view="search")
    page.click("#f-levels label.level-error")
    page.fill("#f-service", service)
    page.press("#f-service", "Enter")
    page.fill("#f-q", "bravo")
    page.press("#f-q", "Enter")
    page.select_option("#f-range", "6h")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}2 (oldest match)")
    shared = page.url
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(shared).query) == {
        "view": ["search"],
        "level": ["error"],
        "service": [service],
        "q": ["bravo"],
        "range": ["6h"],
    }

    other = browser.new_page()
    try:
        other.goto(shared)
        expect(other.locator("#tab-search")).to_have_class(re.compile("selected"))
        expect(other.locator("#search-info")).to_contain_text(f"entries 1{DASH}2 (oldest match)")
        assert messages(other, "#search-rows") == [f"payment failure code {i} bravo" for i in (49, 24)]
        expect(other.locator("#f-service")).to_have_value(service)
        expect(other.locator("#f-q")).to_have_value("bravo")
        expect(other.locator("#f-range")).to_have_value("6h")
        checked = other.eval_on_selector_all("#f-levels input:checked", "boxes => boxes.map(b => b.value)")
        assert checked == ["error"]
        # Switching views keeps the filters; Back returns to the shared view.
        other.click("#tab-overview")
        expect(other).to_have_url(re.compile(r"view=overview&level=error"))
        other.go_back()
        expect(other.locator("#tab-search")).to_have_class(re.compile("selected"))
    finally:
        other.close()


def test_dashboard_with_auth_asks_for_a_query_key_and_keeps_it_for_the_session(
    browser: Any, stack: StackThread, tmp_path: Path
) -> None:
    """With auth on, the page asks for a key (a refused key asks again), keeps it in sessionStorage only (not
    in the URL, a cookie or localStorage), and uses it for the API and the live tail (WebSocket subprotocol):
    an entry shipped with an ingest key appears live, and search finds it."""
    from oglogstream.stack.auth.keys import KeyFile, parse_scopes
    from playwright.sync_api import expect

    keys = KeyFile(tmp_path / "keys.json")
    query_key = keys.create(parse_scopes("query"), "dashboard")[1]
    ingest_key = keys.create(parse_scopes("ingest"), "app")[1]
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # A second app on the module's NATS and chDB store (chDB admits one data path per process).
        config = dataclasses.replace(stack.config, require_auth=True, keys_file=str(keys.path))
        with StackThread(config) as secured:
            service = new_service("auth")
            tab.goto(f"{secured.base}/?view=live&service={service}")
            expect(tab.locator("#auth-dialog")).to_be_visible()
            tab.fill("#auth-key", "ogl_00000000_" + "x" * 43)  # well-formed, unknown
            tab.click("#auth-save")
            expect(tab.locator("#auth-reason")).to_contain_text("The stored key was refused")
            tab.fill("#auth-key", query_key)
            tab.click("#auth-save")
            tab.locator("#live-status[data-state=live]").wait_for()
            expect(tab.locator("#auth-dialog")).to_be_hidden()
            expect(tab.locator("#auth-forget")).to_be_visible()

            import oglogstream

            handler = oglogstream.OgLogHandler(secured.base, service, api_key=ingest_key, flush_interval=0.05)
            logger = logging.getLogger(f"dashboard-test.{service}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            logger.addHandler(handler)
            try:
                logger.info("shipped with a key")
                assert handler.flush(timeout=10), handler.stats()
            finally:
                logger.removeHandler(handler)
                handler.close(timeout=10)
            expect(tab.locator("#live-rows")).to_contain_text("shipped with a key")
            wait_stored_with_key(secured.base, service, query_key)
            tab.click("#tab-search")
            expect(tab.locator("#search-rows")).to_contain_text("shipped with a key", timeout=WAIT_MS)
            shoot(tab, "auth-search")

            storage = tab.evaluate(
                "() => [sessionStorage.getItem('oglog.queryKey'), localStorage.length, document.cookie]"
            )
            assert storage == [query_key, 0, ""]
            assert query_key not in tab.url
            tab.click("#auth-forget")
            expect(tab.locator("#auth-dialog")).to_be_visible()
        assert errors == []
    finally:
        tab.close()


def wait_stored_with_key(base: str, service: str, key: str) -> None:
    """Until GET /api/logs (with the key) has an entry of `service`: search shows what is stored."""
    request = urllib.request.Request(
        f"{base}/api/logs?{urllib.parse.urlencode({'service': service})}",
        headers={"Authorization": f"Bearer {key}"},
    )
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=10) as response:
            if json.loads(response.read()):
                return
        time.sleep(0.05)
    raise AssertionError(f"no entry of {service} stored within {WAIT_MS} ms")
