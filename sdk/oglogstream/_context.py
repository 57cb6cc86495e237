"""The per-task logging context: one ContextVar, read once per record on the caller's thread.

`bind()` (next issue) will set a new immutable mapping here; the handler already ships whatever it holds as
attributes (a record's own `extra=` fields win on a key clash), so adding it needs no handler change.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

__all__ = ["CONTEXT"]

#: Always replaced, never mutated in place: a reader on another thread may hold the previous mapping.
CONTEXT: ContextVar[Mapping[str, object] | None] = ContextVar("oglogstream.context", default=None)
