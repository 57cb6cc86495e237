"""Soak script for the disk spool (not part of the test suite; about 1 minute):

    .venv/bin/python -m tests.sdk.soak_spool

1. A 30 s outage: a handler with a spool logs 2,000 records/s while the server is down, the server comes back,
   and every record must arrive exactly once (by id and by message).
2. kill -9: five times, a child logging ~1,000 records/s with a spool is killed at a random moment during an
   outage; a fresh process replays its spool. Prints how many records each crash lost (logged but never
   delivered) and checks that nothing arrived twice. This is the measured kill -9 window in docs/sdk.md.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from oglogstream import OgLogHandler

from .capture_server import CaptureServer

ROOT = Path(__file__).resolve().parents[2]


def outage(seconds: float = 30.0, rate: int = 2000) -> None:
    server = CaptureServer().start()
    with tempfile.TemporaryDirectory() as spool:
        handler = OgLogHandler(
            server.url, "soak", spool_dir=spool, flush_interval=0.2, backoff_max=2.0, connect_timeout=0.5
        )
        log = logging.getLogger("soak")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        server.stop()
        total = 0
        started = time.monotonic()
        peak_memory = peak_spool = 0
        while time.monotonic() - started < seconds:
            for _ in range(rate // 10):
                log.info("outage record %d", total)
                total += 1
            stats = handler.stats()
            peak_memory = max(peak_memory, stats.buffered_bytes)
            peak_spool = max(peak_spool, stats.spooled)
            time.sleep(0.1)
        server.restart()
        recovered = time.monotonic()
        ok = handler.flush(120)
        took = time.monotonic() - recovered
        stats = handler.stats()
        handler.close(5)
        server.stop()
        counts = collections.Counter(str(e["message"]) for e in server.entries)
        exact = counts == collections.Counter(f"outage record {i}" for i in range(total))
        print(
            f"outage {seconds:.0f} s, {total} records: flush={ok} in {took:.1f} s after recovery; "
            f"delivered {server.entry_count} ({len(server.ids)} unique ids), exactly once: {exact}; "
            f"peak in memory {peak_memory / 1024:.0f} KiB, peak spooled {peak_spool} records; "
            f"sent={stats.sent} dropped={dict(stats.dropped)} retried={stats.retried}"
        )
        assert exact and ok


def crash_once(seed: int) -> tuple[int, int, int]:
    """(logged, delivered, duplicates) for one kill -9 at a random moment."""
    server = CaptureServer().start()
    server.stop()
    with tempfile.TemporaryDirectory() as spool:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sdk.spool_child", server.url, spool, "crash", "10000000", "0.001"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        kill_after = random.Random(seed).randint(1000, 4000)
        logged = 0
        for _ in proc.stdout:
            logged += 1
            if logged >= kill_after:
                break
        os.kill(proc.pid, signal.SIGKILL)
        logged += sum(1 for _ in proc.stdout)
        proc.wait(10)
        server.restart()
        replayer = OgLogHandler(server.url, "replayer", spool_dir=spool, flush_interval=0.05)
        assert replayer.flush(30)
        replayer.close(5)
        server.stop()
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    duplicates = sum(count - 1 for count in counts.values())
    return logged, len(counts), duplicates


def main() -> None:
    outage()
    losses = []
    for seed in range(5):
        logged, delivered, duplicates = crash_once(seed)
        losses.append(logged - delivered)
        print(f"kill -9 after {logged} records: delivered {delivered}, lost {logged - delivered}, "
              f"duplicates {duplicates}")
        assert duplicates == 0
    print(f"kill -9 loss (batch_size=100, flush_interval=0.1 s, ~1,000 records/s): max {max(losses)}, "
          f"median {sorted(losses)[len(losses) // 2]} records")


if __name__ == "__main__":
    main()
