"""The spool's on-disk format (see `_spool` for the layout): segment and frame headers, one frame's bytes.

A segment is a 16-byte header (magic, version, acked offset) followed by frames. A frame is a 24-byte header
(magic, payload length, record count, written-at time, CRC-32 of the header fields and the payload) and a
payload (batch id, newline, the batch's NDJSON lines).
"""

from __future__ import annotations

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
    "Frame",
    "Segment",
    "encode_frame",
    "parse_frame",
]

SEGMENT_MAGIC = b"OGSP"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<4sIQ")  # magic, version, acked offset
ACK_OFFSET_AT = 8
# JSON escapes control characters, so this magic can never occur inside a payload: resync is unambiguous.
FRAME_MAGIC = b"OGF\x01"
FRAME_HEADER = struct.Struct("<4sIIdI")  # magic, payload length, records, written_at, crc32
MAX_PAYLOAD = 2 * _wire.MAX_BATCH_DECOMPRESSED_BYTES


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
        "batch_id", "end", "first_seq", "lines", "nbytes", "offset", "records", "segment", "written_at"
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
