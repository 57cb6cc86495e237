"""A value that holds text inside containers or objects is charged what it keeps alive (`nested_bytes`, a
bounded walk): records and events waiting in an intake hold at most their charge for a 10 KB str inside
a list, a dict, an object, nested lists, and long lists of such strings (the walk's average stands for the
elements it does not visit), also in subclasses (OrderedDict, defaultdict, Counter, namedtuple), deques and
`__slots__` objects, read without running the value's own code.
Before, a list / dict / object was charged 72 / 144 / ~48 B whatever it held:
20,000 such events took ~200 MB against a 16 MiB budget."""

from __future__ import annotations

import dataclasses
import gc
import logging
import tracemalloc
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
from collections.abc import Callable
from typing import Any

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler
from oglogstream._value_charge import WALK_ITEMS, nested_bytes

from .charge_helpers import MEASURE_SLACK, charge_of

#: Values per shape (per-item averages).
PER_SHAPE = 100


class Holder:
    def __init__(self, text: str) -> None:
        self.data = text


class Slotted:
    __slots__ = ("data",)

    def __init__(self, text: str) -> None:
        self.data = text


@dataclasses.dataclass(slots=True)
class SlotsData:
    data: str


class SlotsAndDict(Holder):
    """A slotted subclass of a class with a `__dict__`: both hold text."""

    __slots__ = ("more",)

    def __init__(self, text: str) -> None:
        super().__init__(text[:5_000])
        self.more = text[5_000:]


Pair = namedtuple("Pair", "data other")


def _text(i: int, size: int = 10_000) -> str:
    return f"{i:08d}" + "x" * size


SHAPES: dict[str, Callable[[int], Any]] = {
    "list of one 10 KB str": lambda i: [_text(i)],
    "dict of one 10 KB str": lambda i: {"k": _text(i)},
    "object holding a 10 KB str": lambda i: Holder(_text(i)),
    "list in a list in a dict": lambda i: {"a": [[_text(i)]]},
    "tuple of 500 distinct 200-character str": lambda i: tuple(_text(i * 1000 + k, 200) for k in range(500)),
    "dict of 300 distinct 100-character values": lambda i: {f"k{k}": _text(k + i, 100) for k in range(300)},
    # review r9: subclasses and the common containers were charged their shell alone (640-1,600 B)
    "defaultdict of one 10 KB str": lambda i: defaultdict(str, {"k": _text(i)}),
    "OrderedDict of one 10 KB str": lambda i: OrderedDict(k=_text(i)),
    "Counter of one 10 KB str": lambda i: Counter({_text(i): 1}),
    "deque of one 10 KB str": lambda i: deque([_text(i)]),
    "deque of 300 distinct 100-character str": lambda i: deque(_text(i * 1000 + k, 100) for k in range(300)),
    "namedtuple holding a 10 KB str": lambda i: Pair(_text(i), None),
    "__slots__ object holding a 10 KB str": lambda i: Slotted(_text(i)),
    "slots dataclass holding a 10 KB str": lambda i: SlotsData(_text(i)),
    "slots and __dict__ holding 10 KB str": lambda i: SlotsAndDict(_text(i)),
}


