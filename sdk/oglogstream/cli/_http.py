"""What every client command shares: the target (URL, key), one httpx client, problem+json errors as one line,
and the exit codes scripts rely on.

Exit codes: 0 ok, 1 failed / unhealthy / refused, 2 usage or configuration, 3 cannot reach the server.
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
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "CliError",
    "Target",
    "add_target_flags",
    "problem_line",
    "request_json",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3

ENV_URL = "OGLOG_URL"
ENV_API_KEY = "OGLOG_API_KEY"
#: Where `oglog stack up` listens out of the box.
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds for one HTTP request (connect + read) of a client command.
DEFAULT_TIMEOUT = 10.0


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
    client: httpx.Client, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, Any]:
    """(response, decoded JSON body) of a 2xx answer. CliError: exit 3 when the server cannot be reached,
    exit 1 with the problem line for any other status, exit 1 for a body that is not JSON."""
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
        if response.status_code in (401, 403):
            line += " (pass a key with --api-key or OGLOG_API_KEY; `oglog keys create --scope ...`)"
        raise CliError(line)
    try:
        return response, response.json()
    except ValueError:
        raise CliError(
            f"{method} {path}: the answer is not JSON (is {client.base_url} an OgLogStream?)"
        ) from None
