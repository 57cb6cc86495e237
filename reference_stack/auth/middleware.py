"""The access middleware: Host and Origin checks, CORS, rate limits, API keys and scopes, per route.

Order for each request (after routing, inside `problem_middleware`, so every refusal is problem+json):

1. `/health` passes untouched (no data in it; load balancers and probes have no key).
2. Host: must be a configured name (`allowed_hosts`), a loopback name, the address listened on or (on a
   wildcard address) this machine's host name; only a wildcard listen address with auth on and no names
   configured accepts any Host (a rebinding page has no key). Else 403 (DNS rebinding).
3. Origin (when a browser sent one): same origin as the Host, or one of `allowed_origins`; else 403. This
   covers `/ws/live` (browsers do not apply CORS to WebSockets) and cross-site POSTs.
4. Auth on: a token from the client's address (429 + Retry-After when empty), then the key (`Authorization:
   Bearer KEY`, `X-API-Key: KEY`, or on /ws/live the subprotocol `oglog.key.KEY`): none or unknown/revoked
   -> 401 with WWW-Authenticate, without the route's scope -> 403; then a token from the key's bucket.
5. CORS headers only for `allowed_origins` (never `*`); preflights from them are answered here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from ..config import StackConfig
from ..http.boundary import Problem
from ..ingestion.otlp import receiver as otlp
from ..ingestion.otlp.receiver import OTLP_LOGS_PATH
from .keys import KeyRecord, KeyStore, parse_env_keys
from .ratelimit import BucketTable, retry_after_seconds
from .settings import normalize_origin

__all__ = [
    "ACCESS",
    "INGEST_ROUTES",
    "KEY_RECORD",
    "WS_KEY_PROTOCOL",
    "WS_PROTOCOL",
    "Access",
    "access_middleware",
    "required_scope",
]

#: Routes needing `ingest`; `/api/*`, `/ws/live` and `/metrics` need `query`; ADMIN_ROUTES need `admin`.
INGEST_ROUTES = frozenset({"/log", "/logs", OTLP_LOGS_PATH})
ADMIN_ROUTES = frozenset(
    {"/api/dead-letters/replay", "/api/dead-letters/discard", "/api/dead-letters/{seq}", "/api/keys"}
)
QUERY_ROUTES = frozenset({"/ws/live", "/metrics"})
#: Open routes: health, the API description and the dashboard's static files (no data; the page asks for one).
OPEN_ROUTES = frozenset({"/health", "/", "/openapi.json"})
OPEN_PREFIXES = ("/assets/",)
#: WebSocket subprotocols: a browser offers [WS_PROTOCOL, WS_KEY_PROTOCOL + key]; the server selects
#: WS_PROTOCOL (a browser cannot set Authorization on a WebSocket, and a key in the URL ends up in logs).
WS_PROTOCOL = "oglog.v1"
WS_KEY_PROTOCOL = "oglog.key."
#: Longest key looked at (longer ones are refused without hashing them).
MAX_KEY_LENGTH = 512
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_CORS_ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, Content-Encoding, X-Oglog-Batch-Id"
_CORS_EXPOSE_HEADERS = "X-Next-Cursor, Retry-After"
_CORS_MAX_AGE = "600"

#: request[KEY_RECORD]: the KeyRecord that authenticated the request (auth on only).
KEY_RECORD: web.RequestKey[KeyRecord] = web.RequestKey("oglog_key", KeyRecord)


def required_scope(route_path: str | None) -> str | None:
    """The scope a route (its canonical path, e.g. "/api/logs") needs; None for open or unmatched routes.
    A route this table does not know needs `admin`: new routes are closed until classified."""
    if route_path is None or route_path in OPEN_ROUTES or route_path.startswith(OPEN_PREFIXES):
        return None
    if route_path in INGEST_ROUTES:
        return "ingest"
    if route_path in ADMIN_ROUTES:
        return "admin"
    if route_path in QUERY_ROUTES or route_path.startswith("/api/"):
        return "query"
    return "admin"


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Access:
    """One app's access policy and state (key store, buckets, refusal counter), built from its StackConfig."""

    def __init__(self, config: StackConfig, registry: CollectorRegistry) -> None:
        self.enabled = config.auth_enabled
        keys_path = Path(config.keys_file) if config.keys_file else None
        self.store = KeyStore(keys_path, parse_env_keys(config.api_keys)) if self.enabled else None
        self.clients = BucketTable(config.rate_limit_client, config.rate_burst_client)
        self.keys = BucketTable(config.rate_limit_key, config.rate_burst_key)
        self.origins = frozenset(normalize_origin(o) for o in config.allowed_origins)
        self.proxies = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        bind = config.host.strip("[]").lower()
        wildcard = bind in ("", "0.0.0.0", "::")
        names = frozenset(h.lower() for h in config.allowed_hosts)
        # With auth off, the Host check is the only thing between a rebinding page and the logs: never open.
        own = {socket.gethostname().lower()} if wildcard else {bind}
        self.hosts: frozenset[str] | None = (
            None if wildcard and not names and self.enabled else _LOOPBACK_NAMES | names | own
        )
        self.refused = Counter(
            "oglog_access_refused",
            "Requests refused by access control, by reason.",
            ["reason"],
            registry=registry,
        )

    def host_allowed(self, host: str | None) -> bool:
        return self.hosts is None or host is None or _host_name(host) in self.hosts

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        try:
            norm = normalize_origin(origin)
        except ValueError:  # "null" (sandboxed frames, file://) and junk
            return False
        if norm in self.origins:
            return True
        try:
            return host is not None and normalize_origin(f"{norm.partition('://')[0]}://{host}") == norm
        except ValueError:
            return False

    def client_address(self, request: web.Request) -> str:
        """The peer address; behind a trusted proxy (or on the Unix socket the ingest workers relay through),
        the nearest untrusted X-Forwarded-For hop."""
        peer = request.remote or ""
        if peer and not self._trusted(peer):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        if not self.proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    def refuse(self, reason: str, problem: Problem) -> Problem:
        self.refused.labels(reason).inc()
        return problem

    def authenticate(self, request: web.Request, scope: str) -> KeyRecord:
        """The key record allowed to use a route needing `scope`; raises 401/403/429 Problems."""
        assert self.store is not None
        wait = self.clients.take(self.client_address(request))
        if wait:
            raise self.refuse("rate_client", _too_many("client address", wait))
        key = presented_key(request)
        if key is None:
            raise self.refuse(
                "missing_key",
                _unauthorized(
                    "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY", invalid=False
                ),
            )
        record = self.store.verify(key) if 0 < len(key) <= MAX_KEY_LENGTH else None
        if record is None:
            raise self.refuse("invalid_key", _unauthorized("unknown or revoked API key", invalid=True))
        if scope not in record.scopes:
            raise self.refuse(
                "scope",
                Problem(
                    403,
                    "forbidden",
                    "scope",
                    f"key {record.name!r} lacks the {scope!r} scope this route needs",
                    kind="forbidden",
                ),
            )
        wait = self.keys.take(record.id)
        if wait:
            raise self.refuse("rate_key", _too_many("API key", wait))
        return record

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or not self.origins:
            return {}
        try:
            norm = normalize_origin(origin)
        except ValueError:
            return {}
        if norm not in self.origins:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": _CORS_EXPOSE_HEADERS,
        }


