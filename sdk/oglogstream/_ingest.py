"""Encoding the intake into the bounded `Pending` store: the hot loop of both drivers (`ingest`).

Items (`_items.Item`) move from the intake deque into encoded NDJSON lines in chunks, with the counters of
`_delivery.Ledger` kept exact for `stats()` under the ledger's lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from . import _diag
from ._buffer import Pending
from ._delivery import Ledger
from ._entry import EntryEncoder
from ._items import Item
from ._settings import Settings

__all__ = ["INGEST_CHUNK", "ingest"]


#: Records taken out of the intake per lock acquisition: the lock makes a chunk's moves atomic for
#: `stats()`; encoding runs outside it, so a caller on its slow path waits at most for one chunk's
#: bookkeeping (tens of microseconds), never for encoding.
INGEST_CHUNK = 256


def ingest(
    intake: deque[Item],
    pending: Pending,
    encoder: EntryEncoder,
    settings: Settings,
    ledger: Ledger,
    *,
    bounded: bool,
    held_records: int = 0,
    held_bytes: int = 0,
    limit: int = -1,
    on_done: Callable[[list[Item]], None] | None = None,
) -> int:
    """Encode intake items into `pending`: until a batch is ready (bounded), `limit` items were taken, or the
    intake is empty; returns how many items were taken. `held_*` is what is in flight (same bounds).
    `on_done(items)` is called under the lock with the items of each chunk that left the intake for good
    (stored, dropped or failed), for the caller's own accounting of what the intake holds.

    The hot loop of both drivers, with the result of a per-entry loop over `Pending.push`. Items move in
    chunks: taken out of the intake under `ledger.lock` (counted in `pending.moving` meanwhile), encoded
    without the lock, then stored under the lock again, so a `stats()` snapshot (taken under the same lock)
    sees each record exactly once. Items of a chunk that were not needed (a batch became ready first) go back
    to the front of the intake unencoded. `Pending.push` (the overflow policy) runs only for an entry that
    does not simply fit.
    """
    batch_size, batch_bytes = settings.batch_size, settings.batch_bytes
    room_records = settings.max_buffer_records - held_records
    room_bytes = settings.max_buffer_bytes - held_bytes
    lock = ledger.lock
    queue = pending.lines
    popleft = intake.popleft
    encode_lines = encoder.encode_lines
    taken = 0
    while taken != limit:
        want = INGEST_CHUNK if limit < 0 else min(INGEST_CHUNK, limit - taken)
        with lock:
            # Callers only append concurrently (their pops happen under this lock): `n` items are there.
            n = min(want, len(intake))
            chunk = [popleft() for _ in range(n)]
            pending.moving = n
        if not n:
            break
        # How many more entries may simply be appended before a bound (or, when bounded, a full batch) needs
        # a closer look; counting down these locals is cheaper than re-reading `pending` for every entry.
        count = len(queue)
        room = room_records - count
        byte_room = room_bytes - pending.nbytes
        if bounded:
            room = min(room, batch_size - count)
            byte_room = min(byte_room, batch_bytes - 1 - pending.nbytes)
        lines: list[bytes] = []
        size_sum = failed = used = 0
        slow: bytes | None = None
        # The chunk's lines come from one generator, encoded as they are taken: the check that ends the
        # loop when a batch is ready (bounded) runs before the next item is encoded, here first and then at
        # the end of each pass (the same test, as the chunk's state stands), so the rest of the chunk goes
        # back to the intake unencoded, no id drawn for it.
        if not (
            bounded
            and (room <= 0 or byte_room < 0)
            and (count >= batch_size or pending.nbytes >= batch_bytes)
        ):
            for line in encode_lines(chunk):
                used += 1
                if type(line) is not bytes:  # encoding is total by design; if not, count it, say so, go on
                    failed += 1
                    _diag.report("encode", f"could not encode a record: {line!r}")
                else:
                    size = len(line)
                    if room > 0 and size <= byte_room:
                        lines.append(line)
                        size_sum += size
                        room -= 1
                        byte_room -= size
                    else:
                        slow = line  # the overflow policy decides: store what came before it first
                        break
                if (
                    bounded
                    and (room <= 0 or byte_room < 0)
                    and (count + len(lines) >= batch_size or pending.nbytes + size_sum >= batch_bytes)
                ):
                    break  # a batch is ready: the rest of the chunk goes back
        with lock:
            if lines:
                if not queue:
                    pending.first_seq = pending.next_seq
                queue.extend(lines)
                pending.next_seq += len(lines)
                pending.nbytes += size_sum
            if slow is not None:
                dropped = pending.push(slow, held_records, held_bytes)
                if dropped:
                    ledger.count("overflow", dropped)
            if failed:
                ledger.count("internal_error", failed)
            pending.moving = n - used
        if slow is not None:  # the buffer is at a bound: the rest of the chunk entry by entry, via push
            used += _push_each(chunk, used, pending, encoder, ledger, batch_size, batch_bytes,
                               bounded, held_records, held_bytes)
        if used < n:
            with lock:
                if not pending.given_up:  # else close() counted them as lost already
                    intake.extendleft(reversed(chunk[used:]))
                pending.moving = 0
        if on_done is not None:
            with lock:
                on_done(chunk[:used])
        taken += used
        if used < n:
            break  # a batch is ready
        if n < want:
            break  # the intake is empty
    return taken


def _push_each(
    chunk: list[Item],
    start: int,
    pending: Pending,
    encoder: EntryEncoder,
    ledger: Ledger,
    batch_size: int,
    batch_bytes: int,
    bounded: bool,
    held_records: int,
    held_bytes: int,
) -> int:
    """Store chunk[start:] one entry at a time through `Pending.push` (each under the lock); stops when a
    batch is ready (bounded). Returns how many items it took. The lines come from one `encode_lines`
    generator, as in `ingest`: an item left in the chunk is never encoded."""
    used = 0
    if bounded and pending.ready(batch_size, batch_bytes):
        return used
    for line in encoder.encode_lines(chunk[start:]):
        used += 1
        if type(line) is not bytes:  # as in `ingest`: never let one record stop the worker
            with ledger.lock:
                ledger.count("internal_error", 1)
                pending.moving -= 1
            _diag.report("encode", f"could not encode a record: {line!r}")
        else:
            with ledger.lock:
                dropped = pending.push(line, held_records, held_bytes)
                if dropped:
                    ledger.count("overflow", dropped)
                pending.moving -= 1
        if bounded and pending.ready(batch_size, batch_bytes):
            break  # checked before the next item is encoded
    return used
