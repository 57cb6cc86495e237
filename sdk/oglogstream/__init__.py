"""oglogstream: ship Python logs to OgLogStream without ever blocking or breaking the application.

    import logging, oglogstream
    logging.getLogger().addHandler(oglogstream.OgLogHandler("http://localhost:8080", "my-service"))

See docs/sdk.md for every setting, the dictConfig and structlog set-ups, and what `stats()` reports.

The public names load on first use (PEP 562), so `import oglogstream.wire` (the wire contract, which the
reference stack imports in every server process) loads neither httpx nor tenacity and registers none of the
SDK's atexit/fork hooks.

`logging` itself is imported here, eagerly (stdlib, already loaded by nearly every program): its atexit hook
(`logging.shutdown`, which closes every handler) must be registered before anything the application registers
after `import oglogstream`, so that it runs after those hooks (atexit is last-in, first-out) and an
`OgLogHandler` still batches their records; see `_lifecycle`.
"""

from __future__ import annotations

import importlib
import logging  # noqa: F401  # registers logging.shutdown now (see above): not an SDK hook
from typing import TYPE_CHECKING, Any

from ._version import VERSION as __version__

if TYPE_CHECKING:
    from ._async import AsyncOgLogClient
    from ._context import bind, bound, clear_context, get_context, unbind
    from ._handler import OgLogHandler
    from ._stats import DROP_REASONS, LOSS_REMEDIES, Stats
    from ._structlog import OgLogProcessor

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

#: Public name -> the private module that defines it.
_HOMES = {
    "AsyncOgLogClient": "._async",
    "bind": "._context",
    "bound": "._context",
    "clear_context": "._context",
    "get_context": "._context",
    "unbind": "._context",
    "OgLogHandler": "._handler",
    "DROP_REASONS": "._stats",
    "LOSS_REMEDIES": "._stats",
    "Stats": "._stats",
    "OgLogProcessor": "._structlog",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