def presented_key(request: web.Request) -> str | None:
    """The key the client sent ("" for a malformed Authorization header), or None when it sent none."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    api_key = request.headers.get("X-API-Key")
    if api_key is not None:
        return api_key.strip()
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        if protocol.strip().startswith(WS_KEY_PROTOCOL):
            return protocol.strip()[len(WS_KEY_PROTOCOL) :]
    return None


def _unauthorized(reason: str, *, invalid: bool) -> Problem:
    challenge = 'Bearer realm="oglogstream"' + (', error="invalid_token"' if invalid else "")
    return Problem(
        401,
        "unauthorized",
        "Authorization",
        reason,
        headers={"WWW-Authenticate": challenge},
        kind="unauthorized",
    )


def _too_many(what: str, wait: float) -> Problem:
    seconds = retry_after_seconds(wait)
    return Problem(
        429,
        "too many requests",
        "rate",
        f"rate limit of this {what} exceeded; retry after {seconds} s",
        headers={"Retry-After": seconds},
        kind="rate_limited",
    )


ACCESS: web.AppKey[Access] = web.AppKey("oglog_access", Access)


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    access = request.app[ACCESS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    if route == "/health":
        return await handler(request)
    origin = request.headers.get("Origin")
    cors = access.cors_headers(origin)
    try:
        preflight = _admit(request, access, route, origin, cors)
    except Problem as problem:
        # A page of an allowed origin must be able to read its 401/403/429 (and Retry-After), too.
        problem.headers = {**(problem.headers or {}), **cors}
        if route == OTLP_LOGS_PATH:  # OTLP clients get a google.rpc.Status, as for the receiver's own errors
            return otlp.error_for(request, problem)
        raise
    if preflight is not None:
        return preflight
    try:
        response = await handler(request)
    except Problem as problem:
        problem.headers = {**(problem.headers or {}), **cors}
        raise
    if cors and not response.prepared:
        response.headers.update(cors)
    return response


def _admit(
    request: web.Request, access: Access, route: str | None, origin: str | None, cors: dict[str, str]
) -> web.Response | None:
    """Raise the Problem refusing `request`, or return a CORS preflight answer, or None to go on."""
    host = request.headers.get("Host")
    if not access.host_allowed(host):
        raise access.refuse(
            "host",
            Problem(
                403,
                "forbidden",
                "Host",
                "this server does not answer to that host name (allowed_hosts)",
                kind="host_not_allowed",
            ),
        )
    if origin is not None and not access.origin_allowed(origin, host):
        raise access.refuse(
            "origin",
            Problem(
                403,
                "forbidden",
                "Origin",
                "cross-origin requests from this origin are not allowed (allowed_origins)",
                kind="origin_not_allowed",
            ),
        )
    if cors and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(
            status=204,
            headers={
                **cors,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": _CORS_MAX_AGE,
            },
        )
    scope = required_scope(route)
    if access.enabled and scope is not None:
        request[KEY_RECORD] = access.authenticate(request, scope)
    return None
