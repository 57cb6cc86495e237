"""What each client command expects of a 2xx answer, checked in one place before anything is printed.

Each function takes a decoded JSON value and returns it (typed) when it has the shape the command relies on,
else raises UnexpectedAnswer with a short reason (`oglog query: error: unexpected answer from URL: ...`,
exit 1), so no odd answer reaches the printing code as an AttributeError or a RecursionError.
"""

from __future__ import annotations

from typing import Any

from ._http import UnexpectedAnswer

__all__ = ["MAX_JSON_DEPTH", "accepted", "entries", "health", "live_message", "stats"]

#: Deepest nesting of arrays/objects accepted in an answer: far above what an entry's attributes carry, and
#: far below the interpreter's recursion limit, so printing (json.dumps) never hits a RecursionError.
MAX_JSON_DEPTH = 200


def _check_depth(value: Any) -> None:
    """UnexpectedAnswer when `value` nests deeper than MAX_JSON_DEPTH (iterative: no recursion of its own)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise UnexpectedAnswer(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def entries(body: Any) -> list[dict[str, Any]]:
    """`GET /api/logs`: an array of entry objects."""
    if not isinstance(body, list):
        raise UnexpectedAnswer(f"expected an array of entries, got {_kind(body)}")
    for index, entry in enumerate(body):
        if not isinstance(entry, dict):
            raise UnexpectedAnswer(f"entry {index} is {_kind(entry)}, not an object")
    _check_depth(body)
    return body


def live_message(body: Any) -> dict[str, Any]:
    """One `/ws/live` message: an entry object, or `{"type": "dropped", "count": N}`."""
    if not isinstance(body, dict):
        raise UnexpectedAnswer(f"expected an entry object, got {_kind(body)}")
    _check_depth(body)
    return body


def stats(body: Any) -> dict[str, Any]:
    """`GET /api/stats`: an object; `logs_by_level` and `logs_by_service`, when present, objects of counts."""
    if not isinstance(body, dict):
        raise UnexpectedAnswer(f"expected an object, got {_kind(body)}")
    for name in ("logs_by_level", "logs_by_service"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise UnexpectedAnswer(f"{name} is {_kind(body[name])}, not an object")
    _check_depth(body)
    return body


def health(body: Any) -> dict[str, Any]:
    """`GET /health`: the stack's health document, an object with `status`."""
    if not isinstance(body, dict) or "status" not in body:
        raise UnexpectedAnswer("not the OgLogStream health document (an object with `status`)")
    _check_depth(body)
    return body


def accepted(body: Any) -> int:
    """A 202 from `POST /logs`: an object whose `accepted` is a count (an integer >= 0); returns the count."""
    count = body.get("accepted") if isinstance(body, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UnexpectedAnswer("expected an object with the count `accepted`")
    return count
