"""SDK benchmark: a burst of 50,000 `logger.info` calls per handler, DEFAULT settings, each case in its own
process.

Run from the project root (about 2 minutes):
    .venv/bin/python -m benchmarks.sdk_bench [--rounds 5] [--peer-rounds 1] [--only OgLogHandler]
        [--busy-processes 2]

Cases (`benchmarks.peers.handlers.CASES`): NullHandler, StreamHandler to /dev/null, OgLogHandler with its
defaults, two stdlib references (`MemoryHandler` keeping each record and doing nothing else: the floor of any
handler that holds records for later; the stdlib's non-blocking pattern `QueueHandler` -> `QueueListener` ->
StreamHandler to /dev/null), and the peers with theirs (OpenTelemetry LoggingHandler over OTLP/HTTP,
python-logstash-async over TCP, logtail-python over HTTP). The network handlers all send to one counting
server (`benchmarks.peers.counting_server`), a separate process that only counts records, so its work is not
on the measured process's GIL. Each round runs every case once, each in a fresh process, the baselines, the
references and OgLogHandler in turns (ROTATED), then the peers (only in the first PEER_ROUNDS rounds); ratios
are taken within a round and their median over rounds is reported.

Per case:
* caller µs per call: wall time of the burst loop / calls (what the application thread waits for, including
  the GIL time a handler's background thread takes during the burst), and that thread's CPU time / calls;
* total: from the first call until the server has counted the last record (the server's clock of the last
  arrival; same machine, same clock); for StreamHandler until `flush()` returned, for NullHandler the loop;
* delivered: records the server counted / calls; the wait ends when all arrived, or nothing arrived for
  STALL_SECONDS (longer than every handler's flush interval), or after DEADLINE_SECONDS;
* peak RSS of the case's process (`ru_maxrss`) and how much of it the burst added;
* caller GC µs per call: the time the garbage collector ran during the burst (`gc.callbacks`), per call:
  what keeping records alive until the worker encodes them costs the application thread.
Targets (OgLogHandler): 100 % delivered, caller <= 1.25x NullHandler, total <= 1.25x StreamHandler.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.peers.handlers import CASES, DELIVER_NOTHING, LOCAL, REFERENCES

RECORDS = 50_000
#: The targets concern OgLogHandler against the baselines: they run every round (the machine is noisy);
ROUNDS = 5
#: the peers are far from the targets either way and slow to drain (python-logstash-async ~55 s per burst).
PEER_ROUNDS = 1
#: The cases every round runs, in turns (round 1 in this order, round 2 from the second, ...).
ROTATED = ("NullHandler", "StreamHandler(/dev/null)", "OgLogHandler", *REFERENCES)
TARGET_CALLER_RATIO = 1.25
TARGET_TOTAL_RATIO = 1.25
#: The delivery wait gives up when nothing arrived for this long: longer than every compared handler's flush
#: interval (python-logstash-async: 10 s plus a 2 s queue check; the others 1 s).
STALL_SECONDS = 15.0
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.01
WARMUP_SECONDS = 30.0
#: How long a case process may take to start, answer or close before it is killed.
CHILD_TIMEOUT = 60.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- the counting server (parent side)


@contextlib.contextmanager
def counting_server() -> Iterator[dict[str, Any]]:
    """The counting server in a child process; yields `{"http": URL, "tcp_port": PORT}`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peers.counting_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPUs until the block ends: the OS then deschedules the measured
    process's threads for milliseconds at a time, as on a loaded machine."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait(10)


