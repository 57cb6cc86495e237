"""Attribute conditions the user types, in real headless Chromium against a real stack (NATS, chDB): the
search box's grammar (`duration_ms>500`, `request_id=abc`, `user=*`), chips for every operator of the API
from a URL and back, and a filter the server refuses (400) shown next to the search box with its field and
reason.

Uses the stack, browser and page fixtures of test_dashboard_browser (one stack and browser per module).
Screenshots go to test-artifacts/ for a human to look at."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from . import test_dashboard_browser as dash
from .test_dashboard_browser import (
    DASH,
    WAIT_MS,
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

#: Every operator of the API (docs/api.md) as a URL spells it, and how its chip reads.
URL_CONDITIONS = [
    ("attr.route=%2Fa", "route = /a"),
    ("attr.route!=%2Fb", "route != /b"),
    ("attr.duration_ms%3E=100", "duration_ms >= 100"),
    ("attr.duration_ms%3E200", "duration_ms > 200"),
    ("attr.duration_ms%3C=900", "duration_ms <= 900"),
    ("attr.duration_ms%3C800", "duration_ms < 800"),
    ("attr.request_id=*", "request_id exists"),
    ("attr.user!=*", "user missing"),
]


def ship_requests(ship: Shipper) -> None:
    """10 entries "request 0i done": duration_ms 100*i (a number), request_id "req-i", route /a (even) or /b
    (odd); entry 9 also has a user."""
    for i in range(10):
        route = "/a" if i % 2 == 0 else "/b"
        extra: dict[str, Any] = {"duration_ms": 100 * i, "request_id": f"req-{i}", "route": route}
        if i == 9:
            extra["user"] = "ann"
        ship.logger.info("request %02d done", i, extra=extra)
    ship.deliver()


def chips(tab: Any) -> list[str]:
    return tab.eval_on_selector_all(
        "#f-attrs .attr-chip .chip-text", "spans => spans.map(s => s.textContent)"
    )


def attr_params(tab: Any) -> list[tuple[str, str]]:
    """The attr.* parameters of the page's URL as a query-string splitter (and the server) reads them."""
    query = urllib.parse.urlsplit(tab.url).query
    return [(k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k.startswith("attr.")]


def test_search_box_grammar_splits_conditions_from_words(page: Any, stack: StackThread) -> None:
    """Words shaped key<op>value (the API's operators) are conditions; every other shape stays text."""
    open_view(page, stack, view="search")
    cases = {
        "duration_ms>500": ("", [["duration_ms", ">", "500"]]),
        "timeout request_id=abc": ("timeout", [["request_id", "=", "abc"]]),
        "user=* bot!=* x>=1 y<=2 z<3 w!=v": (
            "",
            [
                ["user", "=", "*"],
                ["bot", "!=", "*"],
                ["x", ">=", "1"],
                ["y", "<=", "2"],
                ["z", "<", "3"],
                ["w", "!=", "v"],
            ],
        ),
        'route="/a b" card declined': ("card declined", [["route", "=", "/a b"]]),
        "http.route=/x": ("", [["http.route", "=", "/x"]]),
        # not conditions: no value, no key, a key that is not a name, a lone operator
        "key= =value 9lives=1 a>": ("key= =value 9lives=1 a>", []),
    }
    for text, (words, conditions) in cases.items():
        got = page.evaluate(
            """async (text) => {
                const { parseSearchText } = await import('/assets/state.js');
                const { text: words, attrs } = parseSearchText(text);
                return [words, attrs.map((a) => [a.key, a.op, a.value])];
            }""",
            text,
        )
        assert got == [words, conditions], text


def test_typing_a_number_comparison_filters_the_search(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """`duration_ms>500` typed in the search box and Enter: a chip, the URL condition, and only the entries
    whose number is above 500; words beside it stay text; `request_id=req-7` adds an equality."""
    from playwright.sync_api import expect

    service = new_service("typed")
    ship_requests(shipper(service))
    stored(stack, service, 10)
    open_view(page, stack, view="search", service=service)
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}10")

    page.fill("#f-q", "duration_ms>500")
    expect(page.locator("#f-hint")).to_have_text("Enter adds: duration_ms > 500")
    shoot(page, "search-typing-condition")
    page.press("#f-q", "Enter")
    expect(page.locator("#f-attrs .attr-chip")).to_have_text(re.compile(r"duration_ms > 500"))
    expect(page.locator("#f-q")).to_have_value("")
    expect(page.locator("#f-hint")).to_have_text("")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}4 (oldest match)")
    assert sorted(messages(page, "#search-rows")) == [f"request {i:02d} done" for i in (6, 7, 8, 9)]
    assert attr_params(page) == [("attr.duration_ms>500", "")]
    shoot(page, "search-typed-condition")

    page.fill("#f-q", "done request_id=req-7")
    page.press("#f-q", "Enter")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}1 (oldest match)")
    assert messages(page, "#search-rows") == ["request 07 done"]
    assert chips(page) == ["duration_ms > 500", "request_id = req-7"]
    expect(page.locator("#f-q")).to_have_value("done")  # the word stays text search
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["q"] == ["done"]

    # Presence and absence: `user=*` keeps only entry 9; its chip reads "user exists".
    page.locator("#f-attrs .attr-chip", has_text="request_id").locator("button.chip-remove").click()
    page.fill("#f-q", "user=*")
    page.press("#f-q", "Enter")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}1 (oldest match)")
    assert messages(page, "#search-rows") == ["request 09 done"]
    assert chips(page) == ["duration_ms > 500", "user exists"]


