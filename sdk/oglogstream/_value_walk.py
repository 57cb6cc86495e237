"""What a container or object `extra=` value keeps alive, by a bounded walk that runs none of the value's code
(`nested_bytes`), and the sizes it shares with `_value_charge` (split from it by job: the walk and its
layouts; `_value_charge` charges records, events and arguments)."""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from itertools import islice
from sys import getsizeof
from types import GetSetDescriptorType, MemberDescriptorType
from typing import Any

__all__ = [
    "CONTAINER_ITEM_BYTES",
    "LAYOUT_CACHE",
    "MAPPING_ITEM_BYTES",
    "OBJECT_FALLBACK_BYTES",
    "SMALL_INT_MAX",
    "SMALL_INT_MIN",
    "WALK_DEPTH",
    "WALK_ITEMS",
    "nested_bytes",
    "object_bytes",
]

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
#: Values whose object EXTRA_ATTR_BYTES covers (its allowance for a str's 49 B header): float 24 B, bool and
#: None shared, an int from SMALL_INT_MIN to SMALL_INT_MAX 28-36 B. A larger int is charged its size.
_ATOMS = frozenset({float, bool, type(None)})
SMALL_INT_MAX = 2**62
SMALL_INT_MIN = -SMALL_INT_MAX
#: What a value `sys.getsizeof` cannot size (its `__sizeof__` raised) is charged.
OBJECT_FALLBACK_BYTES = 256

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
