"""Access-control settings of StackConfig: defaults, validation, environment variables, when auth is on.

Auth is on when `require_auth` is set or the server listens on a non-loopback address, unless `insecure`
(docs/security.md). The fields live on StackConfig (config.py) so every process built by `create_app(config)`
(roles, ingest workers) gets the same policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from .keys import parse_env_keys
from .ratelimit import DEFAULT_CLIENT_BURST, DEFAULT_CLIENT_RATE, DEFAULT_KEY_BURST, DEFAULT_KEY_RATE

__all__ = [
    "DEFAULT_CLIENT_BURST",
    "DEFAULT_CLIENT_RATE",
    "DEFAULT_KEY_BURST",
    "DEFAULT_KEY_RATE",
    "DEFAULT_LIVE_SOCKETS_PER_KEY",
    "ENV_NAMES",
    "auth_enabled",
    "from_env",
    "is_loopback",
    "validate",
]

#: Concurrent /ws/live sockets one key may hold (a dashboard tab holds one); one more gets 429.
DEFAULT_LIVE_SOCKETS_PER_KEY = 20

#: StackConfig field -> environment variable (`oglog serve`).
ENV_NAMES = {
    "require_auth": "OGLOG_REQUIRE_AUTH",
    "insecure": "OGLOG_INSECURE",
    "keys_file": "OGLOG_KEYS_FILE",
    "api_keys": "OGLOG_API_KEYS",
    "allowed_hosts": "OGLOG_ALLOWED_HOSTS",
    "allowed_origins": "OGLOG_ALLOWED_ORIGINS",
    "trusted_proxies": "OGLOG_TRUSTED_PROXIES",
    "rate_limit_client": "OGLOG_RATE_LIMIT_CLIENT",
    "rate_burst_client": "OGLOG_RATE_BURST_CLIENT",
    "rate_limit_key": "OGLOG_RATE_LIMIT_KEY",
    "rate_burst_key": "OGLOG_RATE_BURST_KEY",
    "live_sockets_per_key": "OGLOG_LIVE_SOCKETS_PER_KEY",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class _AuthFields(Protocol):
    """The StackConfig fields read here (read-only: StackConfig is frozen)."""

    @property
    def host(self) -> str: ...

    @property
    def require_auth(self) -> bool: ...

    @property
    def insecure(self) -> bool: ...

    @property
    def api_keys(self) -> tuple[str, ...]: ...

    @property
    def allowed_hosts(self) -> tuple[str, ...]: ...

    @property
    def allowed_origins(self) -> tuple[str, ...]: ...

    @property
    def trusted_proxies(self) -> tuple[str, ...]: ...

    @property
    def rate_limit_client(self) -> float: ...

    @property
    def rate_burst_client(self) -> int: ...

    @property
    def rate_limit_key(self) -> float: ...

    @property
    def rate_burst_key(self) -> int: ...

    @property
    def live_sockets_per_key(self) -> int: ...


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; False for wildcards (0.0.0.0, ::, "") and anything else."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_enabled(config: _AuthFields) -> bool:
    """Whether requests need a key: `require_auth`, or listening beyond loopback; never with `insecure`."""
    return not config.insecure and (config.require_auth or not is_loopback(config.host))


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower case, default port dropped; ValueError for anything else ("*", paths)."""
    parts = urlsplit(origin.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
    ):
        raise ValueError(f"expected an origin like https://logs.example.com, got {origin!r}")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def validate(config: _AuthFields) -> None:
    """ValueError naming the first bad access-control field (never quoting a key)."""
    if config.require_auth and config.insecure:
        raise ValueError("insecure: cannot be combined with require_auth")
    parse_env_keys(config.api_keys)
    for origin in config.allowed_origins:
        try:
            normalize_origin(origin)
        except ValueError as exc:
            raise ValueError(f"allowed_origins: {exc}") from None
    for name in config.allowed_hosts:
        if not name or "/" in name or "*" in name or " " in name:
            raise ValueError(f"allowed_hosts: expected host names like logs.example.com, got {name!r}")
    for network in config.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(
                f"trusted_proxies: expected addresses or CIDR networks, got {network!r}"
            ) from None
    for field in ("rate_limit_client", "rate_limit_key"):
        if getattr(config, field) <= 0:
            raise ValueError(f"{field}: must be > 0 requests per second, got {getattr(config, field)}")
    for field in ("rate_burst_client", "rate_burst_key", "live_sockets_per_key"):
        if getattr(config, field) < 1:
            raise ValueError(f"{field}: must be >= 1, got {getattr(config, field)}")


def from_env(env: Mapping[str, str], integer: Callable[[str], int]) -> dict[str, Any]:
    """StackConfig keyword arguments from the OGLOG_* variables of ENV_NAMES present in `env`."""
    kwargs: dict[str, Any] = {}
    for field, var in ENV_NAMES.items():
        if var not in env:
            continue
        value = env[var]
        if field in ("require_auth", "insecure"):
            if value.strip().lower() not in (*_TRUE, *_FALSE):
                raise ValueError(f"{var}: expected true or false, got {value!r}")
            kwargs[field] = value.strip().lower() in _TRUE
        elif field == "keys_file":
            kwargs[field] = value or None
        elif field in ("api_keys", "allowed_hosts", "allowed_origins", "trusted_proxies"):
            kwargs[field] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif field.startswith("rate_limit"):
            try:
                kwargs[field] = float(value)
            except ValueError:
                raise ValueError(f"{var}: expected requests per second, got {value!r}") from None
        else:
            kwargs[field] = integer(var)
    return kwargs
