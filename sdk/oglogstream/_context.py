"""The per-task logging context: one ContextVar, read once per record on the caller's thread.

`bind()` replaces the mapping (never mutates it), so a reader on another thread that holds the previous
mapping is unaffected, and asyncio tasks / threads started with `contextvars.copy_context()` inherit what was
bound when they started. The handler ships what the context holds as attributes; a record's own `extra=`
fields win on a key clash.

What `bind()` stores is a `BoundContext`: records captured under it keep it alive while they wait, so it
counts against `max_buffer_bytes` while any record referencing it waits (`_intake_charge.ContextCharges`).
Binding on top of a large context (nested `bound()`) extends it (`BoundContext.merged`): only the new fields
are new.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

__all__ = ["CONTEXT", "BoundContext", "bind", "bound", "clear_context", "get_context", "unbind"]


class BoundContext(dict[str, object]):
    """The fields bound at one moment: a dict never mutated after `bind`/`unbind` built it (the public view,
    `get_context`, is read-only), with what the intake charges for it (`_intake_charge.ContextCharges`).

    `nbytes`: its size as the intake charges it (`_value_charge.event_bytes`, computed here once, so a
    record's capture reads attributes only). `base`: for a `merged` context, the bound context it extends
    (charged on its own, once however many contexts extend it), else None. `charged`: whether it or a base
    reaches `_intake_charge.LARGE_MESSAGE` (records under it take the caller's slow path, where the charge
    is taken)."""

    __slots__ = ("base", "charged", "nbytes")

    def __init__(self, fields: Mapping[str, object]) -> None:
        # Imported here, not at the top: `_intake_charge` imports this module.
        from ._intake_charge import LARGE_MESSAGE
        from ._value_charge import event_bytes

        super().__init__(fields)
        self.nbytes = event_bytes(self)
        self.base: BoundContext | None = None
        self.charged = self.nbytes >= LARGE_MESSAGE

    @classmethod
    def merged(cls, base: BoundContext, theirs: Mapping[str, object]) -> BoundContext:
        """`base` with `theirs` on top (structlog's contextvars: a new mapping per event). It shares `base`'s
        values, so it is charged its own slots and `theirs`' values, and `base` once per object as always."""
        from ._intake_charge import LARGE_MESSAGE
        from ._value_charge import EXTRA_ATTR_BYTES, event_bytes

        merged = cls({**base, **theirs})
        merged.nbytes = event_bytes(theirs) + len(base) * EXTRA_ATTR_BYTES
        merged.base = base
        merged.charged = base.charged or merged.nbytes >= LARGE_MESSAGE
        return merged


def _extend(current: BoundContext | None, fields: Mapping[str, object]) -> BoundContext:
    """`current` with `fields` on top. Over a charged context it shares that context's values, so it
    extends the root it was built on (one level deep however often `bind` nests): the root is charged
    once, and each extension its own slots and new values."""
    if current is None:
        return BoundContext(fields)
    if not current.charged:
        return BoundContext({**current, **fields})
    root = current.base if current.base is not None else current
    if root is current:
        return BoundContext.merged(root, fields)
    # The fields `current` added over `root` (its own values), then the new ones.
    added = {k: v for k, v in current.items() if k not in root or root[k] is not v}
    return BoundContext.merged(root, {**added, **fields})


#: Always replaced, never mutated in place: a reader on another thread may hold the previous mapping.
CONTEXT: ContextVar[BoundContext | None] = ContextVar("oglogstream.context", default=None)


def bind(**fields: object) -> None:
    """Add `fields` to every record logged from this thread or task from now on (until `unbind`)."""
    CONTEXT.set(_extend(CONTEXT.get() or None, fields))


def unbind(*keys: str) -> None:
    """Stop adding `keys` to records from this thread or task; unknown keys are ignored."""
    current = CONTEXT.get()
    if not current:
        return
    remaining = {k: v for k, v in current.items() if k not in keys}
    CONTEXT.set(BoundContext(remaining) if remaining else None)


def clear_context() -> None:
    """Remove every bound field from this thread or task."""
    CONTEXT.set(None)


def get_context() -> Mapping[str, object]:
    """A read-only view of what is bound now."""
    return MappingProxyType(CONTEXT.get() or {})


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """`with bound(request_id=...):` binds `fields` for the block, then restores the previous context."""
    token = CONTEXT.set(CONTEXT.get())
    try:
        bind(**fields)
        yield
    finally:
        CONTEXT.reset(token)
