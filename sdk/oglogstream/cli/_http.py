"""What every client command shares: the target (URL, key), one httpx client, requests with a size cap and a
total deadline, problem+json errors as one line, and the exit codes scripts rely on.

Exit codes: 0 ok, 1 failed / unhealthy / refused / an unexpected answer, 2 usage or configuration (a bad flag,
or a query parameter the server answered 400 for), 3 cannot reach the server or no complete answer within
the deadline, 130 interrupted, 141 stdout closed by its reader.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .._answer import ACCEPT_ENCODING, AnswerReader
from .._deadline import attempt
from .._http_client import PROXY_AUTH_HINT, bound_every_attempt, describe_route, proxy_route, with_env_proxies
from .._settings import url_parts
from ..wire import MAX_SINGLE_BODY_BYTES, is_problem
from ._output import safe

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
    "MAX_ERROR_BODY_BYTES",
    "MAX_PAGE",
    "MAX_RESPONSE_BYTES",
    "REQUEST_DEADLINE",
    "Answer",
    "CliError",
    "Target",
    "UnexpectedAnswer",
    "add_target_flags",
    "auth_hint",
    "base_url_hint",
    "decode_json",
    "fetch",
    "problem_field",
    "problem_line",
    "refusal_hint",
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
#: Seconds for each step of one HTTP request (connect, one write, one read): httpx's timeouts.
DEFAULT_TIMEOUT = 10.0
#: Seconds one request may take in all (connect, headers and the whole body). httpx's timeouts are per read,
#: so without this a server sending one byte a second would hold a command for as long as it likes.
REQUEST_DEADLINE = 30.0
#: Connections of a client command's pool (bench sets its --concurrency).
DEFAULT_CONNECTIONS = 10
#: The API's largest page (`limit` 1..1000 on /api/logs).
MAX_PAGE = 1000
#: Room per entry for what the server adds to what was sent (id, received_at, host, ...) and its re-encoding.
_ENTRY_OVERHEAD_BYTES = 16 * 1024
#: Largest body read from a 2xx answer (64.5 MiB): a full page of the largest entries the API accepts
#: (MAX_PAGE x (POST /log's MAX_SINGLE_BODY_BYTES + overhead)); anything larger is not an OgLogStream answer.
MAX_RESPONSE_BYTES = MAX_PAGE * (MAX_SINGLE_BODY_BYTES + _ENTRY_OVERHEAD_BYTES)
#: Bytes of an error answer kept for its one-line problem (the rest is not read).
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Paths of the API's routes: a --url ending in one names a route, not the stack's base URL.
_ROUTE_SUFFIXES = ("/api/logs", "/api/stats", "/api/histogram", "/ws/live", "/v1/logs", "/logs", "/log",
                   "/health")
_T = TypeVar("_T")


class CliError(Exception):
    """A failure printed as one line (`oglog: error: ...`) with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class UnexpectedAnswer(ValueError):
    """A 2xx body that is not what the command expects (not JSON, nested too deeply, the wrong shape); the
    message is the short reason."""


