"""Local users on the machine of `oglog stack up`: the data dir it creates (every log, the keys, the NATS
token) is 0700, and the bundled nats-server refuses clients without the generated token, which every role
and ingest worker (2 here) gets; the token appears in no output."""

from __future__ import annotations

import asyncio
import re
import signal
import stat
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import AUTH_CONF_NAME, free_port

from .query_helpers import OglogProcess, post_json
from .test_stack_up import wait_stored

pytestmark = pytest.mark.timeout(180)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def nats_connects(url: str) -> bool:
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    except Exception:
        return False
    await nc.close()
    return True


def test_data_dir_is_private_and_nats_needs_the_token(tmp_path: Path) -> None:
    """Data dir, chDB and NATS store 0700, auth.conf 0600; NATS without the token is refused, with it
    accepted; an entry goes through ingest workers, NATS and processing to the query API."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    args = ["stack", "up", "--data-dir", str(data), "--port", str(port), "--ingest-workers", "2"]
    with OglogProcess(args, tmp_path / "up.log") as stack:
        stack.wait_healthy(base)
        entry = {"level": "info", "message": "through the token", "service": "local-sec"}
        assert post_json(f"{base}/log", entry) == 202
        wait_stored(base, "local-sec", 1)
        assert [mode(p) for p in (data, data / "clickhouse", data / "nats")] == [0o700] * 3
        conf = data / "nats" / AUTH_CONF_NAME
        assert mode(conf) == 0o600
        token = re.search(r'token: "([0-9a-f]{64})"', conf.read_text())
        assert token is not None
        match = re.search(r"nats +nats://\[REDACTED\]@127\.0\.0\.1:(\d+)", stack.output())
        assert match is not None, stack.output()
        nats_port = match.group(1)
        assert not asyncio.run(nats_connects(f"nats://127.0.0.1:{nats_port}"))
        assert asyncio.run(nats_connects(f"nats://{token.group(1)}@127.0.0.1:{nats_port}"))
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0
    assert token.group(1) not in stack.output()
