"""Deduplication identities: the JetStream `Nats-Msg-Id` of a request's messages and the stem of the entry
ids derived for entries that give none (`schema.derived_id(stem, index)`).

JetStream drops a message whose Nats-Msg-Id it has seen within its duplicate window, and the processor drops
a row whose id is already stored, both answering as if all went well. So an identity must only ever repeat
for the SAME content (a true retry), never for a different request:

- A request with `X-Oglog-Batch-Id: B` gets the stem `B.<first 16 hex of sha256(body)>` (body decompressed):
  a retry (same id, same body) maps to the same stem, ids and messages and is stored once; another body
  under a reused batch id gets other ids and is stored too. Its messages are `c:<stem>`.
- A request without one gets a random 128-bit stem (nothing a client sees predicts the next one) and the
  messages `s:<stem>`. OTLP requests get `o:<digest>` (see otlp.mapping.batch_id).
- The parts of a split payload are `<message id>/<k>of<n>`: `/` lies outside the client id alphabet
  (schema.ID_PATTERN), so no client batch id names a part of another message.

The `c:`/`s:`/`o:` prefixes keep the three namespaces apart: a client id can never be a server-made message
id. Entry ids share one alphabet with client-given ids, so what keeps derived ids apart is that a client can
only predict one by knowing the other request's body (or its random stem).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

__all__ = [
    "BODY_DIGEST_CHARS",
    "Identity",
    "client_identity",
    "otlp_message_id",
    "part_id",
    "server_identity",
]

#: Hex digits of sha256(body) in a client stem (64 bits: two bodies under one
#: batch id do not collide by chance).
BODY_DIGEST_CHARS = 16
#: Random bytes of a server-made stem (128 bits).
_SERVER_STEM_BYTES = 16


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


def server_identity() -> Identity:
    """A fresh, unpredictable identity for a request without a batch id."""
    stem = secrets.token_hex(_SERVER_STEM_BYTES)
    return Identity(stem, f"s:{stem}")


def otlp_message_id(batch_id: str) -> str:
    """The Nats-Msg-Id of an OTLP request whose entry-id stem is `batch_id` (a digest of its body)."""
    return f"o:{batch_id}"


def part_id(message_id: str, k: int, n: int) -> str:
    """The Nats-Msg-Id of part `k` (1-based) of `n` of a split payload."""
    return f"{message_id}/{k}of{n}"
