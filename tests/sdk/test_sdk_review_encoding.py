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
