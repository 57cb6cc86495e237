"""Level names: the five stored levels and the other spellings the door accepts for them.

Stored (and returned) levels are always one of `_wire.LEVELS`. At the door (`POST /log`, `/logs`) and in the
query filter (`level=`) a level is read case-insensitively, and Python's and syslog's usual names are taken
as their nearest level: `WARNING` -> warn, `CRITICAL` -> fatal, `err` -> error (table below, documented in
docs/stack.md). OTLP severity text also accepts a few OpenTelemetry/.NET spellings (`OTLP_TEXT`).
"""

from __future__ import annotations

from oglogstream import _wire

__all__ = ["ALIASES", "LEVELS", "OTLP_TEXT", "level_name"]

LEVELS = _wire.LEVELS
#: Python logging's and syslog's (RFC 5424) names, lower-cased, for the stored level nearest to each.
ALIASES: dict[str, str] = {
    "warning": "warn",  # Python, syslog
    "critical": "fatal",  # Python
    "crit": "fatal",  # syslog
    "alert": "fatal",  # syslog
    "emerg": "fatal",  # syslog
    "panic": "fatal",  # syslog (deprecated spelling of emerg)
    "err": "error",  # syslog
    "notice": "info",  # syslog
}
#: Severity text in OTLP records (used when the severity number is unspecified).
OTLP_TEXT: dict[str, str] = {
    **{level: level for level in LEVELS},
    **ALIASES,
    "trace": "debug",
    "information": "info",
    "informational": "info",
    "emergency": "fatal",
}
_BY_NAME = {**{level: level for level in LEVELS}, **ALIASES}


def level_name(text: str) -> str | None:
    """The stored level `text` names (any case, surrounding spaces ignored), or None."""
    return _BY_NAME.get(text.strip().lower())
