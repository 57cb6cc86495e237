"""Web dashboard: the static single-page app served by the query role at `/` (same origin as the API).

The assets in this folder are the source: plain ES modules and CSS, no build step, no Node.js. They are read
once at setup and served from memory. Their names are not fingerprinted, so every response is `no-cache` with
a strong ETag: browsers revalidate (a 304, no body) and never run a stale module after an upgrade.

Every dashboard response carries a strict Content-Security-Policy: scripts only from this origin (no inline
script, no eval), network only to this origin and its WebSocket, no frames. Log data is rendered with
textContent only; the policy is the second line of defence against a log line that tries to be markup.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from aiohttp import web

__all__ = ["ASSET_PREFIX", "CONTENT_TYPES", "content_security_policy", "setup"]

#: URL folder of the static assets (`/assets/app.js`, ...); `/` is index.html.
ASSET_PREFIX = "/assets/"
#: What is served, by file extension; other files in this package folder are not.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A Host header we are willing to echo into the CSP (host, IPv4, [IPv6], optional port).
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


class _Asset:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


DASHBOARD: web.AppKey[dict[str, _Asset]] = web.AppKey("oglog_dashboard", dict)


def _load() -> dict[str, _Asset]:
    assets = {}
    for item in resources.files(__name__).iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if item.is_file() and suffix in CONTENT_TYPES:
            assets[item.name] = _Asset(item.read_bytes(), CONTENT_TYPES[suffix])
    if "index.html" not in assets:
        raise RuntimeError("dashboard assets missing from the package (index.html not found)")
    return assets


def content_security_policy(host: str | None) -> str:
    """The page's policy. `connect-src 'self'` covers same-origin ws(s) in current browsers; the explicit
    ws:// and wss:// of the request's host cover older ones (only a well-formed Host is echoed)."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _respond(request: web.Request, asset: _Asset) -> web.Response:
    headers = {
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
        "Content-Security-Policy": content_security_policy(request.headers.get("Host")),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    if asset.etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def index(request: web.Request) -> web.Response:
    """GET / (any query string: the page keeps its view and filters there): the single-page app."""
    return _respond(request, request.app[DASHBOARD]["index.html"])


async def asset(request: web.Request) -> web.Response:
    """GET /assets/{name}: one of the shipped files, by exact name (no paths, nothing else on disk)."""
    found = request.app[DASHBOARD].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text="no such dashboard asset", content_type="text/plain")
    return _respond(request, found)


def setup(app: web.Application) -> None:
    """Serve the dashboard: `/` and `/assets/{name}` (GET and HEAD)."""
    app[DASHBOARD] = _load()
    app.router.add_get("/", index)
    app.router.add_get(ASSET_PREFIX + "{name}", asset)
