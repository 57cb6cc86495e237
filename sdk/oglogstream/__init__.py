"""oglogstream: ship Python logs to OgLogStream without ever blocking or breaking the application.

    import logging, oglogstream
    logging.getLogger().addHandler(oglogstream.OgLogHandler("http://localhost:8080", "my-service"))

See docs/sdk.md for every setting, the dictConfig and structlog set-ups, and what `stats()` reports.
"""

from __future__ import annotations

from ._async import AsyncOgLogClient
from ._context import bind, bound, clear_context, get_context, unbind
from ._handler import OgLogHandler
from ._stats import DROP_REASONS, LOSS_REMEDIES, Stats
from ._structlog import OgLogProcessor
from ._version import VERSION as __version__

__all__ = [
    "DROP_REASONS",
    "LOSS_REMEDIES",
    "AsyncOgLogClient",
    "OgLogHandler",
    "OgLogProcessor",
    "Stats",
    "__version__",
    "bind",
    "bound",
    "clear_context",
    "get_context",
    "unbind",
]
