"""Turning access control on for an app: `setup(app, config)` (called by `create_app`), the refusal to start
with auth on and no key (`require_keys`), and the startup banner's line (`describe`)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..config import StackConfig
from ..http.resources import METRICS
from . import redact
from .keys import KeyStore, parse_env_keys
from .middleware import ACCESS, KEY_RECORD, Access, access_middleware

__all__ = ["AuthConfigError", "describe", "require_keys", "setup"]


class AuthConfigError(ValueError):
    """Auth is on but no key exists: the server refuses to start (exit status 2, one line)."""


def _why_on(config: StackConfig) -> str:
    return "--require-auth / OGLOG_REQUIRE_AUTH" if config.require_auth else f"listening on {config.host}"


def require_keys(config: StackConfig) -> int:
    """The number of usable keys when auth is on (0 when off); AuthConfigError when it is on and there are
    none, ValueError for an unreadable keys file."""
    if not config.auth_enabled:
        return 0
    store = KeyStore(Path(config.keys_file) if config.keys_file else None, parse_env_keys(config.api_keys))
    count = len(store.active())
    if not count:
        where = f" in {config.keys_file}" if config.keys_file else ""
        raise AuthConfigError(
            f"authentication is on ({_why_on(config)}) but there is no API key{where}: create one with"
            " `oglog keys create --data-dir DIR --scope ingest` (or set OGLOG_API_KEYS / OGLOG_KEYS_FILE),"
            " or run without authentication with --insecure / OGLOG_INSECURE=true (docs/security.md)"
        )
    return count


def describe(config: StackConfig) -> str:
    """One line for the startup banner."""
    if config.auth_enabled:
        return f"on ({_why_on(config)}): send Authorization: Bearer KEY"
    if config.insecure:
        return (
            f"OFF (--insecure) while listening on {config.host}: anyone who can reach the port reads all logs"
        )
    return "off (loopback only; --require-auth to turn it on)"


async def list_keys(request: web.Request) -> web.Response:
    """GET /api/keys (admin): the active keys, without secrets or hashes."""
    store = request.app[ACCESS].store
    assert store is not None  # the route exists only with auth on
    keys = [
        {"id": r.id, "name": r.name, "scopes": sorted(r.scopes), "created": r.created or None}
        for r in store.active()
    ]
    return web.json_response({"keys": keys})


def setup(app: web.Application, config: StackConfig) -> None:
    """Install the access middleware (after the error middleware) and the log redaction; AuthConfigError when
    auth is on without any key."""
    redact.install()
    require_keys(config)
    app[ACCESS] = Access(config, app[METRICS].registry)
    app.middlewares.append(access_middleware)
    if config.auth_enabled:
        app.router.add_get("/api/keys", list_keys)


__all__ += ["ACCESS", "KEY_RECORD"]
