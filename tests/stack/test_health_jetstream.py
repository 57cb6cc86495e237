"""/health tells a load balancer when JetStream cannot take writes although NATS is connected (the attacker's
full disk: every POST answered 503 while /health said ok)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp
import nats
from oglogstream.stack.config import STREAM_NAME, StackConfig

from .helpers import running_app

ENTRY = json.dumps({"level": "info", "message": "m", "service": "health-js"}).encode()


async def _post_and_health(session: aiohttp.ClientSession, url: str) -> tuple[int, int, dict[str, Any]]:
    async with session.post(f"{url}/log", data=ENTRY, headers={"Content-Type": "application/json"}) as r:
        posted = r.status
    async with session.get(f"{url}/health") as r:
        return posted, r.status, await r.json()


async def test_health_is_503_while_jetstream_refuses_writes_and_ok_again_after(nats_server: Any) -> None:
    """A stream that refuses new messages (as a full store does): POST 503, /health 503 naming JetStream;
    once writes succeed again both recover."""
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url)
    async with running_app(config) as url, aiohttp.ClientSession() as session:
        assert (await _post_and_health(session, url))[:2] == (202, 200)
        nc = await nats.connect(nats_server.url)
        try:
            jsm = nc.jetstream()
            info = await jsm.stream_info(STREAM_NAME)
            full = dataclasses.replace(info.config, max_msgs=info.state.messages, discard="new")
            await jsm.update_stream(full)
            posted, health, body = await _post_and_health(session, url)
            assert (posted, health) == (503, 503), body
            assert body["status"] == "degraded" and body["nats_status"] == "CONNECTED"
            assert body["jetstream_status"].startswith("JetStream publish failed"), body
            await jsm.update_stream(dataclasses.replace(info.config))
        finally:
            await nc.close()
        posted, health, body = await _post_and_health(session, url)
        assert (posted, health) == (202, 200), body
        assert "jetstream_status" not in body
