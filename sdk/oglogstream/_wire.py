"""Former name of `oglogstream.wire` (the wire contract); kept as a re-export for existing imports."""

from __future__ import annotations

from .wire import *  # noqa: F403
from .wire import __all__ as __all__
