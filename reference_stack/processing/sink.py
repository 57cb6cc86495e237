"""What the processor needs from storage: a small protocol, so processing knows nothing of ClickHouse.

The processor hands a `Sink` whole batches of JetStream messages (`Batch`) and reads back how many rows were
stored and how many were dropped as already stored. When the sink refuses a batch for its data (`is_poison`:
the same insert fails however often it is retried), the processor asks it to store the batch message by
message (`insert_isolating`) and dead-letters only the rows the sink cannot store (`Unstorable`). Anything
else the sink raises is transient: retried with backoff, then nak'ed for redelivery.

The ClickHouse implementation is `storage.storage.Storage` (`chdb://` and `http(s)://` alike); its blocking
insert code and the error classification live in `storage/` (`inserts.py`, `errors.py`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Protocol

__all__ = ["Batch", "Isolated", "Sink", "Stored", "Unstorable"]


@dataclasses.dataclass(frozen=True)
class Batch:
    """The rows of one or more JetStream messages, inserted together.

    `parts`: each message's payload, a JSON array of `logs` rows as ingestion wrote them; `ids`: the rows'
    ids over all parts, in order; `ts_min`/`ts_max`: the rows' timestamp range (RFC 3339 as rows carry it,
    "2026-11-27T10:00:00.123456Z"); `token`: the batch's deduplication base, the same whenever the same
    messages are inserted again (a retry, a redelivery)."""

    parts: list[bytes]
    ids: list[str]
    ts_min: str
    ts_max: str
    token: str


@dataclasses.dataclass
class Unstorable:
    """Rows of message `index` of a batch that the sink refused (`error`: its message for the last try)."""

    index: int
    rows: list[bytes]
    error: str


class Stored(NamedTuple):
    """What an insert did: rows stored, rows dropped because the same entry (id, timestamp) was stored."""

    rows: int
    duplicates: int


class Isolated(NamedTuple):
    """What an isolating insert did: as `Stored`, plus the refused rows (one `Unstorable` a message)."""

    rows: int
    duplicates: int
    refused: list[Unstorable]


class Sink(Protocol):
    """Where the processor stores rows. Both inserts are idempotent per batch (same rows, same result). The
    processor may call them for up to `inflight.DEFAULT_INSERTS_IN_FLIGHT` batches at once, never for two
    batches that share a row id; a sink that cannot run them side by side lets the later calls wait."""

    async def insert(self, batch: Batch) -> Stored:
        """Store the batch's rows as one insert, minus those already stored. Raises on any failure: a
        poison one (`is_poison`) or a transient one."""
        ...

    async def insert_isolating(self, batch: Batch) -> Isolated:
        """Store every row the sink takes, message by message; return the rest instead of raising for them.
        Raises on a transient failure (the caller retries the whole call)."""
        ...

    def is_poison(self, exc: BaseException) -> bool:
        """True when `exc` says the rows themselves were refused (retrying the same insert cannot help)."""
        ...
