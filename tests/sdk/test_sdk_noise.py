"""The SDK's own HTTP requests produce no application-visible log lines; the application's httpx use does."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from .capture_server import CaptureServer

_DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"

_TAIL = textwrap.dedent(
    """
    import asyncio, httpx, oglogstream
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, oglogstream.OgLogHandler)]
    assert handler.flush(5)
    httpx.get(URL + "/count")  # the application's own request: its INFO line must still show

    async def main():
        async with oglogstream.AsyncOgLogClient(URL, "async-noise") as client:
            client.info("from asyncio")
            assert await client.flush(5)
        async with httpx.AsyncClient() as own:
            await own.get(URL + "/count")

    asyncio.run(main())
    """
)


def test_documented_dictconfig_console_shows_no_sdk_requests(server: CaptureServer) -> None:
    """With the documented LOGGING (root INFO + console), no 'HTTP Request: POST' line for the SDK's sends."""
    example = re.findall(r"```python\n(.*?)```", _DOC.read_text(encoding="utf-8"), flags=re.S)[1]
    script = example.replace("http://localhost:8080", server.url) + f"URL = {server.url!r}\n" + _TAIL
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    console = result.stderr
    assert "payment retry" in console  # the console handler works
    messages = [e["message"] for e in server.entries]
    assert "payment retry" in messages and "from asyncio" in messages
    assert not any("POST" in m for m in messages)  # nor are they shipped
    assert "HTTP Request: POST" not in console, console
    assert console.count("HTTP Request: GET") == 2, console  # the application's own (sync and async) requests
