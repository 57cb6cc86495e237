"""Opt-in disk spool (`spool_dir=`): batches are written here before they are sent, and acked once settled.

Only the worker thread of one pipeline touches a `Spool`. Layout of the directory:

    <owner>.lock                      flock(LOCK_EX)-ed by its live owner for as long as it runs
    <created_ns>-<rand>.<owner>.seg   segments, written by <owner> only; <owner> is "<pid>-<random hex>"

Segments hold frames appended in order (`_spool_format`), and split records: what is left of a frame the
server split with 413, appended once a part of it is split or settled (`Spool.progress`). A write torn by a
crash fails the length or CRC check and is skipped, never sent. The acked offset is rewritten in place
(one 8-byte pwrite) after each frame is settled, so a restart resumes after it (split records of a frame
before that offset are dead); a segment is deleted once everything in it is settled.

A process that finds a lock file nobody holds (its owner died, or exited during an outage) adopts that owner's
segments (`_spool_owners`; indexed by `_spool_adopt`). Replayed frames keep their batch id and entry ids, so
the server's de-duplication makes a replay of a batch it already stored (a crash between its answer and our
ack) harmless.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable

from . import _diag
from ._buffer import Batch
from ._spool_adopt import load_segment
from ._spool_format import (
    ACK_OFFSET_AT,
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    SEGMENT_VERSION,
    Frame,
    Segment,
    encode_frame,
    encode_split,
    parse_frame,
    parse_split,
)
from ._spool_owners import adopt_orphans, take_lock

__all__ = ["ORPHAN_SCAN_INTERVAL", "SEGMENT_BYTES", "Frame", "Spool"]

#: A segment is closed and a new one started once it holds this many bytes.
SEGMENT_BYTES = 8 * 1024 * 1024
#: How often (seconds) a running process looks for segments left by dead processes.
ORPHAN_SCAN_INTERVAL = 2.0


class Spool:
    """FIFO of batches on disk: adopted frames first (oldest segments first), then this process's own."""

    def __init__(
        self,
        directory: str,
        *,
        max_bytes: int,
        max_age: float,
        memory_mark: int,
        count: Callable[[str, int], None],
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._memory_mark = memory_mark
        self._count = count
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._adopted: deque[Frame] = deque()
        self._own: deque[Frame] = deque()
        #: Records in frames not yet settled (adopted + own), and this process's share of them.
        self.records = 0
        self.own_records = 0
        #: Records taken over from other owners' segments, ever.
        self.adopted_total = 0
        self._live_bytes = 0
        self._cached_bytes = 0
        self._active: Segment | None = None
        self._segments: list[Segment] = []
        self._next_scan = 0.0
        self._lock_fd = take_lock(directory, self.owner)

    # ------------------------------------------------------------------ ownership

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def scan(self, now: float) -> None:
        """Adopt what dead owners left behind (at most every ORPHAN_SCAN_INTERVAL seconds)."""
        if now < self._next_scan:
            return
        self._next_scan = now + ORPHAN_SCAN_INTERVAL
        for name in adopt_orphans(self.directory, self.owner):  # by creation time: oldest batches first
            load_segment(self, name)

    def _corrupt(self, records: int, message: str) -> None:
        self._count("spool_corrupt", records)
        _diag.report("spool_corrupt", message)

    # ------------------------------------------------------------------ writing

    def append(self, batch: Batch, *, evict: bool = True) -> bool:
        """Write a batch as a frame at the tail; False if it could not be written (then it is not spooled).
        With `evict=False` (while the head is being sent) nothing is expired or dropped to make room: False
        when it does not fit."""
        now = time.time()
        data = encode_frame(batch, now)
        size = len(data)
        if size > self._max_bytes:
            return False
        if evict:
            self.expire(now)
            self._make_room(size)
        elif self._live_bytes + size > self._max_bytes:
            return False
        try:
            segment = self._writable(size)
            written = 0
            while written < len(data):
                written += os.pwrite(segment.fd, memoryview(data)[written:], segment.size + written)
        except OSError as exc:
            _diag.report("spool_write", f"cannot write to spool_dir {self.directory!r}: {exc}")
            if self._active is not None:  # never append after a possibly torn frame: start a new segment
                with contextlib.suppress(OSError):
                    os.ftruncate(self._active.fd, self._active.size)
                self._retire(self._active)
            return False
        frame = Frame(segment, segment.size, segment.size + size, len(batch), now, batch.first_seq)
        frame.batch_id = batch.batch_id
        frame.nbytes = batch.nbytes
        if self._cached_bytes + batch.nbytes <= self._memory_mark:
            frame.lines = batch.lines
            self._cached_bytes += batch.nbytes
        segment.size += size
        segment.live += 1
        self._own.append(frame)
        self.records += len(batch)
        self.own_records += len(batch)
        self._live_bytes += size
        return True

    def _writable(self, size: int) -> Segment:
        active = self._active
        if active is not None and active.size + size > SEGMENT_BYTES and active.size > SEGMENT_HEADER.size:
            self._retire(active)
            active = None
        if active is None:
            name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.{self.owner}.seg"
            path = self._path(name)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            header = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_HEADER.size)
            os.pwrite(fd, header, 0)
            active = Segment(path, fd, SEGMENT_HEADER.size)
            self._segments.append(active)
            self._active = active
        return active

    def _retire(self, segment: Segment) -> None:
        """No more appends to this segment; deleted now if nothing in it is waiting."""
        if self._active is segment:
            self._active = None
        if not segment.live:
            self._discard(segment)

    def _discard(self, segment: Segment) -> None:
        with contextlib.suppress(OSError):
            os.unlink(segment.path)
        with contextlib.suppress(OSError):
            os.close(segment.fd)
        with contextlib.suppress(ValueError):
            self._segments.remove(segment)

    def _make_room(self, size: int) -> None:
        dropped = 0
        while self._live_bytes + size > self._max_bytes:
            frame = self.head()
            if frame is None:
                break
            dropped += frame.records
            self._settle(frame)
        if dropped:
            self._count("spool_full", dropped)
            _diag.report("spool_full", f"spool_dir full (spool_max_bytes): dropped the oldest {dropped}")

    # ------------------------------------------------------------------ reading

    def head(self) -> Frame | None:
        """The next frame to send (adopted ones first)."""
        if self._adopted:
            return self._adopted[0]
        return self._own[0] if self._own else None

    @property
    def own_first_seq(self) -> int | None:
        """Seq of this process's oldest unsettled spooled record (what flush() waits for)."""
        return self._own[0].first_seq if self._own else None

    def expire(self, now: float) -> None:
        """Drop frames at the head older than max_age."""
        limit = now - self._max_age
        dropped = 0
        while True:
            frame = self.head()
            if frame is None or frame.written_at >= limit:
                break
            dropped += frame.records
            self._settle(frame)
        if dropped:
            self._count("spool_expired", dropped)
            _diag.report("spool_expired", f"dropped {dropped} spooled records older than spool_max_age")

    def load(self, frame: Frame) -> list[Batch] | None:
        """What is left of the head frame to send, first part first (the whole frame, or what its 413 split
        left); None if it failed its CRC (it is then settled and counted as `spool_corrupt`)."""
        if frame.parts is not None:
            return frame.parts
        first_seq = frame.first_seq if frame.first_seq is not None else 0
        if frame.lines is not None and frame.split is None:
            return [Batch(frame.batch_id, first_seq, frame.lines)]
        offset, end = frame.split if frame.split is not None else (frame.offset, frame.end)
        try:
            data = os.pread(frame.segment.fd, end - offset, offset)
        except OSError as exc:
            data = b""
            _diag.report("spool_read", f"cannot read {frame.segment.path!r}: {exc}")
        if frame.split is not None:
            parts = parse_split(data, frame.records, first_seq)
        else:
            batch = parse_frame(data, frame.records, first_seq)
            parts = None if batch is None else [batch]
        if parts is None:
            self._corrupt(frame.records, f"a frame in {frame.segment.path!r} failed its CRC check; skipped")
            self._settle(frame)
        return parts

    def progress(self, frame: Frame, left: list[Batch], settled: int) -> None:
        """The head frame's first part got an answer that split it (413, `settled` 0) or settled it
        (`settled` records, counted by the caller under the same lock); `left` is what remains to send, each
        part under its own batch id. A split record saying so is appended to the frame's segment before the
        next part is sent: a later process never sends a settled part again, nor a part's records under
        another batch id (killed before the record is complete, it resends the state before: the parts it
        sends again keep their ids, which the server de-duplicates). Only if the write fails (reported) may
        a restart resend a settled part, under its old id."""
        frame.parts = left
        frame.records -= settled
        self.records -= settled
        if frame.first_seq is not None:
            self.own_records -= settled
        segment = frame.segment
        data = encode_split(left, frame.offset)
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(segment.fd, memoryview(data)[written:], segment.size + written)
        except OSError as exc:
            _diag.report("spool_write", f"cannot record a split batch's progress in {segment.path!r}: {exc}")
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.size)  # never leave a torn record before the next frame
            return
        if frame.split is not None:
            self._live_bytes -= frame.split[1] - frame.split[0]
        frame.split = (segment.size, segment.size + len(data))
        self._live_bytes += len(data)
        segment.size += len(data)

    def settle(self, frame: Frame) -> None:
        """The head frame was sent (or dropped and counted by the caller): forget it, on disk too."""
        self._settle(frame)

    def _settle(self, frame: Frame) -> None:
        queue = self._adopted if self._adopted and self._adopted[0] is frame else self._own
        queue.popleft()
        self.records -= frame.records
        if frame.first_seq is not None:
            self.own_records -= frame.records
        self._live_bytes -= frame.end - frame.offset
        if frame.split is not None:
            self._live_bytes -= frame.split[1] - frame.split[0]
        frame.parts = None
        if frame.lines is not None:
            self._cached_bytes -= frame.nbytes
            frame.lines = None
        segment = frame.segment
        segment.live -= 1
        if not segment.live and segment is not self._active:
            self._discard(segment)
            return
        try:
            os.pwrite(segment.fd, struct.pack("<Q", frame.end), ACK_OFFSET_AT)
        except OSError as exc:  # at worst the frame is sent again after a restart (same ids: de-duplicated)
            _diag.report("spool_write", f"cannot record progress in {segment.path!r}: {exc}")

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release everything. With nothing left to send the files go; otherwise the next process adopts."""
        for segment in list(self._segments):
            if not segment.live:
                self._discard(segment)
            else:
                with contextlib.suppress(OSError):
                    os.close(segment.fd)
        if not self._segments:
            with contextlib.suppress(OSError):
                os.unlink(self._path(f"{self.owner}.lock"))
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)  # releases the flock: what is left is now adoptable
        self._segments = []
        self._active = None

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors (the parent keeps its lock); touch no file."""
        for segment in self._segments:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._segments = []
        self._active = None
