"""OpenTelemetry trace context for entries, for the price of a ContextVar read on the caller's thread.

Nothing here imports opentelemetry: an application that uses tracing has imported it already, and one that has
not cannot have an active span. `refresh()` (called when a handler is built, on the first record, and on the
workers' wake-ups) notices the import and installs `current_span`; until then callers pay one global read.
The span object is captured as is; its ids are read on the worker (a span's context never changes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar

__all__ = ["current_span", "refresh"]

#: None until `opentelemetry.trace` is imported; then returns the active span (or None) of the caller.
current_span: Callable[[], object] | None = None


def refresh() -> None:
    """Install `current_span` once opentelemetry-api has been imported by the application."""
    global current_span
    if current_span is not None or "opentelemetry.trace" not in sys.modules:
        return
    try:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import propagation

        key: str = propagation._SPAN_KEY
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        var = getattr(runtime, "_current_context", None)
        if isinstance(var, ContextVar):  # the default ContextVarsRuntimeContext: read its variable directly
            get = var.get

            def span() -> object:
                return get().get(key)

        else:  # another runtime context (OTEL_PYTHON_CONTEXT): go through the public API
            get_value = otel_context.get_value

            def span() -> object:
                return get_value(key)

        span()  # fail here, not on a caller's thread, if the internals are not what we expect
        current_span = span
    except Exception:  # an opentelemetry we do not understand: entries simply carry no trace ids
        current_span = None
