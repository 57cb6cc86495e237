"""The two shapes a captured log call takes in a driver's intake, by name.

* `CapturedRecord` (`_capture`): a stdlib record, a plain 6-tuple that `OgLogHandler.handle` builds inline
  (a tuple literal is the cheapest capture there is; the hot path stays as measured).
* `CapturedEvent`: a structlog or `AsyncOgLogClient` event, its context and span.

Code that must tell them apart asks `is_event(item)` (an exact type check), never the tuple's length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeAlias, Union

from ._capture import CapturedRecord, StructEvent

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = ["CapturedEvent", "CapturedRecord", "Item", "is_event"]


class CapturedEvent(tuple[StructEvent, "Mapping[str, object] | None", object]):
    """A structlog / asyncio event as captured on the caller's thread: `CapturedEvent((event, context,
    span))`. A plain tuple subclass, not a NamedTuple: built by C code (~4x cheaper per event)."""

    __slots__ = ()

    @property
    def event(self) -> StructEvent:
        return self[0]

    @property
    def context(self) -> Mapping[str, object] | None:
        """oglogstream's (and structlog's contextvars') bound context then, or None."""
        return self[1]

    @property
    def span(self) -> object:
        """The OpenTelemetry span active then (see `_otel`), or None."""
        return self[2]


#: What an intake holds.
Item: TypeAlias = Union[CapturedRecord, CapturedEvent]  # noqa: UP007  # runtime alias on Python 3.10


def is_event(item: Item) -> TypeIs[CapturedEvent]:
    """True for a `CapturedEvent`, False for a `CapturedRecord`."""
    return type(item) is CapturedEvent
