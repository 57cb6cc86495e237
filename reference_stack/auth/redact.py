"""Secrets out of the server's logs: a logging filter on every stack and aiohttp logger.

It rewrites each record before any handler sees it: API keys (`ogl_...`), bearer tokens, the values of
Authorization / Proxy-Authorization / X-API-Key / Cookie / Set-Cookie headers, secret-looking query parameters
(key, token, password, ...), the userinfo of URLs (`http://user:PASSWORD@host` -> `http://[REDACTED]@host`:
DSNs and NATS URLs with credentials) and WebSocket key subprotocols become `[REDACTED]`.

aiohttp's "Error handling request" (a malformed request: its exception text may quote raw header bytes)
becomes one line without a traceback, and without any request bytes: an over-long header is quoted from its
VALUE's first bytes, without the header name (`Cookie: sid=SECRET` -> `b'sid=SECRET...'`), so no pattern
could tell it is a secret, and an invalid URL's message is the target itself (`?code=SECRET`); only the
parser's leading words stay ("Got more than 8190 bytes when reading"), or the kind of error ("Invalid URL in
the request target"), at most MAX_REASON_CHARS characters (`concise`). Other tracebacks keep their frames
with the text redacted. The problem+json answer to such a request (http/parser_errors.py) says the same.
"""

from __future__ import annotations

import logging
import re
import traceback

from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

__all__ = ["MAX_REASON_CHARS", "REDACTED", "RedactingFilter", "concise", "install", "redact"]

REDACTED = "[REDACTED]"
_HEADER_NAMES = r"(?:proxy-)?authorization|x-api-key|cookie|set-cookie|sec-websocket-protocol"
_SECRET_PARAMS = (
    r"[A-Za-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|auth|signature|sig|session)[A-Za-z0-9_.-]*"
)
_PATTERNS = (
    # "Authorization: Bearer x", "'authorization': 'x'", b'X-API-Key', ...: the value to the line/quote end.
    re.compile(rf"(?i)((?:{_HEADER_NAMES})['\"]?\s*[:=,]\s*(?:b?['\"])?)[^\r\n'\"]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s'\",;]+"),
    re.compile(rf"(?i)([?&;]{_SECRET_PARAMS}=)[^&\s'\"#]*"),
    re.compile(r"()\bogl_[0-9a-f]{8}_[A-Za-z0-9_-]+"),
    re.compile(r"(oglog\.key\.)[^\s,'\"]+"),
    # scheme://user:password@host (ClickHouse DSNs, nats://TOKEN@host): the whole userinfo.
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/?#\s@'\"]+(?=@)"),
)
#: Loggers (by prefix) whose records are filtered: ours, aiohttp's and nats-py's (its errors may carry a
#: server URL, which holds the embedded server's token).
LOGGER_PREFIXES = ("oglogstream.stack", "aiohttp", "nats")
_BAD_REQUEST = "Error handling request"
#: The words a parser error starts with, which say what went wrong ("Got more than 8190 bytes when reading",
#: "Invalid header value char"): letters, digits, spaces, commas and hyphens from the start of its message.
#: aiohttp puts the request bytes it quotes after a colon, a quote or a parenthesis, which end the words.
_LEADING_WORDS = re.compile(r"[A-Za-z][A-Za-z0-9 ,-]*")
#: A parser refusal's reason is at most this many characters (the words are cut at a word boundary).
MAX_REASON_CHARS = 100
#: Refusals whose message is the request's own bytes (aiohttp's InvalidURLError is the unquoted target, query
#: string and all): named by their kind alone.
_MESSAGE_IS_REQUEST_BYTES = {InvalidURLError: "Invalid URL in the request target"}


def concise(exc: BaseException) -> str:
    """A parser refusal's reason without any request bytes, at most MAX_REASON_CHARS characters: the
    leading words of the exception's message (aiohttp's parser errors go on with the raw request bytes,
    `b'Authorization: Bearer ...'`, `bytearray(b'sid=SECRET...')`, and a caret line), or, when the message
    is the request's bytes or has fewer than two leading words, the kind of error."""
    for kind, reason in _MESSAGE_IS_REQUEST_BYTES.items():
        if isinstance(exc, kind):
            return reason
    message = str(getattr(exc, "message", None) or exc).strip()
    match = _LEADING_WORDS.match(message)
    words = match.group().rstrip(" ,-") if match else ""
    if len(words) > MAX_REASON_CHARS:
        words = words[: MAX_REASON_CHARS + 1].rsplit(" ", 1)[0][:MAX_REASON_CHARS]
    if words.count(" ") < 1:
        return _kind(exc)
    return redact(words)


def _kind(exc: BaseException) -> str:
    """`BadHttpMessage` -> "Bad Http Message": the exception's class name as words."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(exc).__name__)


def redact(text: str) -> str:
    """`text` with every secret shape above replaced by REDACTED."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template only
            message = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and record.name.startswith("aiohttp") and message.startswith(_BAD_REQUEST):
            # A request aiohttp's parser refused (over-long URL or header, bad bytes) is answered 400 before
            # any middleware runs, and aiohttp logs it at ERROR with a traceback quoting the raw bytes: one
            # request, one log flood. It becomes one INFO line: aiohttp's reason (first line, redacted).
            code = int(getattr(exc, "code", 0) or 0) if isinstance(exc, HttpProcessingError) else 0
            status = f"{code} " if code else ""
            message = f"{message}: {status}{type(exc).__name__}: {concise(exc)}"
            record.exc_info, record.exc_text = None, None
            if 400 <= code < 500:
                record.levelno, record.levelname = logging.INFO, "INFO"
        elif exc is not None:
            record.exc_text = redact("".join(traceback.format_exception(exc)).rstrip("\n"))
        record.msg, record.args = redact(message), ()
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()




def install() -> None:
    """Attach the filter to every existing logger under LOGGER_PREFIXES (and those prefixes); idempotent.
    Filters run only for records created on their own logger, so each logger gets it."""
    names = [*LOGGER_PREFIXES, "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.websocket"]
    names += ["nats.aio.client"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(LOGGER_PREFIXES)]
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
