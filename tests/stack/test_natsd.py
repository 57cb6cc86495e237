"""The bundled nats-server: started with JetStream on a free port, and never outliving its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def test_server_starts_with_jetstream(nats_server) -> None:  # type: ignore[no-untyped-def]
    """A started server accepts clients and has JetStream enabled."""
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


def test_kill_9_of_the_parent_takes_the_server_down(tmp_path: Path) -> None:
    """A SIGKILLed parent leaves no nats-server holding the port or the store."""
    require("nats")
    from oglogstream.stack.broker.natsd import free_port

    port = free_port()
    script = (
        "import sys, time\n"
        "from oglogstream.stack.broker.natsd import NatsServer\n"
        f"NatsServer({str(tmp_path / 'nats')!r}, port={port}).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        assert _listening(port)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _listening(port)
    finally:
        if parent.poll() is None:
            parent.kill()
