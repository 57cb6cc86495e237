"""SDK outage benchmark, DEFAULT settings only: the server answers 503 for a while, then recovers.

Run from the project root (about 2 minutes):  .venv/bin/python -m benchmarks.sdk_outage_bench
Smaller (the sizes only; the handler keeps its defaults):  ... --outage-seconds 2 --cap-records 80000

Two cases, each in its own process, against one local server (`tests.sdk.capture_server --ids`, a
separate process that parses every entry and counts unique ids; `GET /fail/503` starts the outage,
`GET /fail/0` ends it):

* **outage**: 60 s at 1,000 records/s (paced in 10 ms ticks) while every request is answered 503, then the
  server recovers. Reported: delivered share, exactly-once (entries received == unique ids == records
  logged), time from recovery until the last record arrived, peak RSS and the RSS the outage added (sampled
  every second).
  Target: 100 % delivered, exactly once, RSS bounded (~15 MiB encoded, well under the 128 MiB budget).
* **cap**: a long outage that overflows the budget: 800,000 records as fast as the caller can log them (about
  200 MB encoded, more than `max_buffer_bytes`; 400,000 until the default became 128 MiB), server answering
  503 throughout. Reported: RSS after each 80,000 records, which must flatten at the cap, and the overflow
  losses (counted and announced on stderr).

The application process creates `OgLogHandler(url, service)` and nothing else: every setting is the default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

OUTAGE_SECONDS = 60.0
RATE = 1000
TICK = 0.01
CAP_RECORDS = 800_000
CAP_SAMPLE_EVERY = 80_000
#: How long recovery may take: the worker's next retry can be up to backoff_max (30 s) away.
RECOVERY_DEADLINE = 120.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc; else the peak from getrusage)."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return _peak_mib()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


# ---------------------------------------------------------------- the application process (child side)


def _child(case: str, url: str, outage_seconds: float, cap_records: int) -> None:
    import oglogstream

    log = logging.getLogger("outage-bench")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = oglogstream.OgLogHandler(url, "outage-bench")  # defaults only
    log.addHandler(handler)
    baseline = _rss_mib()
    samples: list[float] = []
    result: dict[str, Any] = {"case": case, "baseline_mib": baseline}
    if case == "outage":
        total = int(outage_seconds * RATE)
        per_tick = int(RATE * TICK)
        pause = threading.Event()
        started = time.monotonic()
        for i in range(total):
            log.info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
            if (i + 1) % per_tick == 0:
                pause.wait(max(0.0, started + (i + 1) / RATE - time.monotonic()))
                if (i + 1) % RATE == 0:
                    samples.append(_rss_mib())
        during = handler.stats()
        _get(url + "/fail/0")
        recovered = time.monotonic()
        delivered = handler.flush(timeout=RECOVERY_DEADLINE)
        result.update(
            logged=total,
            flushed=delivered,
            recovery_s=time.monotonic() - recovered,
            queued_at_recovery=during.queued,
            buffered_mib_at_recovery=during.buffered_bytes / 2**20,
        )
    else:
        for i in range(cap_records):
            log.info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
            if (i + 1) % CAP_SAMPLE_EVERY == 0:
                time.sleep(0.5)  # let the worker encode what the burst left in the intake
                samples.append(_rss_mib())
        result.update(logged=cap_records)
    stats = handler.stats()
    result.update(
        samples_mib=samples,
        peak_mib=_peak_mib(),
        sent=stats.sent,
        dropped=dict(stats.dropped),
        retried=stats.retried,
        buffered_mib=stats.buffered_bytes / 2**20,
    )
    print(json.dumps(result), flush=True)
    handler.close(timeout=0.5 if case == "cap" else 5.0)


# ---------------------------------------------------------------- the parent


@contextlib.contextmanager
def _server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sdk.capture_server", "--ids"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_case(case: str, outage_seconds: float, cap_records: int) -> dict[str, Any]:
    with _server() as url:
        _get(url + "/fail/503")
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.sdk_outage_bench", "--child", case, url,
             "--outage-seconds", str(outage_seconds), "--cap-records", str(cap_records)],
            cwd=ROOT, capture_output=True, text=True, timeout=outage_seconds + RECOVERY_DEADLINE + 60.0,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{case} child failed: {proc.stderr}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        counted = _get(url + "/count")
        result.update(received=counted["entries"], unique=counted["unique"], stderr=proc.stderr.strip())
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outage-seconds", type=float, default=OUTAGE_SECONDS,
                        help=f"length of the outage case's outage (default {OUTAGE_SECONDS:g})")
    parser.add_argument("--cap-records", type=int, default=CAP_RECORDS,
                        help=f"records the cap case logs (default {CAP_RECORDS:,})")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.outage_seconds < 1 or args.cap_records < 1:
        parser.error("--outage-seconds must be >= 1 and --cap-records >= 1")
    if args.child:
        _child(*args.child, args.outage_seconds, args.cap_records)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; OgLogHandler defaults only")
    o = _run_case("outage", args.outage_seconds, args.cap_records)
    logged, received, unique = o["logged"], o["received"], o["unique"]
    once = received == unique == logged
    grown = max(o["samples_mib"]) - o["baseline_mib"]
    every_10s = " ".join(f"{s:.0f}" for s in o["samples_mib"][9::10])
    print(f"outage: {logged:,} records over {args.outage_seconds:g} s at {RATE:,}/s against 503,"
          " then recovery")
    print(f"  delivered {received:,}/{logged:,} ({received / logged:.1%}), unique ids {unique:,}"
          f" (exactly once: {once}), dropped {o['dropped']}")
    print(f"  recovery: all delivered {o['recovery_s']:.1f} s after the server came back"
          f" (flush() returned {o['flushed']}); {o['retried']} retried requests")
    print(f"  held at recovery: {o['queued_at_recovery']:,} records,"
          f" {o['buffered_mib_at_recovery']:.1f} MiB encoded")
    print(f"  RSS: {o['baseline_mib']:.0f} MiB before, +{grown:.0f} MiB at most during the outage,"
          f" peak {o['peak_mib']:.0f} MiB; every 10 s: {every_10s} MiB")
    c = _run_case("cap", args.outage_seconds, args.cap_records)
    series = " ".join(f"{s:.0f}" for s in c["samples_mib"])
    announced = "yes" if "reason 'overflow'" in c["stderr"] else "NO"
    print(f"cap: {c['logged']:,} records as fast as possible against 503 (more than the default budget)")
    print(f"  RSS every {CAP_SAMPLE_EVERY:,} records: {series} MiB (baseline {c['baseline_mib']:.0f},"
          f" peak {c['peak_mib']:.0f}); {c['buffered_mib']:.1f} MiB encoded held at the end")
    print(f"  dropped {c['dropped']} by the overflow policy; announced on stderr: {announced}")
    print("target (outage: 100 % delivered, exactly once):", "met" if once else "MISSED")

if __name__ == "__main__":
    main()
