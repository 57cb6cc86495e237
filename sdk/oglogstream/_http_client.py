"""How the transports' httpx clients are built and watched: the proxies the environment names (and how a
failure names the one a request went through), a total deadline per attempt (`_deadline.DeadlineBackend`),
and the hook that tells when a request starts going out.
"""

from __future__ import annotations

import os
import re
import typing
import urllib.request
from collections.abc import Awaitable, Callable

import httpx

from . import _diag
from ._deadline import DeadlineBackend

__all__ = [
    "GoingOut", "async_trace", "bound_every_attempt", "describe_route", "redact_userinfo", "trace",
    "with_env_proxies",
]

#: Called by a transport just before the first byte of a request is written (from then on the server may
#: store it); it may raise to stop the request (`_delivery.GivenUp`), which the transport reports as a retry.
GoingOut = Callable[[], None]
#: httpcore's trace events (httpx's "trace" request extension) that come just before a request's first byte.
_WRITE_STARTS = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})


def _writes_ours(event: str, info: dict[str, typing.Any]) -> bool:
    """Whether `event` starts writing our request: not a proxy's CONNECT, which httpcore sends with the same
    request extensions, through which nothing reaches the server (found by review: a TLS handshake held
    past the deadline behind a proxy counted `unconfirmed` what never left)."""
    if event not in _WRITE_STARTS:
        return False
    request = info.get("request")
    return getattr(request, "method", None) != b"CONNECT"


def trace(going_out: GoingOut) -> Callable[[str, dict[str, typing.Any]], None]:
    def on_event(event: str, info: dict[str, typing.Any]) -> None:
        if _writes_ours(event, info):
            going_out()
    return on_event


def async_trace(going_out: GoingOut) -> Callable[[str, dict[str, typing.Any]], Awaitable[None]]:
    async def on_event(event: str, info: dict[str, typing.Any]) -> None:
        if _writes_ours(event, info):
            going_out()
    return on_event


_Client = typing.TypeVar("_Client", httpx.Client, httpx.AsyncClient)


def with_env_proxies(make: Callable[..., _Client], **options: typing.Any) -> _Client:
    """`make(**options)`, routed through the proxies the environment names (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY), as httpx does. A proxy httpx cannot use (SOCKS without `httpx[socks]`, a scheme it
    does not know such as a desktop's `socks://` or `pac+http://`, a malformed URL) is announced on stderr
    and the client goes direct, instead of the handler's construction raising (an application's logging
    set-up failing over an environment variable)."""
    try:
        return make(**options)
    except (ImportError, ValueError, httpx.InvalidURL) as exc:
        _diag.report("proxy", f"cannot use the proxy the environment names ({exc}); sending directly")
        return make(trust_env=False, **options)


def bound_every_attempt(client: httpx.Client) -> None:
    """httpx has no total timeout: each connection pool `client` routes through (direct, and a proxy's from
    the environment) gets a network backend that enforces one per attempt (`attempt_deadline`). The pools
    and their backends are not public API: `test_sdk_proxy_env` fails if a new httpx or httpcore moves
    them. Raises AttributeError then (the handler's construction fails loudly, not its deadlines)."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        if transport is None:  # a NO_PROXY pattern: routed through the client's own transport
            continue
        pool = transport._pool  # type: ignore[attr-defined]
        pool._network_backend = DeadlineBackend(pool._network_backend)


#: A URL's userinfo (`scheme://user:password@`), replaced whole, as the stack's redaction does
#: (reference_stack/auth/redact.py, which `oglog`'s errors go through): `http://[REDACTED]@host:port`.
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/?#\s@'\"]+(?=@)")


def redact_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `[REDACTED]` (a proxy's credentials)."""
    return _USERINFO.sub(r"\1[REDACTED]", text)


def describe_route(client: httpx.Client | httpx.AsyncClient, url: str) -> str:
    """`url` as a failed request's message names it: `url` itself when `client` sends to it directly, or
    `"{url} via proxy {proxy} ({VARIABLE})"` when the environment routes it through a proxy, e.g.
    `https://logs:8080/logs via proxy http://127.0.0.1:3128 (HTTPS_PROXY)` (the proxy's credentials
    redacted), so a user whose proxy refuses looks at the proxy, not the server. The mount is picked as
    httpx picks it (the first of the client's sorted mounts whose pattern matches; a NO_PROXY one means
    direct); `with_env_proxies` built those mounts from the environment, read here again at the same moment
    (the transports call this right after building the client)."""
    target = httpx.URL(url)
    for pattern, transport in client._mounts.items():
        if pattern.matches(target):
            if transport is None:  # NO_PROXY: the client's own (direct) transport
                return url
            # The environment's mounts are keyed "http://", "https://", "all://": the scheme named is the
            # key of `urllib.request.getproxies()` (what httpx reads) and the variable's name.
            scheme = pattern.pattern.split("://", 1)[0]
            return f"{url} via proxy {_proxy_named(scheme)}"
    return url


def _proxy_named(scheme: str) -> str:
    """`http://127.0.0.1:3128 (HTTPS_PROXY)`: the proxy httpx uses for `scheme` and where it was set
    (urllib prefers the lower-case variable when both are; on macOS and Windows it may read the system's
    settings instead)."""
    value = urllib.request.getproxies().get(scheme, "")
    if not value:
        return "(set in the system's proxy settings)"
    proxy = redact_userinfo(value if "://" in value else f"http://{value}")  # as httpx completes it
    lower = f"{scheme}_proxy"
    variable = next((name for name in (lower, lower.upper()) if os.environ.get(name)), None)
    return f"{proxy} ({variable or 'the system proxy settings'})"
