"""What `oglog send` paces itself on comes from public API: `stats().intake_bytes` (what the records not yet
encoded are charged against max_buffer_bytes, read in the same snapshot as `queued` and `buffered_bytes`)
and `OgLogHandler.settings`; the CLI no longer reaches into the handler's pipeline."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler
from oglogstream._intake_charge import INTAKE_ITEM_BYTES
from oglogstream._settings import DEFAULT_MAX_BUFFER_BYTES
from oglogstream.cli import send

from .capture_server import CaptureServer


@pytest.mark.parametrize("driver", ["handler", "async"])
async def test_intake_bytes_returns_to_zero_once_delivered(
    server: CaptureServer, logger: logging.Logger, driver: str
) -> None:
    """Events waiting are charged at least 640 B each; once everything is delivered the intake is charged
    nothing, for either driver."""
    if driver == "handler":
        handler = OgLogHandler(server.url, "pace")
        logger.addHandler(handler)
        try:
            for i in range(2_000):
                logger.info(f"{i:06d}" + "x" * (i % 900))
            assert handler.flush(30)
            stats = handler.stats()
        finally:
            handler.close(5)
    else:
        client = AsyncOgLogClient(server.url, "pace")
        try:
            for i in range(2_000):
                client.info(f"{i:06d}" + "x" * (i % 900), n=i)
            assert client.stats().intake_bytes > 2_000 * INTAKE_ITEM_BYTES  # none taken yet: no await
            assert await client.flush(30)
            stats = client.stats()
        finally:
            await client.aclose(5)
    assert stats.sent == 2_000 and stats.queued == 0
    assert stats.intake_bytes == 0 and stats.buffered_bytes == 0


def test_the_cli_paces_on_public_api_only() -> None:
    """`oglog send` reads the budget from `OgLogHandler.settings` (frozen) and the held bytes from stats()."""
    handler = OgLogHandler("http://127.0.0.1:9", "cli")
    try:
        assert handler.settings.max_buffer_bytes == DEFAULT_MAX_BUFFER_BYTES
        with pytest.raises(dataclasses.FrozenInstanceError):
            handler.settings.max_buffer_bytes = 1  # type: ignore[misc]
        records, held, stats = send._held(handler)
        assert (records, held) == (stats.queued, stats.intake_bytes + stats.buffered_bytes)
    finally:
        handler.close(0.5)
    assert "_pipeline" not in inspect.getsource(send)
