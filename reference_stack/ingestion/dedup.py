"""Deduplication identities: the JetStream `Nats-Msg-Id` of a request's messages and the stem of the entry
ids derived for entries that give none (`schema.derived_id(stem, index)`).

JetStream drops a message whose Nats-Msg-Id it has seen within its duplicate window, and the processor drops
a row whose id is already stored, both answering as if all went well. So an identity must only ever repeat
for the SAME content (a true retry), never for a different request:

- A request with `X-Oglog-Batch-Id: B` gets the stem `B.<first 16 hex of sha256(body)>` (body decompressed):
  a retry (same id, same body) maps to the same stem, ids and messages and is stored once; another body
  under a reused batch id gets other ids and is stored too. Its messages are `c:<stem>`.
- A request without one gets the stem `<first 32 hex of sha256(body)>` (`body_identity`) and a random
  message id `s:<128 random bits>`. So a resent body (the client retrying after a 503 whose publish had
  in fact succeeded, its ack lost with the connection) derives the same ids for the entries that carry
  their own timestamp, and the processor, which drops rows whose (id, timestamp) is stored already,
  stores them once. Entries WITHOUT a timestamp get the server's time, so a resend is indistinguishable
  from a genuine repeat (a heartbeat posted twice): they keep ids from a random stem (`untimed_ids`) and
  are stored each time, as is JetStream's copy of the message (its id is random: dropping a resent
  message would drop those genuine repeats). Only `X-Oglog-Batch-Id` (or entry ids with timestamps; the
  SDK sends all three) makes a retry of such entries safe. OTLP requests get `o:<digest>` (see
  otlp.mapping.batch_id).
- The parts of a split payload are `<message id>/<k>of<n>`: `/` lies outside the client id alphabet
  (schema.ID_PATTERN), so no client batch id names a part of another message.

The `c:`/`s:`/`o:` prefixes keep the three namespaces apart: a client id can never be a server-made message
id. Entry ids share one alphabet with client-given ids, so what keeps derived ids apart is that a client can
only predict one by knowing the other request's body, timestamps included (or its random stem).
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import secrets
from typing import Any

from .schema import derived_id

__all__ = [
    "BODY_DIGEST_CHARS",
    "BODY_STEM_CHARS",
    "Identity",
    "body_identity",
    "client_identity",
    "otlp_message_id",
    "part_id",
    "server_identity",
    "untimed_ids",
]

#: Hex digits of sha256(body) in a client stem (64 bits: two bodies under one
#: batch id do not collide by chance).
BODY_DIGEST_CHARS = 16
#: Hex digits of sha256(body) in the stem of a request without a batch id (128 bits: two bodies do not
#: collide by chance, and the stem stays a plain derived-id prefix, `<stem>-<index>`).
BODY_STEM_CHARS = 32
#: Random bytes of a server-made stem (128 bits).
_SERVER_STEM_BYTES = 16
_TIMESTAMP = operator.itemgetter("timestamp")  # dict rows and Row structs alike


@dataclasses.dataclass(frozen=True)
class Identity:
    #: For schema.derived_id: [A-Za-z0-9_.:-], may exceed MAX_ID_CHARS (derived_id then hashes it).
    stem: str
    message_id: str  # Nats-Msg-Id of the request's message (or the base of its parts' ids)


def client_identity(batch_id: str, body: bytes) -> Identity:
    """The identity of a request with a client batch id (already validated against ID_PATTERN) and its
    decompressed body."""
    stem = f"{batch_id}.{hashlib.sha256(body).hexdigest()[:BODY_DIGEST_CHARS]}"
    return Identity(stem, f"c:{stem}")


def body_identity(body: bytes) -> Identity:
    """The identity of a request without a batch id (decompressed body): the stem from its digest, the
    message id random (module docstring); call `untimed_ids` on its rows."""
    stem = hashlib.sha256(body).hexdigest()[:BODY_STEM_CHARS]
    return Identity(stem, f"s:{secrets.token_hex(_SERVER_STEM_BYTES)}")


def untimed_ids(rows: list[Any], stem: str, received_at: str) -> None:
    """In place, for the rows of a `body_identity` request (dicts or fast_rows.Row structs): each row that
    got the server's time (`received_at`) and an id derived from the body's `stem` gets its id from a fresh
    random stem instead, at the same index, so a genuine repeat of the body is never taken for a retry. A
    client timestamp equal to `received_at` to the microsecond is treated so too: it only loses the resend
    protection. One C-level scan when every entry has its own timestamp (the common case)."""
    if received_at not in map(_TIMESTAMP, rows):
        return
    fresh = secrets.token_hex(_SERVER_STEM_BYTES)
    prefix = f"{stem}-"
    for row in rows:
        if row["timestamp"] == received_at and row["id"].startswith(prefix):
            new_id = derived_id(fresh, int(row["id"][len(prefix):]))
            if isinstance(row, dict):
                row["id"] = new_id
            else:
                row.id = new_id


def server_identity() -> Identity:
    """A fresh, unpredictable identity (the message of coalesced POST /log entries)."""
    stem = secrets.token_hex(_SERVER_STEM_BYTES)
    return Identity(stem, f"s:{stem}")


def otlp_message_id(batch_id: str) -> str:
    """The Nats-Msg-Id of an OTLP request whose entry-id stem is `batch_id` (a digest of its body)."""
    return f"o:{batch_id}"


def part_id(message_id: str, k: int, n: int) -> str:
    """The Nats-Msg-Id of part `k` (1-based) of `n` of a split payload."""
    return f"{message_id}/{k}of{n}"
