"""The worker's store of encoded entries waiting to be sent, bounded by count and bytes.

Only the worker thread touches a `Pending`; callers hand records over through the intake deque instead
(see `_worker`), so nothing here needs a lock. Entries are numbered in admission order (`seq`) without
storing the numbers: they are contiguous, so `first_seq` and a position say it all (flush() waits on them).
"""

from __future__ import annotations

from collections import deque

__all__ = ["Batch", "Pending"]


class Batch:
    """Encoded entries sent as one request; `batch_id` is reused verbatim on every retry of it."""

    __slots__ = ("batch_id", "first_seq", "lines", "nbytes")

    def __init__(self, batch_id: str, first_seq: int, lines: list[bytes]) -> None:
        self.batch_id = batch_id
        self.first_seq = first_seq
        self.lines = lines
        self.nbytes = sum(map(len, lines))

    def __len__(self) -> int:
        return len(self.lines)

    def halves(self) -> tuple[Batch, Batch]:
        """Split for a 413 answer; each half is a new batch with an id derived from this one."""
        middle = len(self.lines) // 2
        return (
            Batch(self.batch_id + "a", self.first_seq, self.lines[:middle]),
            Batch(self.batch_id + "b", self.first_seq + middle, self.lines[middle:]),
        )


class Pending:
    """FIFO of encoded lines; `push` applies the overflow policy and returns how many entries it dropped."""

    def __init__(self, max_records: int, max_bytes: int, drop_oldest: bool) -> None:
        #: Oldest first. The worker appends here directly (with `next_seq += 1`) when an entry simply fits.
        self.lines: deque[bytes] = deque()
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._drop_oldest = drop_oldest
        self.nbytes = 0
        #: The seq of lines[0] (when there is one) and of the next admitted entry.
        self.first_seq = 1
        self.next_seq = 1
        #: Records taken out of the intake or cut from here and not yet stored in their next place (the one
        #: being encoded, or a batch on its way to the in-flight book or the spool): `stats().queued` counts
        #: them, so a snapshot taken meanwhile stays exact.
        self.moving = 0
        #: Set by close() when it gives up on a stuck worker and counts what it holds (`moving` included) as
        #: lost: the rest of a chunk that worker was encoding is then discarded, not put back in the intake,
        #: where a reopened pipeline would count or send it a second time.
        self.given_up = False

    def __len__(self) -> int:
        return len(self.lines)

    def push(self, line: bytes, held_records: int, held_bytes: int) -> int:
        """Add one entry; `held_*` is what an in-flight batch already occupies of the same bounds."""
        room_records = self._max_records - held_records
        room_bytes = self._max_bytes - held_bytes
        size = len(line)
        lines = self.lines
        dropped = 0
        if self._drop_oldest:
            while lines and (len(lines) + 1 > room_records or self.nbytes + size > room_bytes):
                self.nbytes -= len(lines.popleft())
                self.first_seq += 1
                dropped += 1
        if len(lines) + 1 > room_records or self.nbytes + size > room_bytes:
            return dropped + 1  # drop_newest, or it cannot fit even alone
        if not lines:
            self.first_seq = self.next_seq
        lines.append(line)
        self.next_seq += 1
        self.nbytes += size
        return dropped

    def ready(self, batch_size: int, batch_bytes: int) -> bool:
        """True when a full batch (by count or bytes) is waiting."""
        return len(self.lines) >= batch_size or self.nbytes >= batch_bytes

    def cut(self, batch_size: int, batch_bytes: int) -> tuple[int, list[bytes]]:
        """(first seq, the oldest lines up to either limit); at least one line, even if it alone is larger."""
        lines = self.lines
        first = self.first_seq
        if len(lines) <= batch_size and self.nbytes <= batch_bytes:  # everything fits: one C-level copy
            taken = list(lines)
            lines.clear()
            self.nbytes = 0
            self.first_seq = first + len(taken)
            self.moving = len(taken)
            return first, taken
        taken = []
        size = 0
        while lines and len(taken) < batch_size:
            line = lines[0]
            if taken and size + len(line) > batch_bytes:
                break
            taken.append(lines.popleft())
            size += len(line)
        self.nbytes -= size
        self.first_seq = first + len(taken)
        self.moving = len(taken)
        return first, taken

    def clear(self) -> int:
        """Drop everything; returns how many entries that was."""
        count = len(self.lines)
        self.lines.clear()
        self.nbytes = 0
        self.moving = 0
        self.first_seq = self.next_seq
        return count
