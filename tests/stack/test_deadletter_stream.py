"""The dead-letter stream: dead letters an older release left on the logs stream's subject are moved into it
on start (once, even if the move is repeated), and the API answers 503 while NATS is down."""

from __future__ import annotations

from typing import Any

import nats.js.errors
import pytest
from oglogstream.stack.broker.broker import Broker, BrokerUnavailable
from oglogstream.stack.config import LEGACY_DEAD_SUBJECT, STREAM_NAME
from oglogstream.stack.processing.deadletter import count_dead_letters, list_dead_letters


async def test_legacy_dead_letters_are_moved_once(nats_server: Any) -> None:
    """Two dead letters on oglog.logs.dead become two entries of the dead-letter stream, headers kept."""
    broker = Broker(nats_server.url)
    try:
        await broker.start(wait=10)
        for k in range(2):
            headers = {
                "Oglog-Dead-Reason": "unparsable",
                "Oglog-Error": f"old {k}",
                "Nats-Msg-Id": f"dead-{k}",
            }
            await broker.js.publish(LEGACY_DEAD_SUBJECT, b"[]", headers=headers)
        await broker.ensure_stream()  # what the next start does
        await broker.ensure_stream()
        items, _ = await list_dead_letters(broker)
        assert [(i["reason"], i["error"]) for i in items] == [
            ("unparsable", "old 0"),
            ("unparsable", "old 1"),
        ]
        assert await count_dead_letters(broker) == 2
        with pytest.raises(nats.js.errors.NotFoundError):
            await broker.js.get_msg(STREAM_NAME, seq=1, subject=LEGACY_DEAD_SUBJECT, next=True)
    finally:
        await broker.close()


async def test_listing_while_nats_is_down_is_unavailable() -> None:
    """No broker connection: BrokerUnavailable (the HTTP boundary's 503 + Retry-After), not a hang."""
    broker = Broker("nats://127.0.0.1:1")
    with pytest.raises(BrokerUnavailable):
        await list_dead_letters(broker)
