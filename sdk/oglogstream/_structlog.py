"""`OgLogProcessor`: a structlog processor that ships each event dict through the same worker machinery.

Nothing here imports structlog: the processor is a plain callable with structlog's signature. It ships, as
attributes, what `oglogstream.bind()` bound and what `structlog.contextvars.bind_contextvars()` bound (whether
or not `merge_contextvars` runs before it); keys of the event dict itself win over both.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from . import _otel
from ._context import CONTEXT, BoundContext
from ._entry import StructEvent, capture_exc_info
from ._handler import OgLogHandler
from ._intake_charge import (
    LARGE_MESSAGE,
    WEIGHT_SHIFT,
    WEIGHT_UNITS,
    event_units,
    is_charged,
    item_chars,
)
from ._items import CapturedEvent
from ._settings import Options, Settings
from ._stats import Stats
from ._value_charge import exc_info_bytes
from ._worker import WORKER_THREADS, Pipeline

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["OgLogProcessor"]

_get_ident = threading.get_ident
_current_thread = threading.current_thread
_context_get = CONTEXT.get


def _context() -> Mapping[str, object] | None:
    """oglogstream's bound context, plus structlog's contextvars when structlog.contextvars is in use."""
    bound = _context_get()
    module = sys.modules.get("structlog.contextvars")
    if module is None:
        return bound
    try:
        theirs = module.get_contextvars()
    except Exception:  # a structlog we do not understand: ship our own context only
        return bound
    if not theirs:
        return bound
    return BoundContext.merged(bound, theirs) if bound else theirs


class OgLogProcessor:
    """Ship structlog events to OgLogStream and pass the event dict on unchanged.

    Either give connection settings (`url`, `service` and the same keyword settings as `OgLogHandler`), or
    `handler=` an existing `OgLogHandler` to share its worker, buffer and stats. Put it after the processors
    whose keys you want shipped (`add_log_level`, `TimeStamper`, ...) and before the renderer.
    """

    def __init__(
        self,
        url: str | None = None,
        service: str | None = None,
        *,
        handler: OgLogHandler | None = None,
        **options: Unpack[Options],
    ) -> None:
        if handler is not None:
            if url is not None or service is not None or options:
                raise ValueError("OgLogProcessor: pass either handler= or connection settings, not both")
            if not isinstance(handler, OgLogHandler):
                raise ValueError(f"handler must be an OgLogHandler, got {type(handler).__name__}")
            self._pipeline = handler._pipeline
            self._owns_pipeline = False
        else:
            self._pipeline = Pipeline(
                Settings.build(url, service, owner="OgLogProcessor", own=("handler",), **options)
            )
            self._owns_pipeline = True

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        """Capture a shallow copy of the event now (later processors may mutate it) and return it as is.

        Its exception becomes text now (`capture_exc_info`), unless the event already has its `exception`
        text (structlog's `format_exc_info` ran before), which wins; the copy keeps neither `exc_info` nor a
        stdlib bridge's `_record` (never shipped): none of them keeps a traceback, or its frames' locals,
        alive while the event waits."""
        try:
            if _get_ident() not in WORKER_THREADS:
                copy = dict(event_dict)
                raw = copy.pop("exc_info", None)
                copy.pop("_record", None)
                exc_info = None if isinstance(copy.get("exception"), str) else capture_exc_info(raw)
                event = StructEvent(
                    copy,
                    method_name,
                    time.time(),
                    _current_thread().name,
                    exc_info,
                    exc_info_bytes(exc_info) if exc_info is not None else 0,
                )
                pipeline = self._pipeline
                span_of = _otel.current_span
                item = CapturedEvent((event, _context(), span_of() if span_of is not None else None))
                # A large event (`_intake_charge.large_bytes`) takes the slow path, where its size is charged.
                # So does one under a charged bound context (`_intake_charge.ContextCharges`). The room
                # counts the weights of the records waiting (a shared handler's, `OgLogHandler.handle`).
                held = len(pipeline.intake) + (len(pipeline.intake_weights) >> WEIGHT_SHIFT)
                size = item_chars(item)
                if (
                    held < pipeline.soft_limit
                    and size < LARGE_MESSAGE
                    and not is_charged(item[1])
                ):
                    pipeline.intake.append(item)
                    # A mid-size event's weights (`_intake_charge.event_units`), after the event, as a
                    # record's are (`OgLogHandler.handle`).
                    units = event_units(size)
                    if units:
                        pipeline.intake_weights.extend(WEIGHT_UNITS[units])
                else:
                    pipeline.submit_slow(item)
        except Exception as exc:  # never raise into the application
            self._pipeline.count_internal_error(exc)
        return event_dict

    def flush(self, timeout: float | None = None) -> bool:
        """As `OgLogHandler.flush`."""
        return self._pipeline.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop and drain this processor's own worker; a processor sharing a handler leaves it running."""
        if not self._owns_pipeline:
            return self._pipeline.flush(timeout)
        return self._pipeline.close(timeout)

    def stats(self) -> Stats:
        """As `OgLogHandler.stats` (shared with the handler when built with `handler=`)."""
        return self._pipeline.stats()
