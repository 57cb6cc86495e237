"""Review finding 10: user code run by the worker while encoding (`__repr__`, `__str__`) cannot stop it."""

from __future__ import annotations

import logging

import pytest
from oglogstream import OgLogHandler

from .capture_server import CaptureServer


class _Raising:
    """An `extra=` value whose repr/str raise what user code may raise, BaseException subclasses included."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __repr__(self) -> str:
        raise self.error("from __repr__")

    __str__ = __repr__


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, ValueError])
def test_a_value_whose_repr_raises_anything_is_a_placeholder_and_delivery_goes_on(
    server: CaptureServer, logger: logging.Logger, error: type[BaseException]
) -> None:
    """20 records carrying such a value, then 20 plain ones: all 40 arrive (the bad value as a placeholder),
    nothing is counted as lost, and flush() confirms it (before: the worker died, 'shutdown' losses)."""
    handler = OgLogHandler(server.url, "repr")
    logger.addHandler(handler)
    for i in range(20):
        logger.info("held %d", i, extra={"bad": _Raising(error)})
    for i in range(20):
        logger.info("plain %d", i)
    assert handler.flush(30)
    assert handler.stats().dropped == {}
    assert server.wait_entries(40, timeout=30)
    held = [e for e in server.entries if str(e["message"]).startswith("held")]
    assert len(held) == 20 and len(server.entries) == 40
    assert all(e["attributes"]["bad"] == "<unrepresentable _Raising>" for e in held)
    handler.close()


def test_an_exception_whose_str_raises_keyboardinterrupt_keeps_its_record(
    server: CaptureServer, logger: logging.Logger
) -> None:
    """logger.exception() with an exception whose __str__ raises KeyboardInterrupt: the record arrives."""

    class Odd(Exception):
        def __str__(self) -> str:
            raise KeyboardInterrupt

    handler = OgLogHandler(server.url, "repr")
    logger.addHandler(handler)
    try:
        raise Odd
    except Odd:
        logger.exception("failed")
    assert handler.flush(30)
    assert handler.stats().dropped == {}
    assert server.wait_entries(1, timeout=30)
    assert server.entries[0]["message"] == "failed"
    handler.close()


# Findings of the third review: keys the wire spells alike, and caches keyed by equal-but-different keys.

_LONG = "k" * 200


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in one JSON object: {keys}"
    return dict(pairs)


def _encode(encoder: object, extra: dict, levelno: object = logging.INFO) -> dict:
    import json

    from oglogstream._capture import capture

    record = logging.LogRecord("app", logging.INFO, "f", 1, "m", None, None)
    record.levelno = levelno  # type: ignore[assignment]
    record.__dict__.update(extra)
    line = encoder.encode_captured(capture(record, None))  # type: ignore[attr-defined]
    return json.loads(line, object_pairs_hook=_no_duplicates)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({_LONG + "a": 1, _LONG + "b": 2}, {_LONG[:128]: 2}),
        ({_LONG + "a": 1, _LONG + "b": 2, _LONG + "c": 3}, {_LONG[:128]: 3}),
        ({"": 1, "_": 2}, {"_": 2}),
        ({1: "a", "1": "b"}, {"1": "b"}),
        ({"x": 0, 1: "a", "1": "b"}, {"x": 0, "1": "b"}),
    ],
    ids=["two keys cut alike", "three keys cut alike", "empty and _", "1 and '1'", "1 and '1' among three"],
)
def test_extra_keys_the_wire_spells_alike_are_merged_last_wins(extra: dict, expected: dict) -> None:
    """A record never has one key twice in its attributes: like the structlog path and the server, the
    last of the keys that end up spelt alike wins; cold and warm encoders agree."""
    from oglogstream._entry import EntryEncoder

    encoder = EntryEncoder("svc")
    assert _encode(encoder, extra)["attributes"] == expected  # cold
    assert _encode(encoder, extra)["attributes"] == expected  # warm: the fast paths' caches are filled


def test_a_warm_encoder_spells_each_key_as_a_cold_one_does() -> None:
    """Keys equal as dict keys but spelt differently (1, True, 1.0) each keep their own spelling, in the
    one-, two- and many-field shapes (before: a warm encoder shipped True as "1")."""
    from oglogstream._entry import EntryEncoder

    shapes = [
        [{1: "a"}, {True: "b"}, {1.0: "c"}],
        [{1: "a", "x": 1}, {True: "b", "x": 2}, {1.0: "c", "x": 3}],
        [{1: "a", "x": 1, "y": 2}, {True: "b", "x": 1, "y": 2}],
    ]
    for shape in shapes:
        warm = EntryEncoder("svc")
        for extra in shape:
            expected = {str(key): value for key, value in extra.items()}
            assert _encode(warm, extra)["attributes"] == expected
            assert _encode(EntryEncoder("svc"), extra)["attributes"] == expected


@pytest.mark.parametrize(("seen", "levelno"), [(40, 40.0), (1, True), (50, 50.0)])
def test_a_non_int_levelno_gets_the_same_level_warm_and_cold(seen: int, levelno: object) -> None:
    """A levelno that is not an int is `info` (docs/sdk.md), also after an equal int filled the level cache
    (before: 40.0 was "error" warm, "info" cold)."""
    from oglogstream._entry import EntryEncoder

    encoder = EntryEncoder("svc")
    _encode(encoder, {}, levelno=seen)
    assert _encode(encoder, {}, levelno=levelno)["level"] == "info"
    assert _encode(EntryEncoder("svc"), {}, levelno=levelno)["level"] == "info"
