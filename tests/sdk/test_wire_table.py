"""The wire contract: one ordered field table, levels, clipping; importable without starting the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream import _wire, wire

from .wire_check import ENTRY_FIELDS, problems

_TIMEOUT = 60


def _fresh(code: str) -> dict[str, object]:
    """Run `code` in a new interpreter; it prints one JSON object, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_SDK_RUNTIME = ("httpx", "tenacity", "oglogstream._lifecycle", "oglogstream._diag", "oglogstream._async")
#: Prints which SDK runtime modules IMPORTS loaded and the modules of the atexit/fork hooks it registered.
PROBE = f"""
    import atexit, json, os, sys
    hooks = []
    def spy(real):
        def register(func=None, *args, **kwargs):
            hooks.append(getattr(func or kwargs.get("after_in_child"), "__module__", "?"))
            return real(func, *args, **kwargs) if func else real(**kwargs)
        return register
    atexit.register = spy(atexit.register)
    os.register_at_fork = spy(os.register_at_fork)
    IMPORTS
    loaded = [m for m in {_SDK_RUNTIME!r} if m in sys.modules]
    # Only the SDK's own hooks: `import oglogstream` imports the stdlib's logging (and threading) on purpose.
    ours = sorted({{h for h in hooks if h.startswith("oglogstream")}})
    print(json.dumps({{"loaded": loaded, "hooks": ours}}))
"""


def _probe(imports: str) -> dict[str, object]:
    """What `imports` (one line) loads of the SDK's runtime, and the modules whose atexit/fork hooks it
    registered."""
    return _fresh(PROBE.replace("IMPORTS", imports))


# -- importing the contract costs nothing ----------------------------------------------------------------
def test_importing_wire_starts_nothing_of_the_sdk() -> None:
    """`import oglogstream.wire` loads no httpx/tenacity and none of the modules that register atexit/fork
    hooks (_lifecycle, _diag, _async), and registers no atexit or fork hook."""
    assert _probe("import oglogstream.wire") == {"loaded": [], "hooks": []}


def test_importing_the_package_is_lazy_but_public_names_still_work() -> None:
    """`import oglogstream` alone starts nothing; `from oglogstream import OgLogHandler` then loads the SDK
    (and its hooks) as before."""
    assert _probe("import oglogstream") == {"loaded": [], "hooks": []}
    after = _probe("from oglogstream import OgLogHandler; OgLogHandler.__name__")
    assert set(after["loaded"]) >= {"httpx", "oglogstream._lifecycle"}  # type: ignore[arg-type]
    assert {"oglogstream._lifecycle", "oglogstream._diag"} <= set(after["hooks"])  # type: ignore[arg-type]


def test_every_public_name_resolves() -> None:
    """`__all__` is unchanged and each name in it is importable; unknown names raise AttributeError."""
    import oglogstream

    assert sorted(oglogstream.__all__) == sorted(
        ["DROP_REASONS", "LOSS_REMEDIES", "AsyncOgLogClient", "OgLogHandler", "OgLogProcessor", "Stats",
         "__version__", "bind", "bound", "clear_context", "get_context", "unbind"]
    )
    for name in oglogstream.__all__:
        assert getattr(oglogstream, name) is not None
        assert name in dir(oglogstream)
    from oglogstream._handler import OgLogHandler

    assert oglogstream.OgLogHandler is OgLogHandler
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        oglogstream.Nope  # noqa: B018


# -- the table ---------------------------------------------------------------------------------------------
def test_table_is_the_one_definition() -> None:
    """Field names are unique and in row order; columns are the fields plus received_at; the derived tuples
    and the old `_wire` name agree with the table."""
    assert wire.FIELD_NAMES == (
        "id", "timestamp", "level", "message", "service", "logger", "host", "pid", "thread", "trace_id",
        "span_id", "exception", "attributes",
    )
    assert len(set(wire.FIELD_NAMES)) == len(wire.FIELDS)
    assert [c.column for c in wire.COLUMNS] == [*wire.FIELD_NAMES, "received_at"]
    assert wire.REQUIRED == ("level", "message", "service")
    assert wire.PUBLIC_ALWAYS == ("id", "timestamp", "level", "message", "service")
    assert set(wire.PUBLIC_ALWAYS) | set(wire.PUBLIC_OPTIONAL) == set(wire.FIELD_NAMES)
    assert set(wire.FIELD_NAMES) == ENTRY_FIELDS
    assert _wire.FIELDS is wire.FIELDS and _wire.clip_bytes is wire.clip_bytes


