"""`oglog demo` (what `make run` runs): the stack plus an app logging through the SDK, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import free_port

from .query_helpers import OglogProcess, get_json

pytestmark = pytest.mark.timeout(120)


def test_demo_logs_through_the_sdk_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The demo prints the URLs to open, its four services' logs become queryable, and SIGINT exits 0."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["demo", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--rate", "200"]
    with OglogProcess(args, tmp_path / "demo.log") as demo:
        demo.wait_healthy(base)
        deadline = time.monotonic() + 30
        services: dict[str, int] = {}
        while time.monotonic() < deadline and len(services) < 4:
            _, stats, _ = get_json(f"{base}/api/stats")
            services = stats["logs_by_service"]
            time.sleep(0.2)
        assert set(services) == {"web-api", "auth-service", "payment-service", "worker"}
        for path in ("/api/logs", "/api/stats", "/health", "/ws/live"):
            assert path in demo.output()
        status, errors, _ = get_json(f"{base}/api/logs?level=error,fatal&limit=5")
        assert status == 200 and all(e["level"] in ("error", "fatal") for e in errors)
        demo.signal(signal.SIGINT)
        assert demo.wait(60) == 0
        output = demo.output()
    assert "stopped" in output and "Traceback" not in output
    assert "httpx" not in output
