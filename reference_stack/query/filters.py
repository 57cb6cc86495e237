"""Request filters shared by the query API and the live tail: parsing, validation, SQL, in-process matching.

One definition of `level`, `service`, `q`, `from`/`to` and `cursor`, so `/api/logs`, `/api/stats`,
`/api/histogram` and `/ws/live` accept exactly the same values and reject bad ones with the same errors.

Attribute filters (`attr.<key>=<value>` and friends, see `AttrFilter`) and `logger`/`host`/`trace_id` equality
are parsed here too; `Filters.where` and `Filters.matches` implement the same rules in SQL and in Python
(tests/stack/test_attr_filters.py checks they agree on random entries).

`q` semantics (documented in docs/stack.md): the text is split into words the way the `logs` text index
tokenizes messages (`splitByNonAlpha`: runs of ASCII letters/digits and any non-ASCII characters; everything
else separates words), words are compared case-insensitively, and an entry matches when its message contains
EVERY word of `q` as a whole word. `q=connection timeout` matches "Connection: TIMEOUT after 5s" but `q=time`
does not match "timeout". Whole-word matching is what lets ClickHouse answer from the text index
(`hasAllTokens`) instead of scanning every message; the live tail applies the same rule in Python.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from oglogstream import _wire

from ..http.params import ParamError
from ..ingestion.levels import level_name
from ..ingestion.timestamps import END_OF_RANGE, RANGE_ERROR, START_OF_RANGE, parse_timestamp
from .attr_filters import ATTR_PREFIX, AttrFilter

__all__ = [
    "ATTR_PREFIX",
    "MAX_ATTR_FILTERS",
    "MAX_Q_CHARS",
    "MAX_Q_WORDS",
    "MAX_SERVICES",
    "AttrFilter",
    "Cursor",
    "Filters",
    "ParamError",
    "check_known",
    "format_micros",
    "parse_int",
    "parse_time",
    "single",
    "tokenize",
]

#: `q` longer than this is almost certainly a pasted log line, not a search; reject rather than scan.
MAX_Q_CHARS = 1000
MAX_Q_WORDS = 32
#: How many `service=` values one request may name.
MAX_SERVICES = 100
#: How many `attr.*` conditions one request may carry: each is one map lookup per scanned row.
MAX_ATTR_FILTERS = 20

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: The DateTime64(6) column's range in µs since the epoch: a cursor outside it was not made by this API (and
#: would overflow ClickHouse's Int64 parameters).
_MIN_US = (START_OF_RANGE - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US = (END_OF_RANGE - _EPOCH) // dt.timedelta(microseconds=1)
#: An integer parameter: ASCII digits only (int() would also take fullwidth digits or "1_000"), at most 20.
_INT = re.compile(r"[+-]?[0-9]{1,20}")
# splitByNonAlpha works on bytes: ASCII letters/digits and every byte >= 0x80 belong to words.
_WORD = re.compile(r"[0-9A-Za-z\u0080-\U0010ffff]+")


def check_known(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    """Reject parameters the endpoint does not know: a misspelt filter must not silently return everything.
    An `allowed` entry ending in `*` (e.g. "attr.*") admits every parameter starting with what precedes it."""
    allowed = set(allowed)
    prefixes = tuple(name[:-1] for name in allowed if name.endswith("*"))
    for key in query:
        if key not in allowed and not (prefixes and key.startswith(prefixes)):
            raise ParamError(key, f"unknown parameter (allowed: {', '.join(sorted(allowed))})")


def tokenize(text: str) -> list[str]:
    """The words of `text` as the text index sees them: split on non-alphanumeric ASCII, lower-cased."""
    return [word.lower() for word in _WORD.findall(text)]


def parse_int(value: str, field: str, *, low: int, high: int) -> int:
    """An integer in [low, high], or ParamError."""
    if not _INT.fullmatch(value.strip()):
        raise ParamError(field, f"expected an integer, got {value[:40]!r}")
    number = int(value.strip())
    if not low <= number <= high:
        raise ParamError(field, f"must be between {low} and {high}, got {number}")
    return number


def parse_time(value: str, field: str) -> int:
    """An RFC 3339 timestamp in the forms ingestion accepts (timestamps.parse_timestamp: e.g.
    2026-11-27T10:00:00Z, no offset is UTC, rounded to the nearest microsecond) as microseconds since the
    epoch, UTC; ParamError naming `field`."""
    try:
        moment = parse_timestamp(value)
    except ValueError as exc:
        reason = str(exc)  # the range error alone, as at ingestion; a format error shows what was given
        if reason != RANGE_ERROR:
            reason = f"{reason}, got {value[:60]!r}"
        raise ParamError(field, reason) from None
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def format_micros(micros: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC with microseconds and `Z` (the public timestamp form)."""
    return (_EPOCH + dt.timedelta(microseconds=micros)).replace(tzinfo=None).isoformat(
        timespec="microseconds"
    ) + "Z"


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Position after the last row of a page: rows strictly older in (timestamp, id) order come next.

    Opaque to clients (base64url); it names a row, not a row count, so entries arriving between two page
    requests cannot shift the following pages. Not signed: `decode` refuses what it cannot read (ParamError),
    and a well-formed forged cursor is just a starting position among the rows the filters select anyway."""

    timestamp_us: int
    id: str

    _VERSION = "1"

    def encode(self) -> str:
        raw = f"{self._VERSION}|{self.timestamp_us}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            version, ts, row_id = raw.split("|", 2)
            if version != cls._VERSION or not row_id or len(row_id) > _wire.MAX_ID_CHARS:
                raise ValueError(raw)
            if not _INT.fullmatch(ts) or not _MIN_US <= int(ts) < _MAX_US:
                raise ValueError(raw)
            return cls(int(ts), row_id)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ParamError(
                "cursor", "not a cursor returned by this API (use the X-Next-Cursor value)"
            ) from None


@dataclasses.dataclass(frozen=True)
class Filters:
    """What to select: levels, services, words of `q`, a [from, to) time range in µs, attribute conditions
    (ANDed) and exact `logger`/`host`/`trace_id` (all optional)."""

    levels: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    q: str = ""
    words: tuple[str, ...] = ()
    from_us: int | None = None
    to_us: int | None = None
    attrs: tuple[AttrFilter, ...] = ()
    logger: str | None = None
    host: str | None = None
    trace_id: str | None = None

    #: The parameters `from_query` reads, without the time range (the live tail has none); `attr.*` stands
    #: for every `attr.<key>` parameter (see `check_known`).
    LIVE_PARAMS = ("level", "service", "q", "logger", "host", "trace_id", f"{ATTR_PREFIX}*")
    #: The parameters `from_query` reads; endpoints add their own.
    PARAMS = (*LIVE_PARAMS, "from", "to")
    #: The exact-match fields and the columns they compare.
    EXACT = ("logger", "host", "trace_id")

    @classmethod
    def from_query(cls, query: Any, *, time_range: bool = True) -> Filters:
        """Parse from an aiohttp MultiDict query. `level` may repeat or be comma-separated; `service` may
        repeat (a service name may itself contain commas); `attr.*` conditions may repeat, at most
        MAX_ATTR_FILTERS in all. Raises ParamError naming the parameter."""
        levels: list[str] = []
        for value in query.getall("level", []):
            for name in value.split(","):
                level = level_name(name)  # any case, and the aliases the door accepts (WARNING -> warn)
                if level is None:
                    raise ParamError(
                        "level", f"expected one or more of {','.join(_wire.LEVELS)}, got {name.strip()!r}"
                    )
                if level not in levels:
                    levels.append(level)
        services = []
        for value in query.getall("service", []):
            if not 1 <= len(value) <= _wire.MAX_SERVICE_CHARS:
                raise ParamError("service", f"must be 1..{_wire.MAX_SERVICE_CHARS} characters")
            services.append(value)
        if len(services) > MAX_SERVICES:
            raise ParamError("service", f"at most {MAX_SERVICES} values")
        q = single(query, "q")
        words: list[str] = []
        if q is not None:
            if len(q) > MAX_Q_CHARS:
                raise ParamError("q", f"must be at most {MAX_Q_CHARS} characters")
            words = list(dict.fromkeys(tokenize(q)))
            if not words:
                raise ParamError("q", "must contain at least one word (letters or digits)")
            if len(words) > MAX_Q_WORDS:
                raise ParamError("q", f"at most {MAX_Q_WORDS} distinct words")
        from_us = to_us = None
        if time_range:
            raw_from, raw_to = single(query, "from"), single(query, "to")
            from_us = parse_time(raw_from, "from") if raw_from is not None else None
            to_us = parse_time(raw_to, "to") if raw_to is not None else None
            if from_us is not None and to_us is not None and from_us >= to_us:
                raise ParamError("to", "must be later than from")
        attrs: list[AttrFilter] = []
        for name, value in query.items():
            if name.startswith(ATTR_PREFIX):
                attrs.append(AttrFilter.parse(name, value))
                if len(attrs) > MAX_ATTR_FILTERS:
                    raise ParamError(attrs[-1].field, f"at most {MAX_ATTR_FILTERS} attr.* filters")
        exact: dict[str, str | None] = {}
        for name in cls.EXACT:
            value = single(query, name)
            if value is not None and not 1 <= len(value) <= _wire.MAX_SHORT_FIELD_CHARS:
                raise ParamError(name, f"must be 1..{_wire.MAX_SHORT_FIELD_CHARS} characters")
            exact[name] = value
        return cls(
            tuple(levels),
            tuple(services),
            " ".join(words),
            tuple(words),
            from_us,
            to_us,
            tuple(attrs),
            **exact,
        )

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions (server-side bound parameters only) and their parameter values."""
        conditions: list[str] = []
        params: dict[str, Any] = {}
        if self.levels:
            conditions.append("level IN {f_levels:Array(String)}")
            params["f_levels"] = list(self.levels)
        if len(self.services) == 1:
            conditions.append("service = {f_service:String}")
            params["f_service"] = self.services[0]
        elif self.services:
            conditions.append("service IN {f_services:Array(String)}")
            params["f_services"] = list(self.services)
        if self.words:
            # The String form is tokenized and lower-cased by the server exactly like the indexed messages.
            conditions.append("hasAllTokens(message, {f_q:String})")
            params["f_q"] = self.q
        if self.from_us is not None:
            conditions.append("timestamp >= fromUnixTimestamp64Micro({f_from:Int64}, 'UTC')")
            params["f_from"] = self.from_us
        if self.to_us is not None:
            conditions.append("timestamp < fromUnixTimestamp64Micro({f_to:Int64}, 'UTC')")
            params["f_to"] = self.to_us
        for name in self.EXACT:
            value = getattr(self, name)
            if value is not None:
                conditions.append(f"{name} = {{f_{name}:String}}")
                params[f"f_{name}"] = value
        for n, attr in enumerate(self.attrs):
            conditions.append(attr.sql(n, params))
        return conditions, params

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """The same selection applied to one public entry in Python (the live tail; no time range there)."""
        if self.levels and entry.get("level") not in self.levels:
            return False
        if self.services and entry.get("service") not in self.services:
            return False
        if self.words:
            present = set(tokenize(str(entry.get("message", ""))))
            if not all(word in present for word in self.words):
                return False
        for name in self.EXACT:
            wanted = getattr(self, name)
            if wanted is not None and (entry.get(name) or "") != wanted:
                return False
        if self.attrs:
            attributes = entry.get("attributes") or {}
            if not isinstance(attributes, Mapping):
                return False
            return all(attr.matches(attributes) for attr in self.attrs)
        return True


def single(query: Any, name: str) -> str | None:
    """The one value of `name` (None if absent); ParamError if it was given more than once."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise ParamError(name, "given more than once")
    return values[0] if values else None
