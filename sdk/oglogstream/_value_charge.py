"""What the values a captured record or event keeps alive occupy, in bytes, O(1) each (shallow): text,
containers, numbers and other objects (`_values_bytes`), `%` arguments (`args_bytes`), a record's `extra=`
fields (`extras_bytes`, `copy_extras`: the handler's hot path), what a record kept whole holds and may be
given (`kept_bytes`). `_intake_charge` turns these into the intake's charges (importers take these names
from here).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import suppress
from itertools import islice
from sys import getsizeof
from types import GetSetDescriptorType, MemberDescriptorType
from typing import Any

from ._capture import PLAIN_KEYS, RECORD_BASE_KEYS
from ._entry_values import _BASE_KEYS, _STANDARD_KEYS

__all__ = [
    "ARG_BYTES",
    "CONTAINER_ITEM_BYTES",
    "EXC_INFO_BYTES",
    "EXTRA_ATTR_BYTES",
    "FRAME_TEXT_BYTES",
    "FREE_ARGS",
    "LATER_FORMAT_BYTES",
    "LAYOUT_CACHE",
    "MAPPING_ITEM_BYTES",
    "MAX_CHAINED",
    "OBJECT_FALLBACK_BYTES",
    "SMALL_INT_MAX",
    "SMALL_INT_MIN",
    "TRACEBACK_FRAME_BYTES",
    "WALK_DEPTH",
    "WALK_ITEMS",
    "args_bytes",
    "copy_extras",
    "event_bytes",
    "exc_info_bytes",
    "extras_bytes",
    "kept_bytes",
    "nested_bytes",
    "object_bytes",
    "str_bytes",
    "traceback_frames",
]

#: What one `extra=` attribute of a captured record is charged besides its str value's characters: its slot
#: in the record's `__dict__` (which also grows by resizing) and the value object's header. Measured with
#: tracemalloc: 50 ten-character str fields add ~4,250 B to a record (~85 B each); charged 96 + 10.
EXTRA_ATTR_BYTES = 96
#: What each traceback frame beyond the first of a record kept whole (`kept_bytes`) or of an event's
#: exception (`exc_info_bytes`) holds: its traceback entry and frame object (tracemalloc, 3-10 frames of
#: small functions: ~245 B a frame) and what its locals keep alive (a frame holding one 200-character str
#: local: ~500 B). Charged at 256 B, 30 frames of the latter held 1.56x their event's charge. Locals larger
#: than that are not counted (reading `f_locals` would build, and keep, a dict per frame).
TRACEBACK_FRAME_BYTES = 512
#: What a handler after ours adds to a record kept whole (`kept_bytes`) besides the message's text: a
#: Formatter's `message` and `asctime` (slots, headers, the dict's growth) and `exc_text`'s fixed part
#: (header line, exception line); FRAME_TEXT_BYTES a frame besides its file name (line number, function,
#: source line). Measured with tracemalloc (a later StreamHandler formatting `logger.exception` records).
LATER_FORMAT_BYTES = 320
FRAME_TEXT_BYTES = 96
#: What an exception attached to a structlog or `AsyncOgLogClient` event (its StructEvent's `exc_info`)
#: holds with a one-frame traceback: KEPT_RECORD_BYTES less RECORD_BYTES (`_intake_charge`), the part of a
#: kept record's charge that is its exception's (`exc_info_bytes`: the same rule as `kept_bytes`).
EXC_INFO_BYTES = 768
#: Chained exceptions `traceback_frames` counts at most (a cycle stops it sooner): O(1) work per record.
MAX_CHAINED = 16
#: An `extra=` value that is a list or tuple is charged this much per element, a dict or set this much per
#: entry, on top of EXTRA_ATTR_BYTES, plus what the elements hold (`nested_bytes`): the captured record
#: keeps the object (and so its elements) alive. Measured with tracemalloc (10,000 elements,
#: tests/sdk/test_sdk_review_memory.py): a list of small ints 40 B, of short str 67 B, a tuple of floats
#: 32 B per element; a dict of short str to short str 140 B, of ints 69 B, a set of short str 106 B per entry.
CONTAINER_ITEM_BYTES = 72
MAPPING_ITEM_BYTES = 144
#: Elements (and objects' attribute dicts) `nested_bytes` visits at most per value, and how deep: O(1) per
#: value. The text, nested containers and attributes of those visited are charged; each element not
#: visited is charged the average of those visited (beyond its container's per-element rate). Before, a
#: container or object was charged shallowly: one 10 KB str inside a list / dict / object was charged 72 /
#: 144 / ~48 B, and 20,000 such events took ~200 MB against a 16 MiB budget.
WALK_ITEMS = 64
WALK_DEPTH = 8
_SEQUENCES = frozenset({list, tuple})
_MAPPINGS = frozenset({dict, set, frozenset})
#: The containers `_open` walks in a value of no exact type `nested_bytes` knows (a subclass, a deque):
#: (base, bytes per element, elements are key-value pairs). A deque holds 8 B a slot in 64-slot blocks;
#: its `sys.getsizeof` counts them. Before, these were charged `object_bytes` alone: a defaultdict /
#: OrderedDict / deque / namedtuple holding one 10 KB str was charged 640-1,600 B for ~10,600 B held, and
#: 20,000 records with `extra={"payload": deque([10 KB str])}` grew RSS 214 MB against a 128 MiB budget.
_CONTAINERS: tuple[tuple[Any, int, bool], ...] = (
    (list, CONTAINER_ITEM_BYTES, False),
    (tuple, CONTAINER_ITEM_BYTES, False),
    (deque, CONTAINER_ITEM_BYTES, False),
    (dict, MAPPING_ITEM_BYTES, True),
    (set, MAPPING_ITEM_BYTES, False),
    (frozenset, MAPPING_ITEM_BYTES, False),
)
#: Classes whose `_layout` is kept (then the cache starts over): O(1) per object of a class seen before.
LAYOUT_CACHE = 512
_Layout = tuple[tuple[Any, int, bool] | None, Any, tuple[Any, ...]]
_LAYOUTS: dict[int, tuple[type, _Layout]] = {}
_TYPE_MRO = type.__dict__["__mro__"].__get__
_TYPE_NAMESPACE = type.__dict__["__dict__"].__get__
_DESCRIPTORS = (GetSetDescriptorType, MemberDescriptorType)
_BYTES = frozenset({bytes, bytearray})
_LEFTOVERS = ("message", "asctime")
#: Values whose object EXTRA_ATTR_BYTES covers (its allowance for a str's 49 B header): float 24 B, bool and
#: None shared, an int from SMALL_INT_MIN to SMALL_INT_MAX 28-36 B. A larger int is charged its size.
_ATOMS = frozenset({float, bool, type(None)})
SMALL_INT_MAX = 2**62
SMALL_INT_MIN = -SMALL_INT_MAX
#: What a value `sys.getsizeof` cannot size (its `__sizeof__` raised) is charged.
OBJECT_FALLBACK_BYTES = 256
#: A record's `%` arguments kept for the worker (`_capture.render`: str, int, float, bool, None) beyond the
#: first FREE_ARGS are charged ARG_BYTES each besides their text (a str's characters, `str_bytes`) and a
#: large int's `sys.getsizeof`: the args tuple's slot (8 B) and the value's object (float 24 B, int 28-36 B,
#: a str's 49 B header). The flat charge and RECORD_BYTES cover the first FREE_ARGS (the typical `"%s"`
#: or `"%d of %d"` call, which so stays on the fast path). Before, 6 / 10 / 20 float arguments held 1.19x /
#: 1.40x / 1.95x their charge (tracemalloc, waiting records).
FREE_ARGS = 2
ARG_BYTES = 64


def str_bytes(text: str) -> int:
    """What a str's text occupies, O(1): its length when ASCII (1 byte a character; the ~49 B header is in
    RECORD_BYTES / EXTRA_ATTR_BYTES), else its whole size (`sys.getsizeof`): PEP 393 stores non-Latin-1
    text in 2 or 4 bytes a character (CJK 2, emoji 4), so counting characters let a stuck worker's intake
    hold 1.9x (CJK) to 3.7x (emoji) the budget. `OgLogHandler.handle` inlines the same expression."""
    return len(text) if text.isascii() else getsizeof(text)


def object_bytes(value: object) -> int:
    """What a value of no type `_values_bytes` knows occupies (a UUID, Decimal, datetime, an application
    object), O(1): `sys.getsizeof`, plus the buffer a memoryview keeps alive; OBJECT_FALLBACK_BYTES when its
    `__sizeof__` raises. Shallow: what its attributes reference is not counted, except what EXTRA_ATTR_BYTES'
    allowance for a str header covers (a UUID's int: 56 + 44 B held against 96 + 56 B charged)."""
    try:
        size = getsizeof(value)
        if type(value) is memoryview:
            size += value.nbytes
        return size
    except Exception:
        return OBJECT_FALLBACK_BYTES


def _values_bytes(values: Iterable[Any]) -> int:
    """What `values` hold beyond their slots, O(1) each: `str_bytes` of str values, nothing for floats,
    bools, None and ints from SMALL_INT_MIN to SMALL_INT_MAX (EXTRA_ATTR_BYTES covers them), the length of
    bytes values, `nested_bytes` of anything else (containers, objects, a large int)."""
    size = 0
    for value in values:
        kind = type(value)
        if kind is str:
            size += len(value) if value.isascii() else getsizeof(value)
        elif kind is int:
            if not SMALL_INT_MIN <= value <= SMALL_INT_MAX:
                size += getsizeof(value)
        elif kind in _ATOMS:
            pass
        elif kind in _BYTES:
            size += len(value)
        else:
            size += nested_bytes(value)
    return size


def nested_bytes(value: object) -> int:
    """What a container or object value keeps alive, in bytes, by a bounded walk (WALK_ITEMS elements,
    WALK_DEPTH levels): CONTAINER_ITEM_BYTES per list/tuple/deque element and MAPPING_ITEM_BYTES per
    dict/set entry (all of them, visited or not; subclasses too: OrderedDict, defaultdict, Counter,
    namedtuple), plus, for what is visited, the `_values_bytes` rule (text, bytes, large ints) and for any
    other object its `object_bytes` and what its `__dict__` and `__slots__` hold (`_open`); each element not
    visited is charged the average of those visited. O(WALK_ITEMS); never raises, and runs none of the
    value's own code but its `__sizeof__` (what cannot be read so is charged `object_bytes`)."""
    size = seen = seen_bytes = unseen = 0
    budget = WALK_ITEMS
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            grown = len(item) if item.isascii() else getsizeof(item)
        elif kind is int:
            grown = 0 if SMALL_INT_MIN <= item <= SMALL_INT_MAX else getsizeof(item)
        elif kind in _ATOMS:
            grown = 0
        elif kind in _BYTES:
            grown = len(item)
        elif kind in _SEQUENCES or kind in _MAPPINGS:
            count = len(item)
            grown = count * (MAPPING_ITEM_BYTES if kind in _MAPPINGS else CONTAINER_ITEM_BYTES)
            take = min(count, budget) if depth < WALK_DEPTH else 0
            budget -= take
            unseen += (count - take) * (2 if kind is dict else 1)  # a dict entry not visited: key and value
            if take:
                elements = iter(item.items() if kind is dict else item)
                for _ in range(take):
                    element = next(elements)
                    if kind is dict:
                        stack.append((element[0], depth + 1))
                        stack.append((element[1], depth + 1))
                    else:
                        stack.append((element, depth + 1))
        else:
            grown, budget, skipped = _open(item, kind, depth, budget, stack)
            unseen += skipped
        size += grown
        if depth:
            seen += 1
            seen_bytes += grown
    if unseen and seen:
        size += unseen * -(-seen_bytes // seen)
    return size


def _open(
    item: Any, kind: type, depth: int, budget: int, stack: list[tuple[Any, int]]
) -> tuple[int, int, int]:
    """`nested_bytes` for a value of no type it knows exactly: (bytes, budget left, elements not visited).
    Its size is `object_bytes` (at least its elements' rate when it is a container, `_CONTAINERS`); up to
    `budget` of its elements, then of its `__dict__` (pushed whole: a dict) and `__slots__` values
    (`_layout`), are pushed on `stack` one level down. Elements are read through the builtin base's C
    methods (`list.__iter__(item)`, `dict.items(item)`) and attributes through the class's own descriptors,
    so an override of `__iter__`, `__getattr__`, `__getattribute__` or a `__dict__` property never runs
    on the caller's thread (a `__getattr__` doing I/O blocked `logger.warning("x", extra={"v": obj})`).
    Never raises: what fails to read is left out."""
    grown = object_bytes(item)
    unseen = 0
    walk = depth < WALK_DEPTH
    try:
        container, attributes, slots = _layout(kind)
        if container is not None:
            base, rate, pairs = container
            count = base.__len__(item)
            grown = max(grown, count * rate)
            take = min(count, budget) if walk else 0
            budget -= take
            unseen += (count - take) * (2 if pairs else 1)
            elements = iter(dict.items(item) if pairs else base.__iter__(item))
            for element in islice(elements, take):
                if pairs:
                    stack.append((element[0], depth + 1))
                    stack.append((element[1], depth + 1))
                else:
                    stack.append((element, depth + 1))
        if walk:
            if attributes is not None:
                held = attributes.__get__(item, kind)
                if type(held) is dict:
                    stack.append((held, depth + 1))
            take = min(len(slots), budget)
            budget -= take
            unseen += len(slots) - take
            for slot in slots[:take]:
                with suppress(AttributeError):  # a slot never assigned
                    stack.append((slot.__get__(item, kind), depth + 1))
    except Exception:  # a container changed size while read, an odd C type: charged what was read
        pass
    return grown, budget, unseen


def _layout(kind: type) -> _Layout:
    """(its `_CONTAINERS` entry or None, the descriptor that reads an instance's `__dict__` or None, the
    member descriptors of the `__slots__` its classes declare) of `kind`, found by `issubclass` and in its
    classes' namespaces (read through `type`'s own descriptors: no metaclass code runs) and cached per class
    (LAYOUT_CACHE classes, by identity: a metaclass's `__hash__` is not called). A `__dict__` property is
    skipped for a base's real descriptor."""
    known = _LAYOUTS.get(id(kind))
    if known is not None and known[0] is kind:
        return known[1]
    container = next((entry for entry in _CONTAINERS if issubclass(kind, entry[0])), None)
    attributes = None
    slots: list[Any] = []
    for klass in _TYPE_MRO(kind):
        namespace = _TYPE_NAMESPACE(klass)
        entry = namespace.get("__dict__")
        if attributes is None and type(entry) in _DESCRIPTORS:
            attributes = entry
        if "__slots__" in namespace:
            slots.extend(member for member in namespace.values() if type(member) is MemberDescriptorType)
    layout = (container, attributes, tuple(slots))
    if len(_LAYOUTS) >= LAYOUT_CACHE:
        _LAYOUTS.clear()
    _LAYOUTS[id(kind)] = (kind, layout)
    return layout


def args_bytes(args: tuple[Any, ...] | None) -> int:
    """What a captured record's `%` arguments (kept for the worker: IMMUTABLE_ARG_TYPES values, or None
    once rendered) are charged: `str_bytes` of str ones, `sys.getsizeof` of ints beyond SMALL_INT_MAX, and
    ARG_BYTES for each beyond FREE_ARGS. `OgLogHandler.handle` inlines it."""
    if not args:
        return 0
    size = (len(args) - FREE_ARGS) * ARG_BYTES if len(args) > FREE_ARGS else 0
    for arg in args:
        kind = type(arg)
        if kind is str:
            size += len(arg) if arg.isascii() else getsizeof(arg)
        elif kind is int and not SMALL_INT_MIN <= arg <= SMALL_INT_MAX:
            size += getsizeof(arg)
    return size


def event_bytes(event: Mapping[str, Any]) -> int:
    """What a captured structlog/asyncio event dict occupies, charged as a record's `extra=` fields are
    (`extras_bytes`): EXTRA_ATTR_BYTES per key plus its values' text and elements (the message is the
    `event` value). O(number of keys)."""
    return len(event) * EXTRA_ATTR_BYTES + _values_bytes(event.values())


def extras_bytes(record_dict: dict[str, Any]) -> int:
    """What a captured record's dict holds beyond LogRecord's own attributes: EXTRA_ATTR_BYTES per other key
    plus `_values_bytes` of their values. For a snapshot (`_capture.snapshot`), its `extra=` fields (what
    `copy_extras` returns); for a record kept whole, also a Formatter's `message`/`asctime` an earlier
    handler left (it holds them). O(number of keys): a capture's (`_capture.capture`) and a kept record's
    (the slow path's) charge only. Computed once, at the capture (the record's `record_charge`)."""
    extras = [value for key, value in record_dict.items() if key not in _BASE_KEYS]
    return len(extras) * EXTRA_ATTR_BYTES + _values_bytes(extras) if extras else 0


def kept_bytes(record_dict: dict[str, Any], size: int) -> int:
    """What a record kept whole (exception, stack) is charged besides KEPT_RECORD_BYTES and `size` (its
    message and arguments, `item_chars`' first terms): `extras_bytes` of its `__dict__`, its `stack_info`
    and `exc_text` text, TRACEBACK_FRAME_BYTES per traceback frame beyond the first (`traceback_frames`),
    and, since the charge is taken once, at the capture, what a handler after ours may add while it waits
    unless one before already did (no `message` yet): a Formatter's `message` (the text again when it has
    arguments), `asctime` and `exc_text` (LATER_FORMAT_BYTES, FRAME_TEXT_BYTES a frame and the frames' file
    names). O(number of
    keys + frames): the slow path's (exceptions are rare, and formatting them costs O(frames) anyway)."""
    held = extras_bytes(record_dict)
    for key in ("stack_info", "exc_text"):
        text = record_dict.get(key)
        if type(text) is str:
            held += len(text) if text.isascii() else getsizeof(text)
    frames, names = traceback_frames(record_dict.get("exc_info"))
    if frames > 1:
        held += (frames - 1) * TRACEBACK_FRAME_BYTES
    if "message" not in record_dict:
        held += LATER_FORMAT_BYTES + frames * FRAME_TEXT_BYTES + names
        if record_dict.get("args"):  # else `getMessage()` returns the msg str itself
            held += size
    return held


def exc_info_bytes(exc_info: object) -> int:
    """What a captured event's `exc_info` triple keeps alive, in bytes, charged by the rule of a record
    kept whole (`kept_bytes`): EXC_INFO_BYTES for the exception and its first frame, TRACEBACK_FRAME_BYTES
    per frame beyond it and the text `traceback_frames` counts (file names, the exceptions' str arguments).
    0 for None. Computed once, at the capture (a re-raise grows the traceback later). O(frames); never
    raises. Before, an event's traceback was not charged: 1 / 10 / 30 frames held 1,817 / 6,316 / 16,313 B
    against an 800 B charge."""
    if exc_info is None:
        return 0
    frames, names = traceback_frames(exc_info)
    return EXC_INFO_BYTES + max(frames - 1, 0) * TRACEBACK_FRAME_BYTES + names


def traceback_frames(exc_info: object) -> tuple[int, int]:
    """(frames, text) of the tracebacks an `exc_info` triple keeps alive: its exception's and those of the
    exceptions it chains (`__cause__`, `__context__`), up to MAX_CHAINED exceptions; `text` is what their
    formatting (`exc_text`) takes beyond FRAME_TEXT_BYTES a frame: the frames' file names and `str_bytes`
    of the exceptions' str arguments (its last line, `ValueError: <text>`). (0, 0) for anything else.
    Never raises."""
    frames = names = 0
    try:
        exc = exc_info[1] if type(exc_info) is tuple and len(exc_info) == 3 else None
        seen: set[int] = set()
        while isinstance(exc, BaseException) and len(seen) < MAX_CHAINED and id(exc) not in seen:
            seen.add(id(exc))
            for arg in exc.args[:MAX_CHAINED]:
                if type(arg) is str:
                    names += len(arg) if arg.isascii() else getsizeof(arg)
            tb = exc.__traceback__
            while tb is not None:
                frames += 1
                names += len(tb.tb_frame.f_code.co_filename)
                tb = tb.tb_next
            exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    except Exception:
        pass
    return frames, names


def copy_extras(record_dict: dict[str, Any], into: dict[str, Any]) -> int:
    """Copy the `extra=` fields of `record_dict` (a LogRecord's `__dict__`: `_capture.extra_items`, inlined;
    not a Formatter's leftovers, which the encoder skips and the snapshot so needs not hold) into `into` (a
    `_capture.snapshot`), in their order, and return what they are charged: what they occupy
    (`extras_bytes` of the snapshot) plus, as if held, a Formatter's `message`/`asctime` an earlier handler
    left. O(number of extras) for the usual record. One pass for both jobs: the handler's hot path."""
    before = len(into)
    size = 0
    keys = [*record_dict]
    for key in keys[RECORD_BASE_KEYS:] if keys[:RECORD_BASE_KEYS] == PLAIN_KEYS else keys:
        if key in _STANDARD_KEYS:
            continue
        into[key] = value = record_dict[key]
        # `_values_bytes`'s rule, inlined for the usual types (a call per value would cost more than the rule)
        kind = type(value)
        if kind is str:
            size += len(value) if value.isascii() else getsizeof(value)
        elif kind is int:
            if not SMALL_INT_MIN <= value <= SMALL_INT_MAX:
                size += getsizeof(value)
        elif kind not in _ATOMS:
            size += _values_bytes((value,))
    if "message" in record_dict or "asctime" in record_dict:
        # An earlier handler's Formatter leftovers are not copied, yet charged as an `extra=` field each
        # (never among the FREE_EXTRAS): a bound on the record whoever keeps it, as before snapshots (a
        # `message` is often the msg str itself; an `asctime` ~72 B). Rare enough for a call.
        size += _values_bytes([record_dict[key] for key in _LEFTOVERS if key in record_dict])
        size += EXTRA_ATTR_BYTES * (("message" in record_dict) + ("asctime" in record_dict))
    return size + (len(into) - before) * EXTRA_ATTR_BYTES
