"""`Stats`: what a handler has done with the records it was given, including every loss by reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["DROP_REASONS", "LOSS_REMEDIES", "Stats"]

#: Why records can be lost; `Stats.dropped` only has keys that occurred. docs/sdk.md "Loss reasons" mirrors
#: this and LOSS_REMEDIES (`tests/sdk/test_sdk_docs_reasons.py` fails when they part).
DROP_REASONS: Mapping[str, str] = {
    "overflow": "the buffer was full (max_buffer_records / max_buffer_bytes); the overflow policy dropped it",
    "rejected": "the server accepted the batch but rejected this entry (partial-accept answer)",
    "client_error": "the server answered the whole batch with a non-retryable 4xx (e.g. 400, 401, 403)",
    "too_large": "the server answered 413 even for a batch holding only this entry",
    # "Went out" is the request's first byte written (docs/sdk.md "Stats"): the line between the two below.
    "shutdown": "close()/atexit reached its deadline before any request carrying the record went out (a"
    " deadline inside the connect counts here), or every one that did was answered with a 4xx that stored"
    " nothing (a 429, a proxy's 407): the server never stored it",
    "unconfirmed": "a request carrying it went out, but no answer that settles it (a 2xx or 4xx) came before"
    " the close()/atexit deadline (none, or a 5xx): the server may have stored it",
    "internal_error": "the SDK failed to capture or encode the record (a bug; reported on stderr)",
    "spool_full": "the disk spool reached spool_max_bytes; its oldest batches were dropped to make room",
    "spool_expired": "a spooled batch was older than spool_max_age when its turn to be sent came",
    "spool_corrupt": "a spooled batch failed its length/CRC check (a torn write at a crash) and was skipped;"
    " a frame torn inside its header counts as one record",
}

#: What would have avoided each loss: printed with the first loss of each reason (see `_delivery.Ledger`).
LOSS_REMEDIES: Mapping[str, str] = {
    # A burst overflows the caller-side intake (records logged faster than the worker encodes them), which
    # a spool does not relieve: only a larger budget does. An outage fills the encoded buffer, which a spool
    # moves to disk.
    "overflow": "if records were logged faster than they are encoded (a burst), raise max_buffer_bytes (and"
    " max_buffer_records for tiny records); if the server was failing or slow (an outage), set spool_dir"
    " (or raise max_buffer_bytes)",
    "rejected": "fix the entries the server rejected (stats().last_error and the line above name the first)",
    "client_error": "check url and api_key (the server refused the requests)",
    "too_large": "log smaller records (the server's per-entry limit)",
    "shutdown": "raise shutdown_timeout, call flush() before exiting, or set spool_dir",
    "unconfirmed": "raise shutdown_timeout (the server answers slower than the deadline, or failed), call"
    " flush() earlier, or set spool_dir (the next process resends it; the server drops a copy it has)",
    "internal_error": "nothing in the settings: this is an SDK bug, please report the line above",
    "spool_full": "raise spool_max_bytes",
    "spool_expired": "raise spool_max_age",
    "spool_corrupt": "nothing in the settings: a crash tore the last write to the spool",
}


@dataclasses.dataclass(frozen=True)
class Stats:
    """A snapshot from `OgLogHandler.stats()` / `OgLogProcessor.stats()`.

    Once nothing is queued or spooled, every record is counted exactly once:
    `records + adopted = sent + sum(dropped.values())` (`adopted` is 0 without a spool).
    """

    #: Records taken but not yet sent or dropped (waiting to be encoded, buffered, or in flight).
    queued: int
    #: Records the server accepted.
    sent: int
    #: Requests that were sent again after a retryable failure (connection error, 408, 429, 5xx).
    retried: int
    #: Lost records by reason (see DROP_REASONS).
    dropped: Mapping[str, int]
    #: The most recent delivery problem, human-readable, or None if there has been none. It stays set once
    #: delivery works again: `failing_since` says whether it is current, `last_error_at` when it happened.
    last_error: str | None
    #: Encoded bytes currently buffered (bounded by max_buffer_bytes).
    buffered_bytes: int
    #: Records held in the disk spool right now (this process's and adopted ones); 0 without `spool_dir`.
    spooled: int = 0
    #: Records taken over from spools left by earlier or dead processes (they are then sent or dropped here).
    adopted: int = 0
    #: Bytes the records captured but not yet encoded are charged against max_buffer_bytes (640 B each, more
    #: for mid-size and large ones: docs/sdk.md "Overflow"). With `buffered_bytes`, what the budget holds.
    intake_bytes: int = 0
    #: When `last_error` was set (Unix time, seconds), or None if there has been no error.
    last_error_at: float | None = None
    #: When the current run of failed requests began (Unix time, seconds: a retryable failure, or a whole
    #: batch refused with a 4xx); None while delivery works (since the last accepted batch). A health check
    #: reads this, not `last_error`, which stays set after a recovery.
    failing_since: float | None = None

    @property
    def dropped_total(self) -> int:
        """All lost records, whatever the reason."""
        return sum(self.dropped.values())