def test_add_filter_control_adds_a_condition_by_key_operator_and_value(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """The "+ filter" control: its labelled attribute, operator and value fields add a condition (mouse or
    keyboard); the attribute field suggests the keys of the current search."""
    from playwright.sync_api import expect

    service = new_service("addfilter")
    ship_requests(shipper(service))
    stored(stack, service, 10)
    open_view(page, stack, view="search", service=service)
    page.locator("#f-add summary").click()
    form = page.get_by_role("group", name="Add an attribute filter")
    expect(form).to_be_visible()
    expect(page.get_by_label("attribute", exact=True)).to_be_focused()
    options = page.eval_on_selector_all("#f-attr-keys option", "os => os.map(o => o.value)")
    assert sorted(options) == ["duration_ms", "request_id", "route", "user"]
    page.get_by_label("attribute", exact=True).fill("duration_ms")
    page.get_by_label("operator", exact=True).select_option(">=")
    page.get_by_label("value", exact=True).fill("700")
    shoot(page, "search-add-filter")
    form.get_by_role("button", name="Add filter").click()
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}3 (oldest match)")
    assert chips(page) == ["duration_ms >= 700"]
    expect(form).to_be_hidden()

    # From the keyboard: "user missing" (the value field is not needed, so it is disabled), Enter adds it.
    page.locator("#f-add summary").focus()
    page.keyboard.press("Enter")
    page.get_by_label("attribute", exact=True).fill("user")
    page.get_by_label("operator", exact=True).select_option("missing")
    expect(page.get_by_label("value", exact=True)).to_be_disabled()
    page.get_by_label("attribute", exact=True).press("Enter")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}2 (oldest match)")
    assert chips(page) == ["duration_ms >= 700", "user missing"]
    assert attr_params(page) == [("attr.duration_ms>", "700"), ("attr.user!", "*")]

    # What the query string cannot carry is refused beside the filters (`attr.ok!=x` would mean "not x").
    page.locator("#f-add summary").click()
    for key, op, value, reason in (
        ("ok!", "=", "x", "attr.ok!: this key cannot be filtered on"),
        ("duration_ms", ">", "", "attr.duration_ms: > needs a number"),
    ):
        page.get_by_label("attribute", exact=True).fill(key)
        page.get_by_label("operator", exact=True).select_option(op)
        page.get_by_label("value", exact=True).fill(value)
        page.get_by_label("value", exact=True).press("Enter")
        expect(page.locator("#f-error")).to_contain_text(reason)
        expect(form.get_by_role("alert")).to_contain_text(reason)  # visible where the user is typing
        assert chips(page) == ["duration_ms >= 700", "user missing"]
        expect(form).to_be_visible()  # left open to correct
    shoot(page, "search-add-filter-refused")


