"""What every client command shares: the target (URL, key), one httpx client, problem+json errors as one line,
and the exit codes scripts rely on.

Exit codes: 0 ok, 1 failed / unhealthy / refused, 2 usage or configuration (a bad flag, or a query parameter
the server answered 400 for), 3 cannot reach the server, 130 interrupted, 141 stdout closed by its reader.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ENV_API_KEY",
    "ENV_URL",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_UNREACHABLE",
    "CliError",
    "Target",
    "add_target_flags",
    "auth_hint",
    "base_url_hint",
    "problem_line",
    "request_json",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3
#: Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: stdout closed by its reader (128 + SIGPIPE), what `yes | head -1` reports for `yes` under `pipefail`.
EXIT_OUTPUT_CLOSED = 141

ENV_URL = "OGLOG_URL"
ENV_API_KEY = "OGLOG_API_KEY"
#: Where `oglog stack up` listens out of the box.
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds for one HTTP request (connect + read) of a client command.
DEFAULT_TIMEOUT = 10.0
#: Paths of the API's routes: a --url ending in one names a route, not the stack's base URL.
_ROUTE_SUFFIXES = ("/api/logs", "/api/stats", "/api/histogram", "/ws/live", "/v1/logs", "/logs", "/log",
                   "/health")


class CliError(Exception):
    """A failure printed as one line (`oglog: error: ...`) with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    """The server a command talks to: base URL (no trailing slash) and optional API key."""

    url: str
    api_key: str | None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """From --url/--api-key, else OGLOG_URL/OGLOG_API_KEY, else DEFAULT_URL; CliError (exit 2) for a bad
        URL."""
        url = (args.url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--url / {ENV_URL}: expected a URL like {DEFAULT_URL}, got {url!r}", EXIT_CONFIG)
        suffix = next((s for s in _ROUTE_SUFFIXES if parts.path.endswith(s)), None)
        if suffix is not None:
            raise CliError(f"--url / {ENV_URL}: {base_url_hint(url.removesuffix(suffix), url)}", EXIT_CONFIG)
        key = args.api_key or os.environ.get(ENV_API_KEY) or None
        return cls(url, key, getattr(args, "timeout", None) or DEFAULT_TIMEOUT)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self) -> httpx.Client:
        """An httpx client for this target (the caller closes it)."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout)


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """--url and --api-key, shared by every client command."""
    parser.add_argument(
        "--url", metavar="URL", default=None,
        help=f"the stack's base URL (default: ${ENV_URL} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key", metavar="KEY", default=None,
        help=f"API key sent as `Authorization: Bearer KEY` (default: ${ENV_API_KEY}; needed when auth is on)",
    )


def base_url_hint(base: str, given: str) -> str:
    """The advice for a URL that names a route: `use 'http://h:8080', not 'http://h:8080/logs'`."""
    return f"give the stack's base URL (commands add the paths): use {base!r}, not {given!r}"


def auth_hint(scope: str) -> str:
    """The one-line advice after a 401/403: which scope the command needs and where a key comes from."""
    return (f"this command needs a key with the {scope} scope in --api-key or ${ENV_API_KEY}; "
            f"create one with `oglog keys create --scope {scope}`")


def problem_line(response: httpx.Response) -> str:
    """A server error as one line: `HTTP 400: limit: must be between 1 and 1000` (problem+json's field and
    reason when present, else the start of the body)."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        text = " ".join(response.text.split())[:200]
        return f"HTTP {status}: {text or response.reason_phrase}"
    if isinstance(body, dict):
        field, reason = body.get("field"), body.get("reason") or body.get("detail") or body.get("title")
        if field and reason:
            return f"HTTP {status}: {field}: {reason}"
        if reason:
            return f"HTTP {status}: {reason}"
    return f"HTTP {status}: {json.dumps(body)[:200]}"


def request_json(
    client: httpx.Client, method: str, path: str, *, scope: str = "query", **kwargs: Any
) -> tuple[httpx.Response, Any]:
    """(response, decoded JSON body) of a 2xx answer. CliError: exit 3 when the server cannot be reached;
    exit 2 for a 400 to a GET (the query parameters, i.e. the user's flags, are wrong: same as `oglog tail`);
    exit 1 with the problem line for any other status (401/403 with `auth_hint(scope)`, 404 with the base-URL
    advice), exit 1 for a body that is not JSON."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise CliError(f"{client.base_url}: no answer within the timeout ({type(exc).__name__})",
                       EXIT_UNREACHABLE) from None
    except httpx.TransportError as exc:
        why = exc or type(exc).__name__
        raise CliError(f"cannot reach {client.base_url}: {why}", EXIT_UNREACHABLE) from None
    if not response.is_success:
        line = problem_line(response)
        status = response.status_code
        if status in (401, 403):
            line += f" ({auth_hint(scope)})"
        elif status == 404:
            line += f" (is {str(client.base_url).rstrip('/')} the stack's base URL, like {DEFAULT_URL}?)"
        raise CliError(line, EXIT_CONFIG if status == 400 and method == "GET" else EXIT_FAILED)
    try:
        return response, response.json()
    except ValueError:
        raise CliError(
            f"{method} {path}: the answer is not JSON (is {client.base_url} an OgLogStream?)"
        ) from None
