"""GET from another process of the same stack over its Unix socket (the supervisor asking an ingest worker's
/health, a worker gathering the others' /metrics): one definition of the request and its failure modes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

__all__ = ["get_over_socket"]

#: The host part of the URL: a Unix socket has none, aiohttp needs one.
_LOCAL_URL = "http://oglog-local"


async def get_over_socket(
    path: Path, route: str, *, timeout: float, headers: dict[str, str] | None = None
) -> tuple[int, bytes] | None:
    """(status, body) of `GET route` on the process listening on Unix socket `path`, or None when it refuses
    the connection or is gone (restarting). Raises asyncio.TimeoutError when it accepted but did not answer
    within `timeout` seconds (whole request): a hung process, which callers must not take for a gone one."""
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(path)),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as session,
            session.get(f"{_LOCAL_URL}{route}", headers=headers) as resp,
        ):
            return resp.status, await resp.read()
    except asyncio.TimeoutError:  # aiohttp's timeouts are ClientErrors too: told apart first
        raise
    except (aiohttp.ClientError, OSError):
        return None