def test_live_tail_applies_a_typed_comparison(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """A comparison typed in the Live view reaches the live tail's socket: only matching entries show."""
    from playwright.sync_api import expect

    service = new_service("livecmp")
    ship = shipper(service)
    open_view(page, stack, view="live", service=service)
    page.fill("#f-q", "duration_ms>=500")
    page.press("#f-q", "Enter")
    expect(page.locator("#f-attrs .attr-chip")).to_have_text(re.compile("duration_ms >= 500"))
    page.locator("#live-status[data-state=live]").wait_for()
    for ms in (100, 500, 499.5, 900):
        ship.logger.info("took %s", ms, extra={"duration_ms": ms})
    ship.logger.info("took text", extra={"duration_ms": "900"})  # a string is never compared
    ship.deliver()
    expect(page.locator("#live-rows tr.entry")).to_have_count(2, timeout=WAIT_MS)
    assert messages(page, "#live-rows") == ["took 500", "took 900"]


def test_every_operator_in_the_url_shows_a_readable_chip_and_round_trips(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """A shared URL with each operator of the API shows chips that read as the condition; the URL the page
    writes back carries the same conditions (the server reads them as the original) and reopens the same."""
    from playwright.sync_api import expect

    service = new_service("ops")
    ship_requests(shipper(service))
    stored(stack, service, 10)
    query = "&".join(param for param, _ in URL_CONDITIONS)
    page.goto(f"{stack.base}/?view=search&service={service}&{query}")
    # route=/a, not /b, 100 <= ms <= 900, 200 < ms < 800, request_id present, no user: entries 4 and 6.
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}2 (oldest match)")
    assert sorted(messages(page, "#search-rows")) == ["request 04 done", "request 06 done"]
    assert chips(page) == [label for _, label in URL_CONDITIONS]
    # As the server splits them: the operator's first character stays on the name, `>`/`<` have no value.
    written = attr_params(page)
    assert written == [
        ("attr.route", "/a"),
        ("attr.route!", "/b"),
        ("attr.duration_ms>", "100"),
        ("attr.duration_ms>200", ""),
        ("attr.duration_ms<", "900"),
        ("attr.duration_ms<800", ""),
        ("attr.request_id", "*"),
        ("attr.user!", "*"),
    ]
    assert written == urllib.parse.parse_qsl(query, keep_blank_values=True)
    shoot(page, "search-operator-chips")

    page.reload()
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}2 (oldest match)")
    assert chips(page) == [label for _, label in URL_CONDITIONS]
    assert attr_params(page) == written

    # The two hand-edited links.
    for param, label in (
        ("attr.duration_ms%3E=500", "duration_ms >= 500"),
        ("attr.duration_ms%3E500", "duration_ms > 500"),
    ):
        page.goto(f"{stack.base}/?view=search&service={service}&{param}")
        expect(page.locator("#f-attrs .attr-chip")).to_have_text(re.compile(re.escape(label)))

    # A condition written into `q` by hand means what typing it does: a chip, and the word stays text.
    page.goto(f"{stack.base}/?view=search&service={service}&q=done+request_id%3Dreq-4")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}1 (oldest match)")
    assert chips(page) == ["request_id = req-4"]
    expect(page.locator("#f-q")).to_have_value("done")
    assert attr_params(page) == [("attr.request_id", "req-4")]


def test_a_refused_condition_is_shown_next_to_the_search_box(
    page: Any, stack: StackThread, shipper: Callable[[str], Shipper]
) -> None:
    """`duration_ms>abc`: the server's 400 (field and reason) is shown beside the search box and its chip is
    marked, in every view, without a page error; removing the chip clears it and the search runs again."""
    from playwright.sync_api import expect

    service = new_service("refused")
    ship_requests(shipper(service))
    stored(stack, service, 10)
    open_view(page, stack, view="search", service=service)
    page.fill("#f-q", "duration_ms>abc")
    page.press("#f-q", "Enter")
    error = page.locator("#f-error")
    expect(error).to_have_text("attr.duration_ms: expected a number, got 'abc'")
    chip = page.locator("#f-attrs .attr-chip")
    expect(chip).to_have_class(re.compile(r"\binvalid\b"))
    expect(chip).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#search-empty")).to_contain_text("the server refused a filter")
    expect(page.locator("#search-rows tr.entry")).to_have_count(0)
    assert page.locator("#search-histogram .error").count() == 0  # said once, beside the box
    assert page.locator("#attr-list .error").count() == 0
    shoot(page, "search-refused-condition")
    page.emulate_media(color_scheme="dark")
    page.locator("#f-add summary").click()
    shoot(page, "search-refused-condition-dark")
    page.locator("#f-add summary").click()
    page.emulate_media(color_scheme="light")

    # The same in the other views (the live tail asks the API why its socket was refused).
    page.click("#tab-live")
    expect(page.locator("#live-status")).to_contain_text("rejected")
    expect(error).to_have_text("attr.duration_ms: expected a number, got 'abc'")
    page.click("#tab-search")
    expect(error).to_have_text("attr.duration_ms: expected a number, got 'abc'")

    chip.locator("button.chip-remove").click()
    expect(error).to_have_text("")
    expect(page.locator("#search-info")).to_contain_text(f"entries 1{DASH}10")


def test_a_condition_past_the_limit_is_refused_aloud(page: Any, stack: StackThread) -> None:
    """With the API's 20 conditions in place, a 21st typed one is refused beside the box and stays typed."""
    from playwright.sync_api import expect

    conditions = "&".join(f"attr.k{i}=*" for i in range(20))
    page.goto(f"{stack.base}/?view=search&service={new_service('limit')}&{conditions}")
    expect(page.locator("#f-attrs .attr-chip")).to_have_count(20)
    page.fill("#f-q", "extra=1")
    page.press("#f-q", "Enter")
    expect(page.locator("#f-error")).to_have_text(
        "attr: at most 20 attribute conditions (remove one to add extra = 1)"
    )
    expect(page.locator("#f-q")).to_have_value("extra=1")
    expect(page.locator("#f-attrs .attr-chip")).to_have_count(20)
