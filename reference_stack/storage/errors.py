"""Storage errors, classified: is a failed insert about the rows (poison) or about the server (transient)?

The processor acts on the answer (`processing.sink.Sink.is_poison`): transient failures are retried with
backoff and then nak'ed, never dropped; poison is isolated down to the refused rows, which are dead-lettered.
The same rule holds for chDB and for a ClickHouse server: both report `Code: N` in the exception text.
"""

from __future__ import annotations

import re

__all__ = ["is_data_error"]

#: ClickHouse error codes that describe the server's state, not the rows: retrying later can succeed.
#: 3 UNEXPECTED_END_OF_FILE, 159 TIMEOUT_EXCEEDED, 164 READONLY, 202 TOO_MANY_SIMULTANEOUS_QUERIES,
#: 209 SOCKET_TIMEOUT, 210 NETWORK_ERROR, 236 ABORTED, 241 MEMORY_LIMIT_EXCEEDED, 242 TABLE_IS_READ_ONLY,
#: 243 NOT_ENOUGH_SPACE, 252 TOO_MANY_PARTS (merges behind; see _PARTITIONS), 319 UNKNOWN_STATUS_OF_INSERT,
#: 394 QUERY_WAS_CANCELLED, 425 SYSTEM_ERROR, 439 CANNOT_SCHEDULE_TASK, 497 ACCESS_DENIED,
#: 516 AUTHENTICATION_FAILED, 60/81 UNKNOWN_TABLE/DATABASE (dropped by hand: fix the server, keep the data),
#: 999 KEEPER_EXCEPTION, 1002 UNKNOWN_EXCEPTION.
_TRANSIENT_CODES = frozenset(
    {3, 60, 81, 159, 164, 202, 209, 210, 236, 241, 242, 243, 252, 319, 394, 425, 439, 497, 516, 999, 1002}
)
_CODE = re.compile(r"Code: (\d+)")
#: Code 252 also says "Too many partitions for single INSERT block": that is about the rows' dates, and the
#: same insert fails the same way forever unless it is split.
_PARTITIONS = "Too many partitions for single INSERT block"


def is_data_error(exc: BaseException) -> bool:
    """True when ClickHouse refused these rows themselves (parse, type, range, partition count): the same
    insert fails again however often it is retried, so the rows must be split or dead-lettered. False for
    everything else: connection errors (no code) and the codes of `_TRANSIENT_CODES`, which are retried."""
    text = str(exc)
    if _PARTITIONS in text:
        return True
    match = _CODE.search(text)
    return match is not None and int(match.group(1)) not in _TRANSIENT_CODES
