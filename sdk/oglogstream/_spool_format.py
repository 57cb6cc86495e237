"""The spool's on-disk format (see `_spool` for the layout): segment and frame headers, one frame's bytes.

A segment is a 16-byte header (magic, version, acked offset) followed by frames. A frame is a 24-byte header
(magic, payload length, record count, written-at time, CRC-32 of the header fields and the payload) and a
payload (batch id, newline, the batch's NDJSON lines).

A split record (written after a part of a frame that the server split with 413 was settled) has a header of
the same size (magic, payload length, records left, the replaced frame's offset in the same segment, CRC) and
a payload of the parts still to send, in order, each as "<batch id> <line count>\n" and its lines. The last
valid split record of a frame says what is left of it; once the frame is acked, its split records are dead.
A torn split record fails its CRC, so the state before it stands (the parts it would have dropped are sent
again under their own batch ids, which the server de-duplicates).
"""

from __future__ import annotations

import os
import struct
import zlib

from . import _wire
from ._buffer import Batch

__all__ = [
    "ACK_OFFSET_AT",
    "FRAME_HEADER",
    "FRAME_MAGIC",
    "MAX_PAYLOAD",
    "SEGMENT_HEADER",
    "SEGMENT_MAGIC",
    "SEGMENT_VERSION",
    "SPLIT_HEADER",
    "SPLIT_MAGIC",
    "Frame",
    "Segment",
    "encode_frame",
    "encode_split",
    "parse_frame",
    "parse_split",
    "split_intact",
]

SEGMENT_MAGIC = b"OGSP"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<4sIQ")  # magic, version, acked offset
ACK_OFFSET_AT = 8
# JSON escapes control characters, so this magic can never occur inside a payload: resync is unambiguous.
FRAME_MAGIC = b"OGF\x01"
FRAME_HEADER = struct.Struct("<4sIIdI")  # magic, payload length, records, written_at, crc32
MAX_PAYLOAD = 2 * _wire.MAX_BATCH_DECOMPRESSED_BYTES
# Same reasoning as FRAME_MAGIC: a control character, so never inside a payload.
SPLIT_MAGIC = b"OGS\x01"
SPLIT_HEADER = struct.Struct("<4sIIQI")  # magic, payload length, records left, replaced frame offset, crc32
assert SPLIT_HEADER.size == FRAME_HEADER.size  # one header read tells either kind apart


class Segment:
    """One open segment file of this process (its descriptor, size, and frames not yet settled)."""

    __slots__ = ("fd", "live", "path", "size")

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        #: Frames in this segment not yet settled.
        self.live = 0


class Frame:
    """One spooled batch. `lines` is a memory copy (None once evicted or for adopted frames)."""

    __slots__ = (
        "batch_id", "end", "first_seq", "lines", "nbytes", "offset", "parts", "records", "segment", "split",
        "written_at",
    )

    def __init__(
        self, segment: Segment, offset: int, end: int, records: int, written_at: float, first_seq: int | None
    ) -> None:
        self.segment = segment
        self.offset = offset
        self.end = end
        self.records = records
        self.written_at = written_at
        #: This process's seq of the first record (flush() waits on it); None for adopted frames.
        self.first_seq = first_seq
        self.batch_id = ""
        self.lines: list[bytes] | None = None
        self.nbytes = 0
        #: What is left to send after a 413 split it (in order), while it is the head; None = the whole frame.
        self.parts: list[Batch] | None = None
        #: (offset, end) of its last split record on disk, or None; `records` is then what that record holds.
        self.split: tuple[int, int] | None = None


def encode_frame(batch: Batch, written_at: float) -> bytes:
    """A batch as one frame (header and payload)."""
    payload = batch.batch_id.encode("ascii", "replace") + b"\n" + b"".join(batch.lines)
    fields = FRAME_HEADER.pack(FRAME_MAGIC, len(payload), len(batch), written_at, 0)[4:20]
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return FRAME_MAGIC + fields + struct.pack("<I", crc) + payload


def parse_frame(data: bytes, records: int, first_seq: int) -> Batch | None:
    """A frame read back as a Batch, or None when torn or damaged (length, count, CRC or shape)."""
    if len(data) < FRAME_HEADER.size or data[:4] != FRAME_MAGIC:
        return None
    _, length, count, _, crc = FRAME_HEADER.unpack_from(data)
    payload = data[FRAME_HEADER.size :]
    if len(payload) != length or count != records:
        return None
    if zlib.crc32(payload, zlib.crc32(data[4:20])) != crc:
        return None
    newline = payload.find(b"\n")
    if newline < 0 or not payload.endswith(b"\n"):
        return None
    lines = [line + b"\n" for line in payload[newline + 1 : -1].split(b"\n")]
    if len(lines) != records:
        return None
    return Batch(payload[:newline].decode("ascii", "replace"), first_seq, lines)


def encode_split(parts: list[Batch], replaces: int) -> bytes:
    """The parts of the frame at offset `replaces` still to send, as one split record (header and payload)."""
    payload = b"".join(
        b"%s %d\n%s" % (part.batch_id.encode("ascii", "replace"), len(part), b"".join(part.lines))
        for part in parts
    )
    records = sum(map(len, parts))
    fields = SPLIT_HEADER.pack(SPLIT_MAGIC, len(payload), records, replaces, 0)[4:20]
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return SPLIT_MAGIC + fields + struct.pack("<I", crc) + payload


def parse_split(data: bytes, records: int, first_seq: int) -> list[Batch] | None:
    """A split record read back as its parts (first to send first), or None when torn or damaged."""
    if len(data) < SPLIT_HEADER.size or data[:4] != SPLIT_MAGIC:
        return None
    _, length, count, _, crc = SPLIT_HEADER.unpack_from(data)
    payload = data[SPLIT_HEADER.size :]
    if len(payload) != length or count != records or zlib.crc32(payload, zlib.crc32(data[4:20])) != crc:
        return None
    rows = payload.split(b"\n")
    if rows.pop() != b"":
        return None
    parts: list[Batch] = []
    at = 0
    seq = first_seq
    while at < len(rows):
        name, _, size = rows[at].partition(b" ")
        n = int(size) if size.isdigit() else 0
        lines = [line + b"\n" for line in rows[at + 1 : at + 1 + n]]
        if n <= 0 or len(lines) != n:
            return None
        parts.append(Batch(name.decode("ascii", "replace"), seq, lines))
        seq += n
        at += 1 + n
    return parts if sum(map(len, parts)) == records else None


def split_intact(fd: int, offset: int, end: int, records: int) -> bool:
    """Whether the split record at [offset, end) of the file `fd` reads back whole (length, count, CRC)."""
    try:
        data = os.pread(fd, end - offset, offset)
    except OSError:
        return False
    return parse_split(data, records, 0) is not None