def server_count(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/count", timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


def server_reset(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(f"{url}/reset", data=b"", method="POST"), timeout=10):
        pass


def wait_delivered(url: str, expected: int, deadline: float = DEADLINE_SECONDS) -> dict[str, Any]:
    """Poll the server until `expected` records arrived, nothing arrived for STALL_SECONDS, or `deadline`."""
    end = time.monotonic() + deadline
    seen, progress_at = -1, time.monotonic()
    while True:
        count = server_count(url)
        now = time.monotonic()
        if count["records"] != seen:
            seen, progress_at = count["records"], now
        if seen >= expected or now - progress_at >= STALL_SECONDS or now >= end:
            return count
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------- one case (child process)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker_cpu_clock(handler: logging.Handler) -> Callable[[], float]:
    """CPU seconds used so far by OgLogHandler's worker thread; 0.0 for other handlers or platforms."""
    thread = getattr(getattr(handler, "_pipeline", None), "_thread", None)  # benchmark-only private peek
    if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return lambda: 0.0
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


class GcClock:
    """Seconds the garbage collector ran while `gc.callbacks` holds `callback` (start/stop pairs, one thread
    logs: collections run on it)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def run_case(name: str, url: str, tcp_port: int, records: int) -> None:
    """Child: one burst; prints a JSON line after it, waits for a line on stdin, closes, prints another."""
    handler, close = CASES[name](url, tcp_port)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    warm = True
    if name not in LOCAL:
        server_reset(url)  # the previous case's count must not pass for this warm-up
    logger.info("warm-up")  # starts background threads and opens connections outside the timed part
    if name not in LOCAL:
        warm = wait_delivered(url, 1, WARMUP_SECONDS)["records"] >= 1
        server_reset(url)
    info = logger.info
    worker_cpu = _worker_cpu_clock(handler)
    gc.collect()
    rss_before = _rss_mb()
    worker0 = worker_cpu()
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock.callback)
    start = time.time()
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for i in range(records):
        info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
    caller_wall, caller_cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    gc.callbacks.remove(gc_clock.callback)
    # Not yet delivered when the caller is done: how far the worker fell behind during the burst.
    backlog = handler.stats().queued if hasattr(handler, "stats") else None
    total = None
    if name in LOCAL:
        handler.flush()
        total = time.perf_counter() - wall0
    burst = {
        "start": start,
        "caller_wall_us": caller_wall / records * 1e6,
        "caller_cpu_us": caller_cpu / records * 1e6,
        "caller_gc_us": gc_clock.seconds / records * 1e6,
        "total": total,
        "warm": warm,
        "backlog": backlog,
        "rss_before_mb": rss_before,
    }
    print(json.dumps(burst), flush=True)
    sys.stdin.readline()  # the parent has measured delivery
    burst_worker_cpu = worker_cpu() - worker0
    close()
    stats = handler.stats() if hasattr(handler, "stats") else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    end = {
        "rss_peak_mb": peak,
        "stats": None if stats is None else {"dropped": stats.dropped},
        "worker_cpu_us": burst_worker_cpu / records * 1e6 if burst_worker_cpu else None,
    }
    print(json.dumps(end), flush=True)


def measure(name: str, server: dict[str, Any], records: int) -> dict[str, Any]:
    """Parent: run one case in its own process and measure its delivery from outside it."""
    url = server["http"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sdk_bench", "--case", name, "--http", url,
         "--tcp-port", str(server["tcp_port"]), "--records", str(records)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        result: dict[str, Any] = json.loads(proc.stdout.readline())
        if name in LOCAL:
            result["delivered"] = records if name not in DELIVER_NOTHING else None
        else:
            count = wait_delivered(url, records)
            result["delivered"] = count["records"]
            last = count["last"]
            result["total"] = None if last is None else max(0.0, last - result["start"])
        proc.stdin.write("close\n")
        proc.stdin.flush()
        result.update(json.loads(proc.stdout.readline()))
        proc.wait(CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(CHILD_TIMEOUT)
    return result


# ---------------------------------------------------------------- report


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def report(rounds: list[dict[str, dict[str, Any]]], records: int) -> None:
    """Medians over rounds of each case's numbers and of its per-round ratios against the baselines."""
    print(f"\nMedians over the rounds each case ran ({records:,} calls per burst; ratios per round)")
    print("| handler | caller µs/call (wall) | x Null | caller CPU µs/call | x Null | caller GC µs/call"
          " | total s | x Stream | delivered | peak RSS MB (burst added) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def med(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    for name in CASES:
        ran = [r for r in rounds if name in r]  # peers run in the first --peer-rounds rounds only
        if not ran:
            continue
        runs = [r[name] for r in ran]
        wall = med([r["caller_wall_us"] for r in runs])
        cpu = med([r["caller_cpu_us"] for r in runs])
        gc_us = med([r["caller_gc_us"] for r in runs])
        wall_x = med([r[name]["caller_wall_us"] / r["NullHandler"]["caller_wall_us"] for r in ran])
        cpu_x = med([r[name]["caller_cpu_us"] / r["NullHandler"]["caller_cpu_us"] for r in ran])
        total = med([r["total"] for r in runs])
        stream = "StreamHandler(/dev/null)"
        total_x = med([
            r[name]["total"] / r[stream]["total"] if r[name]["total"] is not None else None for r in ran
        ])
        shares = [r["delivered"] / records for r in runs if r["delivered"] is not None]
        share = "-" if not shares else f"{min(shares):.1%}" + (
            "" if min(shares) == max(shares) else f"-{max(shares):.1%}")
        peak = med([r["rss_peak_mb"] for r in runs])
        added = med([r["rss_peak_mb"] - r["rss_before_mb"] for r in runs])
        print(f"| {name} | {_fmt(wall, '{:.2f}')} | {_fmt(wall_x, '{:.2f}')} | {_fmt(cpu, '{:.2f}')}"
              f" | {_fmt(cpu_x, '{:.2f}')} | {_fmt(gc_us, '{:.2f}')} | {_fmt(total, '{:.3f}')}"
              f" | {_fmt(total_x, '{:.2f}')} | {share}"
              f" | {_fmt(peak, '{:.0f}')} (+{_fmt(added, '{:.0f}')}) |")
    og = [r["OgLogHandler"] for r in rounds]
    walls = [r["OgLogHandler"]["caller_wall_us"] / r["NullHandler"]["caller_wall_us"] for r in rounds]
    cpus = [r["OgLogHandler"]["caller_cpu_us"] / r["NullHandler"]["caller_cpu_us"] for r in rounds]
    totals = [r["OgLogHandler"]["total"] / r["StreamHandler(/dev/null)"]["total"] for r in rounds
              if r["OgLogHandler"]["total"] is not None]
    all_delivered = all(r["delivered"] == records for r in og)
    print(f"\nOgLogHandler: not yet delivered when the burst ended {[r['backlog'] for r in og]};"
          f" worker thread CPU per record (µs) {[_fmt(r['worker_cpu_us'], '{:.2f}') for r in og]}")
    print("\nTargets for OgLogHandler (defaults):")
    print(f"  100 % delivered in every round: {'met' if all_delivered else 'MISSED'}"
          f" ({', '.join(str(r['delivered']) for r in og)}; dropped {[r['stats']['dropped'] for r in og]})")
    # The verdict is the median's; each round's ratio is shown too: on a shared machine single rounds of the
    # same code move by +-0.3 (docs/benchmarks.md), so one run's verdict can flip on the next.
    checks = [(f"caller <= {TARGET_CALLER_RATIO}x NullHandler (wall time)", walls, TARGET_CALLER_RATIO),
              (f"caller <= {TARGET_CALLER_RATIO}x NullHandler (thread CPU)", cpus, TARGET_CALLER_RATIO)]
    if totals:
        checks.append((f"total <= {TARGET_TOTAL_RATIO}x StreamHandler", totals, TARGET_TOTAL_RATIO))
    for label, ratios, target in checks:
        ratio = statistics.median(ratios)
        print(f"  {label}: {ratio:.2f}x -> {'met' if ratio <= target else 'MISSED'}"
              f" (rounds {', '.join(f'{x:.2f}' for x in ratios)}; met in"
              f" {sum(x <= target for x in ratios)} of {len(ratios)})")
    # What the caller target leaves for the capture itself: the floor already costs part of the 1.25x.
    print("\nCaller wall time x NullHandler, the stdlib references beside OgLogHandler (medians of rounds):")
    for name in ("StreamHandler(/dev/null)", *REFERENCES, "OgLogHandler"):
        ratios = [r[name]["caller_wall_us"] / r["NullHandler"]["caller_wall_us"] for r in rounds if name in r]
        if ratios:
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"  {name}: {statistics.median(ratios):.2f}x (rounds {each})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of the baselines and OgLogHandler")
    parser.add_argument("--peer-rounds", type=int, default=PEER_ROUNDS, help="rounds that include the peers")
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--only", action="append", help="run only these cases (the baselines always run)")
    parser.add_argument(
        "--busy-processes", type=int, default=0,
        help="keep this many other processes spinning on the CPUs meanwhile (a loaded machine, reproducibly)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    parser.add_argument("--tcp-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.http, args.tcp_port, args.records)
        return
    names = [n for n in CASES if not args.only or n in LOCAL or n in args.only]
    load = os.getloadavg()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f} at start,"
          f" {args.busy_processes} busy processes")
    rounds: list[dict[str, dict[str, Any]]] = []
    with counting_server() as server, busy_processes(args.busy_processes):
        for number in range(1, args.rounds + 1):
            results: dict[str, dict[str, Any]] = {}
            # The baselines and OgLogHandler take turns going first: no case always runs right after another.
            turn = (number - 1) % len(ROTATED)
            order = [*ROTATED[turn:], *ROTATED[:turn], *(n for n in names if n not in ROTATED)]
            for name in (n for n in order if n in names):
                if number > args.peer_rounds and name not in LOCAL and name != "OgLogHandler":
                    continue
                try:
                    results[name] = r = measure(name, server, args.records)
                except Exception as exc:  # a broken peer must not cost the others' numbers
                    print(f"  round {number}: {name} failed: {exc!r}")
                    continue
                print(f"  round {number}: {name:<58} caller {r['caller_wall_us']:6.2f} µs (cpu"
                      f" {r['caller_cpu_us']:5.2f}, gc {r['caller_gc_us']:4.2f})"
                      f" total {_fmt(r['total'], '{:.3f}')} s delivered"
                      f" {r['delivered']} peak RSS {r['rss_peak_mb']:.0f} MB"
                      + ("" if r["warm"] else " (warm-up record never arrived)"))
            rounds.append(results)
    report(rounds, args.records)


if __name__ == "__main__":
    main()
