"""Level names: the five stored levels and the other spellings the door and the query filter accept.

The one definition lives in the wire contract (`oglogstream.wire`: LEVELS, LEVEL_ALIASES, level_name); this
module re-exports it for the stack's callers. Documented for users in docs/stack.md.
"""

from __future__ import annotations

from oglogstream.wire import LEVEL_ALIASES as ALIASES
from oglogstream.wire import LEVELS, level_name

__all__ = ["ALIASES", "LEVELS", "level_name"]
