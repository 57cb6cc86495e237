"""How the transports' httpx clients are built and watched: the proxies the environment names (and how a
failure names the one a request went through), a total deadline per attempt (`_deadline.DeadlineBackend`),
and the hook that tells when a request starts going out.
"""

from __future__ import annotations

import os
import typing
import urllib.request
from collections.abc import Awaitable, Callable

import httpx

from . import _diag
from ._deadline import DeadlineBackend

__all__ = [
    "PROXY_AUTH_HINT", "GoingOut", "async_trace", "bound_every_attempt", "describe_route", "proxy_route",
    "redacted_proxy", "trace", "with_env_proxies",
]

#: What a proxy's 407 (Proxy Authentication Required) means for the user, in the SDK's and the CLI's lines.
PROXY_AUTH_HINT = "asks for credentials or refused those given"
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
        # httpx's message may quote parts of a value ("Invalid port: 'pa'" for `http://u:pa/ss@host`,
        # "Invalid port: 's3cr3t'" for `http://bob:s3cr3t`): only its kind is shown (an ImportError's says
        # which package is missing), each proxy redacted and NO_PROXY as set (a bad entry there, such as an
        # IPv6 CIDR, fails the same way).
        why = str(exc) if isinstance(exc, ImportError) else type(exc).__name__
        proxies = urllib.request.getproxies()
        shown = [f"{name}: {redacted_proxy(proxies[name])}" for name in _PROXY_SCHEMES if proxies.get(name)]
        if proxies.get("no"):
            shown.append(f"no_proxy: {proxies['no']}")
        named = ", ".join(shown) or "none"
        _diag.report("proxy", f"cannot use the proxy the environment names ({why}; {named}); sending"
                     " directly")
        # Direct, but still trusting the environment for TLS: `trust_env=False` alone would also drop
        # SSL_CERT_FILE/SSL_CERT_DIR (found by review: a private CA's endpoint then failed every request).
        verify = options.pop("verify", True)
        if verify is not False:
            verify = httpx.create_ssl_context(verify=verify, trust_env=True)
        return make(trust_env=False, verify=verify, **options)


#: The `<scheme>_proxy` variables httpx reads (`httpx._utils.get_environment_proxies`).
_PROXY_SCHEMES = ("http", "https", "all")


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


def redacted_proxy(value: str) -> str:
    """A proxy URL as the environment gives it (`http://user:password@host:port`, or `host:port` without a
    scheme, which httpx completes with `http://`), as messages may show it: parsed as httpx parses it, its
    userinfo replaced whole by `[REDACTED]` (`http://[REDACTED]@host:port`) and its path dropped. Rebuilt from
    the parsed parts, not cut out of the text with a pattern: a password may hold `@`, quotes or spaces
    (found by review: `http://me@corp:S3cret@host` showed `corp:S3cret`). Not shown at all when its parts
    cannot be told apart from a password's: a value httpx cannot parse, or an `@` past the authority httpx
    read (`http://bob:2024/Summer@host`, an unencoded `/`, `?` or `#` in the password: httpx takes
    `bob:2024` for the host and port)."""
    text = value if "://" in value else f"http://{value}"
    rest = text.split("://", 1)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in rest and "@" not in authority:
        return "(a URL whose password holds an unencoded /, ? or #: percent-encode them)"
    try:
        url = httpx.URL(text)
        netloc = url.netloc.decode("ascii")
    except Exception:
        return "(an unparseable URL)"
    return f"{url.scheme}://{'[REDACTED]@' if url.userinfo else ''}{netloc}"


def describe_route(client: httpx.Client | httpx.AsyncClient, url: str) -> str:
    """`url` as a failed request's message names it: `url` itself when `client` sends to it directly, or
    `"{url} via proxy {proxy} ({VARIABLE})"` when the environment routes it through a proxy, e.g.
    `https://logs:8080/logs via proxy http://127.0.0.1:3128 (HTTPS_PROXY)` (the proxy's credentials
    redacted), so a user whose proxy refuses looks at the proxy, not the server. The mount is picked as
    httpx picks it (the first of the client's sorted mounts whose pattern matches; a NO_PROXY one means
    direct); `with_env_proxies` built those mounts from the environment, read here again at the same moment
    (the transports call this right after building the client)."""
    proxy = proxy_route(client, url)
    return url if proxy is None else f"{url} via proxy {proxy}"


def proxy_route(client: httpx.Client | httpx.AsyncClient, url: str) -> str | None:
    """The proxy `client` sends requests for `url` through, as `describe_route` names it
    (`http://[REDACTED]@127.0.0.1:3128 (HTTPS_PROXY)`), or None when it sends them directly."""
    target = httpx.URL(url)
    for pattern, transport in client._mounts.items():
        if pattern.matches(target):
            if transport is None:  # NO_PROXY: the client's own (direct) transport
                return None
            # The environment's mounts are keyed "http://", "https://", "all://": the scheme named is the
            # key of `urllib.request.getproxies()` (what httpx reads) and the variable's name.
            return _proxy_named(pattern.pattern.split("://", 1)[0])
    return None


def _proxy_named(scheme: str) -> str:
    """`http://127.0.0.1:3128 (HTTPS_PROXY)`: the proxy httpx uses for `scheme` and the variable it came from
    (`urllib.request.getproxies()`, which httpx reads: any capitalisation of `<scheme>_proxy`, the
    lower-case one preferred; on macOS and Windows it may read the system's settings instead)."""
    value = urllib.request.getproxies().get(scheme, "")
    if not value:
        return "(set in the system's proxy settings)"
    wanted = f"{scheme}_proxy"
    names = [name for name in os.environ if name.lower() == wanted and os.environ[name] == value]
    variable = wanted if wanted in names else (names[0] if names else "the system proxy settings")
    return f"{redacted_proxy(value)} ({variable})"
