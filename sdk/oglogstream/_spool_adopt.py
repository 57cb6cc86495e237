"""Adopting a segment a dead owner left in the spool (functions of a `_spool.Spool`): index its unsettled
frames and the split records that replace them (headers only; payloads are checked when sent), skip what a
crash tore (counted as `spool_corrupt`), cut off a torn tail.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from . import _diag
from ._spool_format import (
    FRAME_HEADER,
    FRAME_MAGIC,
    MAX_PAYLOAD,
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    SPLIT_HEADER,
    SPLIT_MAGIC,
    Frame,
    Segment,
    split_intact,
)

if TYPE_CHECKING:
    from ._spool import Spool

__all__ = ["load_segment"]


def load_segment(spool: Spool, name: str) -> None:
    """Index an adopted segment's unsettled frames (headers only; payloads are checked when sent)."""
    path = os.path.join(spool.directory, name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        _diag.report("spool", f"cannot open adopted segment {path!r}: {exc}")
        return
    size = os.fstat(fd).st_size
    header = os.pread(fd, SEGMENT_HEADER.size, 0)
    if len(header) < SEGMENT_HEADER.size or header[:4] != SEGMENT_MAGIC:
        spool._corrupt(1, f"{path!r} is not a spool segment ({size} bytes); removed")
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    acked = SEGMENT_HEADER.unpack(header)[2]
    segment = Segment(path, fd, size)
    spool._segments.append(segment)
    position = max(acked, SEGMENT_HEADER.size)
    found: dict[int, Frame] = {}  # offset -> frame, for the split records that follow their frame
    while position < size:
        head = os.pread(fd, FRAME_HEADER.size, position)
        split = head[:4] == SPLIT_MAGIC
        ok = len(head) == FRAME_HEADER.size and (head[:4] == FRAME_MAGIC or split)
        if ok:
            _, length, records, field, _crc = (SPLIT_HEADER if split else FRAME_HEADER).unpack(head)
            end = position + FRAME_HEADER.size + length
            ok = length <= MAX_PAYLOAD and end <= size and (records > 0 or split)
        if not ok:
            # A torn split record loses nothing (the state before it stands); a torn frame does.
            start, position = position, _resync(spool, segment, position, lost=not split)
            if position >= size:  # a torn tail: cut off, so split records appended here follow whole ones
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                    segment.size = start
            continue
        if split:
            # The replaced frame is acked (then this record is dead) or was indexed above. Its CRC is
            # checked here: a torn one must not replace a frame that is still whole.
            parent = found.get(int(field))
            if parent is not None and split_intact(fd, position, end, records):
                spool.records += records - parent.records
                spool.adopted_total += records - parent.records
                parent.records = records
                if parent.split is not None:
                    spool._live_bytes -= parent.split[1] - parent.split[0]
                parent.split = (position, end)
                spool._live_bytes += end - position
            position = end
            continue
        frame = Frame(segment, position, end, records, field, None)
        frame.nbytes = length
        found[position] = frame
        spool._adopted.append(frame)
        segment.live += 1
        spool.records += records
        spool.adopted_total += records
        spool._live_bytes += end - position
        position = end
    if not segment.live:
        spool._discard(segment)

def _resync(spool: Spool, segment: Segment, position: int, *, lost: bool = True) -> int:
    """Skip a damaged region (a torn tail, usually) up to the next frame magic or the end; `lost` says
    whether records were lost with it (not for a torn split record)."""
    rest = os.pread(segment.fd, segment.size - position - 1, position + 1)
    hits = [at for at in (rest.find(FRAME_MAGIC), rest.find(SPLIT_MAGIC)) if at >= 0]
    found = min(hits) if hits else -1
    skipped = segment.size - position if found < 0 else found + 1
    message = f"skipped {skipped} damaged bytes in {segment.path!r} (a write torn by a crash)"
    if lost:
        # A torn frame's record count is unknown: one (adopted, then dropped as spool_corrupt).
        spool.adopted_total += 1
        spool._corrupt(1, message)
    else:
        _diag.report("spool_corrupt", message)
    return segment.size if found < 0 else position + 1 + found