def test_table_carries_every_limit() -> None:
    """Each field's limit is the named constant, with its unit; every column has a ClickHouse type."""
    expected = {
        "id": (wire.MAX_ID_CHARS, "chars"),
        "message": (wire.MAX_MESSAGE_BYTES, "bytes"),
        "exception": (wire.MAX_EXCEPTION_BYTES, "bytes"),
        "service": (wire.MAX_SERVICE_CHARS, "chars"),
        "pid": (wire.MAX_PID, "value"),
        "attributes": (wire.MAX_ATTRIBUTES, "keys"),
        **{name: (wire.MAX_SHORT_FIELD_CHARS, "chars")
           for name in ("logger", "host", "thread", "trace_id", "span_id")},
    }
    assert {f.name: (f.limit, f.unit) for f in wire.FIELDS if f.limit} == expected
    assert all(c.clickhouse_type and c.codec for c in wire.COLUMNS)
    assert wire.FIELD["pid"].clickhouse_type == "UInt32" and wire.MAX_PID == 2**32 - 1


def test_oracle_follows_the_table() -> None:
    """The test oracle flags a missing required field and every limited string one character over."""
    good = {"level": "info", "message": "m", "service": "s"}
    assert problems(good) == []
    for name in wire.REQUIRED:
        assert problems({k: v for k, v in good.items() if k != name}) == [f"{name} missing"]
    for field in wire.FIELDS:
        if field.json_type == "string" and field.unit in ("chars", "bytes") and field.name != "id":
            assert problems({**good, field.name: "x" * field.limit}) == [], field.name
            assert problems({**good, field.name: "x" * (field.limit + 1)}), field.name
    assert problems({**good, "pid": wire.MAX_PID + 1}) and problems({**good, "levle": "info"})


# -- levels ------------------------------------------------------------------------------------------------
def test_level_names_and_numbers() -> None:
    """Stored names and aliases in any case map to a stored level; Python numbers to the nearest level."""
    assert [wire.level_name(t) for t in ("WARNING", " Info ", "err", "crit", "notice", "verbose")] == [
        "warn", "info", "error", "fatal", "info", None,
    ]
    assert set(wire.LEVEL_BY_NAME.values()) == set(wire.LEVELS)
    assert [wire.level_for_number(n) for n in (10, 15, 20, 25, 30, 40, 45, 50)] == [
        "debug", "debug", "info", "info", "warn", "error", "error", "fatal",
    ]


# -- clipping ----------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=60, max_value=400))
def test_clip_bytes_keeps_head_and_tail_within_limit(text: str, limit: int) -> None:
    """The result fits `limit` UTF-8 bytes and is the text's head + marker (exact bytes cut) + its tail."""
    text = text * 20
    out = wire.clip_bytes(text, limit)
    raw = text.encode("utf-8", "replace")
    assert len(out.encode("utf-8", "replace")) <= limit
    if len(raw) <= limit:
        assert out == text
        return
    head, _, rest = out.partition("…[truncated ")
    number, _, tail = rest.partition(" bytes]")
    safe = text.encode("utf-8", "replace").decode("utf-8")
    assert safe.startswith(head) and safe.endswith(tail)
    assert len(head.encode()) + int(number) + len(tail.encode()) == len(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=40, max_value=400))
def test_clip_chars_keeps_head_and_tail_within_limit(text: str, limit: int) -> None:
    """The result has at most `limit` characters: the text's head, the marker, its tail."""
    text = text * 20
    out = wire.clip_chars(text, limit)
    assert len(out) <= limit
    if len(text) > limit:
        head, _, rest = out.partition("…[truncated ")
        tail = rest.partition(" bytes]")[2]
        assert text.startswith(head) and text.endswith(tail) and head and tail