@dataclass(frozen=True)
class Target:
    """The server a command talks to: base URL (no trailing slash), optional API key, httpx's per-step
    `timeout` and the total `deadline` of one request (seconds)."""

    url: str
    api_key: str | None
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = REQUEST_DEADLINE

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        """From --url/--api-key, else OGLOG_URL/OGLOG_API_KEY, else DEFAULT_URL; a command's --timeout is
        both. CliError (exit 2) for a bad URL."""
        url = (args.url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        try:  # the SDK's rule (scheme, host, port, no spaces or control characters), for every command
            parts = url_parts(url)
        except ValueError as exc:
            message = f"--url / {ENV_URL}: expected a URL like {DEFAULT_URL}: {exc}"
            raise CliError(message, EXIT_CONFIG) from None
        suffix = next((s for s in _ROUTE_SUFFIXES if parts.path.endswith(s)), None)
        if suffix is not None:
            raise CliError(f"--url / {ENV_URL}: {base_url_hint(url.removesuffix(suffix), url)}", EXIT_CONFIG)
        key = args.api_key or os.environ.get(ENV_API_KEY) or None
        timeout = getattr(args, "timeout", None)
        return cls(url, key, timeout or DEFAULT_TIMEOUT, timeout or REQUEST_DEADLINE)

    @property
    def headers(self) -> dict[str, str]:
        # Only the encodings `fetch` decodes (httpx would add br/zstd when their packages are installed).
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def client(self, connections: int = DEFAULT_CONNECTIONS) -> httpx.Client:
        """An httpx client for this target with up to `connections` connections (the caller closes it),
        routed as the SDK routes (the environment's proxies: `_http_client.with_env_proxies`; before, these
        commands went direct, so `oglog doctor` passed where the handler could not deliver). Every pool it
        routes through runs on the SDK's DeadlineBackend, so `fetch` can bound a whole request, not only each
        read (httpx's timeouts)."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        client = with_env_proxies(
            httpx.Client, base_url=self.url, headers=self.headers, timeout=self.timeout, limits=limits
        )
        bound_every_attempt(client)
        return client


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


#: The advice after a 403 for the Host or Origin: no key changes that (found by a new user: the machine's
#: host name got "create a key" advice with auth off).
NAME_HINT = ("the server does not answer to this {field}, whatever the key: use one it allows (127.0.0.1 or "
             "localhost on its machine), or add it to the server's --allowed-host / OGLOG_ALLOWED_HOSTS "
             "(an Origin: --allowed-origin / OGLOG_ALLOWED_ORIGINS; docs/security.md)")


def refusal_hint(field: object, scope: str) -> str:
    """The advice after a 401/403 whose problem names `field`: NAME_HINT for the Host or Origin, else
    `auth_hint(scope)`."""
    if field in ("Host", "Origin"):
        return NAME_HINT.format(field="host name" if field == "Host" else "origin")
    return auth_hint(scope)


def problem_field(content: bytes) -> object:
    """The `field` of a problem+json body, or None."""
    try:
        body = decode_json(content[:MAX_ERROR_BODY_BYTES])
    except UnexpectedAnswer:
        return None
    return body.get("field") if isinstance(body, dict) else None


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer read within its caps: the parts of an httpx.Response the commands use."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    url: str


def decode_json(content: bytes | str) -> Any:
    """The JSON value of a body. UnexpectedAnswer (a short reason) for anything else, including JSON nested
    deeper than the interpreter can parse (`[` x 100000 is a RecursionError, not a ValueError)."""
    try:
        return json.loads(content)
    except RecursionError:
        raise UnexpectedAnswer("JSON nested too deeply") from None
    except ValueError as exc:
        raise UnexpectedAnswer(f"not JSON ({str(exc)[:80]})") from None


def problem_line(response: httpx.Response | Answer) -> str:
    """A server error as one line: `HTTP 400: limit: must be between 1 and 1000` (problem+json's field and
    reason when present, else the start of the body), terminal-safe (control characters escaped)."""
    status = response.status_code
    try:
        body: Any = decode_json(response.content[:MAX_ERROR_BODY_BYTES])
    except UnexpectedAnswer:
        text = " ".join(response.content[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace").split())[:200]
        return safe(f"HTTP {status}: {text or response.reason_phrase}")
    if isinstance(body, dict):
        field, reason = body.get("field"), body.get("reason") or body.get("detail") or body.get("title")
        if field and reason:
            return safe(f"HTTP {status}: {field}: {reason}"[:400])
        if reason:
            return safe(f"HTTP {status}: {reason}"[:400])
    try:
        shown = json.dumps(body)[:200]
    except (ValueError, RecursionError):
        shown = "(a problem that is not an object)"
    return safe(f"HTTP {status}: {shown}")


def _read(client: httpx.Client, method: str, path: str, max_bytes: int, kwargs: dict[str, Any]) -> Answer:
    """One request, its body read up to `max_bytes` (2xx; an error answer is cut at MAX_ERROR_BODY_BYTES)."""
    url = f"{str(client.base_url).rstrip('/')}{path}"
    with client.stream(method, path, **kwargs) as response:
        cap = max_bytes if response.is_success else MAX_ERROR_BODY_BYTES
        # Decoded by `AnswerReader` with a bound per step: the cap holds for a compressed answer too, and
        # one network chunk of a gzip bomb never inflates past it (httpx's decoder inflates chunks whole).
        reader = AnswerReader(response.headers.get("Content-Encoding", ""), cap)
        for raw in response.iter_raw():
            if not reader.feed(raw):
                break  # an error answer's start is enough for the problem line
        if response.is_success and reader.over:
            raise CliError(f"unexpected answer from {url}: larger than {cap / 2**20:.1f} MiB, the most "
                           "one answer may be")
        if response.is_success and reader.unreadable:
            encoding = response.headers.get("Content-Encoding", "")
            raise CliError(f"unexpected answer from {url}: a body that does not decode as its "
                           f"Content-Encoding {encoding!r}")
        return Answer(response.status_code, response.reason_phrase, response.headers, reader.body(), url)


#: What to check when a request goes through a proxy and fails there (doctor's fix line; docs/cli.md).
PROXY_FIX = ("check the proxy the environment names (HTTP_PROXY / HTTPS_PROXY / ALL_PROXY; list hosts to "
             "reach directly in NO_PROXY)")


def proxy_of(client: httpx.Client) -> str | None:
    """The proxy the client's requests go through, named and redacted (`_http_client.proxy_route`), or
    None."""
    return proxy_route(client, str(client.base_url).rstrip("/"))


def route(client: httpx.Client) -> str:
    """The client's base URL as failures name it: with the proxy it goes through, if any (the SDK's rule,
    `_http_client.describe_route`: `http://host:8080 via proxy http://[REDACTED]@proxy:3128 (HTTP_PROXY)`)."""
    return describe_route(client, str(client.base_url).rstrip("/"))


def proxy_note(client: httpx.Client, answer: Answer) -> str:
    """For an error answer that came through a proxy and is not the stack's problem+json: a note saying it
    may be the proxy's (a 407 is: it asks for credentials), else ''."""
    proxy = proxy_of(client) if answer.status_code >= 400 else None
    if proxy is None:
        return ""
    if answer.status_code == 407:
        return f" (the proxy {proxy} {PROXY_AUTH_HINT}: user:password in its value)"
    if is_problem(answer.headers.get("Content-Type")):
        return ""
    return f" (through the proxy {proxy}: not the stack's problem+json answer, likely the proxy's own)"


