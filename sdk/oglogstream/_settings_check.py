"""Checks of single setting values for `_settings.Settings.build`: each returns the value to keep (or None)
or raises ValueError naming the setting, what it must be and what it got."""

from __future__ import annotations

import ipaddress
import math
import os
import ssl
from typing import Any
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "check_ca_path",
    "check_int",
    "check_seconds",
    "require_utf8",
    "required_text",
    "spool_directory",
    "url_parts",
]


def url_parts(url: str) -> SplitResult:
    """`urlsplit(url)` of an absolute http(s) URL whose host and port can be connected to: anything else
    would be accepted here and then retried forever as a connect error."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed or invalid [IPv6] literal
        raise ValueError(f"url has an invalid IPv6 address ({exc}), got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url must be an absolute http:// or https:// URL, got {url!r}")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"url must not contain spaces or control characters, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.rpartition("@")[2].endswith(":")):
        raise ValueError(f"url must have a port between 1 and 65535 (or none), got {url!r}")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal (urlsplit removed the brackets)
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"url has an invalid IPv6 address, got {url!r}") from None
    elif not host or not all(c.isalnum() or c in "-._" for c in host):
        raise ValueError(f"url must name a host (letters, digits, '-', '.', '_'), got {url!r}")
    return parts


def check_ca_path(path: str) -> None:
    """A `verify=` CA bundle file (or directory of hashed certificates) that ssl can load: httpx would
    otherwise raise FileNotFoundError/SSLError from the first request's setup, or the constructor's."""
    if not path:
        raise ValueError("verify must be True, False or a CA bundle path, got ''")
    try:
        if os.path.isdir(path):
            ssl.create_default_context(capath=path)
        else:
            ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        reason = f"verify {path!r} is not a readable CA bundle (PEM file or directory): {exc}"
        raise ValueError(reason) from None


def required_text(name: str, value: object, env_name: str) -> str:
    if value is None:
        raise ValueError(f"{name} is required: pass {name}=... or set the {env_name} environment variable")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"{name} must not be empty (argument or {env_name})")
    return text


def spool_directory(value: object) -> str | None:
    """An absolute, existing (created if needed), writable directory, or None (no spool)."""
    if value is None:
        return None
    if not hasattr(os, "fork"):  # the spool's multi-process safety rests on fcntl.flock (POSIX)
        raise ValueError("spool_dir is only supported on POSIX systems (it needs fcntl.flock)")
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"spool_dir must be a path (str or os.PathLike), got {type(value).__name__}")
    path = os.path.abspath(os.fspath(value))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"spool_dir {path!r} cannot be created: {exc}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ValueError(f"spool_dir {path!r} must be readable and writable by this process")
    return path


def require_utf8(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} must be valid Unicode text: {exc}") from None


def check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def check_seconds(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} seconds, got {value}")