def _assert_held_within_charge(shape: str, held: int, items: list[Any]) -> None:
    """PER_SHAPE items waited, holding `held` bytes in all: at most their charge (MEASURE_SLACK)."""
    assert len(items) == PER_SHAPE
    charged = charge_of(items)
    assert held <= charged * MEASURE_SLACK, (shape, held // PER_SHAPE, charged // PER_SHAPE)


def _held(make: Callable[[int], Any], log: Callable[[Any], None]) -> int:
    """Bytes the values plus what capturing them took: the values are made inside the window too."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(PER_SHAPE):
            log(make(i))
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_waiting_async_event_with_a_nested_value_holds_at_most_its_charge(shape: str) -> None:
    """`client.info("m", payload=value)` events (the sending task never runs: no yield) hold at most their
    charge."""
    client = AsyncOgLogClient("http://127.0.0.1:9", "nested")
    client.info("starts the task")
    client._intake.clear()
    client.intake_weights.clear()
    try:
        held = _held(SHAPES[shape], lambda value: client.info("m", payload=value))
        _assert_held_within_charge(shape, held, list(client._intake))
        client._intake.clear()
        client.intake_weights.clear()
        client.intake_large = 0
    finally:
        await client.aclose(0.2)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_waiting_record_with_a_nested_extra_holds_at_most_its_charge(shape: str) -> None:
    """`logger.info("m", extra={"payload": value})` records, captured into an intake no worker empties,
    hold at most their charge."""
    handler = OgLogHandler("http://127.0.0.1:9", "nested")
    pipeline = handler._pipeline
    pipeline.soft_limit = 10**9
    pipeline.submit_slow = pipeline.intake.append  # type: ignore[method-assign]  # no worker
    logger = logging.getLogger("nested-charge")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    try:
        held = _held(SHAPES[shape], lambda value: logger.info("m", extra={"payload": value}))
        _assert_held_within_charge(shape, held, list(pipeline.intake))
        pipeline.intake.clear()
        pipeline.intake_weights.clear()
    finally:
        logger.handlers.clear()
        handler.close(0.2)


def test_the_walk_is_bounded_and_survives_cycles_and_odd_objects() -> None:
    """A self-containing list, a deep chain and an object whose `__dict__` raises are charged without
    error; a walk visits at most WALK_ITEMS elements (a million-element list is charged by its average)."""
    cycle: list[Any] = []
    cycle.append(cycle)
    assert nested_bytes(cycle) > 0
    chain: list[Any] = []
    for _ in range(10_000):
        chain = [chain]
    assert nested_bytes(chain) > 0

    class Odd:
        @property
        def __dict__(self) -> Any:  # type: ignore[override]
            raise RuntimeError("no")

    assert nested_bytes(Odd()) > 0
    big = ["y" * 100] * 1_000_000  # one shared str: charged as if distinct (conservative)
    assert nested_bytes(big) >= 1_000_000 * 100
    assert WALK_ITEMS < 1_000


class _Trap:
    """Records each call of its own code (an RPC proxy's `__getattr__` goes over the network)."""

    calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        _Trap.calls.append(f"__getattribute__ {name}")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        _Trap.calls.append(f"__getattr__ {name}")
        raise AttributeError(name)


class _SlottedTrap(_Trap):
    __slots__ = ("data",)

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "data", text)


class _DictPropertyTrap(Holder):
    @property  # type: ignore[misc]
    def __dict__(self) -> Any:  # type: ignore[override]
        _Trap.calls.append("__dict__ property")
        return {}


class _ListTrap(list[Any]):
    def __iter__(self) -> Any:
        _Trap.calls.append("__iter__")
        return super().__iter__()

    def __len__(self) -> int:
        _Trap.calls.append("__len__")
        return super().__len__()


class _DictTrap(dict[str, Any]):
    def items(self) -> Any:
        _Trap.calls.append("items")
        return super().items()

    def __iter__(self) -> Any:
        _Trap.calls.append("__iter__")
        return super().__iter__()


def test_the_walk_runs_none_of_the_values_own_code() -> None:
    """A `__getattr__` / `__getattribute__` (a proxy sleeping 2 s blocked the caller 2.01 s), a `__dict__`
    property, a container's `__iter__` / `__len__` / `items` are never called, on `nested_bytes` or on
    `logger.warning(..., extra=)`; the text behind them is still charged."""
    text = _text(1)
    values = [
        _SlottedTrap(text),
        _DictPropertyTrap(text),
        _ListTrap([text]),
        _DictTrap(k=text),
        [_SlottedTrap(text)],
        {"k": _DictPropertyTrap(text)},
    ]
    _Trap.calls.clear()
    for value in values:
        assert nested_bytes(value) >= len(text), type(value)
    handler = OgLogHandler("http://127.0.0.1:9", "nested")
    handler._pipeline.submit_slow = handler._pipeline.intake.append  # type: ignore[method-assign]  # no worker
    logger = logging.getLogger("nested-no-user-code")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        for value in values:
            logger.warning("x", extra={"v": value})
    finally:
        logger.handlers.clear()
        handler.close(0.2)
    assert _Trap.calls == []


def test_a_slot_never_assigned_is_left_out() -> None:
    """An object whose slot was never set (reading it raises AttributeError) is charged its size."""
    assert nested_bytes(Slotted.__new__(Slotted)) > 0
