"""Run `oglog` (the console script's module) as a real subprocess against a real stack."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Mapping

__all__ = ["Result", "oglog", "start_oglog"]

#: Longest any one command may run in these tests.
COMMAND_TIMEOUT = 60.0


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


def _env(url: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OGLOG_")}
    if url is not None:
        base["OGLOG_URL"] = url
    return {**base, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **(env or {})}


async def start_oglog(
    *args: str, url: str | None = None, env: Mapping[str, str] | None = None, stdin: bool = False
) -> asyncio.subprocess.Process:
    """`python -m oglogstream.cli ARGS` with OGLOG_URL=url (stdout/stderr piped)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oglogstream.cli", *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(url, env),
    )


async def oglog(
    *args: str, url: str | None = None, stdin: str | None = None, env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> Result:
    """Run one command to completion (killed past `timeout`, which fails the test)."""
    proc = await start_oglog(*args, url=url, env=env, stdin=stdin is not None)
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"oglog {' '.join(args)} did not finish within {timeout}s") from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
