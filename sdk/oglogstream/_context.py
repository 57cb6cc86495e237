"""The per-task logging context: one ContextVar, read once per record on the caller's thread.

`bind()` replaces the mapping (never mutates it), so a reader on another thread that holds the previous
mapping is unaffected, and asyncio tasks / threads started with `contextvars.copy_context()` inherit what was
bound when they started. The handler ships what the context holds as attributes; a record's own `extra=`
fields win on a key clash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

__all__ = ["CONTEXT", "bind", "bound", "clear_context", "get_context", "unbind"]

#: Always replaced, never mutated in place: a reader on another thread may hold the previous mapping.
CONTEXT: ContextVar[Mapping[str, object] | None] = ContextVar("oglogstream.context", default=None)


def bind(**fields: object) -> None:
    """Add `fields` to every record logged from this thread or task from now on (until `unbind`)."""
    current = CONTEXT.get()
    merged = {**current, **fields} if current else dict(fields)
    CONTEXT.set(MappingProxyType(merged))


def unbind(*keys: str) -> None:
    """Stop adding `keys` to records from this thread or task; unknown keys are ignored."""
    current = CONTEXT.get()
    if not current:
        return
    remaining = {k: v for k, v in current.items() if k not in keys}
    CONTEXT.set(MappingProxyType(remaining) if remaining else None)


def clear_context() -> None:
    """Remove every bound field from this thread or task."""
    CONTEXT.set(None)


def get_context() -> Mapping[str, object]:
    """A read-only view of what is bound now."""
    return CONTEXT.get() or MappingProxyType({})


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """`with bound(request_id=...):` binds `fields` for the block, then restores the previous context."""
    token = CONTEXT.set(CONTEXT.get())
    try:
        bind(**fields)
        yield
    finally:
        CONTEXT.reset(token)
