"""The dashboard's HTTP side: `/` and `/assets/*` on the query role with the right types, caching and a
strict Content-Security-Policy; the shipped JavaScript never turns data into markup; the assets ship in
the package."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.dashboard import CONTENT_TYPES, content_security_policy

from .query_helpers import running

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
ASSETS = resources.files("oglogstream.stack.dashboard")
SHIPPED = sorted(item.name for item in ASSETS.iterdir() if Path(item.name).suffix in CONTENT_TYPES)


@pytest.fixture
async def query_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """The query role alone on real NATS and chDB, plus a client session."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, _app), aiohttp.ClientSession() as session:
        yield base, session


async def test_index_is_served_with_a_strict_policy(query_app: Any) -> None:
    """GET / (with or without view state in the query string) is the HTML page, no-cache, with a CSP that
    allows scripts and connections only to this origin and its WebSocket."""
    base, session = query_app
    for path in ("/", "/?view=search&level=error&q=timeout"):
        async with session.get(f"{base}{path}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            body = await response.text()
            assert '<script type="module" src="/assets/app.js"></script>' in body
            policy = dict(
                part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";")
            )
    host = base.removeprefix("http://")
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert policy["frame-ancestors"] == "'none'"
    # No inline script or style in the page itself: the policy would block it.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)
    assert " style=" not in body and "<style" not in body
    assert not re.search(r"\son[a-z]+\s*=", body)  # no inline event handlers


@pytest.mark.parametrize("name", SHIPPED)
async def test_every_asset_has_its_content_type_and_revalidates(query_app: Any, name: str) -> None:
    """Each shipped file is served under /assets/ with its content type, no-cache and an ETag that turns a
    revalidation into a bodiless 304."""
    base, session = query_app
    async with session.get(f"{base}/assets/{name}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPES[Path(name).suffix]
        assert response.headers["Cache-Control"] == "no-cache"
        etag = response.headers["ETag"]
        assert await response.read() == ASSETS.joinpath(name).read_bytes()
    async with session.get(f"{base}/assets/{name}", headers={"If-None-Match": etag}) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag
        assert await response.read() == b""
    async with session.head(f"{base}/assets/{name}") as response:
        assert response.status == 200


async def test_only_shipped_assets_are_served(query_app: Any) -> None:
    """Unknown names, Python sources and path tricks are 404s."""
    base, session = query_app
    for path in ("/assets/nope.js", "/assets/__init__.py", "/assets/..%2F__init__.py", "/assets/"):
        async with session.get(f"{base}{path}") as response:
            assert response.status == 404, path


async def test_ingest_only_role_has_no_dashboard(nats_server: Any) -> None:
    """The dashboard belongs to the query role: an ingest-only process does not serve it."""
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url)
    async with (
        running(config) as (base, _app),
        aiohttp.ClientSession() as session,
        session.get(f"{base}/") as response,
    ):
        assert response.status == 404


def test_policy_echoes_only_a_well_formed_host() -> None:
    """A Host header that could smuggle policy directives is not echoed into connect-src."""
    assert "ws://logs.example:8080 wss://logs.example:8080" in content_security_policy("logs.example:8080")
    assert "ws://[::1]:80" in content_security_policy("[::1]:80")
    for bad in ("evil; script-src *", "a b", "", None):
        assert "connect-src 'self';" in content_security_policy(bad)


@pytest.mark.parametrize("name", [name for name in SHIPPED if name.endswith(".js")])
def test_javascript_never_parses_data_as_markup(name: str) -> None:
    """The modules build the page with createElement/textContent only: no HTML parsing sinks, no eval."""
    source = ASSETS.joinpath(name).read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "srcdoc",
    ):
        assert sink not in source, f"{name} uses {sink}"


def test_package_data_lists_every_asset() -> None:
    """pyproject's package-data globs for the dashboard cover every shipped file (an editable install would
    hide a missing one; a wheel would not contain it)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["oglogstream.stack.dashboard"]
    assert "oglogstream.stack.dashboard" in config["tool"]["setuptools"]["packages"]
    missing = [name for name in SHIPPED if not any(fnmatch.fnmatch(name, glob) for glob in globs)]
    assert missing == []
    assert {"index.html", "app.js", "styles.css"} <= set(SHIPPED)
