"""The Live view misses nothing accepted just before it opens (review r8 finding 4), in real headless Chromium
against a stack at its default settings (NATS, chDB, the default processor flush): an entry POSTed (202) and
then the view opened at once was stored but shown neither as history nor live (6 of 6 trials). The view's
history request now asks the query API to answer once everything acknowledged before it is stored
(`settle=true`, docs/dashboard.md "Opens with history"). Same on a filter change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from . import test_dashboard_browser as dash
from .query_helpers import post_json
from .test_dashboard_browser import StackThread, messages, new_service, open_view, stack_thread, stored

browser, page = dash.browser, dash.page

pytestmark = pytest.mark.timeout(120)
TRIALS = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackThread]:
    """All three roles in one app with every setting at its default (the processor's flush included)."""
    with stack_thread(tmp_path_factory.mktemp("live-gap-stack")) as running_stack:
        yield running_stack


def post_one(stack: StackThread, service: str, message: str) -> None:
    body = json.dumps({"level": "info", "message": message, "service": service}).encode()
    assert post_json(f"{stack.base}/logs", body) == 202


def test_an_entry_accepted_just_before_the_live_view_opens_is_shown(page: Any, stack: StackThread) -> None:
    """POST one entry, open /?view=live&service=S at once: the entry is in the table (from history), once."""
    from playwright.sync_api import expect

    open_view(page, stack, view="live", service=new_service("warmup"))
    for trial in range(TRIALS):
        service = new_service(f"gap{trial}")
        post_one(stack, service, f"just before open {trial}")
        open_view(page, stack, view="live", service=service)
        rows = page.locator("#live-rows tr.entry")
        expect(rows).to_have_count(1)
        assert messages(page, "#live-rows") == [f"just before open {trial}"]
        assert page.locator("#live-rows tr.notice").count() == 0  # settled: no "storage is behind" note
    stored(stack, service, 1)


def test_an_entry_accepted_just_before_a_filter_change_is_shown(page: Any, stack: StackThread) -> None:
    """In an open Live view, POST an entry of another service and switch the service filter to it at once:
    the new tail shows it (the reviewer's browserD case)."""
    from playwright.sync_api import expect

    open_view(page, stack, view="live", service=new_service("before"))
    for trial in range(TRIALS):
        service = new_service(f"switch{trial}")
        post_one(stack, service, f"just before the switch {trial}")
        page.locator("#f-service").fill(service)
        page.locator("#f-service").press("Enter")
        page.locator("#live-status[data-state=live]").wait_for()
        expect(page.locator("#live-rows tr.entry")).to_have_count(1)
        assert messages(page, "#live-rows") == [f"just before the switch {trial}"]
