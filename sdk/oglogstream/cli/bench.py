"""`oglog bench`: a paced load generator against `POST /logs`, with a latency summary.

Batches are scheduled at fixed times (batch k at k * batch_size / rate seconds) and taken by `concurrency`
threads; a batch that starts late counts its latency from its scheduled time, so a saturated server shows up
as latency instead of being hidden by a slower send rate (no coordinated omission).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from . import _shapes
from ._http import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Answer,
    CliError,
    Target,
    UnexpectedAnswer,
    add_target_flags,
    decode_json,
    fetch,
)
from ._output import HelpFormatter

__all__ = ["BenchResult", "add_parser", "run"]

DEFAULT_RATE = 1000.0  # entries per second
DEFAULT_DURATION = 10.0  # seconds
DEFAULT_BATCH_SIZE = 100  # entries per POST /logs
DEFAULT_CONCURRENCY = 4  # requests in flight at most
BENCH_SERVICE = "oglog-bench"
#: The API's limit of entries per POST /logs.
MAX_BATCH = 10_000


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bench", parents=parents, help="load-test ingestion: rate, duration, batch size",
        description="Send --rate entries per second for --duration seconds to POST /logs in batches of "
        f"--batch-size (service {BENCH_SERVICE!r}), at most --concurrency requests at once; print the "
        "achieved rate, accepted/refused entries and latency percentiles. Exit 1 if anything was refused.",
        epilog="example:  oglog bench http://127.0.0.1:8080 --rate 20000 --duration 30 --batch-size 500",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("target_url", nargs="?", metavar="URL",
                        help="the stack (default: --url / $OGLOG_URL)")
    add_target_flags(parser)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="entries per second "
                        "(default: %(default)g)")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, metavar="SECONDS",
                        help="how long to send (default: %(default)g)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help="entries per request, 1..10000 (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help="requests in flight at most (default: %(default)s)")


@dataclass
class BenchResult:
    """What one run measured: entries accepted/refused, request outcomes by status, latencies in seconds."""

    accepted: int = 0
    refused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1]


def _body(run_id: str, batch: int, size: int) -> bytes:
    lines = (
        json.dumps({"id": f"{run_id}-{batch}-{i}", "level": "info", "service": BENCH_SERVICE,
                    "message": f"bench entry {i} of batch {batch}", "attributes": {"batch": batch}})
        for i in range(size)
    )
    return ("\n".join(lines) + "\n").encode()


def _accepted(answer: Answer, size: int) -> tuple[str, int]:
    """(status label, entries accepted) of the answer to a batch of `size`: a 202 counts what its body's
    `accepted` says (0..size), a 202 with another body counts none, as `202 (unexpected body)`."""
    if answer.status_code != 202:
        return str(answer.status_code), 0
    try:
        return "202", min(_shapes.accepted(decode_json(answer.content)), size)
    except UnexpectedAnswer:
        return "202 (unexpected body)", 0


def _worker(client: httpx.Client, args: argparse.Namespace, schedule: Any, start: float, end: float,
            result: BenchResult, stop: threading.Event, run_id: str, deadline: float) -> None:
    interval = args.batch_size / args.rate
    for batch in schedule:
        due = start + batch * interval
        if due >= end or stop.is_set():
            return
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        body = _body(run_id, batch, args.batch_size)
        try:
            answer = fetch(client, "POST", "/logs", deadline=time.monotonic() + deadline, content=body,
                           headers={"Content-Type": "application/x-ndjson"})
            status, accepted = _accepted(answer, args.batch_size)
        except CliError as exc:
            status, accepted = ("no answer" if exc.code == EXIT_UNREACHABLE else "unexpected answer"), 0
        latency = time.monotonic() - due
        with result.lock:
            result.statuses[status] += 1
            result.accepted += accepted
            result.refused += args.batch_size - accepted
            result.latencies.append(latency)


def _check(args: argparse.Namespace) -> None:
    if args.rate <= 0:
        raise CliError(f"--rate: must be > 0, got {args.rate:g}", EXIT_CONFIG)
    if args.duration <= 0:
        raise CliError(f"--duration: must be > 0, got {args.duration:g}", EXIT_CONFIG)
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise CliError(f"--batch-size: must be 1..{MAX_BATCH}, got {args.batch_size}", EXIT_CONFIG)
    if args.concurrency < 1:
        raise CliError(f"--concurrency: must be >= 1, got {args.concurrency}", EXIT_CONFIG)


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        stop: threading.Event | None = None) -> int:
    if args.target_url:
        args.url = args.target_url
    _check(args)
    target = Target.from_args(args)
    stop = stop or threading.Event()
    result = BenchResult()
    schedule = itertools.count()  # next() on it is atomic under the GIL: each batch is taken once
    run_id = uuid.uuid4().hex[:12]
    with target.client(connections=args.concurrency) as client:
        fetch(client, "GET", "/health", deadline=time.monotonic() + target.deadline)  # reachable at all?
        start = time.monotonic()
        end = start + args.duration
        work = (client, args, schedule, start, end, result, stop, run_id, target.deadline)
        threads = [threading.Thread(target=_worker, args=work, name=f"oglog-bench-{i}", daemon=True)
                   for i in range(args.concurrency)]
        progress = err.isatty()
        tick = threading.Event()  # never set: a wait with a deadline between progress lines
        interrupted = False
        try:  # from the first start on: a Ctrl-C at any point still stops the workers and prints the summary
            for thread in threads:
                thread.start()
            # The run lasts --duration even when the last batch was scheduled earlier: the achieved rate is
            # entries over the real elapsed time, never over the span of the batches alone.
            while any(t.is_alive() for t in threads) or (time.monotonic() < end and not stop.is_set()):
                tick.wait(min(1.0 if progress else 0.2, max(end - time.monotonic(), 0.01)))
                if progress:
                    done = min(time.monotonic() - start, args.duration)
                    filled = int(20 * done / args.duration)
                    err.write(f"\r[{'#' * filled}{'.' * (20 - filled)}] {done:4.0f}/{args.duration:g}s  "
                              f"accepted {result.accepted}  refused {result.refused}   ")
                    err.flush()
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(target.deadline + 1)
        result.elapsed = time.monotonic() - start
        if progress:
            err.write("\n")
    _summary(result, args, out)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.refused or not result.accepted else EXIT_OK


def _summary(result: BenchResult, args: argparse.Namespace, out: TextIO) -> None:
    rate = result.accepted / result.elapsed if result.elapsed else 0.0
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.statuses.items()))
    out.write(
        f"target     {args.rate:g} entries/s for {args.duration:g} s, batches of {args.batch_size}, "
        f"concurrency {args.concurrency}\n"
        f"achieved   {rate:.0f} entries/s ({result.accepted} accepted in {result.elapsed:.1f} s)\n"
        f"refused    {result.refused}\n"
        f"requests   {sum(result.statuses.values())} ({statuses or 'none'})\n"
        f"latency    p50 {result.percentile(50) * 1000:.1f} ms   p95 {result.percentile(95) * 1000:.1f} ms   "
        f"p99 {result.percentile(99) * 1000:.1f} ms\n"
    )
