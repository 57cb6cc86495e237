"""asyncio benchmark: event-loop lag while an app logs 20,000 records/s, per way of logging.

Run from the project root:  .venv/bin/python -m benchmarks.sdk_async_bench [--seconds 4]

A ticker task sleeps 5 ms in a loop and records how late each wake-up is (the loop lag every other coroutine
of the app would see). Meanwhile a load task logs BURST records every 10 ms. Variants: no logging at all
(the floor), stdlib `NullHandler` (the cost of the logging calls themselves), `OgLogHandler` used from inside
the loop, `AsyncOgLogClient`, and both again while the server is unreachable (connection refused: retries
must not reach the loop), each for `--seconds` (default SECONDS). Every handler and client runs with its
DEFAULT settings. The server is `benchmarks.peers.counting_server` in its own process (count-only).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import statistics
import sys
import time
from collections.abc import Callable

from oglogstream import AsyncOgLogClient, OgLogHandler

from .sdk_bench import counting_server, server_count

SECONDS = 4.0
TICK = 0.005
BURST = 200
BURST_EVERY = 0.010


def _dead_url() -> str:
    """A local port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _run(log_burst: Callable[[int], None], seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = loop.time() + seconds

    async def ticker() -> None:
        while loop.time() < stop:
            expected = loop.time() + TICK
            await asyncio.sleep(TICK)
            lags.append(max(0.0, loop.time() - expected) * 1000)

    async def load() -> None:
        n = 0
        while loop.time() < stop:
            log_burst(n)
            n += BURST
            await asyncio.sleep(BURST_EVERY)

    await asyncio.gather(ticker(), load())
    return lags


def isolated_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"bench.async.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _delivered(url: str) -> int:
    return int(server_count(url)["records"])


def _stdlib_burst(logger: logging.Logger) -> Callable[[int], None]:
    info = logger.info
    extra = {"user_id": 42}

    def burst(n: int) -> None:
        for i in range(n, n + BURST):
            info("request handled in %d ms", i, extra=extra)

    return burst


def _client_burst(client: AsyncOgLogClient) -> Callable[[int], None]:
    info = client.info

    def burst(n: int) -> None:
        for i in range(n, n + BURST):
            info("request handled", ms=i, user_id=42)

    return burst


async def _variant(name: str, url: str | None, down: bool, seconds: float) -> tuple[list[float], str]:
    gc.collect()
    if name == "no logging":
        return await _run(lambda n: None, seconds), ""
    if name == "NullHandler":
        return await _run(_stdlib_burst(isolated_logger("null", logging.NullHandler())), seconds), ""
    assert url is not None
    if name.startswith("OgLogHandler"):
        handler = OgLogHandler(url, "async-bench")
        before = _delivered(url) if not down else 0
        lags = await _run(_stdlib_burst(isolated_logger("oglog", handler)), seconds)
        flushed = await asyncio.to_thread(handler.flush, 30) if not down else False
        stats = handler.stats()
        await asyncio.to_thread(handler.close, 0.5)
        delivered = _delivered(url) - before if not down else 0
        return lags, f"delivered {delivered}, flush={flushed}, retried {stats.retried}, queued {stats.queued}"
    client = AsyncOgLogClient(url, "async-bench")
    before = _delivered(url) if not down else 0
    lags = await _run(_client_burst(client), seconds)
    flushed = await client.flush(30) if not down else False
    stats = client.stats()
    await client.aclose(0.5)
    delivered = _delivered(url) - before if not down else 0
    return lags, f"delivered {delivered}, flush={flushed}, retried {stats.retried}, queued {stats.queued}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=SECONDS,
                        help=f"how long each variant logs (default {SECONDS:g})")
    seconds = parser.parse_args().seconds
    if seconds <= 0:
        parser.error("--seconds must be > 0")
    print(f"python {sys.version.split()[0]}; {BURST} records every {BURST_EVERY * 1000:.0f} ms "
          f"({BURST / BURST_EVERY:,.0f}/s) for {seconds:g} s; ticker every {TICK * 1000:.0f} ms")
    dead = _dead_url()
    with counting_server() as server:
        url = server["http"]
        variants: list[tuple[str, str | None]] = [
            ("no logging", None),
            ("NullHandler", None),
            ("OgLogHandler", url),
            ("AsyncOgLogClient", url),
            ("OgLogHandler, server down", dead),
            ("AsyncOgLogClient, server down", dead),
        ]
        print(f"\n  {'variant':<32} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  notes")
        for name, target in variants:
            started = time.perf_counter()
            lags, notes = asyncio.run(_variant(name, target, target == dead, seconds))
            lags.sort()
            p50 = statistics.median(lags)
            p99 = lags[int(len(lags) * 0.99) - 1]
            print(f"  {name:<32} {p50:7.2f} {p99:7.2f} {lags[-1]:7.2f}  {notes}"
                  f" ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
