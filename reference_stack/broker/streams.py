"""The JetStream streams every role relies on: their configuration and their (idempotent) setup.

`STREAM_NAME` (work queue: a message lives until the processor acks it) carries accepted batches;
`DEAD_STREAM_NAME` keeps dead letters for operators. Both drop a re-published Nats-Msg-Id within
DEFAULT_DUPLICATE_WINDOW, which is what makes a re-sent publish (broker.Broker.publish) or a replayed dead
letter count once.
"""

from __future__ import annotations

import logging

import nats.js.errors
from nats.js import JetStreamContext, api

from ..config import DEAD_LETTER_SUBJECT, DEAD_STREAM_NAME, LEGACY_DEAD_SUBJECT, STREAM_NAME, STREAM_SUBJECT
from .messages import MSG_ID

__all__ = ["DEFAULT_DUPLICATE_WINDOW", "dead_stream_config", "ensure_streams", "stream_config"]

log = logging.getLogger(__name__)

#: JetStream drops a message whose Nats-Msg-Id it saw within this window: a client retrying a batch within
#: 10 minutes is stored once by the broker itself (later retries are caught by the processor's id check).
DEFAULT_DUPLICATE_WINDOW = 600.0


def stream_config(
    *, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW, replicas: int = 1
) -> api.StreamConfig:
    """Work-queue retention (a message lives until the processor acks it), file storage, no age limit:
    an accepted batch only leaves by being stored in ClickHouse or dead-lettered (kept for operators).
    LEGACY_DEAD_SUBJECT stays a subject so that a store from an older release keeps its dead letters until
    `ensure_streams` has moved them to the dead-letter stream."""
    return api.StreamConfig(
        name=STREAM_NAME,
        subjects=[STREAM_SUBJECT, LEGACY_DEAD_SUBJECT],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        duplicate_window=duplicate_window,
        discard=api.DiscardPolicy.NEW,
        num_replicas=replicas,
    )


def dead_stream_config(
    *, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW, replicas: int = 1
) -> api.StreamConfig:
    """Limits retention, file storage, no age or size limit: a dead letter leaves only when it is replayed
    (or an operator deletes it); the duplicate window makes a re-sent dead letter count once."""
    return api.StreamConfig(
        name=DEAD_STREAM_NAME,
        subjects=[DEAD_LETTER_SUBJECT],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        duplicate_window=duplicate_window,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext, *, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW, replicas: int = 1
) -> None:
    """Create the streams, or update them to our config if they exist with another (idempotent); move
    dead letters an older release left in the logs stream to the dead-letter stream. Raises nats.errors.Error
    or asyncio.TimeoutError when JetStream does not answer or refuses."""
    for config in (
        stream_config(duplicate_window=duplicate_window, replicas=replicas),
        dead_stream_config(duplicate_window=duplicate_window, replicas=replicas),
    ):
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)
    await _move_legacy_dead_letters(js)


async def _move_legacy_dead_letters(js: JetStreamContext) -> None:
    # Re-published with a Nats-Msg-Id naming the old sequence, then deleted: a crash in between re-sends
    # it, and the duplicate window drops the copy.
    seq = 1
    while True:
        try:
            old = await js.get_msg(STREAM_NAME, seq=seq, subject=LEGACY_DEAD_SUBJECT, next=True)
        except nats.js.errors.NotFoundError:
            return
        assert old.seq is not None
        headers = dict(old.headers or {})
        headers[MSG_ID] = f"legacy-dead-{old.seq}"
        await js.publish(DEAD_LETTER_SUBJECT, old.data or b"", headers=headers)
        await js.delete_msg(STREAM_NAME, old.seq)
        log.warning("moved dead letter %d from %s to stream %s", old.seq, STREAM_NAME, DEAD_STREAM_NAME)
        seq = old.seq + 1
