"""The one rule by which clients share a bounded resource: ingestion's body slots (`ingestion.slots`, the
OTLP receiver's too), the storage's query queue (`storage.scheduler`) and the live tail's sockets
(`query.live_admission`).

A client may hold up to `share` of the `capacity` while any is free; past its share it may take one more
only while `share` stay free afterwards, for other clients. So a lone client (one busy shipper, a dashboard's
burst of searches) uses all but a share, and a flood from one client cannot shut the others out.

The last free unit is kept for a client that holds none (unless `share` equals the capacity: then the
operator asked for one client to be able to fill it). Without that, clients each within their share could
fill the resource together and a newcomer lost every race for the unit the next completion freed: eight
addresses within their shares filled the 32 query places and a ninth had 12 of 18 queries refused (a stack
review, 2026-11-30). Now a
client with nothing in flight is refused only when the resource is full because another such client took
the last unit first; clients already holding units wait for the next completion.
"""

from __future__ import annotations

from typing import Literal

from ..config import check_at_least

__all__ = ["Refusal", "SharePolicy"]

#: Why a take is refused: "share" (this client is past its share and would leave less than a share free),
#: "full" (no room at all), "reserved" (only the last unit is free, and it is kept for a client holding
#: none). "share" is checked first: a client past its share is told so even when the resource is full too.
Refusal = Literal["share", "full", "reserved"]


class SharePolicy:
    """`capacity` units shared with a per-client `share` (module docstring). ValueError when either is < 1
    or the share exceeds the capacity; the messages use `capacity_name`/`share_name`, the callers' option
    names."""

    __slots__ = ("capacity", "share")

    def __init__(
        self, capacity: int, share: int, *, capacity_name: str = "capacity", share_name: str = "share"
    ) -> None:
        check_at_least(1, **{capacity_name: capacity, share_name: share})
        if share > capacity:
            raise ValueError(f"{share_name}: must be at most the {capacity_name} ({capacity}), got {share}")
        self.capacity, self.share = capacity, share

    def refusal(self, held: int, used: int) -> Refusal | None:
        """Whether a client holding `held` units may take one more while `used` of the capacity are taken
        (by everyone, this client included): None if it may, else why not."""
        if held >= self.share and self.capacity - used - 1 < self.share:
            return "share"
        if used >= self.capacity:
            return "full"
        if held and used == self.capacity - 1 and self.share < self.capacity:
            return "reserved"
        return None
