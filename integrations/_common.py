"""What Django and Flask share: settings, request ids, client IPs, skip/sampling rules and the access record.

The framework modules only translate their request/response objects into these calls, so every rule
(which request id is accepted, which hop of X-Forwarded-For is the client, which requests are logged, what
the record contains) exists once.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import random
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "ACCESS_LOGGER_NAME",
    "ATTR_CLIENT",
    "ATTR_DURATION",
    "ATTR_METHOD",
    "ATTR_METHOD_ORIGINAL",
    "ATTR_PATH",
    "ATTR_QUERY",
    "ATTR_REQUEST_ID",
    "ATTR_ROUTE",
    "ATTR_STATUS",
    "ATTR_USER",
    "ATTR_USER_AGENT",
    "DEFAULT_REQUEST_ID_HEADER",
    "DEFAULT_SAMPLE_RATE",
    "HOP_CACHE_SIZE",
    "KNOWN_METHODS",
    "MAX_FORWARDED_HOPS",
    "MAX_REQUEST_ID_LENGTH",
    "OTHER_METHOD",
    "REDACTED",
    "AccessConfig",
    "AccessLog",
    "level_for_status",
    "new_request_id",
    "redact_query",
    "sane_request_id",
    "wsgi_path",
]

#: The logger every access record is written to (its level is set to INFO when nothing configured it).
ACCESS_LOGGER_NAME = "oglogstream.access"

# The access record's attribute names: OpenTelemetry HTTP semantic conventions (so other tools read them as
# they are), plus the request id, which has no convention and keeps the name `oglogstream.bound` gives it on
# every other record of the request.
ATTR_REQUEST_ID = "request_id"
ATTR_METHOD = "http.request.method"
#: Set (with ATTR_METHOD `_OTHER`) when the method is not one of KNOWN_METHODS.
ATTR_METHOD_ORIGINAL = "http.request.method_original"
#: The methods semconv names; any other token a client sends is `_OTHER`, which bounds the attribute's values.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
OTHER_METHOD = "_OTHER"
ATTR_PATH = "url.path"
ATTR_QUERY = "url.query"
ATTR_ROUTE = "http.route"
ATTR_STATUS = "http.response.status_code"
#: Seconds, as the semconv metric of the same name (float, µs resolution).
ATTR_DURATION = "http.server.request.duration"
ATTR_CLIENT = "client.address"
ATTR_USER_AGENT = "user_agent.original"
ATTR_USER = "user.id"
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"
#: Keep every access record unless told otherwise: sampling is an explicit trade of detail for volume.
DEFAULT_SAMPLE_RATE = 1.0
#: Longer incoming ids are replaced: they are usually abuse, and the id travels on every record.
MAX_REQUEST_ID_LENGTH = 128
#: At most this many X-Forwarded-For entries are examined (from the right): the header is client-controlled.
MAX_FORWARDED_HOPS = 32
REDACTED = "[redacted]"
#: Distinct X-Forwarded-For / REMOTE_ADDR values whose parse result is remembered (per middleware instance).
HOP_CACHE_SIZE = 4096

# Letters, digits and the punctuation of UUIDs, ULIDs, base64 and W3C trace ids: nothing that could break
# a header, a log line or a query (no spaces, quotes, control characters, commas or semicolons).
_SANE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{{0,{MAX_REQUEST_ID_LENGTH - 1}}}")
# Query parameter names whose values are never logged (substring, case-insensitive: over-redacting is safe).
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|key|auth|sig|session|code|credential|jwt|otp|ticket|cookie|nonce", re.I
)

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


# Request ids must be unique, not secret: a Mersenne Twister seeded from os.urandom (and reseeded in a forked
# child, so workers of a pre-fork server never share a sequence) costs a third of os.urandom and, unlike it,
# never releases the GIL mid-request.
_random = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)
_getrandbits = _random.getrandbits
_perf_counter = time.perf_counter


def new_request_id() -> str:
    """32 random hex digits (the shape of a UUID4 without dashes)."""
    return f"{_getrandbits(128):032x}"


def sane_request_id(value: str | None) -> str | None:
    """`value` when it is safe to echo and log (1..128 chars of a safe charset), else None."""
    if value and _SANE_ID.fullmatch(value):
        return value
    return None


def level_for_status(status: int) -> int:
    """5xx → ERROR, 4xx → WARNING, anything else → INFO."""
    if status >= 500:
        return logging.ERROR
    if status >= 400:
        return logging.WARNING
    return logging.INFO


def redact_query(query: str) -> str:
    """The query string with the values of secret-looking parameters replaced by `[redacted]`."""
    if "%" not in query and not _SECRET_PARAM.search(query):
        return query  # nothing secret-looking, not even percent-encoded: keep it exactly as sent
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="[]")


def wsgi_path(environ: Mapping[str, Any]) -> str:
    """The decoded URL path of a WSGI request: SCRIPT_NAME + PATH_INFO, which PEP 3333 gives as latin-1
    decoded bytes, read back as UTF-8 (what Django's `request.path` and Werkzeug's `request.path` show)."""
    raw = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
    if not raw.isascii():
        with contextlib.suppress(UnicodeEncodeError):  # already decoded by a non-conforming server
            raw = raw.encode("latin-1").decode("utf-8", "replace")
    return raw or "/"


def _parse_ip(value: str) -> IPAddress | None:
    """An address from a REMOTE_ADDR or X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`)."""
    value = value.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port (a bare v6 address has at least two colons)
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _networks(setting: str, value: object) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{setting} must be a list of CIDRs or addresses (['10.0.0.0/8']), got {value!r}")
    networks: list[IPNetwork] = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {item!r} is not a CIDR or IP address ({exc})") from None
    return tuple(networks)


def _strings(setting: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{setting} must be a list of strings, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{setting} entries must be non-empty strings, got {item!r}")
    return items


def _flag(setting: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{setting} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class AccessConfig:
    """The integration settings (Django `settings.OGLOG_*`, Flask `app.config["OGLOG_*"]`); validated once."""

    request_id_header: str = DEFAULT_REQUEST_ID_HEADER
    trusted_proxies: tuple[IPNetwork, ...] = ()
    skip_paths: frozenset[str] = frozenset()
    skip_path_prefixes: tuple[str, ...] = ()
    skip_routes: frozenset[str] = frozenset()
    sample_rate: float = DEFAULT_SAMPLE_RATE
    log_query: bool = False
    log_user: bool = True

    @classmethod
    def from_settings(cls, get: Callable[[str, Any], Any]) -> AccessConfig:
        """Build from `get(name, default)`; a bad value is a ValueError naming the setting and why."""
        header = get("OGLOG_REQUEST_ID_HEADER", DEFAULT_REQUEST_ID_HEADER)
        if not isinstance(header, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
            raise ValueError(f"OGLOG_REQUEST_ID_HEADER must be an HTTP header name, got {header!r}")
        rate = get("OGLOG_ACCESS_SAMPLE_RATE", DEFAULT_SAMPLE_RATE)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"OGLOG_ACCESS_SAMPLE_RATE must be a number from 0.0 to 1.0, got {rate!r}")
        paths = _strings("OGLOG_SKIP_PATHS", get("OGLOG_SKIP_PATHS", None))
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"OGLOG_SKIP_PATHS entries must start with '/', got {path!r}")
        return cls(
            request_id_header=header,
            trusted_proxies=_networks("OGLOG_TRUSTED_PROXIES", get("OGLOG_TRUSTED_PROXIES", None)),
            skip_paths=frozenset(p for p in paths if not p.endswith("*")),
            skip_path_prefixes=tuple(p[:-1] for p in paths if p.endswith("*")),
            skip_routes=frozenset(_strings("OGLOG_SKIP_ROUTES", get("OGLOG_SKIP_ROUTES", None))),
            sample_rate=float(rate),
            log_query=_flag("OGLOG_LOG_QUERY", get("OGLOG_LOG_QUERY", False)),
            log_user=_flag("OGLOG_LOG_USER", get("OGLOG_LOG_USER", True)),
        )

    @property
    def wsgi_header_key(self) -> str:
        """The header as a WSGI environ / Django META key (`HTTP_X_REQUEST_ID`)."""
        return "HTTP_" + self.request_id_header.upper().replace("-", "_")


class AccessLog:
    """Applies an `AccessConfig` to one request at a time; shared by every request (no per-request state)."""

    def __init__(self, config: AccessConfig) -> None:
        self.config = config
        self.logger = logging.getLogger(ACCESS_LOGGER_NAME)
        if self.logger.level == logging.NOTSET:
            # Access records are INFO: without this, a root logger left at WARNING would hide them.
            self.logger.setLevel(logging.INFO)
        self._threshold = int(config.sample_rate * 0x1_0000_0000)
        self._hop = functools.lru_cache(maxsize=HOP_CACHE_SIZE)(self._classify)
        self._reported: set[str] = set()
        self._report_lock = threading.Lock()

    def request_id(self, incoming: str | None) -> str:
        """The incoming id when it is sane, else a new one."""
        return sane_request_id(incoming) or new_request_id()

    def client_ip(self, remote_addr: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: REMOTE_ADDR, or walking X-Forwarded-For right to left past trusted proxies.

        Only hops appended by a trusted proxy are believed; the first untrusted address is the client. When a
        trusted hop reports garbage, the last address we can vouch for is returned (never the garbage).
        """
        if not self.config.trusted_proxies or not remote_addr:
            return remote_addr or None
        peer = self._hop(remote_addr)
        if peer is None or not peer[1]:
            return remote_addr
        current = peer[0]
        if not forwarded_for:
            return current
        hops = forwarded_for.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]
        for raw in reversed(hops):
            hop = self._hop(raw)
            if hop is None:
                break
            current = hop[0]
            if not hop[1]:
                break
        return current

    def _classify(self, raw: str) -> tuple[str, bool] | None:
        """(normalised address, trusted?) for one hop, None if it is not an address. Cached per instance:
        proxy addresses repeat on every request, and parsing an address costs microseconds."""
        address = _parse_ip(raw)
        if address is None:
            return None
        return str(address), any(address in network for network in self.config.trusted_proxies)

    def wanted(self, status: int, path: str, route: str | None, request_id: str) -> bool:
        """Whether this request gets an access record: always for status ≥ 400, else skip rules and sampling.

        Sampling hashes the request id: services that propagate X-Request-ID keep or drop the same requests.
        """
        if status >= 400:
            return True
        config = self.config
        prefixes = config.skip_path_prefixes
        if path in config.skip_paths or (prefixes and path.startswith(prefixes)):
            return False
        if route is not None and route in config.skip_routes:
            return False
        if self._threshold >= 0x1_0000_0000:
            return True
        return zlib.crc32(request_id.encode()) < self._threshold

    def record(
        self,
        environ: Mapping[str, Any],
        *,
        path: str,
        route: str | None,
        status: int,
        start: float,
        request_id: str,
        user_id: object = None,
        exc: BaseException | None = None,
    ) -> None:
        """Write the access record of one finished request; never raises (a logging problem must not fail it).

        `environ` is the request's WSGI environ or Django's `request.META` (same keys under WSGI and ASGI):
        method, peer address, X-Forwarded-For, query string and user agent are read from it. `path` is the
        decoded URL path, `route` the matched pattern (None: nothing matched), `start` the
        `time.perf_counter()` value at the request's start, `exc` the unhandled exception (shipped as the
        record's traceback only when `status` is a 5xx). Skip rules and sampling apply (see `wanted`).
        """
        duration = _perf_counter() - start
        try:
            if not self.wanted(status, path, route, request_id):
                return
            level = level_for_status(status)
            if not self.logger.isEnabledFor(level):
                return
            method = environ.get("REQUEST_METHOD") or ""
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None and status >= 500 else None
            # What Logger.log does, minus findCaller's stack walk (the call site is always this line) and
            # makeRecord's collision checks (our keys are fixed and collide with nothing): ~2 µs per request.
            # The record factory, the logger's filters and every handler apply as usual.
            record = logging.getLogRecordFactory()(
                self.logger.name,
                level,
                __file__,
                0,
                "%s %s %d %.1fms",
                (method, path, status, duration * 1000.0),
                exc_info,
                "record",
                None,
            )
            fields = record.__dict__  # the attributes go where `extra=` would put them
            fields[ATTR_REQUEST_ID] = request_id
            if method in KNOWN_METHODS:
                fields[ATTR_METHOD] = method
            else:
                fields[ATTR_METHOD] = OTHER_METHOD
                fields[ATTR_METHOD_ORIGINAL] = method
            fields[ATTR_PATH] = path
            fields[ATTR_STATUS] = status
            fields[ATTR_DURATION] = round(duration, 6)
            if route is not None:
                fields[ATTR_ROUTE] = route
            client = self.client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
            if client is not None:
                fields[ATTR_CLIENT] = client
            agent = environ.get("HTTP_USER_AGENT")
            if agent:
                fields[ATTR_USER_AGENT] = agent
            if user_id is not None:
                fields[ATTR_USER] = user_id if isinstance(user_id, (int, str)) else str(user_id)
            if self.config.log_query:
                query = environ.get("QUERY_STRING")
                if query:
                    fields[ATTR_QUERY] = redact_query(query)
            self.logger.handle(record)
        except Exception as error:
            self.report(f"access record failed: {error!r}")

    def report(self, problem: str) -> None:
        """One stderr line per distinct problem (never through `logging`, which may be what is failing)."""
        with self._report_lock:
            if problem in self._reported or len(self._reported) > 100:
                return
            self._reported.add(problem)
        print(f"oglogstream.integrations: {problem}", file=sys.stderr)