def fetch(client: httpx.Client, method: str, path: str, *, deadline: float,
          max_bytes: int = MAX_RESPONSE_BYTES, **kwargs: Any) -> Answer:
    """The whole answer to one request (any status) by `deadline` (time.monotonic() seconds), its body at
    most `max_bytes`; `client` comes from Target.client(). CliError: exit 3 when the server cannot be
    reached or the answer is not complete by the deadline; exit 1 for a body over `max_bytes`."""
    base = str(client.base_url).rstrip("/")
    seconds = deadline - time.monotonic()
    try:
        if seconds <= 0:
            raise httpx.ReadTimeout("no time left")
        with attempt(seconds):  # DeadlineBackend (Target.client) ends every socket operation by then
            return _read(client, method, path, max_bytes, kwargs)
    except httpx.TimeoutException:
        via = route(client).removeprefix(base)
        raise CliError(f"{base}{path}{via}: no complete answer within {max(seconds, 0):.0f} s (the deadline "
                       "of one request; --timeout where the command has it)", EXIT_UNREACHABLE) from None
    except httpx.TransportError as exc:
        where = route(client)
        raise CliError(f"cannot reach {where}: {exc or type(exc).__name__}", EXIT_UNREACHABLE) from None
    except httpx.HTTPError as exc:  # an invalid URL in the answer, a decoding error, ...
        raise CliError(f"unexpected answer from {base}{path}: {exc or type(exc).__name__}") from None


def request_json(
    client: httpx.Client, method: str, path: str, *, deadline: float, shape: Callable[[Any], _T],
    scope: str = "query", **kwargs: Any
) -> tuple[Answer, _T]:
    """(answer, body) of a 2xx answer whose JSON `shape` accepts (`shape` returns the body, or raises
    UnexpectedAnswer with a short reason; _shapes.py holds what each command expects). CliError: exit 3 when
    the server cannot be reached or not by `deadline` (monotonic seconds); exit 2 for a 400 to a GET (the
    query parameters, i.e. the user's flags, are wrong: same as `oglog tail`); exit 1 with the problem line
    for any other status (401/403 with `refusal_hint`, 404 with the base-URL advice), and exit 1
    `unexpected answer from URL: reason` for a 2xx body that is not the expected JSON."""
    answer = fetch(client, method, path, deadline=deadline, **kwargs)
    status = answer.status_code
    if not 200 <= status < 300:
        line = problem_line(answer)
        note = proxy_note(client, answer)
        if note:
            line += note
        elif status in (401, 403):
            line += f" ({refusal_hint(problem_field(answer.content), scope)})"
        elif status == 404:
            line += f" (is {str(client.base_url).rstrip('/')} the stack's base URL, like {DEFAULT_URL}?)"
        elif 300 <= status < 400:
            line += f" (a redirect to {answer.headers.get('location', '?')!r}: give the URL it points to)"
        raise CliError(line, EXIT_CONFIG if status == 400 and method == "GET" else EXIT_FAILED)
    try:
        return answer, shape(decode_json(answer.content))
    except UnexpectedAnswer as exc:
        raise CliError(f"unexpected answer from {answer.url}: {exc} (is {client.base_url} an OgLogStream?)"
                       ) from None
