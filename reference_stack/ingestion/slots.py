"""In-flight batch slots of one ingest process: a total cap and a per-client share of it.

Each POST /logs body in flight may hold up to MAX_BATCH_DECOMPRESSED_BYTES, so a process takes at most
`total` at once. Without a per-client share one client could take them all: the reviewer's 140 connections
trickling 8 MiB bodies just above MIN_BODY_RATE held all 128 slots of a 2-worker stack for ~80 s each, and
every other client got 429 (docs/api.md, "Limits"). So a client - its address (`Access.client_address`:
the peer, or behind a trusted proxy the nearest untrusted X-Forwarded-For hop), and its API key when auth
is on - shares the slots by the rule the storage's query queue uses too (`http.share.SharePolicy`): up to
`per_client` slots while any is free, more only while `per_client` stay free for the others, else it alone
gets 429 + Retry-After while the others keep their 202s; the last free slot is kept for a client with none
in flight. A lone client (one busy shipper, an app fleet behind one address) can so use all but a share of
the process, and a newcomer finds the last slot even when clients within their shares took the rest. The
address is part of the client even with a key: a fleet of apps sharing one ingest key is many clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

from ..http.boundary import Problem
from ..http.share import SharePolicy

__all__ = [
    "DEFAULT_MAX_BATCHES_IN_FLIGHT",
    "DEFAULT_MAX_BATCHES_PER_CLIENT",
    "OVERLOAD_RETRY_AFTER_SECONDS",
    "BatchSlots",
    "client_of",
]

#: POST /logs requests one process handles at once; past this it answers 429 + Retry-After rather than hold
#: more bodies in memory (each up to MAX_BATCH_DECOMPRESSED_BYTES). The SDK backs off and retries on 429.
DEFAULT_MAX_BATCHES_IN_FLIGHT = 64
#: Of those, what one client (address, and API key with auth) may always hold, and how many a client past
#: it must leave free: a quarter. A client sending 8 batches at once (the ingest benchmark) is within it.
DEFAULT_MAX_BATCHES_PER_CLIENT = 16
#: What a 429 tells the client to wait before retrying.
OVERLOAD_RETRY_AFTER_SECONDS = 1


def client_of(request: web.Request) -> str:
    """Who a request counts against: "addr:<address>", or "key:<id>@<address>" when an API key
    authenticated it (apps sharing one key are told apart by address)."""
    # Imported here: auth.middleware imports the OTLP receiver, which uses these slots.
    from ..auth.middleware import ACCESS, KEY_RECORD

    access = request.app.get(ACCESS)
    address = access.client_address(request) if access is not None else request.remote or ""
    record = request.get(KEY_RECORD)
    if record is not None:
        return f"key:{record.id}@{address}"
    return f"addr:{address}"


class BatchSlots:
    """Counts batches in flight, in total and per client. ValueError: a limit < 1, or per_client > total
    (the callers' setup() checks their own option names first)."""

    def __init__(
        self,
        total: int = DEFAULT_MAX_BATCHES_IN_FLIGHT,
        per_client: int = DEFAULT_MAX_BATCHES_PER_CLIENT,
    ) -> None:
        self.policy = SharePolicy(total, per_client, capacity_name="total", share_name="per_client")
        self.total, self.per_client = total, per_client
        self.in_flight = 0
        # Only clients holding a slot have an entry: the table is bounded by `total`.
        self._held: dict[str, int] = {}

    def held_by(self, client: str) -> int:
        return self._held.get(client, 0)

    @contextlib.contextmanager
    def take(self, client: str) -> Iterator[None]:
        """Hold one slot for `client` for the `with` block; 429 Problem (Retry-After) when the client holds
        its share already and taking one more would leave fewer than a share free, or the process is full.
        The client's limit is checked first: a client past its share is told so even when the process is
        full too."""
        held = self._held.get(client, 0)
        refusal = self.policy.refusal(held, self.in_flight)
        if refusal == "share":
            raise _overloaded(
                "client", f"this client (its address, and API key with auth) already has {held} batches in "
                f"flight on this server, past its share of {self.per_client} of the {self.total} slots "
                "while others may need them; retry later",
            )
        if refusal == "full":
            raise _overloaded("body", f"{self.total} batches are in flight on this server; retry later")
        if refusal == "reserved":
            raise _overloaded(
                "client", f"this client already has {held} batches in flight on this server and the last of "
                f"the {self.total} slots is kept for a client with none; retry later",
            )
        self.in_flight += 1
        self._held[client] = held + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            left = self._held[client] - 1
            if left:
                self._held[client] = left
            else:
                del self._held[client]


def _overloaded(field: str, reason: str) -> Problem:
    return Problem(
        429, "too many requests", field, reason, headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_SECONDS)}
    )
