"""Who may open one more live-tail socket (live.py): the hub's capacity shared per client; the per-key cap.

A client - `ingestion.slots.client_of`: its address, and its key with auth on - may always hold `share` of
the hub's `capacity` sockets; past that, one more only while `share` stay free for the others
(`http.share.SharePolicy`, the rule of ingestion's body slots; the last free socket is kept for a client
holding none), else 429 + Retry-After. A full hub is 503 +
Retry-After. With auth on, a key may hold at most `per_key` sockets (OGLOG_LIVE_SOCKETS_PER_KEY), else 429.
"""

from __future__ import annotations

from aiohttp import web

from ..http.boundary import Problem
from ..http.share import SharePolicy
from ..ingestion.slots import client_of

__all__ = ["RETRY_AFTER", "Admission", "Ticket"]

#: Retry-After (seconds) of a refusal for want of room: sockets are held for minutes, not milliseconds.
RETRY_AFTER = "5"


class Ticket:
    """One admitted socket: whom it counts against (release it once)."""

    __slots__ = ("client", "key_id")

    def __init__(self, client: str, key_id: str | None) -> None:
        self.client, self.key_id = client, key_id


class Admission:
    """Socket counts per client and per key; `policy` is the SharePolicy (replaceable, e.g. by tests)."""

    def __init__(self, policy: SharePolicy) -> None:
        self.policy = policy
        self.per_client: dict[str, int] = {}  # only clients holding a socket: bounded by the capacity
        self.per_key: dict[str, int] = {}

    def admit(self, request: web.Request, open_now: int, key_id: str | None, per_key: int) -> Ticket:
        """Count one more socket of `request`'s client (`open_now` sockets are open in all), or raise the
        429/503 Problem saying why not."""
        who = client_of(request)
        held = self.per_client.get(who, 0)
        refusal = self.policy.refusal(held, open_now)
        if refusal == "full":
            raise Problem(
                503, "unavailable", "server", f"too many live clients (max {self.policy.capacity})",
                headers={"Retry-After": RETRY_AFTER},
            )
        if refusal is not None:  # "share" or "reserved": this client holds enough for now
            kept = "the rest are kept for others" if refusal == "share" else (
                "the last free one is kept for a client with none"
            )
            raise _rate_limited(
                f"this client already holds {held} live-tail sockets and {kept} (max {self.policy.capacity} "
                "in all)"
            )
        if key_id is not None and self.per_key.get(key_id, 0) >= per_key:
            raise _rate_limited(f"this key already holds {per_key} live-tail sockets")
        self.per_client[who] = held + 1
        if key_id is not None:
            self.per_key[key_id] = self.per_key.get(key_id, 0) + 1
        return Ticket(who, key_id)

    def release(self, ticket: Ticket) -> None:
        _decrement(self.per_client, ticket.client)
        if ticket.key_id is not None:
            _decrement(self.per_key, ticket.key_id)


def _rate_limited(reason: str) -> Problem:
    return Problem(
        429, "too many requests", "server", reason, headers={"Retry-After": RETRY_AFTER}, kind="rate_limited"
    )


def _decrement(counts: dict[str, int], name: str) -> None:
    counts[name] -= 1
    if not counts[name]:
        del counts[name]
